using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace LlavaInterp.Hub;

public sealed partial class HubClient
{
    private const int BufferSize = 1 << 18;

    private static readonly string UserAgent =
        "LlavaInterp/" + (typeof(HubClient).Assembly.GetName().Version?.ToString(3) ?? "0") + " (huggingface_hub cache compatible)";

    /// <summary>What a HEAD on the resolve URL says: commit, normalized ETag, size, where to GET; or the HTTP error.</summary>
    private sealed record FileMetadata(string? Commit, string? Etag, long? Size, Uri Location, HubException? Error);

    private async Task<FileMetadata> GetMetadataAsync(string repoId, string path, string revision, CancellationToken ct)
    {
        Uri url = HubNames.ResolveUrl(Options.Endpoint, repoId, revision, path);
        for (int hop = 0; ; hop++)
        {
            using var request = NewRequest(HttpMethod.Head, url);
            using var response = await SendAsync(request, ct).ConfigureAwait(false);
            int status = (int)response.StatusCode;
            Uri? location = response.Headers.Location;
            bool redirect = status is >= 300 and < 400 && location is not null;
            if (redirect && !location!.IsAbsoluteUri)
            {
                // A relative redirect stays on the Hub (a renamed repo) and is followed, as huggingface_hub does; an
                // absolute one goes to the CDN, and the headers we need are on this answer.
                url = hop < MaxRedirects ? new Uri(url, location) : throw TooManyRedirects(repoId, path, revision);
                continue;
            }

            string? commit = Header(response, "X-Repo-Commit");
            if (status >= 400 || (status >= 300 && !redirect))
            {
                return new FileMetadata(commit, null, null, url, HttpError(response, repoId, path, revision));
            }

            string? etag = HubNames.NormalizeEtag(Header(response, "X-Linked-Etag") ?? Header(response, "ETag"));
            // On a redirect Content-Length is the redirect body's; only X-Linked-Size gives the file's size there.
            long? size = ParseLong(Header(response, "X-Linked-Size")) ?? (redirect ? null : response.Content.Headers.ContentLength);
            return new FileMetadata(commit, etag, size, redirect ? location! : url, null);
        }
    }

    private async Task DownloadBlobAsync(
        string repoId, string path, string revision, Uri location, string blob, string etag, long? size,
        IProgress<HubDownloadProgress>? progress, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(blob)!);
        string lockPath = Path.Combine(Options.CacheDir, ".locks", HubNames.RepoFolderName(repoId), etag + ".lock");
        await using var held = await AcquireLockAsync(lockPath, ct).ConfigureAwait(false);
        if (File.Exists(blob))
        {
            return; // fetched by whoever held the lock before us
        }

        string incomplete = blob + ".incomplete";
        long have = File.Exists(incomplete) ? new FileInfo(incomplete).Length : 0;
        if (size is long announced && have > announced)
        {
            File.Delete(incomplete);
            have = 0;
        }

        if (size is not long full || have != full)
        {
            _logger.LogInformation("Downloading '{File}' of '{Repo}' ({Size} bytes{Resume}) from {Url}.",
                path, repoId, size?.ToString(CultureInfo.InvariantCulture) ?? "unknown", have > 0 ? $", resuming at {have}" : "", location);
            try
            {
                await FetchToFileAsync(location, incomplete, have, size, repoId, path, revision, progress, ct).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or HttpRequestException or TimeoutException)
            {
                long got = File.Exists(incomplete) ? new FileInfo(incomplete).Length : 0;
                throw new HubException(
                    $"Download of '{path}' of '{repoId}' (revision '{revision}') failed after {got} of {SizeText(size)} bytes: {e.Message} "
                    + $"The partial file {incomplete} is kept and resumed on the next try.", repoId, path, revision, null, e);
            }
        }

        long final = new FileInfo(incomplete).Length;
        if (size is long expected && final != expected)
        {
            if (final > expected)
            {
                File.Delete(incomplete);
            }

            throw new HubException(
                $"Download of '{path}' of '{repoId}' (revision '{revision}') ended after {final} of the {expected} bytes the server announced; "
                + "the file was not stored.", repoId, path, revision);
        }

