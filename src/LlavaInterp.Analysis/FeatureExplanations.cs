using LlavaInterp.Sae;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LlavaInterp.IO;

namespace LlavaInterp.Analysis;

/// <summary>One explanation of one feature, as in a Neuronpedia export.</summary>
/// <param name="Index">The feature index (Neuronpedia exports it as a string).</param>
/// <param name="Description">The explanation text, trimmed of surrounding whitespace.</param>
/// <param name="RawDescription">The text exactly as in the file (Neuronpedia keeps a leading space).</param>
/// <param name="ModelId">Neuronpedia <c>modelId</c>.</param>
/// <param name="Source">Neuronpedia <c>layer</c>: the source id, e.g. <c>12-res-jb</c>.</param>
/// <param name="ExplanationModelName"><c>explanationModelName</c>, e.g. <c>gpt-4o-mini</c>.</param>
/// <param name="TypeName"><c>typeName</c>, e.g. <c>oai_token-act-pair</c>.</param>
public sealed record FeatureExplanation(int Index, string Description, string RawDescription, string? ModelId, string? Source, string? ExplanationModelName, string? TypeName);

/// <summary>Thrown when a Neuronpedia explanations file or download is unusable; names the file or URL.</summary>
public sealed class FeatureExplanationsException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="source">The file path or URL.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public FeatureExplanationsException(string source, string message, Exception? inner = null)
        : base($"{source}: {message}", inner)
    {
        Location = source;
    }

    /// <summary>The file path or URL.</summary>
    public string Location { get; }
}

/// <summary>
/// Feature explanations from a Neuronpedia export: a JSON array of
/// <c>{"modelId", "layer", "index", "description", "explanationModelName", "typeName"}</c> where <c>index</c> is a string
/// (numbers are accepted too). A feature may have several explanations; they keep the file's order.
/// Descriptions are exposed trimmed (Neuronpedia exports them with a leading space); the raw text is kept in
/// <see cref="FeatureExplanation.RawDescription"/>.
/// </summary>
public sealed class FeatureExplanations
{
    private static readonly HttpClient SharedClient = new();
    private readonly Dictionary<int, List<FeatureExplanation>> _byIndex;

    private FeatureExplanations(IReadOnlyList<FeatureExplanation> all)
    {
        All = all;
        _byIndex = new Dictionary<int, List<FeatureExplanation>>();
        foreach (var e in all)
        {
            if (!_byIndex.TryGetValue(e.Index, out var list))
            {
                _byIndex[e.Index] = list = new List<FeatureExplanation>();
            }

            list.Add(e);
        }
    }

    /// <summary>Every explanation, in file order.</summary>
    public IReadOnlyList<FeatureExplanation> All { get; }

    /// <summary>The features that have at least one explanation, ascending.</summary>
    public IReadOnlyList<int> Features => _byIndex.Keys.Order().ToArray();

    /// <summary>Number of explanations (not features).</summary>
    public int Count => All.Count;

