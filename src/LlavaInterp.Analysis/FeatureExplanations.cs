using LlavaInterp.Sae;
using System.Globalization;
using System.IO.Compression;
using LlavaInterp.Hub;
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

/// <summary>Thrown when a Neuronpedia explanations file or download is unusable; names the file or URL (and line).</summary>
public sealed class FeatureExplanationsException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="source">The file path or URL.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public FeatureExplanationsException(string source, string message, Exception? inner = null)
        : this(source, null, message, inner)
    {
    }

    /// <summary>Creates the exception for one line of a JSON Lines file.</summary>
    /// <param name="source">The file path or URL.</param>
    /// <param name="line">The 1-based line, or null.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public FeatureExplanationsException(string source, int? line, string message, Exception? inner = null)
        : base(line is null ? $"{source}: {message}" : $"{source}, line {line}: {message}", inner)
    {
        Location = source;
        Line = line;
    }

    /// <summary>The file path or URL.</summary>
    public string Location { get; }

    /// <summary>The 1-based line of a JSON Lines file the problem is on, or null.</summary>
    public int? Line { get; }
}

/// <summary>
/// Feature explanations from Neuronpedia, in any of the forms it publishes: the bulk export (JSON Lines,
/// <c>v1/{model}/{source}/explanations/batch-N.jsonl.gz</c>, one explanation per line, plain or gzipped, many files
/// or a folder of them), the old <c>api/explanation/export</c> JSON array, and the one-feature answer of
/// <c>api/feature/{model}/{source}/{index}</c> (an object with an <c>explanations</c> array). Each explanation has
/// <c>{"modelId", "layer", "index", "description", "explanationModelName", "typeName"}</c> where <c>index</c> is a
/// string (numbers are accepted too); other fields are ignored. A feature may have several explanations; they keep the
/// file's order. Descriptions are exposed trimmed (Neuronpedia exports them with a leading space); the raw text is kept
/// in <see cref="FeatureExplanation.RawDescription"/>.
/// </summary>
public sealed class FeatureExplanations
{
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