        File.Move(incomplete, blob, overwrite: true);
        _logger.LogInformation("Stored '{File}' of '{Repo}' as {Blob}.", path, repoId, blob);
    }

    private async Task FetchToFileAsync(
        Uri url, string target, long have, long? size, string repoId, string path, string revision,
        IProgress<HubDownloadProgress>? progress, CancellationToken ct)
    {
        for (int hop = 0; ; hop++)
        {
            if (hop > MaxRedirects)
            {
                throw TooManyRedirects(repoId, path, revision);
            }

            using var request = NewRequest(HttpMethod.Get, url);
            if (have > 0)
            {
                request.Headers.Range = new RangeHeaderValue(have, null);
            }

            using var response = await SendAsync(request, ct).ConfigureAwait(false);
            int status = (int)response.StatusCode;
            if (status is >= 300 and < 400 && response.Headers.Location is { } next)
            {
                url = new Uri(url, next); // downloads follow the CDN; NewRequest drops the token off the Hub's host
                continue;
            }

            bool resumes = have > 0 && status == 206 && response.Content.Headers.ContentRange?.From == have;
            if (have > 0 && !resumes && status is 206 or 416)
            {
                have = 0; // the partial file cannot be continued from this answer: start over
                continue;
            }

            if (!response.IsSuccessStatusCode)
            {
                throw HttpError(response, repoId, path, revision);
            }

            if (!resumes)
            {
                have = 0;
            }

            long? total = size ?? (response.Content.Headers.ContentLength is long len ? len + have : null);
            await CopyBodyAsync(response, target, have, total, path, progress, ct).ConfigureAwait(false);
            return;
        }
    }

    private async Task CopyBodyAsync(
        HttpResponseMessage response, string target, long have, long? total, string path,
        IProgress<HubDownloadProgress>? progress, CancellationToken ct)
    {
        var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        await using var bodyScope = body.ConfigureAwait(false);
        var file = new FileStream(target, have > 0 ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, BufferSize, useAsync: true);
        await using var fileScope = file.ConfigureAwait(false);
        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
        try
        {
            long done = have;
            progress?.Report(new HubDownloadProgress(path, done, total));
            var sinceReport = Stopwatch.StartNew();
            while (true)
            {
                // Each read gets the full timeout: a slow but moving download is fine, a stalled one is not.
                stall.CancelAfter(Options.Timeout);
                int n;
                try
                {
                    n = await body.ReadAsync(buffer.AsMemory(0, BufferSize), stall.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
                {
                    throw new TimeoutException($"The server sent nothing for {Options.Timeout.TotalSeconds:0.###} s.", e);
                }

                if (n == 0)
                {
                    break;
                }

                await file.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                done += n;
                if (sinceReport.ElapsedMilliseconds >= 100)
                {
                    progress?.Report(new HubDownloadProgress(path, done, total));
                    sinceReport.Restart();
                }
            }

            await file.FlushAsync(ct).ConfigureAwait(false);
            progress?.Report(new HubDownloadProgress(path, done, total));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>The repo's files and commit at a revision: the Hub API online, the cached snapshot offline or unreachable.</summary>
    private async Task<(string Commit, IReadOnlyList<string> Files)> ListRepoFilesAsync(string repoId, string revision, CancellationToken ct)
    {
        if (Options.Offline)
        {
            return ListCachedSnapshot(repoId, revision);
        }

        try
        {
            var listing = await ListRemoteAsync(repoId, revision, ct).ConfigureAwait(false);
            WriteRef(GetRepoCacheDir(repoId), revision, listing.Commit); // so offline runs resolve the revision too
            return listing;
        }
        catch (Exception e) when (IsUnreachable(e, ct))
        {
            try
            {
                var cached = ListCachedSnapshot(repoId, revision);
                _logger.LogWarning(e, "Could not reach {Endpoint} to list '{Repo}'; using the cached snapshot {Commit}.",
                    Options.Endpoint, repoId, cached.Commit);
                return cached;
            }
            catch (HubOfflineException)
            {
                throw new HubException(
                    $"Could not reach {Options.Endpoint} to list the files of '{repoId}' at revision '{revision}', and no snapshot of it is cached: {e.Message}",
                    repoId, null, revision, (e as HubException)?.StatusCode, e);
            }
        }
    }

    private async Task<(string Commit, IReadOnlyList<string> Files)> ListRemoteAsync(string repoId, string revision, CancellationToken ct)
    {
        Uri url = HubNames.ApiRevisionUrl(Options.Endpoint, repoId, revision);
        for (int hop = 0; ; hop++)
        {
            using var request = NewRequest(HttpMethod.Get, url);
            using var response = await SendAsync(request, ct).ConfigureAwait(false);
            int status = (int)response.StatusCode;
            if (status is >= 300 and < 400 && response.Headers.Location is { } next)
            {
                url = hop < MaxRedirects ? new Uri(url, next) : throw TooManyRedirects(repoId, null, revision);
                continue;
            }

            if (!response.IsSuccessStatusCode)
            {
                throw HttpError(response, repoId, null, revision);
            }

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(Options.Timeout);
            byte[] json;
            try
            {
                json = await response.Content.ReadAsByteArrayAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException($"The file list of '{repoId}' did not arrive within {Options.Timeout.TotalSeconds:0.###} s.", e);
            }

            return ParseListing(json, repoId, revision);
        }
    }

    private (string Commit, IReadOnlyList<string> Files) ParseListing(byte[] json, string repoId, string revision)
    {
        HubException Bad(string why, Exception? inner = null) => new(
            $"{Options.Endpoint} sent an unusable file list for '{repoId}' at revision '{revision}': {why}", repoId, null, revision, null, inner);
        try
        {
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            string? sha = root.ValueKind == JsonValueKind.Object && root.TryGetProperty("sha", out var s) && s.ValueKind == JsonValueKind.String
                ? s.GetString() : null;
            if (!HubNames.IsSafeSegment(sha))
            {
                throw Bad($"no usable 'sha' ('{sha}').");
            }

            if (!root.TryGetProperty("siblings", out var siblings) || siblings.ValueKind != JsonValueKind.Array)
            {
                throw Bad("no 'siblings' array.");
            }

            var files = new List<string>();
            foreach (var sibling in siblings.EnumerateArray())
            {
                if (sibling.ValueKind == JsonValueKind.Object && sibling.TryGetProperty("rfilename", out var name)
                    && name.ValueKind == JsonValueKind.String && name.GetString() is { } f)
                {
                    files.Add(f);
                }
            }

            return (sha!, files);
        }
        catch (JsonException e)
        {
            throw Bad(e.Message, e);
        }
    }

    private (string Commit, IReadOnlyList<string> Files) ListCachedSnapshot(string repoId, string revision)
    {
        string storage = GetRepoCacheDir(repoId);
        string? commit = LookupCache(storage, revision, ["."]).Commit;
        string? folder = commit is null ? null : Path.Combine(storage, "snapshots", commit);
        if (folder is null || !Directory.Exists(folder))
        {
            throw new HubOfflineException(
                $"Cannot list the files of '{repoId}' at revision '{revision}' without the network: the cache {storage} holds no snapshot "
                + "for that revision.", repoId, null, revision);
        }

        var files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(folder, f).Replace(Path.DirectorySeparatorChar, '/'))
            .Order(StringComparer.Ordinal)
            .ToList();
        return (commit!, files);
    }

    private HttpRequestMessage NewRequest(HttpMethod method, Uri url)
    {
        var request = new HttpRequestMessage(method, url);
        request.Headers.TryAddWithoutValidation("User-Agent", UserAgent);
        // The size check compares raw bytes, so no transfer compression.
        request.Headers.TryAddWithoutValidation("Accept-Encoding", "identity");
        if (!string.IsNullOrEmpty(Options.Token) && SameOrigin(url, _endpoint))
        {
            // The token goes to the Hub only, never to a CDN or other host a redirect points at.
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Options.Token);
        }

        return request;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(Options.Timeout);
        try
        {
            return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException(
                $"{request.Method} {request.RequestUri} got no answer within {Options.Timeout.TotalSeconds:0.###} s.", e);
        }
    }

    private HubException HttpError(HttpResponseMessage response, string repoId, string? path, string revision)
    {
        int status = (int)response.StatusCode;
        string? code = Header(response, "X-Error-Code");
        string? serverMessage = Header(response, "X-Error-Message");
        string what = path is null ? $"'{repoId}'" : $"'{path}' of '{repoId}'";
        string said = serverMessage is null ? "" : $" The server says: {serverMessage}";
        bool tokenSent = !string.IsNullOrEmpty(Options.Token);
        bool missingEntry = false;
        string message;
        switch (status)
        {
            case 401 or 403:
                message = $"Access to {what} at revision '{revision}' was refused (HTTP {status}{(code is null ? "" : ", " + code)}). "
                    + (code == "GatedRepo"
                        ? "The repository is gated: accept its terms on its Hub page with your account, then use that account's token. "
                        : "The repository may be private or gated, or may not exist. ")
                    + (tokenSent
                        ? "A token was sent (HubOptions.Token / HF_TOKEN) but not accepted: check that it is valid and has access to the repository."
                        : "No token was sent: set HF_TOKEN (or write the token to $HF_HOME/token, or set HubOptions.Token).");
                break;
            case 404 when code == "RepoNotFound":
                message = $"Repository '{repoId}' was not found on {Options.Endpoint} (HTTP 404). Check the id; a private repository also "
                    + $"answers 404 to requests without a valid token (set HF_TOKEN).{(path is null ? "" : $" (fetching '{path}')")}";
                break;
            case 404 when code == "RevisionNotFound":
                message = $"Revision '{revision}' was not found in repository '{repoId}' (HTTP 404){(path is null ? "" : $" while fetching '{path}'")}.";
                break;
            case 404:
                message = $"{(path is null ? "The file list" : $"'{path}'")} was not found in repository '{repoId}' at revision '{revision}' (HTTP 404).";
                missingEntry = path is not null;
                break;
            default:
                message = $"{Options.Endpoint} answered HTTP {status} ({response.ReasonPhrase}) for {what} at revision '{revision}'.";
                break;
        }

        return new HubException(message + said, repoId, path, revision, status) { IsMissingEntry = missingEntry };
    }

    private static HubException TooManyRedirects(string repoId, string? path, string revision) =>
        new($"More than {MaxRedirects} redirects while fetching {(path is null ? "the file list" : $"'{path}'")} of '{repoId}' at revision '{revision}'.",
            repoId, path, revision);

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) || response.Content.Headers.TryGetValues(name, out values)
            ? values.FirstOrDefault()
            : null;

    private static long? ParseLong(string? s) =>
        long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out long v) ? v : null;

    private static string SizeText(long? size) => size?.ToString(CultureInfo.InvariantCulture) ?? "an unknown number of";

    private static bool SameOrigin(Uri a, Uri b) =>
        string.Equals(a.Scheme, b.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(a.IdnHost, b.IdnHost, StringComparison.OrdinalIgnoreCase) && a.Port == b.Port;
}
