using LlavaInterp.Hooks;
using LlavaInterp.Models.Clip;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;

namespace LlavaInterp.Tests.Clip;

/// <summary>Parity with HF transformers 4.46.3 CLIPVisionModel on the fixture's golden tensors (README tolerances).</summary>
public sealed class ClipVisionParityTests(ITestOutputHelper output)
{
    [Fact]
    public void PatchEmbeddingsMatchTheConvolutionOutput()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        using var cache = TinyClip.Cache(model, n => n == "vision.hook_patch_embed");

        // Golden is the raw conv output [1, D, rows, cols]; the hook holds it flattened row-major: [1, rows*cols, D].
        var golden = Fixture.Load("vision.patch_embeds");
        var expected = golden.flatten(2).transpose(1, 2);
        Report("vision.patch_embeds", TensorAssert.Close(expected, cache["vision.hook_patch_embed"], what: "patch_embeds"));
    }

    [Fact]
    public void EmbeddingsMatchBeforePreLayrnorm()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        using var cache = TinyClip.Cache(model, n => n == "vision.hook_embed");

        Report("vision.embeddings", TensorAssert.Close(Fixture.Load("vision.embeddings"), cache["vision.hook_embed"], what: "embeddings"));
    }

    [Fact]
    public void AllHiddenStatesMatch()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        using var result = model.call(new ClipVisionInput(TinyClip.Pixels()) { OutputHiddenStates = true });

        var golden = Fixture.Load("vision.hidden_states");
        Assert.Equal(golden.shape[0], result.HiddenStates!.Count);
        double max = 0;
        for (int i = 0; i < result.HiddenStates.Count; i++)
        {
            max = Math.Max(max, TensorAssert.Close(golden[i], result.HiddenStates[i], what: $"hidden_states[{i}]"));
        }

        Report("vision.hidden_states", max);
        Assert.Same(result.HiddenStates[^1], result.LastHiddenState);
        Assert.Equal(3, result.LayersRun);
    }

    [Fact]
    public void ResidualHooksAreTheHiddenStates()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        using var cache = TinyClip.Cache(model);

        var golden = Fixture.Load("vision.hidden_states");
        TensorAssert.Close(golden[0], cache["vision.ln_pre.hook_normalized"], what: "ln_pre");
        for (int i = 0; i < 3; i++)
        {
            TensorAssert.Close(golden[i], cache[$"vision.blocks.{i}.hook_resid_pre"], what: $"blocks.{i}.hook_resid_pre");
            TensorAssert.Close(golden[i + 1], cache[$"vision.blocks.{i}.hook_resid_post"], what: $"blocks.{i}.hook_resid_post");
        }

        // The residual stream adds up: resid_mid = resid_pre + attn_out, resid_post = resid_mid + mlp_out.
        for (int i = 0; i < 3; i++)
        {
            string b = $"vision.blocks.{i}.";
            TensorAssert.Close(cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"], cache[b + "hook_resid_mid"], atol: 1e-6, rtol: 0, what: "resid_mid");
            TensorAssert.Close(cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"], cache[b + "hook_resid_post"], atol: 1e-6, rtol: 0, what: "resid_post");
        }
    }

    [Fact]
    public void AttentionPatternsMatch()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        using var cache = TinyClip.Cache(model, n => n.EndsWith("attn.hook_pattern", StringComparison.Ordinal));

        var golden = Fixture.Load("vision.attentions");
        var stacked = cache.Stack("attn.hook_pattern", "vision.");
        Report("vision.attentions", TensorAssert.Close(golden, stacked, atol: TensorAssert.AttentionAtol, rtol: 0, what: "attentions"));
    }

    [Fact]
    public void PooledOutputMatches()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        var (result, cache) = model.RunWithCache(new ClipVisionInput(TinyClip.Pixels()), n => n == "vision.ln_post.hook_normalized");
        using var cacheScope = cache;
        using var r = result;

        var golden = Fixture.Load("vision.pooler_output");
        Report("vision.pooler_output", TensorAssert.Close(golden, r.PooledOutput!, what: "pooler_output"));
        TensorAssert.Close(golden, cache["vision.ln_post.hook_normalized"], what: "ln_post hook");
    }

    [Fact]
    public void SelectedFeaturesMatchFeatureLayerMinusTwoWithoutCls()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        var features = model.GetFeatureLayer(TinyClip.Pixels(), -2);

        var selected = features[.., 1..];
        Report("vision.selected_features", TensorAssert.Close(Fixture.Load("vision.selected_features"), selected, what: "selected_features"));
    }

    [Fact]
    public void OtherImagesGiveTheSameFeaturesAloneAndInABatch()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        var batch = Fixture.Load("prompt.batch.pixel_values");
        TensorAssert.Close(Fixture.Load("image.gradient_rgb.pixel_values"), batch[0..1], atol: 0, rtol: 0, what: "batch[0] pixels");

        var together = model.GetFeatureLayer(batch, -2);
        var first = model.GetFeatureLayer(batch[0..1], -2);
        var second = model.GetFeatureLayer(batch[1..2], -2);

        TensorAssert.Close(Fixture.Load("vision.hidden_states")[2], first, what: "first image alone");
        TensorAssert.Close(first, together[0..1], atol: 1e-5, rtol: 1e-5, what: "first image in batch");
        TensorAssert.Close(second, together[1..2], atol: 1e-5, rtol: 1e-5, what: "second image in batch");
    }

    [Fact]
    public void Bfloat16ModelRunsInBfloat16AndStaysNearFloat32()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load(torch.ScalarType.BFloat16);
        using var _ = torch.no_grad();
        using var result = model.call(new ClipVisionInput(TinyClip.Pixels()) { OutputHiddenStates = true });

        Assert.Equal(torch.ScalarType.BFloat16, result.LastHiddenState.dtype);
        Assert.Equal(torch.ScalarType.BFloat16, model.VisionModel.Embeddings.PatchEmbedding.Weight.dtype);

        // bfloat16 keeps 8 significant bits; this only checks the dtype path is wired (casts, softmax, norms), not parity.
        var golden = Fixture.Load("vision.hidden_states");
        var diff = (result.HiddenStates![3].to(torch.float32) - golden[3]).abs().max().item<float>();
        var scale = golden[3].abs().max().item<float>();
        output.WriteLine($"bf16 hidden_states[3] max |diff| {diff:E3} (max |ref| {scale:F3})");
        Assert.True(diff < 0.05 * scale, $"bf16 differs by {diff} on values up to {scale}");
    }

    private void Report(string key, double maxDiff) => output.WriteLine($"{key}: max |diff| {maxDiff:E3}");
}
