using LlavaInterp.Hub;
using LlavaInterp.Llava;
using LlavaInterp.Tests.Hub;
using LlavaInterp.Tests.Support;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Llava;

/// <summary>FromPretrainedAsync with a repo id goes through the hub cache (a fake hub on 127.0.0.1).</summary>
public sealed class LlavaHubTests
{
    [Fact]
    public async Task RepoIdDownloadsThroughTheHubCacheThenLoadsOffline()
    {
        using var cache = new TempDir();
        var progress = new List<HubDownloadProgress>();
        HookedLlava model;
        using (var server = new FakeHubServer("test-org/tiny-llava", FakeHubServer.FilesOf(Fixture.ShardedModelDir), "hf_test"))
        {
            var options = new LlavaLoadOptions
            {
                Hub = new HubOptions { CacheDir = cache.Path, Endpoint = server.Url, Token = "hf_test" },
                DownloadProgress = new SyncProgress<HubDownloadProgress>(progress.Add),
            };
            model = await HookedLlava.FromPretrainedAsync("test-org/tiny-llava", options);
            Assert.Contains(server.Requests, r => r.RawUrl.Contains("model-00003-of-00005.safetensors", StringComparison.Ordinal));
        }

        Assert.Contains(progress, p => p.File.EndsWith("config.json", StringComparison.Ordinal));
        using (model)
        using (var offline = await HookedLlava.FromPretrainedAsync("test-org/tiny-llava", new LlavaLoadOptions
        {
            Hub = new HubOptions { CacheDir = cache.Path, Endpoint = "http://127.0.0.1:9", Offline = true },
        }))
        {
            string text = Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("rendered_chat_template").GetString()!;
            using var prompt = offline.Processor!.Prepare(text, [Fixture.Image("gradient_rgb")], raw: true);
            using var output = offline.call(LlavaInput.From(prompt));
            TensorAssert.Close(Fixture.Load("lm.image_chat.logits"), output.Logits!, what: "logits after hub download");
        }
    }

    [Fact]
    public async Task NeitherFolderNorRepoIdIsAClearError()
    {
        await Assert.ThrowsAsync<DirectoryNotFoundException>(() => HookedLlava.FromPretrainedAsync("not a repo id/or folder/x"));
    }
}
