using LlavaInterp.Llava;
using LlavaInterp.Models.Gemma;

namespace LlavaInterp.Tests.Llava;

/// <summary>Generation that cannot fit the model fails before it runs.</summary>
public sealed class GenerationLimitsTests(TinyLlavaFixture tiny) : IClassFixture<TinyLlavaFixture>
{
    private HookedLlava Model => tiny.Model;

    [Fact]
    public async Task PromptPlusNewTokensBeyondMaxPositionEmbeddingsFailsBeforeRunning()
    {
        using var prompt = tiny.ImageChatPrompt();
        int max = Model.Config.TextConfig.MaxPositionEmbeddings;
        int promptLength = prompt.Ids.Count;
        var options = GenerationOptions.Greedy with { MaxNewTokens = max - promptLength + 1 };
        int fired = 0;
        using var counter = Model.AddHook("hook_inputs_embeds", (a, _) => { fired++; return a; });

        var ex = Assert.Throws<ContextLengthException>(() => Model.Generate(prompt, options));
        Assert.Equal(max + 1, ex.Length);
        Assert.Equal(max, ex.MaxPositionEmbeddings);
        Assert.Contains("max_position_embeddings", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"prompt ({promptLength} tokens)", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"MaxNewTokens ({options.MaxNewTokens})", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ContextLengthException>(async () =>
        {
            await foreach (var _ in Model.GenerateStreamAsync(prompt, options))
            {
            }
        });
        Assert.Equal(0, fired);

        // Exactly at the limit still runs (no stop token, so every new token is generated).
        var fits = Model.Generate(prompt, options with { MaxNewTokens = max - promptLength, StopTokenIds = [] });
        Assert.Equal(max - promptLength, fits.Tokens.Count);
    }
}
