using System.Net;
using System.Text.Json;
using LlavaInterp.TensorFiles;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace LlavaInterp.Hub;

/// <summary>
/// Resolves Hugging Face Hub repo ids to local files through the same cache layout as Python's huggingface_hub
/// (<c>models--{owner}--{name}/refs</c>, <c>snapshots/{commit}</c>, <c>blobs/{etag}</c>), so files fetched by either
/// are shared. Missing files are downloaded over HTTP(S) to <c>blobs/{etag}.incomplete</c> and renamed only once
/// complete; an interrupted download is resumed from its partial file on the next call.
/// </summary>
/// <remarks>
/// Online, every call asks the server (HEAD) for the revision's commit and the file's ETag, as huggingface_hub does,
/// unless the revision is a commit hash whose snapshot already holds the file. When the server cannot be reached the
/// cached file is used if there is one. In offline mode no request is made at all.
/// </remarks>
public sealed partial class HubClient : IDisposable
{
    private const int MaxRedirects = 10;

    // Files a model folder may carry besides weights and config.json; each may be absent from a repo.
    private static readonly string[] OptionalModelFiles =
    [
        "generation_config.json",
        "tokenizer.model",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "chat_template.json",
        "preprocessor_config.json",
        "processor_config.json",
    ];

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;
    private readonly Uri _endpoint;
    private readonly ILogger _logger;
    private volatile bool _symlinksUnsupported;

