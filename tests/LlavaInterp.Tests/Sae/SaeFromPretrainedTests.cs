using LlavaInterp.Hub;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Analysis;
using LlavaInterp.Tests.Cli;
using LlavaInterp.Tests.Hub;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.Sae;

/// <summary>SparseAutoencoder.FromPretrainedAsync (folders, SAELens releases, repo ids) and FeatureAnalyzer.Tally.</summary>
public sealed class SaeFromPretrainedTests
{
    private static HubOptions Hub(TempDir cache, FakeHubServer server) =>
        new() { CacheDir = cache.Path, Endpoint = server.Url, Offline = false, Timeout = TimeSpan.FromSeconds(5) };

    private sealed class Recorder<T> : IProgress<T>
    {
        public List<T> Reports { get; } = [];

        public void Report(T value) => Reports.Add(value);
    }

    [Fact]
    public async Task ReleaseAndSaeIdDownloadThroughTheHubCacheAndApplyTheReleaseMetadata()
    {
        var entry = SaeReleases.Gemma2bResJb.Get("blocks.12.hook_resid_post");
        using var server = new FakeHubServer(SaeReleases.Gemma2bResJb.RepoId, FakeHubServer.FilesOf(CliRun.SaeDir, entry.Path + "/"));
        using var cache = new TempDir();
        var progress = new Recorder<HubDownloadProgress>();
        using var local = SparseAutoencoder.Load(CliRun.SaeDir);
        using (var sae = await SparseAutoencoder.FromPretrainedAsync("gemma-2b-res-jb", "blocks.12.hook_resid_post", hub: Hub(cache, server), progress: progress))
        {
            Assert.Equal("gemma-2b/12-res-jb", sae.Config.NeuronpediaId);
            TensorAssert.Close(local.WDec, sae.WDec, atol: 0, rtol: 0, what: "W_dec");
        }

        Assert.Contains(progress.Reports, p => p.File.EndsWith("cfg.json", StringComparison.Ordinal));

        // The one-string form resolves to the same cached folder.
        var location = await SparseAutoencoder.LocateAsync("gemma-2b-res-jb/blocks.12.hook_resid_post", hub: Hub(cache, server));
        Assert.Equal(("gemma-2b-res-jb", "blocks.12.hook_resid_post"), (location.Release, location.SaeId));
        Assert.StartsWith(cache.Path, location.Folder, StringComparison.Ordinal);
        Assert.EndsWith(entry.Path, location.Folder, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RepoIdWithSubfolderLoadsThatFolder()
    {
        using var server = new FakeHubServer("someone/saes", FakeHubServer.FilesOf(CliRun.SaeDir, "layer2/"));
        using var cache = new TempDir();
        using var local = SparseAutoencoder.Load(CliRun.SaeDir);
        using var sae = await SparseAutoencoder.FromPretrainedAsync("someone/saes", "layer2", hub: Hub(cache, server));
        Assert.Equal(local.HookName, sae.HookName);
        TensorAssert.Close(local.WEnc, sae.WEnc, atol: 0, rtol: 0, what: "W_enc");
    }

    [Fact]
    public async Task LocalFoldersLoadAndBadArgumentsSayWhy()
    {
        using (var sae = await SparseAutoencoder.FromPretrainedAsync(CliRun.SaeDir, options: new SaeLoadOptions { DType = torch.ScalarType.Float64 }))
        {
            Assert.Equal(torch.ScalarType.Float64, sae.DType);
        }

        await Assert.ThrowsAsync<ArgumentException>(() => SparseAutoencoder.FromPretrainedAsync("not a folder, release or repo"));
        await Assert.ThrowsAsync<ArgumentException>(() => SparseAutoencoder.FromPretrainedAsync(Fixture.Image("gray_l")));
        var noId = await Assert.ThrowsAsync<ArgumentException>(() => SparseAutoencoder.FromPretrainedAsync("gemma-2b-res-jb"));
        Assert.Contains("SAE id", noId.Message, StringComparison.Ordinal);
        var gemmaScope = await Assert.ThrowsAsync<FileNotFoundException>(() => SparseAutoencoder.FromPretrainedAsync(Fixture.Path("sae", "gemmascope-L3")));
        Assert.Contains("LoadGemmaScope", gemmaScope.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TallyIsTheMeanOfEachImagesAggregateAndReportsProgress()
    {
        using var scope = torch.NewDisposeScope();
        using var model = HookedLlava.FromPretrained(Fixture.ModelDir);
        using var sae = SparseAutoencoder.Load(CliRun.SaeDir);
        var analyzer = new FeatureAnalyzer(model, sae, null);
        string[] images = [Fixture.Image("gradient_rgb"), Fixture.Image("gray_l")];
        var progress = new Recorder<FeatureSweepProgress>();
        using var tally = analyzer.Tally(images, "Describe the image.", PromptPositions.Image, FeatureAggregation.Max, progress: progress);

        var expected = torch.zeros(sae.DSae, torch.ScalarType.Float64);
        foreach (var image in images)
        {
            using var features = analyzer.Encode("Describe the image.", [image]);
            expected += features.Aggregate(PromptPositions.Image, FeatureAggregation.Max).to(torch.ScalarType.Float64);
        }

        Assert.Equal(2, tally.Images);
        using var mean = tally.Mean();
        TensorAssert.Close(expected / 2, mean, atol: 0, rtol: 0, what: "mean aggregate");
        Assert.Equal([1, 2], progress.Reports.Select(p => p.Done));
        Assert.All(progress.Reports, p => Assert.Equal(2, p.Total));
        Assert.Equal(images, progress.Reports.Select(p => p.Image));
        Assert.Throws<ArgumentOutOfRangeException>(() => analyzer.Tally(images, "Describe the image.", PromptPositions.At(100_000), FeatureAggregation.Sum));
    }
}
