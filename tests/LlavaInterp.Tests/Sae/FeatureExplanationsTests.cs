using LlavaInterp.Analysis;
using LlavaInterp.Hub;
using LlavaInterp.Tests.Hub;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Sae;

public sealed class FeatureExplanationsTests
{
    [Fact]
    public void LoadsTheNeuronpediaExport()
    {
        var e = FeatureExplanations.Load(SaeFixture.ExplanationsFile);
        Assert.Equal(Fixture.Manifest.GetProperty("sae").GetProperty("explanations").GetProperty("count").GetInt32(), e.Count);
        Assert.Equal(["newline characters"], e.Get(219));
        Assert.Equal("newline characters", e.Describe(219));
        var entry = Assert.Single(e.Entries(219));
        Assert.Equal(" newline characters", entry.RawDescription);
        Assert.Equal("tiny-llava-gemma", entry.ModelId);
        Assert.Equal("gpt-4o-mini", entry.ExplanationModelName);
        Assert.Equal("oai_token-act-pair", entry.TypeName);

        // The export's "layer" is the source id, the suffix of cfg.json's neuronpedia_id.
        var cfg = SaeConfig.Load(Path.Combine(SaeFixture.StandardFolder, "cfg.json"));
        Assert.Equal(cfg.NeuronpediaSource, entry.Source);

        Assert.Empty(e.Get(0));
        Assert.Null(e.Describe(0));
        Assert.Equal(e.Features.Count, e.Count);
        Assert.All(e.All, x => Assert.Equal(x.RawDescription.Trim(), x.Description));
    }

    [Fact]
    public void SeveralExplanationsPerFeatureKeepFileOrder()
    {
        var e = FeatureExplanations.Parse(
            """
            [{"modelId": "m", "layer": "0-res", "index": "5", "description": " first", "explanationModelName": "a", "typeName": "t"},
             {"modelId": "m", "layer": "0-res", "index": "3", "description": "other"},
             {"modelId": "m", "layer": "0-res", "index": 5, "description": "  second  "}]
            """,
            "inline");
        Assert.Equal(["first", "second"], e.Get(5));
        Assert.Equal("first", e.Describe(5));
        Assert.Equal([3, 5], e.Features);
    }

    [Theory]
    [InlineData("{\"index\": \"1\"}", "description")]
    [InlineData("[{\"index\": \"one\", \"description\": \"x\"}]", "index")]
    [InlineData("[{\"index\": \"-1\", \"description\": \"x\"}]", "index")]
    [InlineData("[{\"description\": \"x\"}]", "index")]
    [InlineData("[{\"index\": \"1\"}]", "description")]
    [InlineData("[{\"index\": \"1\", \"description\": 3}]", "description")]
    [InlineData("[1]", "object")]
    [InlineData("[{\"index\": ", "JSON")]
    public void MalformedExportsNameTheProblem(string json, string mention)
    {
        var ex = Assert.Throws<FeatureExplanationsException>(() => FeatureExplanations.Parse(json, "export.json"));
        Assert.Equal("export.json", ex.Location);
        Assert.Contains(mention, ex.Message);
    }

    [Fact]
    public void SurrogatePairsAndEscapedBackslashesAreText()
    {
        var e = FeatureExplanations.Parse("{\"index\": \"1\", \"description\": \"\\ud83d\\ude00 \\\\ud800 \\\"\\u0041\"}\n{\"index\": \"2\", \"description\": \"\ud83d\ude00\"}", "x.jsonl");
        Assert.Equal("\ud83d\ude00 \\ud800 \"A", e.Entries(1).Single().Description);
        Assert.Equal("\ud83d\ude00", e.Entries(2).Single().Description);
    }

    [Fact]
    public void MissingFileIsReported()
    {
        using var dir = new TempDir();
        Assert.Contains("not found", Assert.Throws<FeatureExplanationsException>(() => FeatureExplanations.Load(dir.File("none.json"))).Message);
    }

    private static string NeuronpediaFixture(params string[] parts) =>
        Path.Combine([AppContext.BaseDirectory, "fixtures", "neuronpedia", .. parts]);

    private static string BatchFolder => NeuronpediaFixture("v1", "tiny-llava-gemma", "2-res-tiny256", "explanations");

    private static FakeHubServer NeuronpediaServer()
    {
        var server = new FakeHubServer("someone/none", new Dictionary<string, byte[]>());
        foreach (var f in Directory.EnumerateFiles(NeuronpediaFixture(), "*", SearchOption.AllDirectories))
        {
            // The feature API answers at api/feature/{model}/{source}/{index}; the fixture file adds ".json".
            string rel = "/" + Path.GetRelativePath(NeuronpediaFixture(), f).Replace(Path.DirectorySeparatorChar, '/');
            server.PlainFiles[rel.StartsWith("/api/", StringComparison.Ordinal) ? rel[..^".json".Length] : rel] = File.ReadAllBytes(f);
        }

        return server;
    }

