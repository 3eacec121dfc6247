namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Thrown when a tokenizer folder cannot be loaded: a file is missing or malformed, a key has the wrong type,
/// or the sentencepiece model uses settings this tokenizer does not implement. The message names the file and,
/// where one is involved, the key.
/// </summary>
public sealed class TokenizerException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file at fault.</param>
    /// <param name="key">The JSON key or model field concerned, if any.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public TokenizerException(string filePath, string? key, string message, Exception? inner = null)
        : base(key is null ? $"{filePath}: {message}" : $"{filePath}: '{key}': {message}", inner)
    {
        FilePath = filePath;
        Key = key;
    }

    /// <summary>The file at fault.</summary>
    public string FilePath { get; }

    /// <summary>The JSON key or model field concerned, or <see langword="null"/>.</summary>
    public string? Key { get; }
}
