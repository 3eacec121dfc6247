namespace LlavaInterp.Configuration;

/// <summary>Thrown when a Hugging Face configuration file is missing, malformed or describes another model type.</summary>
public sealed class ConfigException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="source">The file (or other source) the configuration came from.</param>
    /// <param name="key">The offending key, if any.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public ConfigException(string source, string? key, string message, Exception? inner = null)
        : base($"{source}: {Describe(key, message)}", inner)
    {
        SourcePath = source;
        Key = key;
        Detail = Describe(key, message);
    }

    /// <summary>What is wrong, with the key but without the source (for wrapping in another file-naming exception).</summary>
    public string Detail { get; }

    /// <summary>The file (or other source) the configuration came from.</summary>
    public string SourcePath { get; }

    /// <summary>The offending key, if any.</summary>
    public string? Key { get; }

    private static string Describe(string? key, string message) => key is null ? message : $"key '{key}': {message}";
}
