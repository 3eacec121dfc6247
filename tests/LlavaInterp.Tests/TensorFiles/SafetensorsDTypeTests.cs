using System.Buffers.Binary;
using System.Text;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static LlavaInterp.Tests.TensorFiles.RawFiles;

namespace LlavaInterp.Tests.TensorFiles;

/// <summary>Every supported dtype loads with the right values, through the mapped and the copy path.</summary>
public sealed class SafetensorsDTypeTests
{
    // Values exactly representable in every float type used (including bf16 and f16).
    private static readonly double[] FloatValues = [1.5, -2.25, 0.0, 1024.0, -0.5, 3.0];
    private static readonly long[] IntValues = [1, -2, 0, 100, -128, 127];

    private static byte[] Encode(string dtype, double[] floats, long[] ints)
    {
        int n = floats.Length;
        var b = new byte[n * SafetensorsDType.ElementSize(dtype)];
        for (int i = 0; i < n; i++)
        {
            var s = b.AsSpan(i * SafetensorsDType.ElementSize(dtype));
            switch (dtype)
            {
                case "F64": BinaryPrimitives.WriteDoubleLittleEndian(s, floats[i]); break;
                case "F32": BinaryPrimitives.WriteSingleLittleEndian(s, (float)floats[i]); break;
                case "F16": BinaryPrimitives.WriteHalfLittleEndian(s, (Half)floats[i]); break;
                // bfloat16 is the top half of the float32 bit pattern (exact for these values).
                case "BF16": BinaryPrimitives.WriteUInt16LittleEndian(s, (ushort)(BitConverter.SingleToUInt32Bits((float)floats[i]) >> 16)); break;
                case "I64": BinaryPrimitives.WriteInt64LittleEndian(s, ints[i]); break;
                case "I32": BinaryPrimitives.WriteInt32LittleEndian(s, (int)ints[i]); break;
                case "I16": BinaryPrimitives.WriteInt16LittleEndian(s, (short)ints[i]); break;
                case "I8": s[0] = (byte)(sbyte)ints[i]; break;
                case "U8": s[0] = (byte)(ints[i] & 0xFF); break;
                case "BOOL": s[0] = ints[i] != 0 ? (byte)1 : (byte)0; break;
            }
        }

        return b;
    }

    private static double[] Expected(string dtype) => dtype switch
    {
        "F64" or "F32" or "F16" or "BF16" => FloatValues,
        "U8" => IntValues.Select(v => (double)(v & 0xFF)).ToArray(),
        "BOOL" => IntValues.Select(v => v != 0 ? 1.0 : 0.0).ToArray(),
        _ => IntValues.Select(v => (double)v).ToArray(),
    };

    public static TheoryData<string, torch.ScalarType> DTypes => new()
    {
        { "F64", torch.ScalarType.Float64 },
        { "F32", torch.ScalarType.Float32 },
        { "F16", torch.ScalarType.Float16 },
        { "BF16", torch.ScalarType.BFloat16 },
        { "I64", torch.ScalarType.Int64 },
        { "I32", torch.ScalarType.Int32 },
        { "I16", torch.ScalarType.Int16 },
        { "I8", torch.ScalarType.Int8 },
        { "U8", torch.ScalarType.Byte },
        { "BOOL", torch.ScalarType.Bool },
    };

    [Theory]
    [MemberData(nameof(DTypes))]
    public void EachDtypeLoadsAlignedAndUnaligned(string dtype, torch.ScalarType type)
    {
        using var dir = new TempDir();
        var data = Encode(dtype, FloatValues, IntValues);
        int n = data.Length;

        // "aligned" starts at offset 8 (a multiple of every element size); "unaligned" at 8+n+1, odd, so any
        // multi-byte type has to take the copy path. One padding byte sits in a 1-byte tensor between them.
        string header = $$$"""{"pad0":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"aligned":{"dtype":"{{{dtype}}}","shape":[2,3],"data_offsets":[8,{{{8 + n}}}]},"pad1":{"dtype":"U8","shape":[1],"data_offsets":[{{{8 + n}}},{{{9 + n}}}]},"unaligned":{"dtype":"{{{dtype}}}","shape":[3,2],"data_offsets":[{{{9 + n}}},{{{9 + 2 * n}}}]}}""";
        byte[] headerBytes = Encoding.UTF8.GetBytes(header);
        byte[] padded = headerBytes.Concat(Enumerable.Repeat((byte)' ', (8 - (headerBytes.Length % 8)) % 8)).ToArray();
        string path = dir.File("dtypes.safetensors");
        File.WriteAllBytes(path, Safetensors(padded, Concat(new byte[8], data, [0xAB], data)));

        using var f = SafetensorsFile.Open(path);
        Assert.True((f.GetEntry("unaligned").Begin % 2) == 1);
        double[] expected = Expected(dtype);
        foreach (var (name, shape) in new[] { ("aligned", new long[] { 2, 3 }), ("unaligned", new long[] { 3, 2 }) })
        {
            using var t = f.Load(name);
            Assert.Equal(type, t.dtype);
            Assert.Equal(shape, t.shape);
            using var d = t.to(torch.float64);
            Assert.Equal(expected, d.data<double>().ToArray());
        }

        using var pad = f.Load("pad1");
        Assert.Equal(0xAB, pad[0].item<byte>());
    }

    [Fact]
    public void EmptyAndScalarTensorsLoad()
    {
        using var dir = new TempDir();
        string header = """{"empty":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},"scalar":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"empty2":{"dtype":"I64","shape":[3,0],"data_offsets":[8,8]}}""";
        var data = new byte[8];
        BinaryPrimitives.WriteDoubleLittleEndian(data, 2.5);
        string path = WriteSafetensors(dir, "e.safetensors", header, data);
        using var f = SafetensorsFile.Open(path);
        using var empty = f.Load("empty");
        Assert.Equal([0L, 4L], empty.shape);
        Assert.Equal(torch.ScalarType.Float32, empty.dtype);
        using var empty2 = f.Load("empty2");
        Assert.Equal([3L, 0L], empty2.shape);
        using var scalar = f.Load("scalar");
        Assert.Empty(scalar.shape);
        Assert.Equal(2.5, scalar.item<double>());
    }

    [Fact]
    public void LoadConvertsDtype()
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "c.safetensors", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", F32(1.5f, -3f));
        using var f = SafetensorsFile.Open(path);
        using var a = f.Load("a", torch.ScalarType.Float64);
        Assert.Equal(torch.ScalarType.Float64, a.dtype);
        Assert.Equal([1.5, -3.0], a.data<double>().ToArray());
        using var b = f.Load("a", torch.ScalarType.Float32, torch.CPU);
        Assert.Equal([1.5f, -3f], b.data<float>().ToArray());
    }

    [Fact]
    public void MappingOutlivesTheCallersDisposeScope()
    {
        // The first Load creates the file mapping; a dispose scope around it must not take the mapping with it.
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "s.safetensors", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", F32(1, 2, 3, 4));
        using var f = SafetensorsFile.Open(path);
        using (torch.NewDisposeScope())
        {
            var a = f.Load("a");
            Assert.Equal(1f, a[0].item<float>());
        }

        using var b = f.Load("b");
        Assert.Equal([3f, 4f], b.data<float>().ToArray());
    }

    [Fact]
    public void LoadedTensorOutlivesTheFile()
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "l.safetensors", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", F32(5, 6));
        torch.Tensor a;
        using (var f = SafetensorsFile.Open(path))
        {
            a = f.Load("a");
        }

        using (a)
        {
            Assert.Equal([5f, 6f], a.data<float>().ToArray());
        }
    }
}
