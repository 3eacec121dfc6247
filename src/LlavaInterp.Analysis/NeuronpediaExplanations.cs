using LlavaInterp.Hub;
using LlavaInterp.Sae;
using Microsoft.Extensions.Logging;

namespace LlavaInterp.Analysis;

/// <summary>
/// Finds the Neuronpedia explanations of an SAE: an explicit file or URL, else an export saved next to the SAE
/// (<c>explanations_{modelId}_{source}.json</c>), else, for an SAE of a SAELens release, Neuronpedia's export
/// downloaded once into a cache folder.
/// </summary>
public static class NeuronpediaExplanations
{
    /// <summary>The first batch of Neuronpedia's bulk explanations export of one SAE (<c>modelId</c> and source id as in <c>neuronpedia_id</c>).</summary>
    public static Uri ExportUrl(string modelId, string source) => new NeuronpediaOptions().BatchUrl(modelId, source, 0);

    /// <summary>
    /// Where downloads are cached: <c>$LLAVA_INTERP_CACHE/explanations</c> when that is set, else null (the library's
    /// default, a <c>neuronpedia</c> folder next to the Hugging Face cache).
    /// </summary>
    public static string? CacheDirectoryFromEnvironment =>
        Environment.GetEnvironmentVariable("LLAVA_INTERP_CACHE") is { Length: > 0 } dir ? Path.Combine(dir, "explanations") : null;

    /// <summary>Neuronpedia's model id of an SAE (before the <c>/</c> of <c>neuronpedia_id</c>), or null.</summary>
    public static string? ModelId(SparseAutoencoder sae)
    {
        ArgumentNullException.ThrowIfNull(sae);
        return sae.Config.NeuronpediaId is { } id && id.IndexOf('/', StringComparison.Ordinal) is int slash and > 0 ? id[..slash] : null;
    }

    /// <summary>
    /// Loads an explicit export: an http(s) URL (downloaded once through the hub client into
    /// <paramref name="cacheDirectory"/>) or a file, a folder of batches.
    /// </summary>
    /// <exception cref="FeatureExplanationsException">The file or URL cannot be used.</exception>
    public static async Task<FeatureExplanations> LoadAsync(string fileOrUrl, HubOptions? hub = null, string? cacheDirectory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(fileOrUrl);
        if (Uri.TryCreate(fileOrUrl, UriKind.Absolute, out var url) && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps))
        {
            using var client = new HubClient(hub ?? HubOptions.FromEnvironment());
            return await FeatureExplanations.LoadAsync(url, client, cacheDirectory ?? CacheDirectoryFromEnvironment, cancellationToken: cancellationToken).ConfigureAwait(false);
        }

        return FeatureExplanations.Load(fileOrUrl);
    }

    /// <summary>
    /// The explanations of <paramref name="sae"/>: <c>explanations_{modelId}_{source}.json</c> in its folder or the
    /// folder's parent; else, when it came from a SAELens release and the hub is not offline,
    /// Neuronpedia's bulk export (a failed download is logged as a warning, not thrown). Null when none is found.
    /// </summary>
    /// <param name="sae">The SAE.</param>
    /// <param name="saeFolder">The local folder it was loaded from.</param>
    /// <param name="fromRelease">Whether it was loaded as <c>release/sae_id</c> (only those are looked up on Neuronpedia).</param>
    /// <param name="hub">Hub settings for the download (offline downloads nothing); null reads the environment.</param>
    /// <param name="cacheDirectory">Where downloads are cached; null uses <see cref="CacheDirectoryFromEnvironment"/> or the library's default.</param>
    /// <param name="logger">Receives the warning of a failed download.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    public static async Task<FeatureExplanations?> FindAsync(
        SparseAutoencoder sae, string saeFolder, bool fromRelease, HubOptions? hub = null, string? cacheDirectory = null, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sae);
        ArgumentNullException.ThrowIfNull(saeFolder);
        string? model = ModelId(sae);
        string? source = sae.Config.NeuronpediaSource;
        if (model is null || source is null)
        {
            return null;
        }

        string name = $"explanations_{model}_{source}.json";
        foreach (var dir in new[] { saeFolder, Path.GetDirectoryName(Path.GetFullPath(saeFolder)) })
        {
            if (dir is not null && File.Exists(Path.Combine(dir, name)))
            {
                return FeatureExplanations.Load(Path.Combine(dir, name));
            }
        }

        hub ??= HubOptions.FromEnvironment();
        if (!fromRelease || hub.Offline)
        {
            return null;
        }

        try
        {
            using var client = new HubClient(hub);
            return await FeatureExplanations.DownloadAsync(model, source, client, cacheDirectory: cacheDirectory ?? CacheDirectoryFromEnvironment, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (FeatureExplanationsException ex)
        {
            logger?.LogWarning("No feature descriptions: {Reason}", ex.Message);
            return null;
        }
    }
}
