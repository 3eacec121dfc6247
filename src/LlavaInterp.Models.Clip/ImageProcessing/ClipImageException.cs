namespace LlavaInterp.Models.Clip;

/// <summary>
/// An image or an image-processor configuration could not be used: missing or unreadable file, bytes that no
/// decoder understands, an unsupported pixel layout or setting, or images that cannot be batched together.
/// </summary>
public sealed class ClipImageException : Exception
{
    /// <summary>Creates the exception for <paramref name="filePath"/> (null when the input was not a file).</summary>
    /// <param name="filePath">The image or configuration file, or null for in-memory input.</param>
    /// <param name="message">What went wrong.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public ClipImageException(string? filePath, string message, Exception? innerException = null)
        : base(filePath is null ? message : $"{filePath}: {message}", innerException)
    {
        FilePath = filePath;
    }

    /// <summary>The file the error refers to, or null for in-memory input.</summary>
    public string? FilePath { get; }
}
