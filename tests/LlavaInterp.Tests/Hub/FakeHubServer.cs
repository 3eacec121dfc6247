using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace LlavaInterp.Tests.Hub;

/// <summary>How the fake Hub misbehaves for one file.</summary>
public enum HubFault
{
    /// <summary>Serve normally.</summary>
    None,

    /// <summary>404 EntryNotFound on every request.</summary>
    NotFound,

    /// <summary>500 on every request.</summary>
    ServerError,

    /// <summary>Answer without X-Repo-Commit.</summary>
    NoCommitHeader,

    /// <summary>Once: announce the full length, send half, then drop the connection.</summary>
    AbortMidBody,

    /// <summary>Once: a well-formed answer whose body (and Content-Length) is half the announced file size.</summary>
    ShortBody,

    /// <summary>Once: send half the body, then hang until the client gives up or the server stops.</summary>
    Stall,
}

/// <summary>One request as the fake Hub saw it.</summary>
public sealed record HubRequest(string Method, string RawUrl, string? Authorization, string? Range);

/// <summary>
/// A minimal Hugging Face Hub on 127.0.0.1 (HttpListener, free port): serves one repo's files under
/// /{repo}/resolve/{revision}/{path} with X-Repo-Commit and ETag headers; *.safetensors files go the LFS way (302 to
/// /cdn/{sha256} with X-Linked-Etag/X-Linked-Size); /api/models/{repo}/revision/{rev} lists files. Checks the bearer token
/// when one is required, answers 404 with X-Error-Code like the Hub, supports Range, and can inject faults.
/// </summary>
public sealed class FakeHubServer : IDisposable
{
    /// <summary>The commit every revision resolves to.</summary>
    public const string Commit = "5d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a";

    private readonly HttpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly Dictionary<string, byte[]> _files;
    private readonly Dictionary<string, string> _bySha = new(StringComparer.Ordinal);

    /// <summary>Starts serving <paramref name="files"/> (repo path → bytes) as <paramref name="repoId"/>.</summary>
    public FakeHubServer(string repoId, IReadOnlyDictionary<string, byte[]> files, string? requiredToken = null)
    {
        RepoId = repoId;
        RequiredToken = requiredToken;
        _files = new Dictionary<string, byte[]>(files, StringComparer.Ordinal);
        foreach (var (path, bytes) in _files)
        {
            _bySha[Sha256(bytes)] = path;
        }

        (_listener, Url) = Listen();
        _loop = Task.Run(AcceptLoopAsync);
    }

    /// <summary>Base address, e.g. http://127.0.0.1:41234.</summary>
    public string Url { get; }

    /// <summary>The repo id served.</summary>
    public string RepoId { get; }

    /// <summary>The token every Hub request must carry, or null.</summary>
    public string? RequiredToken { get; }

    /// <summary>Per-file faults (repo path → fault); one-shot body faults are removed when they fire.</summary>
    public ConcurrentDictionary<string, HubFault> Faults { get; } = new(StringComparer.Ordinal);

