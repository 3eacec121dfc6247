using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>Maps safetensors dtype strings to TorchSharp scalar types and element sizes.</summary>
public static class SafetensorsDType
{
    // Position in the Rust crate's Dtype enum (BOOL < U8 < I8 < F8_E5M2 < F8_E4M3 < I16 < U16 < F16 < BF16
    // < I32 < U32 < F32 < F64 < I64 < U64): the Python writer lays tensors out by this rank, descending.
    private static readonly Dictionary<string, int> RustOrder = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 0, ["U8"] = 1, ["I8"] = 2, ["I16"] = 5, ["F16"] = 7, ["BF16"] = 8,
        ["I32"] = 9, ["F32"] = 11, ["F64"] = 12, ["I64"] = 13,
    };

    private static readonly Dictionary<string, (torch.ScalarType Type, int Size)> ByName = new(StringComparer.Ordinal)
    {
        ["F64"] = (torch.ScalarType.Float64, 8),
        ["F32"] = (torch.ScalarType.Float32, 4),
        ["F16"] = (torch.ScalarType.Float16, 2),
        ["BF16"] = (torch.ScalarType.BFloat16, 2),
        ["I64"] = (torch.ScalarType.Int64, 8),
        ["I32"] = (torch.ScalarType.Int32, 4),
        ["I16"] = (torch.ScalarType.Int16, 2),
        ["I8"] = (torch.ScalarType.Int8, 1),
        ["U8"] = (torch.ScalarType.Byte, 1),
        ["BOOL"] = (torch.ScalarType.Bool, 1),
    };

    /// <summary>Whether the dtype string is one this library reads.</summary>
    public static bool IsKnown(string dtype) => ByName.ContainsKey(dtype);

    /// <summary>The TorchSharp scalar type for a safetensors dtype string.</summary>
    public static torch.ScalarType ToScalarType(string dtype) => ByName[dtype].Type;

    /// <summary>Bytes per element of a safetensors dtype string.</summary>
    public static int ElementSize(string dtype) => ByName[dtype].Size;

    /// <summary>
    /// Rank of the dtype in the reference implementation's serialisation order: the Python <c>safetensors</c>
    /// package writes tensors by descending rank, then by name.
    /// </summary>
    internal static int SerializationRank(string dtype) => RustOrder[dtype];

    /// <summary>The safetensors dtype string for a TorchSharp scalar type.</summary>
    /// <exception cref="NotSupportedException">The type has no safetensors name here.</exception>
    public static string FromScalarType(torch.ScalarType type)
    {
        foreach (var (name, info) in ByName)
        {
            if (info.Type == type)
            {
                return name;
            }
        }

        throw new NotSupportedException($"Scalar type {type} cannot be stored in safetensors by this library.");
    }
}
