using LlavaInterp.Analysis;
using System.Net;
using System.Net.Sockets;
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
    [InlineData("{\"index\": \"1\"}", "array")]
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
    public void MissingFileIsReported()
    {
        using var dir = new TempDir();
        Assert.Contains("not found", Assert.Throws<FeatureExplanationsException>(() => FeatureExplanations.Load(dir.File("none.json"))).Message);
    }

    [Fact]
    public async Task LoadAsyncDownloadsOnceAndCaches()
    {
        using var dir = new TempDir();
        using var server = new LocalServer();
        server.Body = File.ReadAllText(SaeFixture.ExplanationsFile);
        var url = new Uri(server.Prefix + "api/explanation/export?modelId=tiny&saeId=2-res-tiny256");
        using var http = new HttpClient();

        var first = await FeatureExplanations.LoadAsync(url, dir.Path, http);
        Assert.Equal(40, first.Count);
        Assert.Equal(1, server.Requests);
        string cached = FeatureExplanations.CachePath(url, dir.Path);
        Assert.True(File.Exists(cached));
        Assert.Equal(server.Body, File.ReadAllText(cached));

        server.Body = "[]";
        var second = await FeatureExplanations.LoadAsync(url, dir.Path, http);
        Assert.Equal(1, server.Requests);
        Assert.Equal("newline characters", second.Describe(219));
        Assert.Single(Directory.GetFiles(dir.Path));

        // Another URL is another cache entry.
        Assert.NotEqual(cached, FeatureExplanations.CachePath(new Uri(server.Prefix + "api/explanation/export?modelId=tiny&saeId=3-res"), dir.Path));
    }

    [Fact]
    public async Task FailedOrInvalidDownloadsLeaveNoCacheFile()
    {
        using var dir = new TempDir();
        using var server = new LocalServer();
        using var http = new HttpClient();
        var url = new Uri(server.Prefix + "export.json");

        server.Status = HttpStatusCode.NotFound;
        var notFound = await Assert.ThrowsAsync<FeatureExplanationsException>(() => FeatureExplanations.LoadAsync(url, dir.Path, http));
        Assert.Contains("404", notFound.Message);
        Assert.Equal(url.ToString(), notFound.Location);

        server.Status = HttpStatusCode.OK;
        server.Body = "<html>not json</html>";
        await Assert.ThrowsAsync<FeatureExplanationsException>(() => FeatureExplanations.LoadAsync(url, dir.Path, http));
        Assert.Empty(Directory.GetFiles(dir.Path));

        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => FeatureExplanations.LoadAsync(url, dir.Path, http, cts.Token));
        Assert.Empty(Directory.GetFiles(dir.Path));
        await Assert.ThrowsAsync<ArgumentException>(() => FeatureExplanations.LoadAsync(new Uri("file:///tmp/x.json"), dir.Path, http));
    }

    /// <summary>An HTTP server on 127.0.0.1 that serves one body to every request.</summary>
    private sealed class LocalServer : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _loop;
        private int _requests;

        public LocalServer()
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            Prefix = $"http://127.0.0.1:{port}/";
            _listener.Prefixes.Add(Prefix);
            _listener.Start();
            _loop = Task.Run(Serve);
        }

        public string Prefix { get; }

        public string Body { get; set; } = "[]";

        public HttpStatusCode Status { get; set; } = HttpStatusCode.OK;

        public int Requests => Volatile.Read(ref _requests);

        public void Dispose()
        {
            _listener.Stop();
            _listener.Close();
            try
            {
                _loop.Wait(TimeSpan.FromSeconds(5));
            }
            catch (AggregateException)
            {
            }
        }

        private async Task Serve()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext ctx;
                try
                {
                    ctx = await _listener.GetContextAsync();
                }
                catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }

                Interlocked.Increment(ref _requests);
                var bytes = System.Text.Encoding.UTF8.GetBytes(Body);
                ctx.Response.StatusCode = (int)Status;
                ctx.Response.ContentType = "application/json";
                ctx.Response.ContentLength64 = bytes.Length;
                await ctx.Response.OutputStream.WriteAsync(bytes);
                ctx.Response.Close();
            }
        }
    }
}