    /// <summary>Old repo ids that redirect (relative 307) to <see cref="RepoId"/>.</summary>
    public ConcurrentDictionary<string, bool> RenamedFrom { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Plain files served by GET at their exact path (e.g. <c>/v1/m/s/explanations/batch-0.jsonl.gz</c>), outside the Hub
    /// layout and without a token check: a dataset bucket or JSON API on the same server. Unknown paths answer 404.
    /// </summary>
    public ConcurrentDictionary<string, byte[]> PlainFiles { get; } = new(StringComparer.Ordinal);

    /// <summary>Every request received, in arrival order.</summary>
    public ConcurrentQueue<HubRequest> Requests { get; } = new();

    /// <summary>Completed when a <see cref="HubFault.Stall"/> answer has sent its first half.</summary>
    public TaskCompletionSource StallReached { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Reads a folder (recursively) as repo files with forward-slash paths.</summary>
    public static Dictionary<string, byte[]> FilesOf(string folder, string prefix = "") =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).ToDictionary(
            f => prefix + Path.GetRelativePath(folder, f).Replace(Path.DirectorySeparatorChar, '/'),
            File.ReadAllBytes,
            StringComparer.Ordinal);

    /// <summary>The ETag the cache should use for a file: sha256 for LFS (*.safetensors) files, git blob sha1 otherwise.</summary>
    public static string EtagOf(string path, byte[] bytes) => IsLfs(path) ? Sha256(bytes) : GitSha1(bytes);

    /// <summary>The bytes served for a path.</summary>
    public byte[] FileBytes(string path) => _files[path];

    /// <summary>All served paths.</summary>
    public IReadOnlyCollection<string> Paths => _files.Keys;

    /// <summary>Number of requests with the given method.</summary>
    public int Count(string method) => Requests.Count(r => r.Method == method);

    /// <summary>Stops listening: later connections are refused.</summary>
    public void Dispose()
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        _stop.Cancel();
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

    private static bool IsLfs(string path) => path.EndsWith(".safetensors", StringComparison.Ordinal);

    private static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static string GitSha1(byte[] bytes)
    {
        byte[] head = Encoding.ASCII.GetBytes($"blob {bytes.Length}\0");
        return Convert.ToHexStringLower(SHA1.HashData([.. head, .. bytes]));
    }

    private static (HttpListener, string) Listen()
    {
        for (int attempt = 0; ; attempt++)
        {
            var probe = new TcpListener(IPAddress.Loopback, 0);
            probe.Start();
            int port = ((IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            var listener = new HttpListener();
            string url = $"http://127.0.0.1:{port}";
            listener.Prefixes.Add(url + "/");
            try
            {
                listener.Start();
                return (listener, url);
            }
            catch (HttpListenerException) when (attempt < 10)
            {
                listener.Close(); // the port was taken between probe and start: try another
            }
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext ctx;
            try
            {
                ctx = await _listener.GetContextAsync();
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (HttpListenerException)
            {
                continue;
            }

            _ = Task.Run(async () =>
            {
                try
                {
                    await HandleAsync(ctx);
                }
                catch (Exception)
                {
                    try
                    {
                        ctx.Response.Abort();
                    }
                    catch (Exception)
                    {
                    }
                }
            });
        }
    }

    private async Task HandleAsync(HttpListenerContext ctx)
    {
        var req = ctx.Request;
        var res = ctx.Response;
        string raw = req.RawUrl ?? "/";
        Requests.Enqueue(new HubRequest(req.HttpMethod, raw, req.Headers["Authorization"], req.Headers["Range"]));
        string[] seg = raw.Split('?')[0].Split('/');

        if (seg.Length == 3 && seg[1] == "cdn" && _bySha.TryGetValue(seg[2], out string? lfsPath))
        {
            // The CDN: signed URLs in real life, so no token check.
            await ServeBodyAsync(ctx, lfsPath);
            return;
        }

        string plainPath = raw.Split('?')[0];
        if (PlainFiles.TryGetValue(plainPath, out byte[]? plain))
        {
            res.StatusCode = 200;
            res.ContentLength64 = plain.Length;
            await res.OutputStream.WriteAsync(plain);
            res.Close();
            return;
        }

        if (RequiredToken is not null && req.Headers["Authorization"] != "Bearer " + RequiredToken)
        {
            Finish(res, 401, ("X-Error-Message", "Invalid credentials in Authorization header"));
            return;
        }

        if (seg.Length == 7 && seg[1] == "api" && seg[2] == "models" && seg[5] == "revision")
        {
            string repo = seg[3] + "/" + seg[4];
            if (repo != RepoId)
            {
                Finish(res, 404, ("X-Error-Code", "RepoNotFound"));
                return;
            }

            if (!KnownRevision(Uri.UnescapeDataString(seg[6])))
            {
                Finish(res, 404, ("X-Error-Code", "RevisionNotFound"));
                return;
            }

            byte[] json = JsonSerializer.SerializeToUtf8Bytes(new
            {
                id = RepoId,
                sha = Commit,
                siblings = _files.Keys.Order(StringComparer.Ordinal).Select(k => new { rfilename = k }).ToArray(),
            });
            res.StatusCode = 200;
            res.ContentType = "application/json";
            res.ContentLength64 = json.Length;
            await res.OutputStream.WriteAsync(json);
            res.Close();
            return;
        }

        if (seg.Length < 6 || seg[3] != "resolve")
        {
            Finish(res, 404);
            return;
        }

        string repoId = seg[1] + "/" + seg[2];
        string rawRest = string.Join('/', seg[4..]);
        if (RenamedFrom.ContainsKey(repoId))
        {
            Finish(res, 307, ("Location", $"/{RepoId}/resolve/{rawRest}"));
            return;
        }

        if (repoId != RepoId)
        {
            Finish(res, 404, ("X-Error-Code", "RepoNotFound"), ("X-Error-Message", "Repository Not Found"));
            return;
        }

        if (!KnownRevision(Uri.UnescapeDataString(seg[4])))
        {
            Finish(res, 404, ("X-Error-Code", "RevisionNotFound"), ("X-Error-Message", "Invalid rev id"));
            return;
        }

        string path = string.Join('/', seg[5..].Select(Uri.UnescapeDataString));
        Faults.TryGetValue(path, out var fault);
        if (!_files.TryGetValue(path, out byte[]? bytes) || fault == HubFault.NotFound)
        {
            Finish(res, 404, ("X-Error-Code", "EntryNotFound"), ("X-Repo-Commit", Commit), ("X-Error-Message", "Entry not found"));
            return;
        }

        if (fault == HubFault.ServerError)
        {
            Finish(res, 500);
            return;
        }

        if (fault != HubFault.NoCommitHeader)
        {
            res.Headers["X-Repo-Commit"] = Commit;
        }

        if (IsLfs(path))
        {
            string sha = Sha256(bytes);
            res.Headers["X-Linked-Etag"] = $"\"{sha}\"";
            res.Headers["X-Linked-Size"] = bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
            res.Headers["ETag"] = "\"pointer-etag-not-the-blob\"";
            Finish(res, 302, ("Location", $"{Url}/cdn/{sha}"));
            return;
        }

        // Weak ETags for JSON, as the Hub sends for compressible files; strong ones otherwise.
        string etag = GitSha1(bytes);
        res.Headers["ETag"] = path.EndsWith(".json", StringComparison.Ordinal) ? $"W/\"{etag}\"" : $"\"{etag}\"";
        await ServeBodyAsync(ctx, path);
    }

    private static bool KnownRevision(string rev) => rev is "main" or Commit or "refs/pr/1";

    private async Task ServeBodyAsync(HttpListenerContext ctx, string path)
    {
        var req = ctx.Request;
        var res = ctx.Response;
        byte[] bytes = _files[path];
        long from = 0;
        string? range = req.Headers["Range"];
        if (range is not null && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            from = long.Parse(range["bytes=".Length..^1], System.Globalization.CultureInfo.InvariantCulture);
            if (from >= bytes.Length)
            {
                Finish(res, 416);
                return;
            }

            res.StatusCode = 206;
            res.Headers["Content-Range"] = $"bytes {from}-{bytes.Length - 1}/{bytes.Length}";
        }
        else
        {
            res.StatusCode = 200;
        }

        var body = bytes.AsMemory((int)from);
        res.ContentType = "application/octet-stream";
        if (req.HttpMethod == "HEAD")
        {
            res.ContentLength64 = body.Length;
            res.Close();
            return;
        }

        HubFault fault = HubFault.None;
        foreach (var oneShot in new[] { HubFault.AbortMidBody, HubFault.ShortBody, HubFault.Stall })
        {
            if (Faults.TryRemove(new KeyValuePair<string, HubFault>(path, oneShot)))
            {
                fault = oneShot;
            }
        }

        int half = body.Length / 2;
        switch (fault)
        {
            case HubFault.AbortMidBody:
                res.ContentLength64 = body.Length;
                await res.OutputStream.WriteAsync(body[..half]);
                await res.OutputStream.FlushAsync();
                res.Abort();
                return;
            case HubFault.ShortBody:
                res.ContentLength64 = half;
                await res.OutputStream.WriteAsync(body[..half]);
                res.Close();
                return;
            case HubFault.Stall:
                res.ContentLength64 = body.Length;
                await res.OutputStream.WriteAsync(body[..half]);
                await res.OutputStream.FlushAsync();
                StallReached.TrySetResult();
                try
                {
                    await Task.Delay(Timeout.Infinite, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                }

                res.Abort();
                return;
            default:
                res.ContentLength64 = body.Length;
                await res.OutputStream.WriteAsync(body);
                res.Close();
                return;
        }
    }

    private static void Finish(HttpListenerResponse res, int status, params (string Name, string Value)[] headers)
    {
        res.StatusCode = status;
        foreach (var (name, value) in headers)
        {
            res.Headers[name] = value;
        }

        res.ContentLength64 = 0;
        res.Close();
    }
}