    private static HubClient Client(FakeHubServer server, TempDir cache, bool offline = false) =>
        new(new HubOptions { CacheDir = Path.Combine(cache.Path, "huggingface", "hub"), Endpoint = server.Url, Offline = offline });

    private static NeuronpediaOptions At(FakeHubServer server) => new() { DatasetsUrl = server.Url, ApiUrl = server.Url };

    [Fact]
    public void BulkExportBatchesFolderAndFileListEqualTheOldArray()
    {
        var array = FeatureExplanations.Load(SaeFixture.ExplanationsFile);
        var folder = FeatureExplanations.Load(BatchFolder);
        var files = FeatureExplanations.Load([Path.Combine(BatchFolder, "batch-0.jsonl.gz"), Path.Combine(BatchFolder, "batch-1.jsonl.gz")]);
        var one = FeatureExplanations.Load(Path.Combine(BatchFolder, "batch-1.jsonl.gz"));

        Assert.Equal(array.All, folder.All);
        Assert.Equal(array.All, files.All);
        Assert.True(one.Count > 0 && one.Count < array.Count);
        Assert.All(one.Features, f => Assert.True(f >= 128)); // batch-1 holds features 128..255
        Assert.Equal(array.Describe(219), one.Describe(219));
    }

    [Fact]
    public void PlainJsonLinesAndOneFeatureAnswerParse()
    {
        using var dir = new TempDir();
        string jsonl = dir.File("batch-0.jsonl");
        using (var gz = new System.IO.Compression.GZipStream(File.OpenRead(Path.Combine(BatchFolder, "batch-0.jsonl.gz")), System.IO.Compression.CompressionMode.Decompress))
        using (var outFile = File.Create(jsonl))
        {
            gz.CopyTo(outFile);
        }

        Assert.Equal(FeatureExplanations.Load(Path.Combine(BatchFolder, "batch-0.jsonl.gz")).All, FeatureExplanations.Load(jsonl).All);

        var feature = FeatureExplanations.Load(NeuronpediaFixture("api", "feature", "tiny-llava-gemma", "2-res-tiny256", "219.json"));
        var entry = Assert.Single(feature.All);
        Assert.Equal(Assert.Single(FeatureExplanations.Load(SaeFixture.ExplanationsFile).Entries(219)), entry);
    }

    [Theory]
    [InlineData("{\"index\": \"1\", \"description\": \"a\"}\n\n{\"index\": \"2\"}\n", 3, "description")]
    [InlineData("{\"index\": \"1\", \"description\": \"a\"}\n{\"index\": \"2\", \"description\": \"b\"\n", 2, "JSON")]
    [InlineData("{\"index\": \"x\", \"description\": \"a\"}\n", 1, "index")]
    [InlineData("[1]\n", null, "object")]
    [InlineData("{\"index\": \"1\", \"description\": \"a\"}\n{\"index\": \"2\", \"description\": \" dogs \\ud800\"}\n", 2, "surrogate")]
    [InlineData("{\"index\": \"1\", \"description\": \"\\udc00\"}\n", 1, "surrogate")]
    [InlineData("[{\"index\": \"1\", \"description\": \"a\"},\n {\"index\": \"2\", \"description\": \"\\ud83d b\"}]", 2, "surrogate")]
    [InlineData("{\"explanations\": [{\"description\": \"\\ud83d\\ud83d\"}], \"index\": 3}", 1, "surrogate")]
    public void BadJsonLinesNameFileAndLine(string text, int? line, string mention)
    {
        using var dir = new TempDir();
        string path = dir.File("batch-7.jsonl");
        File.WriteAllText(path, text);
        var ex = Assert.Throws<FeatureExplanationsException>(() => FeatureExplanations.Load(path));
        Assert.Equal(path, ex.Location);
        Assert.Equal(line, ex.Line);
        Assert.Contains(path, ex.Message);
        Assert.Contains(mention, ex.Message);
        if (line is not null)
        {
            Assert.Contains($"line {line}", ex.Message);
        }

        File.WriteAllBytes(path, [0x1f, 0x8b, 1, 2, 3]);
        Assert.Contains("gzip", Assert.Throws<FeatureExplanationsException>(() => FeatureExplanations.Load(path)).Message);
    }

