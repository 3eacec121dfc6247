using LlavaInterp.Analysis;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

public sealed class SaeGoldenTests(ITestOutputHelper output)
{
    [Fact]
    public void StandardSaeConfigBindsFromCfgJson()
    {
        using var sae = SparseAutoencoder.Load(SaeFixture.StandardFolder);
        Assert.Equal(SaeArchitecture.Standard, sae.Architecture);
        Assert.Equal("blocks.2.hook_resid_post", sae.HookName);
        Assert.Equal(2, sae.HookLayer);
        Assert.Equal(64, sae.DIn);
        Assert.Equal(256, sae.DSae);
        Assert.True(sae.Config.ApplyBDecToInput);
        Assert.Equal("none", sae.Config.NormalizeActivations);
        Assert.Equal("tiny-llava-gemma/2-res-tiny256", sae.Config.NeuronpediaId);
        Assert.Equal("2-res-tiny256", sae.Config.NeuronpediaSource);
        Assert.Equal(128, sae.Config.ContextSize);
        Assert.Equal("4.4.5", sae.Config.SaeLensTrainingVersion);
        Assert.Equal(ScalarType.Float32, sae.DType);
        Assert.Equal([64L, 256L], sae.WEnc.shape);
        Assert.Equal([256L, 64L], sae.WDec.shape);
        Assert.Null(sae.Threshold);
    }

    [Fact]
    public void StandardSaeMatchesGolden()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SparseAutoencoder.Load(SaeFixture.StandardFolder);
        var x = Fixture.Load("sae.standard.input");
        var (pre, acts) = sae.EncodeWithPre(x);
        double dPre = TensorAssert.Close(Fixture.Load("sae.standard.hidden_pre"), pre, what: "hidden_pre");
        double dActs = TensorAssert.Close(Fixture.Load("sae.standard.feature_acts"), acts, what: "feature_acts");
        var recons = sae.Decode(acts);
        double dRec = TensorAssert.Close(Fixture.Load("sae.standard.reconstruction"), recons, what: "reconstruction");
        double dFwd = TensorAssert.Close(Fixture.Load("sae.standard.reconstruction"), sae.Forward(x), what: "forward");
        TensorAssert.Close(acts, sae.Encode(x), atol: 0, rtol: 0, what: "Encode == EncodeWithPre");
        output.WriteLine($"standard SAE max|diff|: hidden_pre {dPre:E2}, feature_acts {dActs:E2}, reconstruction {dRec:E2}, forward {dFwd:E2}");
    }

    [Fact]
    public void TopFeaturesMatchGolden()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SparseAutoencoder.Load(SaeFixture.StandardFolder);
        var acts = sae.Encode(Fixture.Load("sae.standard.input"));

        var last = FeatureActivations.TopK(acts, PositionSelector.Last, FeatureAggregation.Sum, 10);
        TensorAssert.Equal(Fixture.Load("sae.standard.top10_last_position.indices"), torch.tensor(last.Select(f => (long)f.Index).ToArray()), "top10 last indices");
        double d1 = TensorAssert.Close(Fixture.Load("sae.standard.top10_last_position.values"), torch.tensor(last.Select(f => (float)f.Value).ToArray()), what: "top10 last values");

        var image = FeatureActivations.TopK(acts, PositionSelector.At(SaeFixture.ImagePositions), FeatureAggregation.Sum, 10);
        TensorAssert.Equal(Fixture.Load("sae.standard.top10_image_sum.indices"), torch.tensor(image.Select(f => (long)f.Index).ToArray()), "top10 image-sum indices");
        double d2 = TensorAssert.Close(Fixture.Load("sae.standard.top10_image_sum.values"), torch.tensor(image.Select(f => (float)f.Value).ToArray()), what: "top10 image-sum values");
        output.WriteLine($"top10 last {string.Join(",", last.Select(f => f.Index))} max|diff| {d1:E2}; image-sum {string.Join(",", image.Select(f => f.Index))} max|diff| {d2:E2}");

        // The steering feature of the goldens is the top-1 at the last position.
        Assert.Equal(Fixture.Manifest.GetProperty("steering").GetProperty("feature").GetInt32(), last[0].Index);
    }

    [Fact]
    public void SteeringVectorEqualsGoldenExactly()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SparseAutoencoder.Load(SaeFixture.StandardFolder);
        var steering = Fixture.Manifest.GetProperty("steering");
        int feature = steering.GetProperty("feature").GetInt32();
        double alpha = steering.GetProperty("alpha").GetDouble();
        Assert.Equal(219, feature);
        Assert.Equal(-4.0, alpha);
        var v = Steering.FeatureVector(sae, feature, alpha);
        TensorAssert.Close(Fixture.Load("steer.vector"), v, atol: 0, rtol: 0, what: "steer.vector");
        TensorAssert.Close(sae.WDec[feature], sae.DecoderDirection(feature), atol: 0, rtol: 0, what: "DecoderDirection");
    }

    [Fact]
    public void SteeringAddsGoldenVectorAtEveryPosition()
    {
        // The golden hook adds alpha·W_dec[219] to layer 2's output; on the golden layer-2 output the hook must give exactly x + steer.vector.
        using var scope = torch.NewDisposeScope();
        using var sae = SparseAutoencoder.Load(SaeFixture.StandardFolder);
        var spec = Steering.AddFeature(sae, 219, -4.0);
        Assert.Equal("blocks.2.hook_resid_post", spec.ExactName);
        var x = Fixture.Load("sae.standard.input");
        var steered = spec.Hook(x, new LlavaInterp.Hooks.HookContext("blocks.2.hook_resid_post", 2, 0));
        TensorAssert.Close(x + Fixture.Load("steer.vector"), steered, atol: 0, rtol: 0, what: "steered activation");
    }

    [Fact]
    public void FeatureActsAtSpliceHookMatchGoldenName()
    {
        // The manifest documents the TransformerLens names of the SAE goldens; the splice exposes the same names.
        using var sae = SparseAutoencoder.Load(SaeFixture.StandardFolder);
        using var splice = sae.Splice();
        var keys = Fixture.Manifest.GetProperty("keys");
        string HookOf(string key) => keys.GetProperty(key).GetProperty("hook_point").GetString()!;
        Assert.Contains(HookOf("sae.standard.feature_acts"), splice.HookNames);
        Assert.Contains(HookOf("sae.standard.reconstruction"), splice.HookNames);
        Assert.Equal(HookOf("sae.standard.feature_acts"), splice.Name(SaeSplice.ActsPostHook));
        Assert.Equal(HookOf("sae.standard.reconstruction"), splice.Name(SaeSplice.ReconsHook));
        Assert.Equal(HookOf("sae.standard.input"), splice.HookName);
    }
}
