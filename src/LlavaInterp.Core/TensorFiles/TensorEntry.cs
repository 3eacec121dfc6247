namespace LlavaInterp.TensorFiles;

/// <summary>Where one tensor lives in a tensor file and what it is.</summary>
/// <param name="Name">The tensor's name in the file.</param>
/// <param name="DType">The safetensors dtype string (F32, BF16, I64, ...).</param>
/// <param name="Shape">The tensor's shape.</param>
/// <param name="FilePath">The file that holds it.</param>
/// <param name="Begin">First byte of the data, absolute in the file.</param>
/// <param name="End">One past the last byte of the data, absolute in the file.</param>
public sealed record TensorEntry(string Name, string DType, IReadOnlyList<long> Shape, string FilePath, long Begin, long End)
{
    /// <summary>Number of elements (product of <see cref="Shape"/>; 1 for a scalar).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Number of bytes of data.</summary>
    public long ByteLength => End - Begin;
}