    /// <summary>Creates a client.</summary>
    /// <param name="options">Settings; <see langword="null"/> reads them from the environment (<see cref="HubOptions.FromEnvironment"/>).</param>
    /// <param name="logger">Receives download and cache-fallback messages; optional.</param>
    /// <exception cref="ArgumentException">The endpoint is not an absolute http(s) address, or the cache folder is empty.</exception>
    public HubClient(HubOptions? options = null, ILogger? logger = null)
    {
        Options = options ?? HubOptions.FromEnvironment();
        if (!Uri.TryCreate(Options.Endpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
        {
            throw new ArgumentException($"Hub endpoint '{Options.Endpoint}' is not an absolute http(s) address.", nameof(options));
        }

        if (string.IsNullOrWhiteSpace(Options.CacheDir))
        {
            throw new ArgumentException("The Hub cache folder (HubOptions.CacheDir) is empty.", nameof(options));
        }

        if (Options.Timeout <= TimeSpan.Zero)
        {
            throw new ArgumentException($"HubOptions.Timeout must be positive, got {Options.Timeout}.", nameof(options));
        }

        _endpoint = endpoint;
        _logger = logger ?? NullLogger.Instance;
        if (Options.HttpClient is { } client)
        {
            _http = client;
        }
        else
        {
            // Redirects are followed by hand: the commit and ETag of large files are on the redirect answer itself.
            var handler = new SocketsHttpHandler
            {
                AllowAutoRedirect = false,
                AutomaticDecompression = DecompressionMethods.None,
                ConnectTimeout = Options.Timeout,
            };
            _http = new HttpClient(handler) { Timeout = System.Threading.Timeout.InfiniteTimeSpan };
            _ownsHttp = true;
        }
    }

    /// <summary>The settings in use.</summary>
    public HubOptions Options { get; }

    /// <summary>
    /// Whether <paramref name="s"/> reads as a Hub repo id, <c>owner/name</c>, and is not an existing local file or folder
    /// (a local path always wins).
    /// </summary>
    /// <param name="s">A path or repo id.</param>
    /// <returns><see langword="true"/> for a repo id.</returns>
    public static bool LooksLikeRepoId(string s) =>
        !string.IsNullOrEmpty(s) && s.Count(c => c == '/') == 1 && HubNames.IsValidRepoId(s)
        && !Directory.Exists(s) && !File.Exists(s);

    /// <summary>The repo's folder in the cache, <c>{CacheDir}/models--{owner}--{name}</c> (it may not exist yet).</summary>
    /// <param name="repoId">The repo id.</param>
    /// <returns>The folder path.</returns>
    public string GetRepoCacheDir(string repoId)
    {
        HubNames.ValidateRepoId(repoId);
        return Path.Combine(Options.CacheDir, HubNames.RepoFolderName(repoId));
    }

    /// <summary>
    /// Looks a file up in the cache only (never the network): the snapshot path when the revision's commit is known
    /// (<c>refs/{revision}</c>, or the revision is a commit hash) and its snapshot holds the file; otherwise null.
    /// </summary>
    /// <param name="repoId">The repo id.</param>
    /// <param name="path">The file inside the repo (forward slashes; nested folders allowed).</param>
    /// <param name="revision">Branch, tag or commit; default <c>main</c>.</param>
    /// <returns>The cached file path, or <see langword="null"/>.</returns>
    public string? TryGetCachedFile(string repoId, string path, string? revision = null)
    {
        HubNames.ValidateRepoId(repoId);
        string[] parts = HubNames.SplitRepoPath(path, nameof(path));
        return LookupCache(GetRepoCacheDir(repoId), HubNames.ValidateRevision(revision), parts).Path;
    }

    /// <summary>
    /// Returns the local snapshot path of one file of a repo, downloading it into the cache when missing. Nested paths
    /// (e.g. <c>blocks.12.hook_resid_post/cfg.json</c>) keep their folders under the snapshot.
    /// </summary>
    /// <param name="repoId">The repo id, <c>owner/name</c>.</param>
    /// <param name="path">The file inside the repo, forward slashes.</param>
    /// <param name="revision">Branch, tag or commit hash; default <c>main</c>.</param>
    /// <param name="progress">Receives download progress; nothing is reported for cache hits.</param>
    /// <param name="cancellationToken">Cancels the request or download; a cancelled download leaves only its <c>.incomplete</c> file.</param>
    /// <returns><c>{cache}/models--{owner}--{name}/snapshots/{commit}/{path}</c>.</returns>
    /// <exception cref="HubException">HTTP error, unusable server answer or incomplete download.</exception>
    /// <exception cref="HubOfflineException">Offline and the file is not cached.</exception>
    public async Task<string> DownloadFileAsync(
        string repoId, string path, string? revision = null, IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        HubNames.ValidateRepoId(repoId);
        var resolved = await ResolveFileAsync(repoId, path, HubNames.ValidateRevision(revision), optional: false, progress, cancellationToken).ConfigureAwait(false);
        return resolved!.Value.Path;
    }

    /// <summary>
    /// Makes sure every listed file of a repo is in one snapshot and returns that snapshot folder. Entries are file paths
    /// or fnmatch-style patterns (<c>*</c>, <c>?</c>, <c>[..]</c>, or a <c>folder/</c> prefix), matched against the
    /// repo's file list (the Hub API online, the cached snapshot offline). All files come from one commit: the first
    /// file's (or the listing's) commit pins the rest.
    /// </summary>
    /// <param name="repoId">The repo id.</param>
    /// <param name="patternsOrPaths">File paths and/or patterns; at least one.</param>
    /// <param name="revision">Branch, tag or commit hash; default <c>main</c>.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels the work.</param>
    /// <returns><c>{cache}/models--{owner}--{name}/snapshots/{commit}</c>.</returns>
    /// <exception cref="HubException">A listed file is missing remotely, or another Hub error.</exception>
    /// <exception cref="HubOfflineException">Offline and a listed file is not cached.</exception>
    public async Task<string> SnapshotAsync(
        string repoId, IEnumerable<string> patternsOrPaths, string? revision = null,
        IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        HubNames.ValidateRepoId(repoId);
        ArgumentNullException.ThrowIfNull(patternsOrPaths);
        string rev = HubNames.ValidateRevision(revision);
        var entries = patternsOrPaths.ToList();
        if (entries.Count == 0)
        {
            throw new ArgumentException("Name at least one file or pattern to fetch.", nameof(patternsOrPaths));
        }

        var patterns = entries.Where(HubNames.IsPattern).ToList();
        var files = entries.Where(e => !HubNames.IsPattern(e)).ToList();
        foreach (string f in files)
        {
            HubNames.SplitRepoPath(f, nameof(patternsOrPaths));
        }

        string? commit = null;
        if (patterns.Count > 0)
        {
            (commit, var listing) = await ListRepoFilesAsync(repoId, rev, cancellationToken).ConfigureAwait(false);
            var globs = patterns.Select(HubNames.ToGlob).ToList();
            files.AddRange(listing.Where(f => globs.Any(g => g.IsMatch(f))));
        }

        foreach (string f in files.Distinct(StringComparer.Ordinal))
        {
            var r = await ResolveFileAsync(repoId, f, commit ?? rev, optional: false, progress, cancellationToken).ConfigureAwait(false);
            commit ??= r!.Value.Commit;
        }

        string folder = Path.Combine(GetRepoCacheDir(repoId), "snapshots", commit!);
        Directory.CreateDirectory(folder);
        return folder;
    }

    /// <summary>
    /// Fetches what loading a model needs and returns its snapshot folder: <c>config.json</c>; the optional
    /// <c>generation_config.json</c>, tokenizer and processor files (<c>tokenizer.model</c>, <c>tokenizer.json</c>,
    /// <c>tokenizer_config.json</c>, <c>special_tokens_map.json</c>, <c>added_tokens.json</c>, <c>chat_template.json</c>,
    /// <c>preprocessor_config.json</c>, <c>processor_config.json</c>; a 404 is skipped); then either
    /// <c>model.safetensors.index.json</c> and every shard its <c>weight_map</c> names, or <c>model.safetensors</c>.
    /// </summary>
    /// <param name="repoId">The repo id.</param>
    /// <param name="revision">Branch, tag or commit hash; default <c>main</c>.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels the work.</param>
    /// <returns>The snapshot folder.</returns>
    /// <exception cref="HubException">A required file is missing or another Hub error.</exception>
    /// <exception cref="HubOfflineException">Offline and a required file is not cached.</exception>
    /// <exception cref="TensorFileException">The shard index is malformed.</exception>
    public async Task<string> DownloadModelAsync(
        string repoId, string? revision = null, IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        HubNames.ValidateRepoId(repoId);
        string rev = HubNames.ValidateRevision(revision);
        var config = await ResolveFileAsync(repoId, "config.json", rev, optional: false, progress, cancellationToken).ConfigureAwait(false);
        string commit = config!.Value.Commit;
        foreach (string f in OptionalModelFiles)
        {
            await ResolveFileAsync(repoId, f, commit, optional: true, progress, cancellationToken).ConfigureAwait(false);
        }

        var index = await ResolveFileAsync(repoId, "model.safetensors.index.json", commit, optional: true, progress, cancellationToken).ConfigureAwait(false);
        if (index is { } idx)
        {
            foreach (string shard in ReadShardNames(idx.Path))
            {
                await ResolveFileAsync(repoId, shard, commit, optional: false, progress, cancellationToken).ConfigureAwait(false);
            }
        }
        else
        {
            await ResolveFileAsync(repoId, "model.safetensors", commit, optional: false, progress, cancellationToken).ConfigureAwait(false);
        }

        return Path.Combine(GetRepoCacheDir(repoId), "snapshots", commit);
    }

    /// <summary>
    /// Returns <paramref name="pathOrRepoId"/> unchanged when it is an existing local file or folder; otherwise, when it
    /// reads as <c>owner/name</c>, downloads the model (<see cref="DownloadModelAsync"/>) and returns its snapshot folder.
    /// </summary>
    /// <param name="pathOrRepoId">A local path or a repo id.</param>
    /// <param name="revision">Branch, tag or commit hash for a repo id; default <c>main</c>.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels the work.</param>
    /// <returns>A local path.</returns>
    /// <exception cref="DirectoryNotFoundException">Neither an existing path nor a repo id.</exception>
    public async Task<string> ResolveAsync(
        string pathOrRepoId, string? revision = null, IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pathOrRepoId);
        if (Directory.Exists(pathOrRepoId) || File.Exists(pathOrRepoId))
        {
            return pathOrRepoId;
        }

        if (LooksLikeRepoId(pathOrRepoId))
        {
            return await DownloadModelAsync(pathOrRepoId, revision, progress, cancellationToken).ConfigureAwait(false);
        }

        throw new DirectoryNotFoundException(
            $"'{pathOrRepoId}' is neither an existing local file or folder nor a Hugging Face repo id of the form 'owner/name'.");
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    private static IReadOnlyList<string> ReadShardNames(string indexPath)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            if (doc.RootElement.ValueKind != JsonValueKind.Object
                || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
            {
                throw new TensorFileException(indexPath, null, "the shard index has no 'weight_map' object.");
            }

            var shards = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                string? shard = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                if (shard is null)
                {
                    throw new TensorFileException(indexPath, entry.Name, "the weight_map value is not a file name.");
                }

                try
                {
                    HubNames.SplitRepoPath(shard, nameof(shard));
                }
                catch (ArgumentException)
                {
                    throw new TensorFileException(indexPath, entry.Name, $"the weight_map names shard '{shard}', which is not a valid file path in the repo.");
                }

                shards.Add(shard);
            }

            if (shards.Count == 0)
            {
                throw new TensorFileException(indexPath, null, "the shard index's weight_map is empty.");
            }

            return [.. shards];
        }
        catch (JsonException e)
        {
            throw new TensorFileException(indexPath, null, $"the shard index is not valid JSON: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            // System.Text.Json reports invalid UTF-8 and unpaired surrogates inside strings only when they are read.
            throw new TensorFileException(indexPath, null, $"the shard index holds a string that is not valid Unicode text: {e.Message}", e);
        }
    }
}
