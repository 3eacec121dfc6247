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
    /// <summary>Neuronpedia's export of every explanation of one SAE (<c>modelId</c> and source id as in <c>neuronpedia_id</c>).</summary>
    public static Uri ExportUrl(string modelId, string source)
    {
        ArgumentNullException.ThrowIfNull(modelId);
        ArgumentNullException.ThrowIfNull(source);
        return new($"https://www.neuronpedia.org/api/explanation/export?modelId={Uri.EscapeDataString(modelId)}&saeId={Uri.EscapeDataString(source)}");
    }

    /// <summary>Where downloaded exports are cached: <c>$LLAVA_INTERP_CACHE/explanations</c> or <c>~/.cache/llava-interp/explanations</c>.</summary>
    public static string DefaultCacheDirectory =>
        Environment.GetEnvironmentVariable("LLAVA_INTERP_CACHE") is { Length: > 0 } dir
            ? Path.Combine(dir, "explanations")
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "llava-interp", "explanations");

    /// <summary>Neuronpedia's model id of an SAE (before the <c>/</c> of <c>neuronpedia_id</c>), or null.</summary>
    public static string? ModelId(SparseAutoencoder sae)
    {
        ArgumentNullException.ThrowIfNull(sae);
        return sae.Config.NeuronpediaId is { } id && id.IndexOf('/', StringComparison.Ordinal) is int slash and > 0 ? id[..slash] : null;
    }

    /// <summary>
    /// Loads an explicit export: an http(s) URL (downloaded once into <paramref name="cacheDirectory"/>) or a file.
    /// </summary>
    /// <exception cref="FeatureExplanationsException">The file or URL cannot be used.</exception>
    public static async Task<FeatureExplanations> LoadAsync(string fileOrUrl, string? cacheDirectory = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(fileOrUrl);
        return Uri.TryCreate(fileOrUrl, UriKind.Absolute, out var url) && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps)
            ? await FeatureExplanations.LoadAsync(url, cacheDirectory ?? DefaultCacheDirectory, cancellationToken: cancellationToken).ConfigureAwait(false)
            : FeatureExplanations.Load(fileOrUrl);
    }

    /// <summary>
    /// The explanations of <paramref name="sae"/>: <c>explanations_{modelId}_{source}.json</c> in its folder or the
    /// folder's parent; else, when it came from a SAELens release and <paramref name="offline"/> is false,
    /// Neuronpedia's export (a failed download is logged as a warning, not thrown). Null when none is found.
    /// </summary>
    /// <param name="sae">The SAE.</param>
    /// <param name="saeFolder">The local folder it was loaded from.</param>
    /// <param name="fromRelease">Whether it was loaded as <c>release/sae_id</c> (only those are looked up on Neuronpedia).</param>
    /// <param name="offline">Download nothing.</param>
    /// <param name="cacheDirectory">Where downloads are cached; null uses <see cref="DefaultCacheDirectory"/>.</param>
    /// <param name="logger">Receives the warning of a failed download.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    public static async Task<FeatureExplanations?> FindAsync(
        SparseAutoencoder sae, string saeFolder, bool fromRelease, bool offline, string? cacheDirectory = null, ILogger? logger = null, CancellationToken cancellationToken = default)
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

        if (!fromRelease || offline)
        {
            return null;
        }

        try
        {
            return await FeatureExplanations.LoadAsync(ExportUrl(model, source), cacheDirectory ?? DefaultCacheDirectory, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (FeatureExplanationsException ex)
        {
            logger?.LogWarning("No feature descriptions: {Reason}", ex.Message);
            return null;
        }
    }
}
