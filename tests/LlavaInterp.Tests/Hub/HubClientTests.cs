using System.Collections.Concurrent;
using LlavaInterp.Hub;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Hub;

public sealed class HubClientTests : IDisposable
{
    private const string Repo = "test-org/tiny-llava-gemma";
    private const string Token = "hf_test_secret";

    private readonly TempDir _cache = new();

    public void Dispose() => _cache.Dispose();

    private string RepoDir => Path.Combine(_cache.Path, "models--test-org--tiny-llava-gemma");

    private string SnapshotDir => Path.Combine(RepoDir, "snapshots", FakeHubServer.Commit);

    private HubClient Client(FakeHubServer? server, string? token = Token, bool offline = false, TimeSpan? timeout = null) =>
        new(new HubOptions
        {
            CacheDir = _cache.Path,
            // An endpoint nothing listens on when there is no server: any request would fail, not leave the machine.
            Endpoint = server?.Url ?? "http://127.0.0.1:9",
            Token = token,
            Offline = offline,
            Timeout = timeout ?? TimeSpan.FromSeconds(10),
        });

    private static FakeHubServer ModelServer(string? requiredToken = Token, string folder = "model") =>
        new(Repo, FakeHubServer.FilesOf(Fixture.Path(folder)), requiredToken);

    [Fact]
    public async Task DownloadModel_SingleFile_BuildsHfCacheLayout()
    {
        using var server = ModelServer();
        using var client = Client(server);

        string folder = await client.DownloadModelAsync(Repo);

        Assert.Equal(SnapshotDir, folder);
        Assert.Equal(FakeHubServer.Commit, File.ReadAllText(Path.Combine(RepoDir, "refs", "main")));
        foreach (string name in server.Paths)
        {
            string local = Path.Combine(folder, name);
            byte[] expected = server.FileBytes(name);
            Assert.Equal(expected, File.ReadAllBytes(local));
            string etag = FakeHubServer.EtagOf(name, expected);
            // Same relative link huggingface_hub writes: snapshots/{commit}/{file} -> ../../blobs/{etag}.
            Assert.Equal(Path.Combine("..", "..", "blobs", etag), new FileInfo(local).LinkTarget);
            Assert.Equal(expected, File.ReadAllBytes(Path.Combine(RepoDir, "blobs", etag)));
        }

        Assert.Equal(server.Paths.Count, Directory.GetFiles(Path.Combine(RepoDir, "blobs")).Length);
        Assert.Empty(Directory.GetFiles(_cache.Path, "*.incomplete", SearchOption.AllDirectories));
        // Optional files the repo lacks are remembered as absent, as huggingface_hub does.
        Assert.True(File.Exists(Path.Combine(RepoDir, ".no_exist", FakeHubServer.Commit, "added_tokens.json")));
        Assert.True(File.Exists(Path.Combine(RepoDir, ".no_exist", FakeHubServer.Commit, "model.safetensors.index.json")));
        Assert.False(File.Exists(Path.Combine(folder, "added_tokens.json")));
    }

    [Fact]
    public async Task DownloadModel_Sharded_FetchesIndexAndEveryShard()
    {
        using var server = ModelServer(folder: "model-sharded");
        using var client = Client(server);

        string folder = await client.DownloadModelAsync(Repo);

        for (int i = 1; i <= 5; i++)
        {
            string shard = $"model-0000{i}-of-00005.safetensors";
            Assert.Equal(server.FileBytes(shard), File.ReadAllBytes(Path.Combine(folder, shard)));
        }

        Assert.True(File.Exists(Path.Combine(folder, "model.safetensors.index.json")));
        Assert.DoesNotContain(server.Requests, r => r.RawUrl.EndsWith("/model.safetensors", StringComparison.Ordinal));
        using var shard1 = SafetensorsFile.Open(Path.Combine(folder, "model-00001-of-00005.safetensors"));
        Assert.NotEmpty(shard1.Names);
    }

    [Fact]
    public async Task TokenIsSentAsBearerToTheHub()
    {
        using var server = ModelServer();
        using var client = Client(server);

        await client.DownloadFileAsync(Repo, "config.json");
        await client.DownloadFileAsync(Repo, "model.safetensors");

        Assert.NotEmpty(server.Requests);
        Assert.All(server.Requests, r => Assert.Equal("Bearer " + Token, r.Authorization));
        Assert.All(server.Requests, r => Assert.StartsWith("/", r.RawUrl));
    }

