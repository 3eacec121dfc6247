using System.Text;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Gemma's chat format, rendering exactly what its Hugging Face chat template renders:
/// <c>{bos}&lt;start_of_turn&gt;{role}\n{content.strip()}&lt;end_of_turn&gt;\n</c> per message (role <c>assistant</c>
/// written as <c>model</c>), then <c>&lt;start_of_turn&gt;model\n</c> when a generation prompt is asked for.
/// </summary>
/// <remarks>
/// Usually obtained from <see cref="GemmaTokenizer.ChatFormat"/>, which checks with <see cref="ChatTemplate.Recognise"/>
/// that the checkpoint's template is Gemma's. To use a prompt in another format, render it yourself and call
/// <see cref="GemmaTokenizer.Encode"/>: with <c>addSpecialTokens: false</c> the text's own <c>&lt;bos&gt;</c> is the
/// only one (like <c>apply_chat_template(tokenize=True)</c>); with the default <c>true</c> a second one is prepended,
/// as the LLaVA processor does with the rendered text.
/// </remarks>
public sealed class GemmaChatFormat
{
    /// <summary>Token that opens a turn.</summary>
    public const string StartOfTurn = "<start_of_turn>";

    /// <summary>Token that closes a turn.</summary>
    public const string EndOfTurn = "<end_of_turn>";

    /// <summary>Creates the format.</summary>
    /// <param name="bosToken">Text of the template's <c>bos_token</c> variable.</param>
    public GemmaChatFormat(string bosToken = "<bos>")
    {
        ArgumentNullException.ThrowIfNull(bosToken);
        BosToken = bosToken;
    }

    /// <summary>Text written at the start of every rendered conversation.</summary>
    public string BosToken { get; }

    /// <summary>
    /// Renders a conversation (Hugging Face <c>apply_chat_template(messages, tokenize=False, add_generation_prompt=...)</c>).
    /// </summary>
    /// <param name="messages">The turns; user first, then alternating user / non-user.</param>
    /// <param name="addGenerationPrompt">Append <c>&lt;start_of_turn&gt;model\n</c> so that the model answers next.</param>
    /// <exception cref="ChatTemplateException">
    /// Raised where Gemma's template raises: the first message has role <c>system</c> ("System role not supported"),
    /// or even-indexed messages are not <c>user</c> / odd-indexed ones are <c>user</c>; also for an empty conversation.
    /// </exception>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0)
        {
            throw new ChatTemplateException("The conversation has no messages (Gemma's template reads messages[0]).");
        }

        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i] is null || messages[i].Role is null || messages[i].Content is null)
            {
                throw new ArgumentException($"Message {i} is null or has a null role or content.", nameof(messages));
            }
        }

        if (messages[0].Role == "system")
        {
            throw new ChatTemplateException("System role not supported");
        }

        var text = new StringBuilder(BosToken);
        for (int i = 0; i < messages.Count; i++)
        {
            var message = messages[i];
            if ((message.Role == "user") != (i % 2 == 0))
            {
                throw new ChatTemplateException("Conversation roles must alternate user/assistant/user/assistant/...");
            }

            string role = message.Role == "assistant" ? "model" : message.Role;

            // Jinja's trim filter is Python's str.strip().
            text.Append(StartOfTurn).Append(role).Append('\n').Append(PythonString.Strip(message.Content)).Append(EndOfTurn).Append('\n');
        }

        if (addGenerationPrompt)
        {
            text.Append(StartOfTurn).Append("model\n");
        }

        return text.ToString();
    }
}