    /// <summary>Reads an export file.</summary>
    /// <exception cref="FeatureExplanationsException">Missing file, bad JSON or a malformed entry.</exception>
    public static FeatureExplanations Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new FeatureExplanationsException(path, "file not found.");
        }

        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses export JSON.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="source">Where it came from, for messages.</param>
    /// <exception cref="FeatureExplanationsException">Bad JSON or a malformed entry.</exception>
    public static FeatureExplanations Parse(string json, string source)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            throw new FeatureExplanationsException(source, $"invalid JSON: {ex.Message}", ex);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Array)
            {
                throw new FeatureExplanationsException(source, $"expected a JSON array of explanations, found {doc.RootElement.ValueKind}.");
            }

            var all = new List<FeatureExplanation>();
            int i = 0;
            foreach (var item in doc.RootElement.EnumerateArray())
            {
                all.Add(ParseEntry(item, source, i++));
            }

            return new FeatureExplanations(all);
        }
    }

    /// <summary>
    /// Loads an export from a URL through a cache folder: the first call downloads it (the body is validated before it
    /// is cached; the cache file is written to a temporary name and moved into place), later calls read the cached file.
    /// </summary>
    /// <param name="url">The export's URL (http or https).</param>
    /// <param name="cacheDirectory">Folder for the cached file (created if needed).</param>
    /// <param name="httpClient">Client to use; null uses a shared one.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    /// <exception cref="FeatureExplanationsException">The download failed (HTTP status or network) or its content is not a valid export.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static async Task<FeatureExplanations> LoadAsync(Uri url, string cacheDirectory, HttpClient? httpClient = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(cacheDirectory);
        if (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"Expected an absolute http(s) URL, got '{url}'.", nameof(url));
        }

        string cachePath = CachePath(url, cacheDirectory);
        if (File.Exists(cachePath))
        {
            return Load(cachePath);
        }

        string body;
        try
        {
            using var response = await (httpClient ?? SharedClient).GetAsync(url, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw new FeatureExplanationsException(url.ToString(), $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}.");
            }

            body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException ex)
        {
            throw new FeatureExplanationsException(url.ToString(), $"download failed: {ex.Message}", ex);
        }
        catch (TaskCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new FeatureExplanationsException(url.ToString(), "download timed out.", ex);
        }

        var explanations = Parse(body, url.ToString());
        Directory.CreateDirectory(cacheDirectory);
        await AtomicFile.WriteAllTextAsync(cachePath, body, cancellationToken).ConfigureAwait(false);

        return explanations;
    }

    /// <summary>The cache file <see cref="LoadAsync"/> uses for a URL: the URL's file name plus a hash of the whole URL.</summary>
    public static string CachePath(Uri url, string cacheDirectory)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(cacheDirectory);
        string name = Path.GetFileNameWithoutExtension(url.AbsolutePath);
        var safe = new string(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_').ToArray());
        if (safe.Length == 0)
        {
            safe = "explanations";
        }
        else if (safe.Length > 80)
        {
            safe = safe[..80];
        }

        string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(url.AbsoluteUri)))[..16].ToLowerInvariant();
        return Path.Combine(cacheDirectory, $"{safe}-{hash}.json");
    }

    /// <summary>The trimmed explanations of a feature, in file order; empty when it has none.</summary>
    public IReadOnlyList<string> Get(int index) =>
        _byIndex.TryGetValue(index, out var list) ? list.Select(e => e.Description).ToArray() : [];

    /// <summary>Every explanation record of a feature; empty when it has none.</summary>
    public IReadOnlyList<FeatureExplanation> Entries(int index) =>
        _byIndex.TryGetValue(index, out var list) ? list : [];

    /// <summary>The feature's first explanation (trimmed), or null when it has none.</summary>
    public string? Describe(int index) =>
        _byIndex.TryGetValue(index, out var list) ? list[0].Description : null;

    private static FeatureExplanation ParseEntry(JsonElement item, string source, int position)
    {
        if (item.ValueKind != JsonValueKind.Object)
        {
            throw new FeatureExplanationsException(source, $"entry {position} is {item.ValueKind}, not an object.");
        }

        if (!item.TryGetProperty("index", out var indexEl))
        {
            throw new FeatureExplanationsException(source, $"entry {position} has no 'index'.");
        }

        int index = indexEl.ValueKind switch
        {
            JsonValueKind.String when int.TryParse(indexEl.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out int s) => s,
            JsonValueKind.Number when indexEl.TryGetInt32(out int n) && n >= 0 => n,
            _ => throw new FeatureExplanationsException(source, $"entry {position}: 'index' {indexEl.GetRawText()} is not a non-negative integer."),
        };

        if (!item.TryGetProperty("description", out var descEl) || descEl.ValueKind != JsonValueKind.String)
        {
            throw new FeatureExplanationsException(source, $"entry {position} (feature {index}) has no string 'description'.");
        }

        string raw = descEl.GetString()!;
        return new FeatureExplanation(index, raw.Trim(), raw, Str(item, "modelId"), Str(item, "layer"), Str(item, "explanationModelName"), Str(item, "typeName"));
    }

    private static string? Str(JsonElement item, string name) =>
        item.TryGetProperty(name, out var el) && el.ValueKind == JsonValueKind.String ? el.GetString() : null;
}
