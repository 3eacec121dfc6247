using LlavaInterp.Analysis;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Cli;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

public sealed class FeatureAnalyzerTests
{
    [Fact]
    public void RunsOnlyUpToTheSaeLayerAndEncodesLikeTheGolden()
    {
        using var scope = torch.NewDisposeScope();
        using var model = HookedLlava.FromPretrained(Fixture.ModelDir);
        using var sae = SparseAutoencoder.Load(CliRun.SaeDir);
        var analyzer = new FeatureAnalyzer(model, sae, FeatureExplanations.Load(CliRun.ExplanationsFile));
        Assert.Equal(3, analyzer.StopAtLayer);

        // Later blocks never run: hooks of block 3 (the last) and the final norm would see them.
        int block3Calls = 0;
        using (model.Hooks(LlavaInterp.Hooks.HookSpec.ForFilter(n => n.StartsWith("blocks.3.", StringComparison.Ordinal) || n.StartsWith("ln_final", StringComparison.Ordinal), (x, _) =>
        {
            block3Calls++;
            return x;
        })))
        using (var features = analyzer.Encode(CliRun.RenderedImagePrompt, [Fixture.Image("gradient_rgb")], raw: true))
        {
            Assert.Equal(0, block3Calls);
            Assert.Equal(CliRun.ManifestInts("prompts", "image_chat", "image_token_positions"), features.ImageTokenPositions);
            Assert.Equal([16], features.TokensPerImage);
            TensorAssert.Close(Fixture.Load("sae.standard.feature_acts")[0], features.Acts, what: "feature_acts");
            using var map = features.SpatialMapOf(221);
            Assert.Equal([4L, 4L], map.shape);
            Assert.Throws<ArgumentOutOfRangeException>(() => features.SpatialMapOf(256));
            Assert.Throws<ArgumentOutOfRangeException>(() => features.SpatialMapOf(0, image: 1));
        }
    }

    [Fact]
    public void BatchedTalliesEqualOneImagePerRun()
    {
        using var scope = torch.NewDisposeScope();
        using var model = HookedLlava.FromPretrained(Fixture.ModelDir);
        using var sae = SparseAutoencoder.Load(CliRun.SaeDir);
        var analyzer = new FeatureAnalyzer(model, sae, null);
        string[] images = ["gradient_rgb", "gray_l", "rgba_alpha", "tiny_5x7", "gradient_rgb"];
        var paths = images.Select(Fixture.Image).ToArray();

        var single = new List<Tensor>();
        using var one = analyzer.Tally(paths, CliRun.RenderedImagePrompt, PromptPositions.Image, FeatureAggregation.Sum, raw: true,
            onEncoded: (_, f) => single.Add(f.Acts.clone()));
        analyzer.BatchSize = 3;   // rows of 3 and 2: a full and a partial batch
        var batched = new List<Tensor>();
        var seen = new List<string>();
        using var three = analyzer.Tally(paths, CliRun.RenderedImagePrompt, PromptPositions.Image, FeatureAggregation.Sum, raw: true,
            onEncoded: (image, f) =>
            {
                seen.Add(image);
                batched.Add(f.Acts.clone());
            });

        Assert.Equal(paths, seen);
        for (int i = 0; i < images.Length; i++)
        {
            TensorAssert.Close(single[i], batched[i], what: $"feature activations of {images[i]} in a batch");
        }

        TensorAssert.Close(one.Mean(), three.Mean(), what: "tally mean");
        Assert.Equal(one.Images, three.Images);
        Assert.Throws<ArgumentOutOfRangeException>(() => analyzer.BatchSize = 0);
    }

    [Fact]
    public void RankSkipsExcludedFeaturesAndKeepsTopKOrder()
    {
        using var scope = torch.NewDisposeScope();
        using var model = HookedLlava.FromPretrained(Fixture.ModelDir);
        using var sae = SparseAutoencoder.Load(CliRun.SaeDir);
        var analyzer = new FeatureAnalyzer(model, sae, null);
        var aggregate = torch.tensor(new float[] { 5, 9, 1, 7, 3 });
        Assert.Equal([1, 3, 0], analyzer.Rank(aggregate, 3).Select(f => f.Index));
        Assert.Equal([0, 4, 2], analyzer.Rank(aggregate, 3, new HashSet<int> { 1, 3 }).Select(f => f.Index));
        Assert.Equal([0, 4, 2], analyzer.Rank(aggregate, 10, new HashSet<int> { 1, 3 }).Select(f => f.Index));
        Assert.All(analyzer.Rank(aggregate, 2), f => Assert.Null(f.Description));
        Assert.Throws<ArgumentOutOfRangeException>(() => analyzer.Rank(aggregate, 0));
    }

    [Fact]
    public void AnSaeOnAHookTheModelLacksIsRejected()
    {
        using var model = HookedLlava.FromPretrained(Fixture.ModelDir);
        using var sae = SparseAutoencoder.LoadGemmaScope(Fixture.Path("sae", "gemmascope-L3", "params.npz"), "blocks.9.hook_resid_post");
        var ex = Assert.Throws<SaeException>(() => new FeatureAnalyzer(model, sae, null));
        Assert.Contains("blocks.9.hook_resid_post", ex.Message, StringComparison.Ordinal);
    }
}
