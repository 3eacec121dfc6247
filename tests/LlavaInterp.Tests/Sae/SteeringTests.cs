using LlavaInterp.Hooks;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Hooks;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

public sealed class SteeringTests
{
    private const string Hook = "blocks.1.hook_resid_post";

    private static Tensor Prompt() => Fixture.Load("sae.standard.input");

    [Fact]
    public void PositionSelectorsResolveAgainstChunkOffsets()
    {
        Assert.Equal([0L, 1, 2], PositionSelector.All.Resolve(0, 3));
        Assert.Equal([4L], PositionSelector.Last.Resolve(0, 5));
        Assert.Equal([0L], PositionSelector.Last.Resolve(40, 1));
        var image = PositionSelector.At(6, 7, 21);
        Assert.Equal([6L, 7, 21], image.Resolve(0, 35));
        Assert.Equal([1L, 2], image.Resolve(5, 3));
        Assert.Empty(image.Resolve(35, 1));
        var generated = PositionSelector.From(35);
        Assert.Empty(generated.Resolve(0, 35));
        Assert.Equal([0L], generated.Resolve(35, 1));
        Assert.Equal([0L], generated.Resolve(40, 1));
        Assert.Equal([35L], generated.Resolve(0, 36));
        Assert.Equal([2L, 3], PositionSelector.Range(12, 14).Resolve(10, 8));
        Assert.Equal([1L, 3], PositionSelector.FromMask([false, true, false, true]).Resolve(0, 10));
        Assert.Equal([9L], PositionSelector.At(-1).Resolve(0, 10));
        Assert.Throws<ArgumentException>(() => PositionSelector.At());
        Assert.Throws<ArgumentOutOfRangeException>(() => PositionSelector.From(-1));
    }

    [Fact]
    public void AddFeatureAtImagePositionsOnly()
    {
        using var scope = torch.NewDisposeScope();
        using var model = new TinyResidualModel(64, nLayers: 2, seed: 7);
        using var sae = SaeFixture.StandardAt(Hook, 1);
        var positions = SaeFixture.ImagePositions;
        var baseline = model.call(new TinyInput(Prompt()));
        var steered = model.RunWithHooks(new TinyInput(Prompt()), Steering.AddFeature(sae, 219, -4.0, PositionSelector.At(positions)));
        var v = Steering.FeatureVector(sae, 219, -4.0);
        for (int p = 0; p < 35; p++)
        {
            var expected = positions.Contains(p) ? baseline[0, p] + v : baseline[0, p];
            TensorAssert.Close(expected, steered[0, p], atol: 0, rtol: 0, what: $"position {p}");
        }
    }

    [Fact]
    public void GeneratedPositionsOnlyWorksWithKvStyleChunks()
    {
        using var scope = torch.NewDisposeScope();
        using var model = new TinyResidualModel(64, nLayers: 2, seed: 7);
        var prompt = Prompt();
        var next = prompt.narrow(1, 34, 1) * 0.5; // a stand-in for a generated token's activation
        var full = torch.cat([prompt, next], 1);
        var v = torch.linspace(-1, 1, 64);
        var spec = Steering.AddVector("blocks.0.hook_resid_post", v, PositionSelector.From(35));

        // The prompt pass (offset 0) is untouched.
        var promptBase = model.call(new TinyInput(prompt));
        var promptSteered = model.RunWithHooks(new TinyInput(prompt), spec);
        TensorAssert.Close(promptBase, promptSteered, atol: 0, rtol: 0, what: "prompt pass");

        // The decoding step (one position at offset 35) is steered.
        var stepBase = model.call(new TinyInput(next, PositionOffset: 35));
        var stepSteered = model.RunWithHooks(new TinyInput(next, PositionOffset: 35), spec);
        Assert.True(SaeFixture.MaxAbs(stepBase, stepSteered) > 1e-2);

        // A full pass over prompt + token gives the same rows as the two chunks.
        var fullSteered = model.RunWithHooks(new TinyInput(full), spec);
        TensorAssert.Close(promptSteered, fullSteered.narrow(1, 0, 35), atol: 1e-5, rtol: 1e-6, what: "prompt rows");
        TensorAssert.Close(stepSteered, fullSteered.narrow(1, 35, 1), atol: 1e-5, rtol: 1e-6, what: "generated row");

        // The steering runs at block 0, so the effect is the vector pushed through block 1 (not a plain sum).
        var manual = model.RunWithHooks(new TinyInput(next, PositionOffset: 35), ("blocks.0.hook_resid_post", (HookFunction)((x, _) => x + v)));
        TensorAssert.Close(manual, stepSteered, atol: 0, rtol: 0, what: "step = manual add");
    }