    [Fact]
    public async Task MissingOrWrongToken_Gives401NamingHfToken()
    {
        using var server = ModelServer();
        using (var anonymous = Client(server, token: null))
        {
            var e = await Assert.ThrowsAsync<HubException>(() => anonymous.DownloadFileAsync(Repo, "config.json"));
            Assert.Equal(401, e.StatusCode);
            Assert.Contains("HF_TOKEN", e.Message);
            Assert.Contains("No token was sent", e.Message);
            Assert.Equal(Repo, e.RepoId);
            Assert.Equal("config.json", e.FilePath);
            Assert.Null(server.Requests.Last().Authorization);
        }

        using var wrong = Client(server, token: "hf_wrong");
        var e2 = await Assert.ThrowsAsync<HubException>(() => wrong.DownloadModelAsync(Repo));
        Assert.Equal(401, e2.StatusCode);
        Assert.Contains("not accepted", e2.Message);
        Assert.False(Directory.Exists(Path.Combine(RepoDir, "snapshots")));
    }

    [Fact]
    public async Task NotFound_NamesRepoFileAndRevision()
    {
        using var server = ModelServer();
        using var client = Client(server);

        var missing = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "nope/missing.json"));
        Assert.Equal(404, missing.StatusCode);
        Assert.Contains("'nope/missing.json'", missing.Message);
        Assert.Contains(Repo, missing.Message);
        Assert.Contains("'main'", missing.Message);

        var repo = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync("test-org/no-such-model", "config.json"));
        Assert.Equal(404, repo.StatusCode);
        Assert.Contains("Repository 'test-org/no-such-model' was not found", repo.Message);

        var rev = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "config.json", "v9.9"));
        Assert.Equal(404, rev.StatusCode);
        Assert.Contains("Revision 'v9.9'", rev.Message);
        Assert.Equal("v9.9", rev.Revision);

        // A required weights file missing from a model repo fails DownloadModelAsync, naming it.
        server.Faults["model.safetensors"] = HubFault.NotFound;
        var weights = await Assert.ThrowsAsync<HubException>(() => client.DownloadModelAsync(Repo));
        Assert.Equal("model.safetensors", weights.FilePath);
    }

    [Fact]
    public async Task ServerError_WithoutCache_IsTyped()
    {
        using var server = ModelServer();
        using var client = Client(server);
        server.Faults["config.json"] = HubFault.ServerError;

        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "config.json"));
        Assert.Equal(500, e.StatusCode);
        Assert.Contains("config.json", e.Message);

        // With a cached copy, a server error falls back to it, as huggingface_hub does.
        string cached = await client.DownloadFileAsync(Repo, "tokenizer.model");
        server.Faults["tokenizer.model"] = HubFault.ServerError;
        Assert.Equal(cached, await client.DownloadFileAsync(Repo, "tokenizer.model"));
    }

    [Fact]
    public async Task ConcurrentDownloadsOfOneFile_FetchItOnce()
    {
        using var server = ModelServer();
        using var client = Client(server);
        using var other = Client(server);

        string[] paths = await Task.WhenAll(
            client.DownloadFileAsync(Repo, "model.safetensors"),
            other.DownloadFileAsync(Repo, "model.safetensors"),
            client.DownloadFileAsync(Repo, "model.safetensors"));

        Assert.All(paths, p => Assert.Equal(server.FileBytes("model.safetensors"), File.ReadAllBytes(p)));
        Assert.Single(server.Requests, r => r.Method == "GET" && r.RawUrl.StartsWith("/cdn/", StringComparison.Ordinal));
    }

    [Fact]
    public async Task MissingCommitHeader_IsRejected()
    {
        using var server = ModelServer();
        using var client = Client(server);
        server.Faults["config.json"] = HubFault.NoCommitHeader;

        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "config.json"));
        Assert.Contains("X-Repo-Commit", e.Message);
        Assert.False(Directory.Exists(Path.Combine(RepoDir, "blobs")));
    }

    [Fact]
    public async Task Offline_ResolvesFromCacheWithoutAnyRequest()
    {
        using var server = ModelServer();
        using (var online = Client(server))
        {
            await online.DownloadModelAsync(Repo);
        }

        int before = server.Requests.Count;
        using var offline = Client(server, offline: true);
        Assert.Equal(SnapshotDir, await offline.DownloadModelAsync(Repo));
        Assert.Equal(Path.Combine(SnapshotDir, "config.json"), await offline.DownloadFileAsync(Repo, "config.json"));
        Assert.Equal(Path.Combine(SnapshotDir, "config.json"), await offline.DownloadFileAsync(Repo, "config.json", FakeHubServer.Commit));
        Assert.Equal(Path.Combine(SnapshotDir, "tokenizer.model"), offline.TryGetCachedFile(Repo, "tokenizer.model"));
        Assert.Equal(before, server.Requests.Count);
    }

    [Fact]
    public async Task Offline_WithServerStopped_ReResolvesModel()
    {
        var server = ModelServer();
        using (var online = Client(server))
        {
            await online.DownloadModelAsync(Repo);
        }

        server.Dispose();
        using var offline = Client(server, offline: true);
        string folder = await offline.DownloadModelAsync(Repo);
        Assert.Equal(SnapshotDir, folder);
        Assert.Equal(File.ReadAllBytes(Fixture.Path("model", "config.json")), File.ReadAllBytes(Path.Combine(folder, "config.json")));
        Assert.Equal(folder, await offline.ResolveAsync(Repo));
    }

    [Fact]
    public async Task Offline_MissingFile_ThrowsHubOfflineExceptionNamingRepoAndFile()
    {
        using var offline = Client(null, offline: true);

        var nothing = await Assert.ThrowsAsync<HubOfflineException>(() => offline.DownloadFileAsync(Repo, "config.json"));
        Assert.Contains(Repo, nothing.Message);
        Assert.Contains("'config.json'", nothing.Message);
        Assert.Contains("refs/main", nothing.Message);

        using var server = ModelServer();
        using (var online = Client(server))
        {
            await online.DownloadFileAsync(Repo, "config.json");
        }

        var notCached = await Assert.ThrowsAsync<HubOfflineException>(() => offline.DownloadFileAsync(Repo, "model.safetensors"));
        Assert.Contains("'model.safetensors'", notCached.Message);
        Assert.Contains(FakeHubServer.Commit, notCached.Message);
        Assert.Equal("model.safetensors", notCached.FilePath);
        await Assert.ThrowsAsync<HubOfflineException>(() => offline.DownloadModelAsync(Repo));
    }

    [Fact]
    public async Task Online_ServerUnreachable_FallsBackToCache()
    {
        var server = ModelServer();
        using (var online = Client(server))
        {
            await online.DownloadFileAsync(Repo, "config.json");
        }

        server.Dispose();
        using var client = Client(server);
        Assert.Equal(Path.Combine(SnapshotDir, "config.json"), await client.DownloadFileAsync(Repo, "config.json"));
        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, "tokenizer.model"));
        Assert.Contains("Could not reach", e.Message);
        Assert.IsType<HttpRequestException>(e.InnerException);
    }

    [Fact]
    public async Task SecondDownload_ReusesCacheWithHeadOnly()
    {
        using var server = ModelServer();
        using var client = Client(server);
        string first = await client.DownloadFileAsync(Repo, "model.safetensors");
        int gets = server.Count("GET");

        string again = await client.DownloadFileAsync(Repo, "model.safetensors");
        Assert.Equal(first, again);
        Assert.Equal(gets, server.Count("GET"));

        // Pinned to a commit whose snapshot holds the file: no request at all.
        int all = server.Requests.Count;
        Assert.Equal(first, await client.DownloadFileAsync(Repo, "model.safetensors", FakeHubServer.Commit));
        Assert.Equal(all, server.Requests.Count);
    }

    [Fact]
    public async Task AbortedBody_LeavesNoCompleteFile_ThenResumes()
    {
        using var server = ModelServer();
        using var client = Client(server);
        const string name = "model.safetensors";
        byte[] full = server.FileBytes(name);
        string blob = Path.Combine(RepoDir, "blobs", FakeHubServer.EtagOf(name, full));
        server.Faults[name] = HubFault.AbortMidBody;

        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, name));
        Assert.Contains(name, e.Message);
        Assert.False(File.Exists(blob));
        Assert.False(File.Exists(Path.Combine(SnapshotDir, name)));
        long partial = new FileInfo(blob + ".incomplete").Length;
        // The server sent half and closed: that half is kept for resuming, under a name that is not the blob's.
        Assert.Equal(full.Length / 2, partial);

        string path = await client.DownloadFileAsync(Repo, name);
        Assert.Equal(full, File.ReadAllBytes(path));
        Assert.False(File.Exists(blob + ".incomplete"));
        Assert.Contains(server.Requests, r => r.Range == $"bytes={partial}-");
    }

    [Fact]
    public async Task ShortBody_FailsSizeCheckAndStoresNothing()
    {
        using var server = ModelServer();
        using var client = Client(server);
        const string name = "tokenizer.model";
        byte[] full = server.FileBytes(name);
        server.Faults[name] = HubFault.ShortBody;

        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, name));
        Assert.Contains($"ended after {full.Length / 2} of the {full.Length} bytes", e.Message);
        Assert.False(File.Exists(Path.Combine(RepoDir, "blobs", FakeHubServer.EtagOf(name, full))));
        Assert.False(File.Exists(Path.Combine(SnapshotDir, name)));
    }

    [Fact]
    public async Task Cancellation_MidDownload_LeavesNoCompleteFile()
    {
        using var server = ModelServer();
        using var client = Client(server);
        const string name = "model.safetensors";
        byte[] full = server.FileBytes(name);
        server.Faults[name] = HubFault.Stall;
        using var cts = new CancellationTokenSource();

        var download = client.DownloadFileAsync(Repo, name, cancellationToken: cts.Token);
        await server.StallReached.Task.WaitAsync(TimeSpan.FromSeconds(10));
        cts.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => download);
        Assert.False(File.Exists(Path.Combine(RepoDir, "blobs", FakeHubServer.EtagOf(name, full))));
        Assert.False(File.Exists(Path.Combine(SnapshotDir, name)));
    }

    [Fact]
    public async Task StalledBody_TimesOut()
    {
        using var server = ModelServer();
        using var client = Client(server, timeout: TimeSpan.FromMilliseconds(300));
        const string name = "model.safetensors";
        server.Faults[name] = HubFault.Stall;

        var e = await Assert.ThrowsAsync<HubException>(() => client.DownloadFileAsync(Repo, name));
        Assert.IsType<TimeoutException>(e.InnerException);
        Assert.False(File.Exists(Path.Combine(SnapshotDir, name)));
    }

    [Fact]
    public async Task Progress_IsReportedPerFileUpToItsSize()
    {
        using var server = ModelServer();
        using var client = Client(server);
        var progress = new Collect();

        await client.DownloadModelAsync(Repo, progress: progress);

        var byFile = progress.Items.GroupBy(p => p.File).ToDictionary(g => g.Key, g => g.ToList());
        Assert.Equal(server.Paths.Order(), byFile.Keys.Order());
        foreach (var (file, reports) in byFile)
        {
            long size = server.FileBytes(file).Length;
            Assert.Equal(0, reports[0].BytesDone);
            Assert.Equal(size, reports[^1].BytesDone);
            Assert.All(reports, r => Assert.Equal(size, r.TotalBytes));
            Assert.True(reports.Zip(reports.Skip(1)).All(pair => pair.First.BytesDone <= pair.Second.BytesDone), file);
        }

        // Cache hits report nothing, and a cached model costs one request: config.json's HEAD, which pins the commit.
        var again = new Collect();
        int before = server.Requests.Count;
        await client.DownloadModelAsync(Repo, progress: again);
        Assert.Empty(again.Items);
        Assert.Equal(before + 1, server.Requests.Count);
        Assert.Equal("HEAD", server.Requests.Last().Method);
    }

    [Fact]
    public async Task NestedPathsAndEscaping_SaeSubfolders()
    {
        var files = FakeHubServer.FilesOf(Fixture.Path("sae", "standard-L2"), "blocks.2.hook_resid_post/");
        files["odd dir/a+b #1.json"] = "{}"u8.ToArray();
        using var server = new FakeHubServer("test-org/tiny-saes", files, Token);
        using var client = Client(server);

        string cfg = await client.DownloadFileAsync("test-org/tiny-saes", "blocks.2.hook_resid_post/cfg.json");
        string repoDir = Path.Combine(_cache.Path, "models--test-org--tiny-saes");
        Assert.Equal(Path.Combine(repoDir, "snapshots", FakeHubServer.Commit, "blocks.2.hook_resid_post", "cfg.json"), cfg);
        Assert.Equal(File.ReadAllBytes(Fixture.Path("sae", "standard-L2", "cfg.json")), File.ReadAllBytes(cfg));
        Assert.StartsWith(Path.Combine("..", "..", "..", "blobs"), new FileInfo(cfg).LinkTarget);

        string weights = await client.DownloadFileAsync("test-org/tiny-saes", "blocks.2.hook_resid_post/sae_weights.safetensors");
        using (var sae = SafetensorsFile.Open(weights))
        {
            Assert.NotEmpty(sae.Names);
        }

        // A "folder/" pattern means everything under it.
        string snapshot = await client.SnapshotAsync("test-org/tiny-saes", ["blocks.2.hook_resid_post/"]);
        Assert.Equal(2, Directory.GetFiles(Path.Combine(snapshot, "blocks.2.hook_resid_post")).Length);
        Assert.False(Directory.Exists(Path.Combine(snapshot, "odd dir")));

        string odd = await client.DownloadFileAsync("test-org/tiny-saes", "odd dir/a+b #1.json", "refs/pr/1");
        Assert.Equal("{}", File.ReadAllText(odd));
        Assert.Contains(server.Requests, r => r.RawUrl == "/test-org/tiny-saes/resolve/refs%2Fpr%2F1/odd%20dir/a%2Bb%20%231.json");
        Assert.Equal(FakeHubServer.Commit, File.ReadAllText(Path.Combine(repoDir, "refs", "refs", "pr", "1")));
    }

    [Fact]
    public async Task RenamedRepo_RelativeRedirectIsFollowed()
    {
        using var server = ModelServer();
        server.RenamedFrom["old-org/old-name"] = true;
        using var client = Client(server);

        string path = await client.DownloadFileAsync("old-org/old-name", "config.json");

        Assert.Equal(server.FileBytes("config.json"), File.ReadAllBytes(path));
        Assert.StartsWith(Path.Combine(_cache.Path, "models--old-org--old-name"), path);
    }

    [Fact]
    public async Task Snapshot_PatternsAndPaths_OnlineThenOffline()
    {
        using var server = ModelServer();
        using var client = Client(server);

        string folder = await client.SnapshotAsync(Repo, ["*.json", "tokenizer.model"]);

        Assert.Equal(SnapshotDir, folder);
        var expected = server.Paths.Where(p => p.EndsWith(".json", StringComparison.Ordinal)).Append("tokenizer.model").Order().ToList();
        var got = Directory.GetFiles(folder).Select(f => Path.GetFileName(f)!).Order().ToList();
        Assert.Equal(expected, got);
        Assert.Contains(server.Requests, r => r.RawUrl == $"/api/models/{Repo}/revision/main");

        using var offline = Client(server, offline: true);
        int before = server.Requests.Count;
        Assert.Equal(folder, await offline.SnapshotAsync(Repo, ["tokenizer*", "config.json"]));
        Assert.Equal(before, server.Requests.Count);
        await Assert.ThrowsAsync<HubOfflineException>(() => offline.SnapshotAsync(Repo, ["model.safetensors"]));
    }

    [Theory]
    [InlineData("[!t]*_config.json", "generation_config.json,preprocessor_config.json,processor_config.json")]
    [InlineData("*token?_*", "special_tokens_map.json")]
    [InlineData("tokenizer.*", "tokenizer.model")]
    [InlineData("model.safetensors", "model.safetensors")]
    public async Task Snapshot_GlobsMatchLikeFnmatch(string pattern, string expected)
    {
        using var server = ModelServer();
        using var client = Client(server);

        string folder = await client.SnapshotAsync(Repo, [pattern]);

        Assert.Equal(expected.Split(','), Directory.GetFiles(folder).Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task MalformedShardIndex_IsTensorFileException()
    {
        var files = FakeHubServer.FilesOf(Fixture.Path("model"));
        files["model.safetensors.index.json"] = """{"metadata": {}, "weight_map": {"a.weight": "../escape.safetensors"}}"""u8.ToArray();
        using var server = new FakeHubServer(Repo, files, Token);
        using var client = Client(server);

        var e = await Assert.ThrowsAsync<TensorFileException>(() => client.DownloadModelAsync(Repo));
        Assert.Contains("../escape.safetensors", e.Message);
        Assert.Equal("a.weight", e.TensorName);
    }

    [Theory]
    [InlineData(new byte[] { 0xFF })]
    [InlineData(new byte[] { (byte)'\\', (byte)'u', (byte)'d', (byte)'8', (byte)'0', (byte)'0' })]
    public async Task ShardIndexNamesThatAreNotText_AreTensorFileException(byte[] bad)
    {
        var files = FakeHubServer.FilesOf(Fixture.Path("model"));
        files["model.safetensors.index.json"] = [.. """{"weight_map": {"a.weight": "x"""u8, .. bad, .. """.safetensors"}}"""u8];
        using var server = new FakeHubServer(Repo, files, Token);
        using var client = Client(server);

        var e = await Assert.ThrowsAsync<TensorFileException>(() => client.DownloadModelAsync(Repo));
        Assert.EndsWith("model.safetensors.index.json", e.FilePath, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InvalidArguments_AreRejectedBeforeAnyRequest()
    {
        using var server = ModelServer();
        using var client = Client(server);

        await Assert.ThrowsAsync<ArgumentException>(() => client.DownloadFileAsync(Repo, "../secrets.json"));
        await Assert.ThrowsAsync<ArgumentException>(() => client.DownloadFileAsync(Repo, "/etc/passwd"));
        await Assert.ThrowsAsync<ArgumentException>(() => client.DownloadFileAsync(Repo, @"a\b.json"));
        await Assert.ThrowsAsync<ArgumentException>(() => client.DownloadFileAsync("bad--repo/x", "config.json"));
        await Assert.ThrowsAsync<ArgumentException>(() => client.DownloadFileAsync(Repo, "config.json", "../../etc"));
        await Assert.ThrowsAsync<ArgumentException>(() => client.SnapshotAsync(Repo, []));
        Assert.Empty(server.Requests);
    }

    [Fact]
    public async Task Resolve_LocalFolderUnchanged_RepoIdDownloads_GarbageThrows()
    {
        using var server = ModelServer();
        using var client = Client(server);

        Assert.Equal(Fixture.ModelDir, await client.ResolveAsync(Fixture.ModelDir));
        Assert.Equal(SnapshotDir, await client.ResolveAsync(Repo));
        await Assert.ThrowsAsync<DirectoryNotFoundException>(() => client.ResolveAsync("no/such/local/folder"));
    }

    [Fact]
    public void LooksLikeRepoId_OwnerSlashNameAndNotALocalPath()
    {
        Assert.True(HubClient.LooksLikeRepoId("Intel/llava-gemma-2b"));
        Assert.True(HubClient.LooksLikeRepoId("google/gemma-scope-2b-pt-res"));
        Assert.False(HubClient.LooksLikeRepoId("gpt2"));
        Assert.False(HubClient.LooksLikeRepoId("a/b/c"));
        Assert.False(HubClient.LooksLikeRepoId(""));
        Assert.False(HubClient.LooksLikeRepoId("./model"));
        Assert.False(HubClient.LooksLikeRepoId("owner/bad--name"));
        Assert.False(HubClient.LooksLikeRepoId("owner/name.git"));
        Assert.False(HubClient.LooksLikeRepoId("/abs"));

        // A relative "owner/name" that exists locally is a path, not a repo id.
        string owner = "hubtest-" + Guid.NewGuid().ToString("N")[..8];
        string local = owner + "/model";
        Directory.CreateDirectory(local);
        try
        {
            Assert.False(HubClient.LooksLikeRepoId(local));
        }
        finally
        {
            Directory.Delete(owner, recursive: true);
        }

        Assert.True(HubClient.LooksLikeRepoId(local));
    }

    private sealed class Collect : IProgress<HubDownloadProgress>
    {
        private readonly ConcurrentQueue<HubDownloadProgress> _items = new();

        public IReadOnlyList<HubDownloadProgress> Items => [.. _items];

        public void Report(HubDownloadProgress value) => _items.Enqueue(value);
    }
}
