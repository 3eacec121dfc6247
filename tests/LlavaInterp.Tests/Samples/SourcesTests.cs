using LlavaInterp.Analysis;
using LlavaInterp.Hub;
using LlavaInterp.Samples;
using LlavaInterp.Tests.Cli;
using LlavaInterp.Tests.Hub;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.Samples;

/// <summary>--model / --sae / --explanations resolution: local folders, hub repo ids and SAELens release names.</summary>
public sealed class SourcesTests
{
    private static HubOptions Hub(TempDir cache, FakeHubServer server, bool offline = false) =>
        new() { CacheDir = cache.Path, Endpoint = server.Url, Offline = offline, Timeout = TimeSpan.FromSeconds(5) };

    [Fact]
    public async Task ReleaseNameFetchesTheSaeFolderFromItsRepoAndAppliesTheReleaseMetadata()
    {
        // The fixture SAE served as gemma-2b-res-jb's layer-12 SAE.
        var entry = LlavaInterp.Sae.SaeReleases.Gemma2bResJb.Get("blocks.12.hook_resid_post");
        using var server = new FakeHubServer(LlavaInterp.Sae.SaeReleases.Gemma2bResJb.RepoId, FakeHubServer.FilesOf(CliRun.SaeDir, entry.Path + "/"));
        using var cache = new TempDir();
        using var log = new StringWriter();
        using var sae = await Sources.LoadSaeAsync("gemma-2b-res-jb/blocks.12.hook_resid_post", null, log, CancellationToken.None, Hub(cache, server));

        Assert.Equal("gemma-2b-res-jb", sae.Release);
        Assert.StartsWith(cache.Path, sae.Folder, StringComparison.Ordinal);
        Assert.EndsWith(entry.Path, sae.Folder, StringComparison.Ordinal);
        Assert.Equal("gemma-2b/12-res-jb", sae.Sae.Config.NeuronpediaId);
        Assert.Equal("gemma-2b", sae.NeuronpediaModel);
        Assert.Contains("cfg.json", log.ToString(), StringComparison.Ordinal);
        using var local = LlavaInterp.Sae.SparseAutoencoder.Load(CliRun.SaeDir);
        TensorAssert.Close(local.WDec, sae.Sae.WDec, atol: 0, rtol: 0, what: "W_dec");

        // Offline, no Neuronpedia download is tried and there are no descriptions.
        Assert.Null(await Sources.LoadExplanationsAsync(null, sae, log, CancellationToken.None, Hub(cache, server, offline: true)));

        // An explicit file always wins.
        var explanations = await Sources.LoadExplanationsAsync(CliRun.ExplanationsFile, sae, log, CancellationToken.None);
        Assert.Equal(40, explanations!.Count);
    }

    [Fact]
    public async Task RepoIdLoadsTheModelThroughTheHubCache()
    {
        using var server = new FakeHubServer("someone/tiny-llava", FakeHubServer.FilesOf(Fixture.ModelDir));
        using var cache = new TempDir();
        using var model = await Sources.LoadModelAsync("someone/tiny-llava", ModelDType.Float32, null, CancellationToken.None, Hub(cache, server));
        using var prompt = Sources.ProcessorOf(model).Prepare(CliRun.RenderedImagePrompt, [Fixture.Image("gradient_rgb")], raw: true);
        Assert.Equal(CliRun.GoldenInts("prompt.image_chat.input_ids"), prompt.Ids);
    }

    [Fact]
    public async Task LocalSaeFolderFindsItsExplanationsNextToIt()
    {
        using var sae = await Sources.LoadSaeAsync(CliRun.SaeDir, null, null, CancellationToken.None);
        Assert.Null(sae.Release);
        var explanations = await Sources.LoadExplanationsAsync(null, sae, null, CancellationToken.None);
        Assert.NotNull(explanations);
        Assert.Equal(LlavaInterp.Analysis.FeatureExplanations.Load(CliRun.ExplanationsFile).All, explanations.All);

        await Assert.ThrowsAsync<CliUsageException>(() => Sources.LoadSaeAsync("not-a-folder-or-name", null, null, CancellationToken.None));
        await Assert.ThrowsAsync<CliUsageException>(() => Sources.LoadSaeAsync(Fixture.Path("sae", "gemmascope-L3"), null, null, CancellationToken.None));
        await Assert.ThrowsAsync<CliUsageException>(() => Sources.LoadModelAsync(Fixture.Image("gray_l"), ModelDType.Float32, null, CancellationToken.None));
    }
}
