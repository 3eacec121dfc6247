using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>Maps safetensors dtype strings to TorchSharp scalar types and element sizes.</summary>
public static class SafetensorsDType
{
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
