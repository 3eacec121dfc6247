using Microsoft.Extensions.Logging;
using LlavaInterp.IO;

namespace LlavaInterp.Hub;

public sealed partial class HubClient
{
    // A FileShare.None lock held elsewhere: Windows reports ERROR_SHARING_VIOLATION / ERROR_LOCK_VIOLATION as HRESULTs,
    // .NET on Unix reports flock's errno, EWOULDBLOCK (11 on Linux, 35 on macOS and the BSDs).
    private static bool IsLockHeld(IOException e) => OperatingSystem.IsWindows()
        ? e.HResult is unchecked((int)0x80070020) or unchecked((int)0x80070021)
        : e.HResult == (OperatingSystem.IsLinux() ? 11 : 35);

    private readonly record struct Resolved(string Path, string Commit);

    private readonly record struct CacheHit(string? Path, string? Commit, bool KnownMissing);

    /// <summary>
    /// The heart of every download: resolve revision → commit and file → ETag, then reuse or fetch the blob and point the
    /// snapshot at it. Returns null only for an <paramref name="optional"/> file the repo does not have.
    /// </summary>
    private async Task<Resolved?> ResolveFileAsync(
        string repoId, string path, string revision, bool optional, IProgress<HubDownloadProgress>? progress, CancellationToken ct)
    {
        string[] parts = HubNames.SplitRepoPath(path, nameof(path));
        string storage = GetRepoCacheDir(repoId);
        ct.ThrowIfCancellationRequested();

        if (HubNames.IsCommitHash(revision))
        {
            string pinned = PointerPath(storage, revision, parts);
            if (File.Exists(pinned))
            {
                return new Resolved(pinned, revision);
            }

            // A commit never changes, so a recorded absence is final; optional files need no request then.
            if (optional && File.Exists(Path.Combine([storage, ".no_exist", revision, .. parts])))
            {
                return null;
            }
        }

        if (Options.Offline)
        {
            return FromCacheOffline(repoId, path, revision, storage, parts, optional);
        }

        FileMetadata meta;
        try
        {
            meta = await GetMetadataAsync(repoId, path, revision, ct).ConfigureAwait(false);
            if (meta.Error is { StatusCode: >= 500 } serverError)
            {
                throw serverError;
            }
        }
        catch (Exception e) when (IsUnreachable(e, ct))
        {
            var hit = LookupCache(storage, revision, parts);
            if (hit.Path is not null)
            {
                _logger.LogWarning(e, "Could not reach {Endpoint} for '{File}' of '{Repo}'; using the cached copy {Path}.",
                    Options.Endpoint, path, repoId, hit.Path);
                return new Resolved(hit.Path, hit.Commit!);
            }

            if (hit.KnownMissing && optional)
            {
                return null;
            }

            throw new HubException(
                $"Could not reach {Options.Endpoint} to fetch '{path}' of '{repoId}' at revision '{revision}', and the file is not in the cache "
                + $"{storage}: {e.Message}", repoId, path, revision, (e as HubException)?.StatusCode, e);
        }

        if (meta.Error is { } error)
        {
            if (error.IsMissingEntry && meta.Commit is { } absentAt && HubNames.IsSafeSegment(absentAt))
            {
                // Like huggingface_hub, remember the file is absent at this commit so offline runs know it too.
                WriteRef(storage, revision, absentAt);
                string marker = Path.Combine([storage, ".no_exist", absentAt, .. parts]);
                Directory.CreateDirectory(Path.GetDirectoryName(marker)!);
                File.WriteAllBytes(marker, []);
            }

            if (optional && error.IsMissingEntry)
            {
                return null;
            }

            throw error;
        }

        string commit = meta.Commit is { } c && HubNames.IsSafeSegment(c)
            ? c
            : throw new HubException(
                $"{Options.Endpoint} answered for '{path}' of '{repoId}' (revision '{revision}') without a usable X-Repo-Commit header "
                + $"('{meta.Commit}'); it does not look like a Hugging Face Hub server (check HF_ENDPOINT and proxies).",
                repoId, path, revision);
        string etag = meta.Etag is { } t && HubNames.IsSafeSegment(t)
            ? t
            : throw new HubException(
                $"{Options.Endpoint} answered for '{path}' of '{repoId}' (revision '{revision}') without a usable ETag ('{meta.Etag}'), "
                + "which names the file in the cache.", repoId, path, revision);

        WriteRef(storage, revision, commit);
        string pointer = PointerPath(storage, commit, parts);
        if (File.Exists(pointer))
        {
            return new Resolved(pointer, commit);
        }

        string blob = Path.Combine(storage, "blobs", etag);
        if (!File.Exists(blob))
        {
            await DownloadBlobAsync(repoId, path, revision, meta.Location, blob, etag, meta.Size, progress, ct).ConfigureAwait(false);
        }

        CreatePointer(blob, pointer);
        return new Resolved(pointer, commit);
    }