    /// <summary>
    /// Reads an export file (JSON array, JSON Lines, a one-feature answer; gzipped or not, told by its content) or every
    /// <c>*.json</c>, <c>*.jsonl</c> and <c>*.jsonl.gz</c> file of a folder, batches in numeric order
    /// (<c>batch-2</c> before <c>batch-10</c>).
    /// </summary>
    /// <exception cref="FeatureExplanationsException">Missing file, bad JSON or a malformed entry (naming file and line).</exception>
    public static FeatureExplanations Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path))
        {
            var files = FolderFiles(path);
            if (files.Count == 0)
            {
                throw new FeatureExplanationsException(path, "the folder holds no *.json, *.jsonl or *.jsonl.gz explanation files.");
            }

            return Load(files);
        }

        if (!File.Exists(path))
        {
            throw new FeatureExplanationsException(path, "file not found.");
        }

        return new FeatureExplanations(ReadFile(path));
    }

    /// <summary>Reads several export files (or folders) into one set, in the order given.</summary>
    /// <exception cref="FeatureExplanationsException">A file is missing or malformed.</exception>
    public static FeatureExplanations Load(IEnumerable<string> paths)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var all = new List<FeatureExplanation>();
        foreach (string p in paths)
        {
            all.AddRange(Directory.Exists(p) ? Load(p).All : File.Exists(p) ? ReadFile(p) : throw new FeatureExplanationsException(p, "file not found."));
        }

        return new FeatureExplanations(all);
    }

    /// <summary>Parses export text: a JSON array, JSON Lines, or a one-feature answer object.</summary>
    /// <param name="json">The text.</param>
    /// <param name="source">Where it came from, for messages.</param>
    /// <exception cref="FeatureExplanationsException">Bad JSON or a malformed entry.</exception>
    public static FeatureExplanations Parse(string json, string source)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(source);
        return new FeatureExplanations(ParseText(json, source));
    }

    /// <summary>
    /// Loads explanations from a URL through a cache folder; the first call downloads (through <paramref name="hub"/>'s
    /// HTTP stack; the body is validated before it is cached), later calls read the cache. A bulk-export folder URL
    /// (<c>…/v1/{model}/{source}/explanations/</c>) fetches every batch (see <see cref="DownloadAsync"/>); the removed
    /// <c>api/explanation/export?modelId=…&amp;saeId=…</c> address is read as that model and source's bulk export.
    /// </summary>
    /// <param name="url">The file's URL (http or https).</param>
    /// <param name="hub">The client whose HTTP stack and offline setting are used.</param>
    /// <param name="cacheDirectory">Folder for cached files; null uses <see cref="DefaultCacheDirectory"/>.</param>
    /// <param name="progress">Receives download progress.</param>
    /// <param name="cancellationToken">Cancels the download.</param>
    /// <exception cref="FeatureExplanationsException">The download failed (HTTP status or network) or its content is not a valid export.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public static async Task<FeatureExplanations> LoadAsync(
        Uri url, HubClient hub, string? cacheDirectory = null, IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(hub);
        if (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"Expected an absolute http(s) URL, got '{url}'.", nameof(url));
        }

        string cache = cacheDirectory ?? DefaultCacheDirectory(hub.Options);
        if (NeuronpediaSource.TryParseExportUrl(url, out var export))
        {
            return await DownloadAsync(export.Model, export.Source, hub, export.DatasetsUrl is null ? null : new NeuronpediaOptions { DatasetsUrl = export.DatasetsUrl },
                cache, progress, cancellationToken).ConfigureAwait(false);
        }

        string cachePath = CachePath(url, cache);
        if (!File.Exists(cachePath))
        {
            await FetchValidatedAsync(hub, url, cachePath, missingIsNull: false, progress, cancellationToken).ConfigureAwait(false);
        }

        return Load(cachePath);
    }

    /// <summary>
    /// Downloads (once) and loads Neuronpedia's bulk explanations export of one SAE: batches
    /// <c>{DatasetsUrl}/v1/{model}/{source}/explanations/batch-0.jsonl.gz</c>, <c>batch-1</c>, … until the first 404.
    /// Batches are cached as the same paths under <paramref name="cacheDirectory"/> (default: <c>neuronpedia</c> next
    /// to the Hugging Face cache); a completed set is marked so later and offline calls make no request.
    /// </summary>
    /// <param name="modelId">Neuronpedia model id, e.g. <c>gemma-2-2b</c>.</param>
    /// <param name="source">Neuronpedia source id, e.g. <c>12-gemmascope-res-16k</c>.</param>
    /// <param name="hub">The client whose HTTP stack and offline setting are used.</param>
    /// <param name="options">Server addresses; null uses Neuronpedia's.</param>
    /// <param name="cacheDirectory">Cache root; null uses <see cref="DefaultCacheDirectory"/>.</param>
    /// <param name="progress">Receives download progress of each batch.</param>
    /// <param name="cancellationToken">Cancels the downloads; completed batches stay cached.</param>
    /// <exception cref="FeatureExplanationsException">No export exists, a download failed, or a batch is malformed.</exception>
    public static async Task<FeatureExplanations> DownloadAsync(
        string modelId, string source, HubClient hub, NeuronpediaOptions? options = null, string? cacheDirectory = null,
        IProgress<HubDownloadProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(hub);
        NeuronpediaSource.ValidateId(modelId, nameof(modelId));
        NeuronpediaSource.ValidateId(source, nameof(source));
        options ??= new NeuronpediaOptions();
        string folder = Path.Combine(cacheDirectory ?? DefaultCacheDirectory(hub.Options), "v1", modelId, source, "explanations");
        string marker = Path.Combine(folder, ".complete");
        if (File.Exists(marker) && int.TryParse(File.ReadAllText(marker).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int known))
        {
            return Load(Enumerable.Range(0, known).Select(i => Path.Combine(folder, $"batch-{i}.jsonl.gz")));
        }

        var files = new List<string>();
        for (int i = 0; i < options.MaxBatches; i++)
        {
            string file = Path.Combine(folder, $"batch-{i}.jsonl.gz");
            if (!File.Exists(file))
            {
                Uri url = options.BatchUrl(modelId, source, i);
                if (!await FetchValidatedAsync(hub, url, file, missingIsNull: true, progress, cancellationToken).ConfigureAwait(false))
                {
                    if (i == 0)
                    {
                        throw new FeatureExplanationsException(url.ToString(),
                            $"Neuronpedia has no explanations export for model '{modelId}', source '{source}' (HTTP 404 for the first batch).");
                    }

                    break;
                }
            }

            files.Add(file);
        }

        var result = Load(files);
        string tmp = marker + "." + Guid.NewGuid().ToString("N") + ".tmp";
        File.WriteAllText(tmp, files.Count.ToString(CultureInfo.InvariantCulture));
        File.Move(tmp, marker, overwrite: true);
        return result;
    }

    /// <summary>
    /// One feature's explanations from Neuronpedia's feature API, <c>{ApiUrl}/api/feature/{model}/{source}/{index}</c>,
    /// cached under <c>api/feature/{model}/{source}/{index}.json</c> in the cache folder. For a few features this is
    /// much less to fetch than the bulk export.
    /// </summary>
    /// <exception cref="FeatureExplanationsException">The request failed or the answer is not a feature.</exception>
    public static async Task<FeatureExplanations> LoadFeatureAsync(
        string modelId, string source, int index, HubClient hub, NeuronpediaOptions? options = null, string? cacheDirectory = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(hub);
        NeuronpediaSource.ValidateId(modelId, nameof(modelId));
        NeuronpediaSource.ValidateId(source, nameof(source));
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        options ??= new NeuronpediaOptions();
        string file = Path.Combine(cacheDirectory ?? DefaultCacheDirectory(hub.Options), "api", "feature", modelId, source,
            index.ToString(CultureInfo.InvariantCulture) + ".json");
        if (!File.Exists(file))
        {
            await FetchValidatedAsync(hub, options.FeatureUrl(modelId, source, index), file, missingIsNull: false, null, cancellationToken).ConfigureAwait(false);
        }

        return Load(file);
    }

    /// <summary>The default cache root: a <c>neuronpedia</c> folder next to the Hugging Face hub cache (<c>~/.cache/huggingface/neuronpedia</c>).</summary>
    /// <param name="hub">Hub settings whose <see cref="HubOptions.CacheDir"/> is the reference.</param>
    public static string DefaultCacheDirectory(HubOptions hub)
    {
        ArgumentNullException.ThrowIfNull(hub);
        string full = Path.GetFullPath(hub.CacheDir).TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        return Path.Combine(Path.GetDirectoryName(full) ?? full, "neuronpedia");
    }

    /// <summary>The cache file <see cref="LoadAsync"/> uses for a file URL: the URL's file name plus a hash of the whole URL.</summary>
    public static string CachePath(Uri url, string cacheDirectory)
    {
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(cacheDirectory);
        string name = Path.GetFileName(url.AbsolutePath);
        string ext = name.EndsWith(".jsonl.gz", StringComparison.OrdinalIgnoreCase) ? ".jsonl.gz"
            : name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) ? ".jsonl" : ".json";
        string stem = name.Length > ext.Length && name.EndsWith(ext, StringComparison.OrdinalIgnoreCase) ? name[..^ext.Length] : Path.GetFileNameWithoutExtension(name);
        var safe = new string(stem.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_').ToArray());
        if (safe.Length == 0)
        {
            safe = "explanations";
        }
        else if (safe.Length > 80)
        {
            safe = safe[..80];
        }

        string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(url.AbsoluteUri)))[..16].ToLowerInvariant();
        return Path.Combine(cacheDirectory, "urls", $"{safe}-{hash}{ext}");
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

    /// <summary>Downloads to a temporary name, parses it, and only then moves it to <paramref name="file"/>.</summary>
    private static async Task<bool> FetchValidatedAsync(
        HubClient hub, Uri url, string file, bool missingIsNull, IProgress<HubDownloadProgress>? progress, CancellationToken ct)
    {
        string temp = file + "." + Guid.NewGuid().ToString("N") + ".download";
        try
        {
            string? got;
            try
            {
                got = await hub.DownloadUrlAsync(url, temp, missingIsNull, progress, ct).ConfigureAwait(false);
            }
            catch (HubException ex)
            {
                throw new FeatureExplanationsException(url.ToString(), ex.StatusCode is int s ? $"HTTP {s}: {ex.Message}" : $"download failed: {ex.Message}", ex);
            }

            if (got is null)
            {
                return false;
            }

            ReadFile(temp, url.ToString());
            File.Move(temp, file, overwrite: true);
            return true;
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }

    private static List<string> FolderFiles(string folder) =>
        Directory.EnumerateFiles(folder)
            .Where(f => f.EndsWith(".json", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase)
                || f.EndsWith(".jsonl.gz", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".json.gz", StringComparison.OrdinalIgnoreCase))
            .OrderBy(f => Path.GetFileName(f), NaturalOrder.Instance)
            .ToList();

    private static List<FeatureExplanation> ReadFile(string path, string? name = null)
    {
        byte[] bytes = File.ReadAllBytes(path);
        string text;
        if (bytes.Length >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b)
        {
            try
            {
                using var gz = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
                using var reader = new StreamReader(gz, Encoding.UTF8);
                text = reader.ReadToEnd();
            }
            catch (InvalidDataException ex)
            {
                throw new FeatureExplanationsException(name ?? path, $"not a valid gzip file: {ex.Message}", ex);
            }
        }
        else
        {
            text = Encoding.UTF8.GetString(bytes);
        }

        return ParseText(text, name ?? path);
    }

    private static List<FeatureExplanation> ParseText(string text, string source)
    {
        CheckSurrogates(text, source);
        string trimmed = text.TrimStart('\uFEFF', ' ', '\t', '\r', '\n');
        if (trimmed.StartsWith('['))
        {
            return ParseArray(trimmed, source);
        }

        if (trimmed.Length == 0)
        {
            return [];
        }

        // A one-feature API answer is one object with an "explanations" array; anything else starting with '{' is JSON Lines.
        if (TryParseFeatureAnswer(trimmed, source) is { } feature)
        {
            return feature;
        }

        var all = new List<FeatureExplanation>();
        int lineNo = 0;
        foreach (string line in text.Split('\n'))
        {
            lineNo++;
            string l = line.Trim('\uFEFF', ' ', '\t', '\r');
            if (l.Length == 0)
            {
                continue;
            }

            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(l);
            }
            catch (JsonException ex)
            {
                throw new FeatureExplanationsException(source, lineNo, $"invalid JSON: {ex.Message}", ex);
            }

            using (doc)
            {
                all.Add(ParseEntry(doc.RootElement, source, null, lineNo, null));
            }
        }

        return all;
    }

    // An unpaired surrogate (a "\ud800" escape, or such a char in a string handed in) is no Unicode text: System.Text.Json
    // would throw InvalidOperationException only when the string is read, without a place. Reported here with its line.
    private static void CheckSurrogates(string text, string source)
    {
        int line = 1;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            int unit;
            int width;
            if (c == '\n')
            {
                line++;
                continue;
            }

            if (c == '\\' && i + 1 < text.Length)
            {
                if (text[i + 1] != 'u' || !TryHex(text, i + 2, out unit))
                {
                    i++; // another escape (\\, \", \n, ...): its second char is not an escape of its own
                    continue;
                }

                width = 6;
            }
            else
            {
                unit = c;
                width = 1;
            }

            if (char.IsHighSurrogate((char)unit))
            {
                int next = i + width;
                bool paired = width == 6
                    ? next + 1 < text.Length && text[next] == '\\' && text[next + 1] == 'u' && TryHex(text, next + 2, out int low) && char.IsLowSurrogate((char)low)
                    : next < text.Length && char.IsLowSurrogate(text[next]);
                if (!paired)
                {
                    throw Unpaired(unit);
                }

                i = next + width - 1;
            }
            else if (char.IsLowSurrogate((char)unit))
            {
                throw Unpaired(unit);
            }
            else
            {
                i += width - 1;
            }
        }

        FeatureExplanationsException Unpaired(int unit) =>
            new(source, line, $"unpaired surrogate U+{unit:X4} (a \\u{unit:x4} escape without its pair): the text is not valid Unicode.");
    }

    private static bool TryHex(string text, int start, out int value)
    {
        value = 0;
        return start + 4 <= text.Length
            && int.TryParse(text.AsSpan(start, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }

    private static List<FeatureExplanation> ParseArray(string json, string source)
    {
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
            var all = new List<FeatureExplanation>();
            int i = 0;
            foreach (var item in doc.RootElement.EnumerateArray())
            {
                all.Add(ParseEntry(item, source, i++, null, null));
            }

            return all;
        }
    }

    private static List<FeatureExplanation>? TryParseFeatureAnswer(string text, string source)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(text);
        }
        catch (JsonException)
        {
            return null; // several lines: JSON Lines
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("explanations", out var list))
            {
                return null;
            }

            if (list.ValueKind != JsonValueKind.Array)
            {
                throw new FeatureExplanationsException(source, $"the feature's 'explanations' is {list.ValueKind}, not an array.");
            }

            var parent = ParseIndex(root, source, "the feature", null, required: true);
            var all = new List<FeatureExplanation>();
            int i = 0;
            foreach (var item in list.EnumerateArray())
            {
                all.Add(ParseEntry(item, source, i++, null, (parent!.Value, Str(root, "modelId"), Str(root, "layer"))));
            }

            return all;
        }
    }

    private static FeatureExplanation ParseEntry(JsonElement item, string source, int? position, int? line, (int Index, string? Model, string? Layer)? parent)
    {
        string what = position is int p ? $"entry {p}" : "the entry";
        if (item.ValueKind != JsonValueKind.Object)
        {
            throw new FeatureExplanationsException(source, line, $"{what} is {item.ValueKind}, not an object.");
        }

        int index = ParseIndex(item, source, what, line, required: parent is null) ?? parent!.Value.Index;
        if (!item.TryGetProperty("description", out var descEl) || descEl.ValueKind != JsonValueKind.String)
        {
            throw new FeatureExplanationsException(source, line, $"{what} (feature {index}) has no string 'description'.");
        }

        string raw = descEl.GetString()!;
        return new FeatureExplanation(index, raw.Trim(), raw, Str(item, "modelId") ?? parent?.Model, Str(item, "layer") ?? parent?.Layer,
            Str(item, "explanationModelName"), Str(item, "typeName"));
    }

    private static int? ParseIndex(JsonElement item, string source, string what, int? line, bool required)
    {
        if (!item.TryGetProperty("index", out var indexEl))
        {
            return required ? throw new FeatureExplanationsException(source, line, $"{what} has no 'index'.") : null;
        }

        return indexEl.ValueKind switch
        {
            JsonValueKind.String when int.TryParse(indexEl.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out int s) => s,
            JsonValueKind.Number when indexEl.TryGetInt32(out int n) && n >= 0 => n,
            _ => throw new FeatureExplanationsException(source, line, $"{what}: 'index' {indexEl.GetRawText()} is not a non-negative integer."),
        };
    }

    private static string? Str(JsonElement item, string name) =>
        item.TryGetProperty(name, out var el) && el.ValueKind == JsonValueKind.String ? el.GetString() : null;

    /// <summary>File names with numbers compared as numbers: batch-2 before batch-10.</summary>
    private sealed class NaturalOrder : IComparer<string>
    {
        public static readonly NaturalOrder Instance = new();

        public int Compare(string? x, string? y)
        {
            var rx = System.Text.RegularExpressions.Regex.Split(x ?? "", "([0-9]+)");
            var ry = System.Text.RegularExpressions.Regex.Split(y ?? "", "([0-9]+)");
            for (int i = 0; i < Math.Min(rx.Length, ry.Length); i++)
            {
                int c = i % 2 == 1 && rx[i].Length < 10 && ry[i].Length < 10
                    ? long.Parse(rx[i], CultureInfo.InvariantCulture).CompareTo(long.Parse(ry[i], CultureInfo.InvariantCulture))
                    : string.CompareOrdinal(rx[i], ry[i]);
                if (c != 0)
                {
                    return c;
                }
            }

            return rx.Length.CompareTo(ry.Length);
        }
    }
}
