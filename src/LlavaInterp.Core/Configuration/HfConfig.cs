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
        try
        {
            config = JsonSerializer.Deserialize<T>(json, Options);
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