    /// <summary>Network trouble (not an HTTP refusal) lets a cached copy stand in, as in huggingface_hub.</summary>
    private static bool IsUnreachable(Exception e, CancellationToken ct) =>
        !ct.IsCancellationRequested
        && (e is HttpRequestException or TimeoutException || e is HubException { StatusCode: >= 500 });

    private Resolved? FromCacheOffline(string repoId, string path, string revision, string storage, string[] parts, bool optional)
    {
        var hit = LookupCache(storage, revision, parts);
        if (hit.Path is not null)
        {
            return new Resolved(hit.Path, hit.Commit!);
        }

        if (optional)
        {
            return null;
        }

        if (hit.KnownMissing)
        {
            throw new HubException(
                $"'{path}' does not exist in '{repoId}' at revision '{revision}' (commit {hit.Commit}); the cache {storage} records it as absent.",
                repoId, path, revision, 404);
        }

        string where = hit.Commit is null
            ? $"the cache {storage} has no commit for revision '{revision}' (no refs/{revision})"
            : $"snapshot {hit.Commit} in the cache {storage} does not hold it";
        throw new HubOfflineException(
            $"Offline mode is on (HF_HUB_OFFLINE / HubOptions.Offline) and '{path}' of '{repoId}' at revision '{revision}' is not cached: "
            + $"{where}. Fetch it once online, or turn offline mode off.", repoId, path, revision);
    }

    private static CacheHit LookupCache(string storage, string revision, string[] parts)
    {
        string? commit = null;
        if (HubNames.IsCommitHash(revision))
        {
            commit = revision;
        }
        else
        {
            string refPath = Path.Combine([storage, "refs", .. revision.Split('/')]);
            if (File.Exists(refPath))
            {
                string text = File.ReadAllText(refPath).Trim();
                commit = HubNames.IsSafeSegment(text) ? text : null;
            }
        }

        if (commit is null)
        {
            return new CacheHit(null, null, false);
        }

        string pointer = PointerPath(storage, commit, parts);
        if (File.Exists(pointer))
        {
            return new CacheHit(pointer, commit, false);
        }

        return new CacheHit(null, commit, File.Exists(Path.Combine([storage, ".no_exist", commit, .. parts])));
    }

    private static string PointerPath(string storage, string commit, string[] parts) =>
        Path.Combine([storage, "snapshots", commit, .. parts]);

    private static void WriteRef(string storage, string revision, string commit)
    {
        if (revision == commit)
        {
            return;
        }

        string refPath = Path.Combine([storage, "refs", .. revision.Split('/')]);
        if (File.Exists(refPath) && File.ReadAllText(refPath) == commit)
        {
            return;
        }

        Directory.CreateDirectory(Path.GetDirectoryName(refPath)!);
        AtomicFile.WriteAllText(refPath, commit);
    }

    /// <summary>
    /// snapshots/{commit}/{path} → ../../blobs/{etag} (relative, as huggingface_hub writes it), or a copy where the file
    /// system refuses symlinks. The copy goes through a temporary name so a half-copied file never looks complete.
    /// </summary>
    private void CreatePointer(string blob, string pointer)
    {
        string dir = Path.GetDirectoryName(pointer)!;
        Directory.CreateDirectory(dir);
        if (File.Exists(pointer))
        {
            return; // made by a concurrent caller for the same file
        }

        File.Delete(pointer); // a dangling link left after its blob was removed

        if (!_symlinksUnsupported)
        {
            try
            {
                File.CreateSymbolicLink(pointer, Path.GetRelativePath(dir, blob));
                return;
            }
            catch (IOException) when (File.Exists(pointer))
            {
                return; // another caller made the same pointer meanwhile
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
            {
                _symlinksUnsupported = true;
                _logger.LogWarning(e, "Symlinks are not supported in {CacheDir}; cached files are copied from blobs into snapshots instead.",
                    Options.CacheDir);
            }
        }

        AtomicFile.Copy(blob, pointer);
    }

    /// <summary>One downloader per blob across threads and processes: .locks/{repo folder}/{etag}.lock held exclusively.</summary>
    private async Task<FileStream> AcquireLockAsync(string lockPath, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        bool logged = false;
        while (true)
        {
            try
            {
                return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException e) when (IsLockHeld(e))
            {
                if (!logged)
                {
                    _logger.LogInformation("Waiting for another download of the same file to finish ({Lock}).", lockPath);
                    logged = true;
                }

                await Task.Delay(100, ct).ConfigureAwait(false);
            }
        }
    }
}
