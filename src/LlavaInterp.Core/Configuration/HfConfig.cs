using System.Text.Json;
using System.Text.Json.Serialization;

namespace LlavaInterp.Configuration;

/// <summary>
/// Base of every configuration record bound from a Hugging Face <c>config.json</c>.
/// Keys the record does not model are kept in <see cref="ExtraKeys"/> so nothing is silently lost.
/// </summary>
public abstract record HfConfig
{
    /// <summary>The <c>model_type</c> key.</summary>
    [JsonPropertyName("model_type")]
    public string? ModelType { get; init; }

    /// <summary>Every key of the JSON object that no property binds, with its raw value.</summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? ExtraKeys { get; init; }
}

/// <summary>Reads Hugging Face configuration files into <see cref="HfConfig"/> records.</summary>
public static class HfConfigLoader
{
    /// <summary>The serializer options used for every configuration record.</summary>
    public static JsonSerializerOptions Options { get; } = new()
    {
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Loads and validates a configuration file.</summary>
    /// <typeparam name="T">The record type.</typeparam>
    /// <param name="path">Path of the JSON file.</param>
    /// <param name="acceptedModelTypes">Accepted <c>model_type</c> values; empty accepts any (including absent).</param>
    /// <exception cref="ConfigException">Missing file, bad JSON, wrong value types or a wrong <c>model_type</c>.</exception>
    public static T Load<T>(string path, params string[] acceptedModelTypes)
        where T : HfConfig
    {
        if (!File.Exists(path))
        {
            throw new ConfigException(path, null, "file not found.");
        }

        return Parse<T>(File.ReadAllText(path), path, acceptedModelTypes);
    }

    /// <summary>Parses and validates configuration JSON.</summary>
    /// <typeparam name="T">The record type.</typeparam>
    /// <param name="json">The JSON text.</param>
    /// <param name="source">Where it came from, for error messages.</param>
    /// <param name="acceptedModelTypes">Accepted <c>model_type</c> values; empty accepts any (including absent).</param>
    /// <exception cref="ConfigException">Bad JSON, wrong value types or a wrong <c>model_type</c>.</exception>
    public static T Parse<T>(string json, string source, params string[] acceptedModelTypes)
        where T : HfConfig
    {
        T? config;
        using var doc = ParseDocument(json, source);
        try
        {
            config = doc.RootElement.Deserialize<T>(Options);
        }
        catch (JsonException ex)
        {
            throw new ConfigException(source, ex.Path, $"invalid configuration JSON: {ex.Message}", ex);
        }

        if (config is null)
        {
            throw new ConfigException(source, null, "configuration is null.");
        }

        return Validate(config, source, acceptedModelTypes);
    }

    /// <summary>
    /// Parses configuration JSON (by default comments and trailing commas allowed) and rejects a key repeated within
    /// one object — System.Text.Json would silently bind the last one, Python's <c>json</c> too, so a file edited by hand
    /// could hold a value nobody sees — and text that is not valid Unicode.
    /// </summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="source">Where it came from, for error messages.</param>
    /// <param name="options">Reader options for files with their own leniency; null: comments and trailing commas allowed.</param>
    /// <returns>The document; the caller disposes it.</returns>
    /// <exception cref="ConfigException">Bad JSON, a repeated key (named by its dotted path), or an unpaired surrogate.</exception>
    public static JsonDocument ParseDocument(string json, string source, JsonDocumentOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, options ?? new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new ConfigException(source, null, $"invalid configuration JSON: {ex.Message}", ex);
        }

        string? repeated;
        try
        {
            repeated = FindRepeatedKey(doc.RootElement, null);
        }
        catch (InvalidOperationException ex)
        {
            // System.Text.Json decodes strings lazily and throws this for an unpaired surrogate escape (\ud800).
            doc.Dispose();
            throw new ConfigException(source, null, $"holds text that is not valid Unicode (an unpaired surrogate escape such as \\ud800): {ex.Message}", ex);
        }

        if (repeated is not null)
        {
            doc.Dispose();
            throw new ConfigException(source, repeated, "appears more than once in its object (JSON readers keep only one of them silently).");
        }

        return doc;
    }

    /// <summary>
    /// The dotted path of the first key repeated within one object of <paramref name="element"/>, or <see langword="null"/>.
    /// Every key and string value is decoded on the way, so text that is not valid Unicode surfaces here.
    /// </summary>
    /// <exception cref="InvalidOperationException">A key or string holds an unpaired surrogate escape.</exception>
    /// <param name="element">The JSON value to search (recursively).</param>
    /// <param name="path">The path of <paramref name="element"/> itself; <see langword="null"/> at the root.</param>
    public static string? FindRepeatedKey(JsonElement element, string? path = null)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var seen = new HashSet<string>(StringComparer.Ordinal);
                foreach (var property in element.EnumerateObject())
                {
                    string child = path is null ? property.Name : $"{path}.{property.Name}";
                    if (!seen.Add(property.Name))
                    {
                        return child;
                    }

                    if (FindRepeatedKey(property.Value, child) is string inner)
                    {
                        return inner;
                    }
                }

                return null;
            case JsonValueKind.Array:
                int index = 0;
                foreach (var item in element.EnumerateArray())
                {
                    if (FindRepeatedKey(item, $"{path}[{index++}]") is string inner)
                    {
                        return inner;
                    }
                }

                return null;
            case JsonValueKind.String:
                _ = element.GetString();
                return null;
            default:
                return null;
        }
    }

    /// <summary>Binds an already parsed JSON element (e.g. a nested <c>text_config</c>).</summary>
    /// <typeparam name="T">The record type.</typeparam>
    /// <param name="element">The JSON object.</param>
    /// <param name="source">Where it came from, for error messages (e.g. <c>config.json#text_config</c>).</param>
    /// <param name="acceptedModelTypes">Accepted <c>model_type</c> values; empty accepts any (including absent).</param>
    public static T Bind<T>(JsonElement element, string source, params string[] acceptedModelTypes)
        where T : HfConfig
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException(source, null, $"expected a JSON object, found {element.ValueKind}.");
        }

        return Parse<T>(element.GetRawText(), source, acceptedModelTypes);
    }

    private static T Validate<T>(T config, string source, string[] acceptedModelTypes)
        where T : HfConfig
    {
        if (acceptedModelTypes.Length > 0 && config.ModelType is not null && !acceptedModelTypes.Contains(config.ModelType, StringComparer.Ordinal))
        {
            throw new ConfigException(source, "model_type", $"'{config.ModelType}' is not a supported model type here (expected {string.Join(" or ", acceptedModelTypes.Select(t => $"'{t}'"))}).");
        }

        return config;
    }
}
