using LlavaInterp.Hooks;
using LlavaInterp.Llava;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Llava;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.Hooks;

/// <summary>TransformerLens habits: get_act_name, cache[name, layer], names_filter as a string, list or predicate.</summary>
public sealed class TransformerLensHabitsTests(TinyLlavaFixture tiny) : IClassFixture<TinyLlavaFixture>
{
    [Theory]
    [InlineData("resid_post", 12, null, "blocks.12.hook_resid_post")]
    [InlineData("resid_pre", 0, null, "blocks.0.hook_resid_pre")]
    [InlineData("attn_out", 3, null, "blocks.3.hook_attn_out")]
    [InlineData("pattern", 1, null, "blocks.1.attn.hook_pattern")]
    [InlineData("a", 1, null, "blocks.1.attn.hook_pattern")]
    [InlineData("attn_logits", 1, null, "blocks.1.attn.hook_attn_scores")]
    [InlineData("q", 2, null, "blocks.2.attn.hook_q")]
    [InlineData("post", 2, null, "blocks.2.mlp.hook_post")]
    [InlineData("scale", 2, "ln1", "blocks.2.ln1.hook_scale")]
    [InlineData("normalized", null, null, "ln_final.hook_normalized")]
    [InlineData("embed", null, null, "hook_embed")]
    [InlineData("blocks.5.hook_mlp_out", null, null, "blocks.5.hook_mlp_out")]
    public void GetActNameFollowsTransformerLens(string name, int? layer, string? layerType, string expected) =>
        Assert.Equal(expected, GemmaActNames.GetActName(name, layer, layerType));

    [Fact]
    public void UnknownOrLayerlessNamesAreRefused()
    {
        Assert.Throws<ArgumentException>(() => GemmaActNames.GetActName("resid_post"));
        Assert.Throws<ArgumentException>(() => GemmaActNames.GetActName("residpost", 1));
    }

    [Fact]
    public void CacheByShortNameAndFiltersOfEveryKind()
    {
        var model = tiny.Model;
        using var prompt = tiny.ImageChatPrompt();
        var input = LlavaInput.From(prompt);

        var (_, all) = model.RunWithCache(input);
        using (all)
        {
            Assert.Same(all["blocks.2.hook_resid_post"], all["resid_post", 2]);
            Assert.Equal("blocks.1.attn.hook_pattern", model.GetActName("pattern", 1));
            for (int l = 0; l < model.Config.TextConfig.NumHiddenLayers; l++)
            {
                // TransformerLens's residual stream: resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out.
                TensorAssert.Close(all["resid_mid", l], all["resid_pre", l] + all["attn_out", l], atol: 1e-5, rtol: 1e-5, what: $"resid_mid {l}");
                TensorAssert.Close(all["resid_post", l], all["resid_mid", l] + all["mlp_out", l], atol: 1e-5, rtol: 1e-5, what: $"resid_post {l}");
            }
        }

        var (_, one) = model.RunWithCache(input, (NamesFilter)"blocks.1.hook_resid_post");
        using (one)
        {
            Assert.Equal(["blocks.1.hook_resid_post"], one.Names);
        }

        var (_, list) = model.RunWithCache(input, (NamesFilter)new[] { "blocks.0.hook_resid_pre", model.GetActName("pattern", 1) });
        using (list)
        {
            Assert.Equal(["blocks.0.hook_resid_pre", "blocks.1.attn.hook_pattern"], list.Names.Order(StringComparer.Ordinal));
        }

        var (_, pred) = model.RunWithCache(input, new NamesFilter(n => n.StartsWith("blocks.", StringComparison.Ordinal) && n.EndsWith("hook_mlp_out", StringComparison.Ordinal)));
        using (pred)
        {
            Assert.Equal(model.Config.TextConfig.NumHiddenLayers, pred.Count);
        }

        using var bare = new ActivationCache();
        Assert.Throws<InvalidOperationException>(() => bare["resid_post", 0]);
    }
}
