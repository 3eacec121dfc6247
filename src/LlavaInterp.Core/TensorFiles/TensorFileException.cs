namespace LlavaInterp.TensorFiles;

/// <summary>
/// Thrown when a tensor file (safetensors, sharded index, NPY/NPZ) is malformed or does not hold what was asked for.
/// The message always names the file and, where one is involved, the tensor.
/// </summary>
public sealed class TensorFileException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file that is at fault.</param>
    /// <param name="tensorName">The tensor concerned, if any.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public TensorFileException(string filePath, string? tensorName, string message, Exception? inner = null)
        : base(Format(filePath, tensorName, message), inner)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <summary>The file that is at fault.</summary>
    public string FilePath { get; }

    /// <summary>The tensor concerned, or <see langword="null"/> when the fault is in the file as a whole.</summary>
    public string? TensorName { get; }

    private static string Format(string filePath, string? tensorName, string message) =>
        tensorName is null ? $"{filePath}: {message}" : $"{filePath}: tensor '{tensorName}': {message}";
}
