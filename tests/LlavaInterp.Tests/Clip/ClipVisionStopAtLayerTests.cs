using LlavaInterp.Hooks;
using LlavaInterp.Models.Clip;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.Clip;

public sealed class ClipVisionStopAtLayerTests
{
    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 3)]
    [InlineData(-1, 2)]
    [InlineData(-3, 0)]
    public void StopAtLayerRunsOnlyTheFirstLayers(int stopAtLayer, int layersRun)
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        var fired = new List<string>();
        using var result = model.RunWithHooks(
            new ClipVisionInput(TinyClip.Pixels()) { StopAtLayer = stopAtLayer, OutputHiddenStates = true },
            HookSpecForAll(model, fired));

        Assert.Equal(layersRun, result.LayersRun);
        Assert.Equal(layersRun + 1, result.HiddenStates!.Count);
        TensorAssert.Close(Fixture.Load("vision.hidden_states")[layersRun], result.LastHiddenState, what: $"stop at {stopAtLayer}");

        // Layers at or after the stop never run, and the pooled output exists only when every layer ran.
        Assert.DoesNotContain(fired, n => n.StartsWith($"vision.blocks.{layersRun}.", StringComparison.Ordinal));
        Assert.Equal(layersRun > 0, fired.Contains($"vision.blocks.{layersRun - 1}.hook_resid_post"));
        Assert.Equal(layersRun == 3, result.PooledOutput is not null);
        Assert.Equal(layersRun == 3, fired.Contains("vision.ln_post.hook_normalized"));
    }

    [Fact]
    public void RunWithCacheHonoursStopAtLayer()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        var (result, cache) = model.RunWithCache(new ClipVisionInput(TinyClip.Pixels()), stopAtLayer: 2);
        using var cacheScope = cache;
        using var r = result;

        Assert.Equal(2, r.LayersRun);
        Assert.Contains("vision.blocks.1.hook_resid_post", cache.Keys);
        Assert.DoesNotContain(cache.Keys, k => k.StartsWith("vision.blocks.2.", StringComparison.Ordinal));
        TensorAssert.Close(Fixture.Load("vision.hidden_states")[2], r.LastHiddenState, what: "stop at 2");
    }

    [Theory]
    [InlineData(-2, 2)]
    [InlineData(-1, 3)]
    [InlineData(-4, 0)]
    [InlineData(0, 0)]
    [InlineData(1, 1)]
    [InlineData(3, 3)]
    public void FeatureLayerIndexesHfHiddenStatesAndRunsOnlyWhatItNeeds(int featureLayer, int index)
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        var fired = new List<string>();
        torch.Tensor features;
        using (model.Hooks(HookSpecForAll(model, fired)))
        {
            features = model.GetFeatureLayer(TinyClip.Pixels(), featureLayer);
        }

        Assert.Equal(index, model.LayersForFeatureLayer(featureLayer));
        TensorAssert.Close(Fixture.Load("vision.hidden_states")[index], features, what: $"feature layer {featureLayer}");
        Assert.DoesNotContain(fired, n => n.StartsWith($"vision.blocks.{index}.", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(4)]
    [InlineData(-5)]
    public void FeatureLayerOutOfRangeThrows(int featureLayer)
    {
        using var model = new HookedClipVisionModel(TinyClip.Config(), device: torch.device("meta"));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.LayersForFeatureLayer(featureLayer));
        Assert.Equal("featureLayer", ex.ParamName);
    }

    [Theory]
    [InlineData(4)]
    [InlineData(-4)]
    public void StopAtLayerOutOfRangeThrows(int stopAtLayer)
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.call(new ClipVisionInput(TinyClip.Pixels()) { StopAtLayer = stopAtLayer }));
        Assert.Equal("stopAtLayer", ex.ParamName);
    }

    [Theory]
    [InlineData(new long[] { 3, 32, 32 }, "[batch, channels, height, width]")]
    [InlineData(new long[] { 1, 1, 32, 32 }, "channels")]
    [InlineData(new long[] { 1, 3, 32, 40 }, "doesn't match model (32*32)")]
    [InlineData(new long[] { 0, 3, 32, 32 }, "batch size 0")]
    public void BadPixelShapesAreRejected(long[] shape, string message)
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        var ex = Assert.Throws<ArgumentException>(() => model.call(new ClipVisionInput(torch.zeros(shape))));
        Assert.Contains(message, ex.Message);
    }

    private static HookSpec HookSpecForAll(HookedClipVisionModel model, List<string> fired) =>
        HookSpec.ForFilter(_ => true, (x, ctx) =>
        {
            fired.Add(ctx.Name);
            return x;
        });
}