    [Fact]
    public async Task BulkExportDownloadsEveryBatchOnceThroughTheHubClientAndNextToTheHfCache()
    {
        using var cache = new TempDir();
        using var server = NeuronpediaServer();
        using var hub = Client(server, cache);

        var got = await FeatureExplanations.DownloadAsync("tiny-llava-gemma", "2-res-tiny256", hub, At(server));
        Assert.Equal(FeatureExplanations.Load(SaeFixture.ExplanationsFile).All, got.All);
        // batch-0, batch-1, then the 404 of batch-2 that ends the set.
        Assert.Equal(3, server.Count("GET"));
        string folder = Path.Combine(cache.Path, "huggingface", "neuronpedia", "v1", "tiny-llava-gemma", "2-res-tiny256", "explanations");
        Assert.Equal(FeatureExplanations.DefaultCacheDirectory(hub.Options), Path.Combine(cache.Path, "huggingface", "neuronpedia"));
        Assert.Equal(File.ReadAllBytes(Path.Combine(BatchFolder, "batch-1.jsonl.gz")), File.ReadAllBytes(Path.Combine(folder, "batch-1.jsonl.gz")));

        // A completed set makes no request again, offline included.
        using var offline = Client(server, cache, offline: true);
        Assert.Equal(got.All, (await FeatureExplanations.DownloadAsync("tiny-llava-gemma", "2-res-tiny256", offline, At(server))).All);
        Assert.Equal(3, server.Count("GET"));

        // The folder URL layout and the removed export endpoint's address both mean the bulk export.
        var byUrl = await FeatureExplanations.LoadAsync(new Uri(server.Url + "/v1/tiny-llava-gemma/2-res-tiny256/explanations/"), hub, Path.Combine(cache.Path, "other"));
        Assert.Equal(got.All, byUrl.All);
        Assert.True(NeuronpediaSourceReads("https://www.neuronpedia.org/api/explanation/export?modelId=gemma-2-2b&saeId=12-gemmascope-res-16k"));
    }

    private static bool NeuronpediaSourceReads(string url)
    {
        using var cache = new TempDir();
        using var hub = new HubClient(new HubOptions { CacheDir = cache.Path, Offline = true });
        // Offline and uncached, so the bulk-export path must be taken and refuse without any network use.
        var ex = Assert.ThrowsAsync<FeatureExplanationsException>(() => FeatureExplanations.LoadAsync(new Uri(url), hub, cache.Path)).GetAwaiter().GetResult();
        return ex.Location.EndsWith("/v1/gemma-2-2b/12-gemmascope-res-16k/explanations/batch-0.jsonl.gz", StringComparison.Ordinal)
            && ex.InnerException is HubOfflineException;
    }

    [Fact]
    public async Task OneFeatureLookupAndSingleFileUrlsAreCached()
    {
        using var cache = new TempDir();
        using var server = NeuronpediaServer();
        using var hub = Client(server, cache);

        var feature = await FeatureExplanations.LoadFeatureAsync("tiny-llava-gemma", "2-res-tiny256", 219, hub, At(server));
        Assert.Equal("newline characters", feature.Describe(219));
        Assert.Equal(1, server.Count("GET"));
        Assert.Equal(feature.All, (await FeatureExplanations.LoadFeatureAsync("tiny-llava-gemma", "2-res-tiny256", 219, hub, At(server))).All);
        Assert.Equal(1, server.Count("GET"));

        var url = new Uri(server.Url + "/v1/tiny-llava-gemma/2-res-tiny256/explanations/batch-1.jsonl.gz");
        var batch = await FeatureExplanations.LoadAsync(url, hub, cache.Path);
        Assert.Equal(FeatureExplanations.Load(Path.Combine(BatchFolder, "batch-1.jsonl.gz")).All, batch.All);
        Assert.True(File.Exists(FeatureExplanations.CachePath(url, cache.Path)));
        await FeatureExplanations.LoadAsync(url, hub, cache.Path);
        Assert.Equal(2, server.Count("GET"));
    }

    [Fact]
    public async Task FailedOrInvalidDownloadsLeaveNoCacheFile()
    {
        using var cache = new TempDir();
        using var server = NeuronpediaServer();
        using var hub = Client(server, cache);
        string root = Path.Combine(cache.Path, "np");

        var missing = await Assert.ThrowsAsync<FeatureExplanationsException>(() => FeatureExplanations.DownloadAsync("tiny-llava-gemma", "9-none", hub, At(server), root));
        Assert.Contains("404", missing.Message);
        Assert.Contains("9-none", missing.Location);

        var notFound = await Assert.ThrowsAsync<FeatureExplanationsException>(() => FeatureExplanations.LoadAsync(new Uri(server.Url + "/export.json"), hub, root));
        Assert.Contains("404", notFound.Message);
        Assert.Equal(server.Url + "/export.json", notFound.Location);

        server.PlainFiles["/bad.jsonl"] = System.Text.Encoding.UTF8.GetBytes("<html>not json</html>");
        var bad = await Assert.ThrowsAsync<FeatureExplanationsException>(() => FeatureExplanations.LoadAsync(new Uri(server.Url + "/bad.jsonl"), hub, root));
        Assert.Equal(1, bad.Line);

        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => FeatureExplanations.LoadAsync(new Uri(server.Url + "/bad.jsonl"), hub, root, cancellationToken: cts.Token));
        Assert.False(Directory.Exists(root) && Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories).Any());
        await Assert.ThrowsAsync<ArgumentException>(() => FeatureExplanations.LoadAsync(new Uri("file:///tmp/x.json"), hub, root));
        await Assert.ThrowsAsync<ArgumentException>(() => FeatureExplanations.DownloadAsync("../x", "s", hub, At(server), root));
    }
}
