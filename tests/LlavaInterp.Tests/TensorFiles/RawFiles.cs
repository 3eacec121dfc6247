using System.Buffers.Binary;
using System.Text;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.TensorFiles;

/// <summary>Builds tensor files byte by byte, independently of the library's own writer.</summary>
internal static class RawFiles
{
    /// <summary>A safetensors file: 8-byte little-endian header length, the header bytes as given, then the data.</summary>
    public static byte[] Safetensors(byte[] header, byte[] data, ulong? declaredLength = null)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    /// <summary>A safetensors file whose header is the given JSON text (UTF-8).</summary>
    public static byte[] Safetensors(string headerJson, byte[] data) => Safetensors(Encoding.UTF8.GetBytes(headerJson), data);

    /// <summary>Writes a safetensors file and returns its path.</summary>
    public static string WriteSafetensors(TempDir dir, string name, string headerJson, byte[] data)
    {
        string path = dir.File(name);
        File.WriteAllBytes(path, Safetensors(headerJson, data));
        return path;
    }

    /// <summary>An NPY file: magic, version, header length, the dict text padded with spaces and a newline to 64 bytes, then the data.</summary>
    public static byte[] NpyBytes(string dict, byte[] data, int major = 1, int minor = 0)
    {
        int prefix = major == 1 ? 10 : 12;
        var encoding = major == 3 ? Encoding.UTF8 : Encoding.Latin1;
        int textLength = encoding.GetByteCount(dict);
        int total = (prefix + textLength + 1 + 63) / 64 * 64;
        string header = dict + new string(' ', total - prefix - textLength - 1) + "\n";
        byte[] headerBytes = encoding.GetBytes(header);
        var bytes = new List<byte> { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', (byte)major, (byte)minor };
        var len = new byte[major == 1 ? 2 : 4];
        if (major == 1)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(len, (ushort)headerBytes.Length);
        }
        else
        {
            BinaryPrimitives.WriteUInt32LittleEndian(len, (uint)headerBytes.Length);
        }

        bytes.AddRange(len);
        bytes.AddRange(headerBytes);
        bytes.AddRange(data);
        return bytes.ToArray();
    }

    /// <summary>Little-endian bytes of float32 values.</summary>
    public static byte[] F32(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        }

        return bytes;
    }

    /// <summary>Concatenates byte arrays.</summary>
    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    /// <summary>Asserts the action throws a <see cref="TensorFileException"/> naming the file (and tensor) and containing the fragment.</summary>
    public static TensorFileException AssertThrows(Action action, string file, string? tensor, string fragment)
    {
        var ex = Assert.Throws<TensorFileException>(action);
        Assert.Equal(file, ex.FilePath);
        Assert.Contains(file, ex.Message, StringComparison.Ordinal);
        if (tensor is not null)
        {
            Assert.Equal(tensor, ex.TensorName);
            Assert.Contains($"'{tensor}'", ex.Message, StringComparison.Ordinal);
        }

        Assert.Contains(fragment, ex.Message, StringComparison.OrdinalIgnoreCase);
        return ex;
    }
}
