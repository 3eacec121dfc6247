using System.Text.Json;
using System.Text.Json.Nodes;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Gemma;

/// <summary>Gemma chat rendering and template recognition against manifest.json → prompts.</summary>
public sealed class ChatFormatTests
{
    private static GemmaTokenizer Tok => TokenizerTests.Shared.Value;

    private static JsonElement Prompts => Fixture.Manifest.GetProperty("prompts");

    private static ChatMessage[] Messages(JsonElement array) =>
        array.EnumerateArray().Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!)).ToArray();

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    [Theory]
    [InlineData("image_chat")]
    [InlineData("text_chat")]
    public void Render_EqualsHfApplyChatTemplate(string prompt)
    {
        var p = Prompts.GetProperty(prompt);
        var messages = Messages(p.GetProperty("messages"));
        Assert.Equal(p.GetProperty("rendered_chat_template").GetString(), Tok.ApplyChatTemplate(messages, addGenerationPrompt: true));
        Assert.Equal(p.GetProperty("rendered_chat_template").GetString(), Tok.ChatFormat.Render(messages));
    }

    [Fact]
    public void Render_BatchPrompts_EqualHf()
    {
        var batch = Prompts.GetProperty("batch");
        var rendered = batch.GetProperty("rendered_chat_template").EnumerateArray().Select(x => x.GetString()).ToArray();
        var conversations = batch.GetProperty("messages").EnumerateArray().Select(Messages).ToArray();
        Assert.Equal(rendered.Length, conversations.Length);
        for (int i = 0; i < rendered.Length; i++)
        {
            Assert.Equal(rendered[i], Tok.ApplyChatTemplate(conversations[i]));
        }
    }

    [Theory]
    [InlineData("image_chat")]
    [InlineData("text_chat")]
    public void EncodeChat_EqualsApplyChatTemplateTokenizeTrue_SingleBos(string prompt)
    {
        var p = Prompts.GetProperty(prompt);
        var ids = Tok.EncodeChat(Messages(p.GetProperty("messages")), addGenerationPrompt: true);
        Assert.Equal(Ints(p.GetProperty("apply_chat_template_tokenize_true_ids")), ids);
        Assert.Equal(Tok.BosTokenId, ids[0]);
        Assert.NotEqual(Tok.BosTokenId, ids[1]);
    }

    [Fact]
    public void Encode_RenderedText_ReproducesProcessorDoubleBos()
    {
        var text = Prompts.GetProperty("text_chat");
        int[] expected = Ints(text.GetProperty("processor_input_ids"));
        Assert.True(text.GetProperty("double_bos").GetBoolean());
        Assert.Equal(expected, Tok.Encode(text.GetProperty("rendered_chat_template").GetString()!));
        Assert.Equal([Tok.BosTokenId, Tok.BosTokenId], expected[..2]);

        // The processor expands <image> to 16 tokens before tokenizing; the expanded text tokenizes to its ids.
        var image = Prompts.GetProperty("image_chat");
        var ids = Tok.Encode(image.GetProperty("expanded_text").GetString()!);
        Assert.Equal(Ints(image.GetProperty("processor_input_ids")), ids);
        var positions = ids.Select((id, i) => (id, i)).Where(t => t.id == Tok.TokenToId("<image>")).Select(t => t.i);
        Assert.Equal(Ints(image.GetProperty("image_token_positions")), positions);

        // And the golden input_ids tensor agrees.
        using var golden = Fixture.Load("prompt.text_chat.input_ids");
        Assert.Equal(expected.Select(x => (long)x), golden.data<long>().ToArray());
    }

    [Fact]
    public void Render_AssistantBecomesModel_ContentIsPythonStripped()
    {
        var format = new GemmaChatFormat();
        string rendered = format.Render(
            [new ChatMessage("user", "\u001c hi \t\n"), new ChatMessage("assistant", "\u00a0yo\u3000"), new ChatMessage("user", "x")],
            addGenerationPrompt: false);
        Assert.Equal("<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\nyo<end_of_turn>\n<start_of_turn>user\nx<end_of_turn>\n", rendered);

        // Zero-width space is not whitespace for Python either.
        Assert.Contains("\u200bq", format.Render([new ChatMessage("user", "\u200bq")]));
        Assert.StartsWith("[BOS]<start_of_turn>", new GemmaChatFormat("[BOS]").Render([new ChatMessage("user", "q")]));
    }

    [Fact]
    public void Render_RejectsWhatTheTemplateRejects()
    {
        var format = new GemmaChatFormat();
        var e1 = Assert.Throws<ChatTemplateException>(() => format.Render([new ChatMessage("system", "be nice"), new ChatMessage("user", "hi")]));
        Assert.StartsWith("System role not supported", e1.Message);

        Assert.Throws<ChatTemplateException>(() => format.Render([new ChatMessage("assistant", "hi")]));
        Assert.Throws<ChatTemplateException>(() => format.Render([new ChatMessage("user", "a"), new ChatMessage("user", "b")]));
        Assert.Throws<ChatTemplateException>(() => format.Render([]));
        Assert.Throws<ArgumentException>(() => format.Render([new ChatMessage("user", null!)]));

        // The template only checks user / non-user alternation: any other role name at an odd index is written as is.
        Assert.Contains("<start_of_turn>tool\nr<end_of_turn>", format.Render([new ChatMessage("user", "q"), new ChatMessage("tool", "r")]));
    }

    [Fact]
    public void Recognise_FixtureTemplates()
    {
        Assert.NotNull(Tok.ChatTemplate);
        Assert.True(ChatTemplate.IsGemmaTemplate(Tok.ChatTemplate!));
        var chatTemplateJson = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture.ModelDir, "chat_template.json")))!["chat_template"]!.GetValue<string>();
        Assert.True(ChatTemplate.IsGemmaTemplate(chatTemplateJson));
        Assert.Equal("<bos>", ChatTemplate.Recognise(chatTemplateJson).BosToken);
    }

    [Fact]
    public void Recognise_ReformattedGemmaTemplate()
    {
        // Same template written over several lines with whitespace control, double quotes, attribute access,
        // a comment, and the parentheses moved: it renders identically.
        const string reformatted = """
            {{ bos_token }}
            {%- if messages[0].role == "system" -%}
                {{ raise_exception("System role not supported") }}
            {%- endif -%}
            {# turns #}
            {%- for message in messages -%}
                {%- if (message.role == "user") != (loop.index0 % 2 == 0) -%}
                    {{- raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") -}}
                {%- endif -%}
                {%- if message['role'] == 'assistant' -%}
                    {%- set role = "model" -%}
                {%- else -%}
                    {%- set role = message.role -%}
                {%- endif -%}
                {{ "<start_of_turn>" + role + "\n" + message.content | trim + "<end_of_turn>\n" }}
            {%- endfor -%}
            {%- if add_generation_prompt -%}
            <start_of_turn>model
            {% endif %}
            """;
        Assert.True(ChatTemplate.IsGemmaTemplate(reformatted));

        // trim_blocks/lstrip_blocks make plain newlines after block tags and indentation before them invisible.
        string blocks = ChatTemplate.GemmaTemplate.Replace("%}", "%}\n", StringComparison.Ordinal).Replace("%}\n{%", "%}\n    {%", StringComparison.Ordinal);
        Assert.True(ChatTemplate.IsGemmaTemplate(blocks), blocks);
    }

    [Theory]
    [InlineData("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")]
    [InlineData("")]
    [InlineData("{{ bos_token")]
    [InlineData("{{ bos_token }}{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] + '<end_of_turn>\n' }}{% endfor %}")]
    public void Recognise_OtherTemplates_Throw(string template)
    {
        Assert.False(ChatTemplate.IsGemmaTemplate(template));
        var e = Assert.Throws<UnsupportedChatTemplateException>(() => ChatTemplate.Recognise(template));
        Assert.Contains("GemmaTokenizer.Encode", e.Message);
    }

    [Fact]
    public void Recognise_GemmaVariantsThatRenderDifferently_Throw()
    {
        string g = ChatTemplate.GemmaTemplate;
        Assert.False(ChatTemplate.IsGemmaTemplate(g.Replace(" | trim", "", StringComparison.Ordinal)));            // no strip
        Assert.False(ChatTemplate.IsGemmaTemplate(g.Replace("{{ bos_token }}", "", StringComparison.Ordinal)));    // no bos
        Assert.False(ChatTemplate.IsGemmaTemplate(g.Replace("{% endfor %}", "\n{% endfor %}", StringComparison.Ordinal)));      // extra newline
        Assert.False(ChatTemplate.IsGemmaTemplate(g.Replace("set role = 'model'", "set role = 'assistant'", StringComparison.Ordinal)));
        Assert.False(ChatTemplate.IsGemmaTemplate(g.Replace("{{'<start_of_turn>model\n'}}", "{{'<start_of_turn>model'}}", StringComparison.Ordinal)));
    }

    [Fact]
    public void TokenizerWithUnknownTemplate_ThrowsOnChatButEncodesPreformattedPrompt()
    {
        using var dir = TokenizerTests.CopyModel(config => config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}");
        File.Delete(dir.File("chat_template.json"));
        var tok = GemmaTokenizer.FromPretrained(dir.Path);
        var error = Assert.Throws<UnsupportedChatTemplateException>(() => tok.ChatFormat);
        Assert.StartsWith(dir.File("tokenizer_config.json") + ":", error.Message, StringComparison.Ordinal);   // where the template came from
        Assert.Throws<UnsupportedChatTemplateException>(() => tok.EncodeChat([new ChatMessage("user", "hi")]));

        // The documented fallback: render the prompt yourself and encode it.
        string rendered = Prompts.GetProperty("text_chat").GetProperty("rendered_chat_template").GetString()!;
        Assert.Equal(Ints(Prompts.GetProperty("text_chat").GetProperty("apply_chat_template_tokenize_true_ids")), tok.Encode(rendered, addSpecialTokens: false));
    }

    [Fact]
    public void TokenizerWithoutTemplate_FallsBackToChatTemplateJson_ThenThrows()
    {
        using var dir = TokenizerTests.CopyModel(config => config.Remove("chat_template"));
        Assert.True(ChatTemplate.IsGemmaTemplate(GemmaTokenizer.FromPretrained(dir.Path).ChatTemplate!));

        File.Delete(dir.File("chat_template.json"));
        var tok = GemmaTokenizer.FromPretrained(dir.Path);
        Assert.Null(tok.ChatTemplate);
        Assert.Throws<UnsupportedChatTemplateException>(() => tok.ChatFormat);
    }
}
