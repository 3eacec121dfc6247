using LlavaInterp.Hub;

namespace LlavaInterp.Sae;

/// <summary>Where a pretrained SAE was found: its local folder and, for a SAELens release, the release and SAE id.</summary>
/// <param name="Folder">The local SAELens folder (<c>cfg.json</c> + <c>sae_weights.safetensors</c>).</param>
/// <param name="Release">The SAELens release when named through <see cref="SaeReleases"/>, else null.</param>
/// <param name="SaeId">The SAE id within <paramref name="Release"/>, else null.</param>
public sealed record SaeLocation(string Folder, string? Release, string? SaeId);

public sealed partial class SparseAutoencoder
{
    /// <summary>
    /// Loads an SAE from a local SAELens folder, a SAELens release (<c>release/sae_id</c>, or the release with
    /// <paramref name="saeId"/>; the release's metadata such as its norm scaling factor is applied), or a Hugging Face
    /// repo id holding an SAELens folder at its root or at the sub-folder <paramref name="saeId"/>. Downloads go through
    /// <see cref="HubClient"/> (its cache, offline mode and token), as for the model.
    /// </summary>
    /// <param name="folderOrReleaseOrRepo">A folder, <c>release/sae_id</c>, a release name, or a repo id.</param>
    /// <param name="saeId">The SAE id of a release, or the sub-folder of a repo; null when part of the first argument or not needed.</param>
    /// <param name="options">Load options (dtype, device, …); release metadata is added to them.</param>
    /// <param name="hub">Hub settings; null reads them from the environment.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels downloads.</param>
    /// <exception cref="ArgumentException">The argument names no folder, known release or repo id, or is a file.</exception>
    /// <exception cref="FileNotFoundException">A local folder has no <c>cfg.json</c>.</exception>
    /// <exception cref="HubException">A download fails.</exception>
    public static async Task<SparseAutoencoder> FromPretrainedAsync(
        string folderOrReleaseOrRepo, string? saeId = null, SaeLoadOptions? options = null, HubOptions? hub = null,
        IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var location = await LocateAsync(folderOrReleaseOrRepo, saeId, hub, progress, cancellationToken).ConfigureAwait(false);
        var load = options ?? new SaeLoadOptions();
        if (location.Release is not null)
        {
            load = load with { Release = location.Release, SaeId = location.SaeId };
        }

        // Reading and converting the weights blocks: keep it off the caller's thread.
        return await Task.Run(() => Load(location.Folder, load), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Resolves the arguments of <see cref="FromPretrainedAsync"/> to a local folder, downloading the SAE's
    /// <c>cfg.json</c> and weights into the hub cache when they are remote.
    /// </summary>
    /// <param name="folderOrReleaseOrRepo">A folder, <c>release/sae_id</c>, a release name, or a repo id.</param>
    /// <param name="saeId">The SAE id of a release, or the sub-folder of a repo.</param>
    /// <param name="hub">Hub settings; null reads them from the environment.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels downloads.</param>
    /// <exception cref="ArgumentException">The argument names no folder, known release or repo id, or is a file.</exception>
    /// <exception cref="FileNotFoundException">A local folder has no <c>cfg.json</c>.</exception>
    public static async Task<SaeLocation> LocateAsync(
        string folderOrReleaseOrRepo, string? saeId = null, HubOptions? hub = null,
        IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folderOrReleaseOrRepo);
        string spec = folderOrReleaseOrRepo;
        if (Directory.Exists(spec))
        {
            string folder = saeId is null ? spec : Path.Combine(spec, saeId);
            if (!File.Exists(Path.Combine(folder, ConfigFileName)))
            {
                throw new FileNotFoundException(File.Exists(Path.Combine(folder, GemmaScopeFileName))
                    ? $"SAE folder '{folder}' is a GemmaScope folder (params.npz without {ConfigFileName}); load it with SparseAutoencoder.LoadGemmaScope and its hook name."
                    : $"SAE folder '{folder}' has no {ConfigFileName} (expected a SAELens folder).", Path.Combine(folder, ConfigFileName));
            }

            return new SaeLocation(folder, null, null);
        }

        if (File.Exists(spec))
        {
            throw new ArgumentException($"'{spec}' is a file; pass the SAE folder (with {ConfigFileName}).", nameof(folderOrReleaseOrRepo));
        }

        // release/sae_id in one string, or the release with saeId.
        string? release = spec;
        string? id = saeId;
        if (saeId is null && spec.IndexOf('/', StringComparison.Ordinal) is int slash and > 0)
        {
            release = spec[..slash];
            id = spec[(slash + 1)..];
        }

        if (id is null && SaeReleases.All.ContainsKey(release))
        {
            throw new ArgumentException($"SAE release '{release}' needs an SAE id: pass it as saeId or as '{release}/<sae_id>'.", nameof(saeId));
        }

        // A near miss of a known release is a typo, not a repo id to ask the network about.
        if (!SaeReleases.All.ContainsKey(release) && SaeReleases.Suggest(release) is { Count: > 0 } close)
        {
            throw new ArgumentException(
                $"unknown SAE release '{release}', did you mean {string.Join(" or ", close.Select(c => $"'{c}'"))}? Known releases: {string.Join(", ", SaeReleases.All.Keys.Order(StringComparer.Ordinal))}.",
                nameof(folderOrReleaseOrRepo));
        }

        using var client = new HubClient(hub ?? HubOptions.FromEnvironment());
        if (SaeReleases.All.TryGetValue(release, out var known) && id is not null)
        {
            var entry = known.Get(id);
            string snapshot = await client.SnapshotAsync(
                known.RepoId, [entry.FilePath(ConfigFileName), entry.FilePath(WeightsFileName)], progress: progress, cancellationToken: cancellationToken).ConfigureAwait(false);
            return new SaeLocation(Path.Combine(snapshot, entry.Path), release, id);
        }

        if (HubClient.LooksLikeRepoId(spec))
        {
            string prefix = string.IsNullOrEmpty(saeId) ? string.Empty : saeId.TrimEnd('/') + "/";
            string snapshot = await client.SnapshotAsync(
                spec, [prefix + ConfigFileName, prefix + WeightsFileName], progress: progress, cancellationToken: cancellationToken).ConfigureAwait(false);
            return new SaeLocation(prefix.Length == 0 ? snapshot : Path.Combine(snapshot, saeId!.TrimEnd('/')), null, null);
        }

        throw new ArgumentException(
            $"SAE '{spec}' is neither an existing folder, a known SAE release/id ({string.Join(", ", SaeReleases.All.Keys)}), nor a Hugging Face repo id.",
            nameof(folderOrReleaseOrRepo));
    }
}