    [Fact]
    public void SeveralFeaturesAddTheirSum()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        var x = Prompt();
        var spec = Steering.AddFeatures(sae, [(219, -4.0), (12, 2.5), (8, 1.0)]);
        var steered = spec.Hook(x, new HookContext(Hook, 1, 0));
        var expected = x + (sae.WDec[219] * -4.0) + (sae.WDec[12] * 2.5) + sae.WDec[8];
        TensorAssert.Close(expected, steered, atol: 1e-5, rtol: 1e-6, what: "sum of features");
        Assert.Throws<ArgumentException>(() => Steering.AddFeatures(sae, []));
        Assert.Throws<SaeException>(() => Steering.AddFeature(sae, 256, 1.0));
    }

    [Fact]
    public void ClampChangesOnlyThatFeaturesContributionAtSelectedPositions()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        var x = Prompt();
        var positions = SaeFixture.ImagePositions;
        var acts = sae.Encode(x);
        const int feature = 219;
        var clamped = Steering.ClampFeature(sae, feature, 5.0, PositionSelector.At(positions)).Hook(x, new HookContext(Hook, 1, 0));
        for (int p = 0; p < 35; p++)
        {
            var expected = positions.Contains(p) ? x[0, p] + ((5.0 - acts[0, p, feature]) * sae.WDec[feature]) : x[0, p];
            TensorAssert.Close(expected, clamped[0, p], atol: positions.Contains(p) ? 1e-5 : 0, rtol: 0, what: $"position {p}");
        }

        // Ablating several features at once: x + (0 - acts)·W_dec restricted to those features.
        var ablated = Steering.AblateFeatures(sae, [219, 12]).Hook(x, new HookContext(Hook, 1, 0));
        var delta = (acts.select(-1, 219).unsqueeze(-1) * sae.WDec[219]) + (acts.select(-1, 12).unsqueeze(-1) * sae.WDec[12]);
        TensorAssert.Close(x - delta, ablated, atol: 1e-5, rtol: 1e-6, what: "ablate two");

        // During a decoding step at offset 35 an image-only clamp does nothing and returns the activation itself.
        var step = x.narrow(1, 34, 1);
        Assert.Same(step, Steering.ClampFeature(sae, feature, 5.0, PositionSelector.At(positions)).Hook(step, new HookContext(Hook, 1, 35)));
    }

    [Fact]
    public void MismatchedDirectionFailsInTheRunNamingTheHook()
    {
        using var scope = torch.NewDisposeScope();
        using var model = new TinyResidualModel(64, nLayers: 2, seed: 7);
        var spec = Steering.AddVector("blocks.0.hook_resid_post", torch.ones(63));
        var ex = Assert.Throws<HookException>(() => model.RunWithHooks(new TinyInput(Prompt()), spec));
        Assert.Equal("blocks.0.hook_resid_post", ex.HookName);
        Assert.Contains("63", ex.Message);
    }

    [Fact]
    public void PerHeadActivationsTakeAFlatOrShapedDirection()
    {
        using var scope = torch.NewDisposeScope();
        var z = torch.randn(1, 5, 2, 4, generator: new torch.Generator((ulong)(2)));
        var flat = torch.arange(8, dtype: ScalarType.Float32);
        var a = Steering.AddVector(flat, PositionSelector.Last)(z, new HookContext("blocks.0.attn.hook_z", 0, 0));
        TensorAssert.Close(z[0, 4] + flat.reshape(2, 4), a[0, 4], atol: 0, rtol: 0, what: "last position");
        TensorAssert.Close(z.narrow(1, 0, 4), a.narrow(1, 0, 4), atol: 0, rtol: 0, what: "other positions");
    }
}
