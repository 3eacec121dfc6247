using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>Conversions between raw little-endian bytes and CPU tensors.</summary>
public static class TensorBytes
{
    /// <summary>Creates a CPU tensor of the given type and shape from little-endian bytes (copied).</summary>
    public static torch.Tensor FromBytes(ReadOnlySpan<byte> bytes, torch.ScalarType type, long[] shape)
    {
        var t = torch.empty(shape, dtype: type);
        if (bytes.Length == 0)
        {
            return t;
        }

        var dst = t.bytes;
        if (dst.Length != bytes.Length)
        {
            t.Dispose();
            throw new ArgumentException($"Expected {dst.Length} bytes for {type} [{string.Join(", ", shape)}], got {bytes.Length}.");
        }

        bytes.CopyTo(dst);
        return t;
    }

    /// <summary>The tensor's contents as contiguous little-endian bytes (the tensor is moved to the CPU first if needed).</summary>
    public static byte[] ToBytes(torch.Tensor tensor)
    {
        using var cpu = tensor.device_type == DeviceType.CPU ? tensor.contiguous() : tensor.cpu().contiguous();
        return cpu.bytes.ToArray();
    }

    internal static int SizeOf(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Float64 or torch.ScalarType.Int64 => 8,
        torch.ScalarType.Float32 or torch.ScalarType.Int32 => 4,
        torch.ScalarType.Float16 or torch.ScalarType.BFloat16 or torch.ScalarType.Int16 => 2,
        torch.ScalarType.Int8 or torch.ScalarType.Byte or torch.ScalarType.Bool => 1,
        _ => throw new NotSupportedException($"Scalar type {type} is not supported."),
    };
}
