using System.Globalization;

namespace LlavaInterp.Analysis;

/// <summary>Where Neuronpedia's data lives; change it for a mirror or a test server.</summary>
public sealed record NeuronpediaOptions
{
    /// <summary>The public bucket holding Neuronpedia's bulk exports (<c>v1/{model}/{source}/…</c>).</summary>
    public const string DefaultDatasetsUrl = "https://neuronpedia-datasets.s3.amazonaws.com";

    /// <summary>Neuronpedia's web API.</summary>
    public const string DefaultApiUrl = "https://www.neuronpedia.org";

    /// <summary>Base address of the bulk exports, without a trailing slash.</summary>
    public string DatasetsUrl { get; init; } = DefaultDatasetsUrl;

    /// <summary>Base address of the feature API, without a trailing slash.</summary>
    public string ApiUrl { get; init; } = DefaultApiUrl;

    /// <summary>Safety stop for the batch loop (a 16k SAE has about 128 batches).</summary>
    public int MaxBatches { get; init; } = 100_000;

    /// <summary><c>{DatasetsUrl}/v1/{model}/{source}/explanations/batch-{n}.jsonl.gz</c>.</summary>
    public Uri BatchUrl(string modelId, string source, int batch) =>
        new($"{DatasetsUrl.TrimEnd('/')}/v1/{Uri.EscapeDataString(modelId)}/{Uri.EscapeDataString(source)}/explanations/batch-{batch.ToString(CultureInfo.InvariantCulture)}.jsonl.gz");

    /// <summary><c>{ApiUrl}/api/feature/{model}/{source}/{index}</c>.</summary>
    public Uri FeatureUrl(string modelId, string source, int index) =>
        new($"{ApiUrl.TrimEnd('/')}/api/feature/{Uri.EscapeDataString(modelId)}/{Uri.EscapeDataString(source)}/{index.ToString(CultureInfo.InvariantCulture)}");
}

/// <summary>Neuronpedia address helpers.</summary>
internal static class NeuronpediaSource
{
    /// <summary>A model or source id becomes a cache folder name: no separators, no dot names.</summary>
    public static void ValidateId(string id, string param)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(id, param);
        if (id is "." or ".." || id.IndexOfAny(['/', '\\', ':', '\0']) >= 0)
        {
            throw new ArgumentException($"'{id}' is not a Neuronpedia id (no slashes, colons or dot names).", param);
        }
    }

    /// <summary>
    /// Reads a bulk-export folder URL (<c>…/v1/{model}/{source}/explanations[/]</c>) or the removed
    /// <c>api/explanation/export?modelId=…&amp;saeId=…</c> address as a model and source. DatasetsUrl is null for the latter (Neuronpedia's bucket).
    /// </summary>
    public static bool TryParseExportUrl(Uri url, out (string Model, string Source, string? DatasetsUrl) export)
    {
        export = default;
        string path = url.AbsolutePath.TrimEnd('/');
        if (path.EndsWith("/api/explanation/export", StringComparison.Ordinal))
        {
            var query = System.Web.HttpUtility.ParseQueryString(url.Query);
            if (query["modelId"] is { Length: > 0 } m && query["saeId"] is { Length: > 0 } s)
            {
                export = (m, s, null);
                return true;
            }

            return false;
        }

        string[] seg = path.Split('/');
        if (seg.Length >= 5 && seg[^1] == "explanations" && seg[^4] == "v1")
        {
            string prefix = url.GetLeftPart(UriPartial.Authority) + string.Join('/', seg[..^4]);
            export = (Uri.UnescapeDataString(seg[^3]), Uri.UnescapeDataString(seg[^2]), prefix);
            return true;
        }

        return false;
    }
}
