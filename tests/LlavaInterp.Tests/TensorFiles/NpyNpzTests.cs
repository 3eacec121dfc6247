using System.Buffers.Binary;
using System.IO.Compression;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static LlavaInterp.Tests.TensorFiles.RawFiles;

namespace LlavaInterp.Tests.TensorFiles;

public sealed class NpyNpzTests(ITestOutputHelper output)
{
    private static string GemmaScope => Fixture.Path("sae", "gemmascope-L3", "params.npz");

    private static string WriteNpy(TempDir dir, string name, byte[] bytes)
    {
        string path = dir.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static string Dict(string descr, string shape, string fortran = "False") =>
        $"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}";

    [Fact]
    public void GemmaScopeParamsLoadWithTheirShapes()
    {
        using var npz = Npz.Load(GemmaScope);
        Assert.Equal(["W_enc", "W_dec", "b_enc", "b_dec", "threshold"], npz.Names);
        Assert.Equal(5, npz.Count);
        Assert.Equal([64L, 128L], npz["W_enc"].shape);
        Assert.Equal([128L, 64L], npz["W_dec"].shape);
        Assert.Equal([128L], npz["b_enc"].shape);
        Assert.Equal([64L], npz["b_dec"].shape);
        Assert.Equal([128L], npz["threshold"].shape);
        Assert.All(npz.Values, t => Assert.Equal(torch.ScalarType.Float32, t.dtype));
        Assert.True(npz.ContainsKey("threshold"));
        Assert.False(npz.TryGetValue("W_enc.npy", out _));
        AssertThrows(() => _ = npz["nope"], GemmaScope, "nope", "W_enc, W_dec");
    }

    [Fact]
    public void GemmaScopeParamsReproduceTheGoldenJumpReluActivations()
    {
        // The fixture's reference run computed these from the same params: pre = x @ W_enc + b_enc,
        // acts = (pre > threshold) * relu(pre), recon = acts @ W_dec + b_dec.
        using var npz = Npz.Load(GemmaScope);
        using var scope = torch.NewDisposeScope();
        var x = Fixture.Load("sae.jumprelu.input");
        var pre = torch.matmul(x, npz["W_enc"]) + npz["b_enc"];
        double d1 = TensorAssert.Close(Fixture.Load("sae.jumprelu.hidden_pre"), pre, what: "hidden_pre");

        var goldenPre = Fixture.Load("sae.jumprelu.hidden_pre");
        var acts = goldenPre.gt(npz["threshold"]).to(torch.float32) * torch.nn.functional.relu(goldenPre);
        double d2 = TensorAssert.Close(Fixture.Load("sae.jumprelu.feature_acts"), acts, what: "feature_acts");

        var recon = torch.matmul(Fixture.Load("sae.jumprelu.feature_acts"), npz["W_dec"]) + npz["b_dec"];
        double d3 = TensorAssert.Close(Fixture.Load("sae.jumprelu.reconstruction"), recon, what: "reconstruction");
        output.WriteLine($"max |diff|: hidden_pre {d1:E3}, feature_acts {d2:E3}, reconstruction {d3:E3}");
    }

    [Fact]
    public void DeflateCompressedArchiveMatchesTheStoredOne()
    {
        using var dir = new TempDir();
        string compressed = dir.File("params_compressed.npz");
        using (var source = ZipFile.OpenRead(GemmaScope))
        using (var target = ZipFile.Open(compressed, ZipArchiveMode.Create))
        {
            foreach (var entry in source.Entries)
            {
                Assert.Equal(entry.Length, entry.CompressedLength); // the fixture stores its members
                var copy = target.CreateEntry(entry.FullName, CompressionLevel.Optimal);
                using var from = entry.Open();
                using var to = copy.Open();
                from.CopyTo(to);
            }
        }

        using (var check = ZipFile.OpenRead(compressed))
        {
            Assert.All(check.Entries, e => Assert.True(e.CompressedLength < e.Length));
        }

        using var stored = Npz.Load(GemmaScope);
        using var deflated = Npz.Load(compressed);
        Assert.Equal(stored.Names, deflated.Names);
        foreach (var name in stored.Names)
        {
            Assert.Equal(TensorBytes.ToBytes(stored[name]), TensorBytes.ToBytes(deflated[name]));
        }
    }

    [Fact]
    public void ArchiveArraysOutliveTheCallersDisposeScope()
    {
        NpzFile npz;
        using (torch.NewDisposeScope())
        {
            npz = Npz.Load(GemmaScope);
        }

        using (npz)
        {
            Assert.Equal(64 * 128, npz["W_enc"].numel());
            Assert.True(npz["W_enc"].abs().sum().item<float>() > 0);
        }

        Assert.Throws<ObjectDisposedException>(() => npz["W_enc"]);
    }

    public static TheoryData<string, torch.ScalarType, int> Dtypes => new()
    {
        { "<f8", torch.ScalarType.Float64, 8 },
        { "<f4", torch.ScalarType.Float32, 4 },
        { "<f2", torch.ScalarType.Float16, 2 },
        { "<i8", torch.ScalarType.Int64, 8 },
        { "<i4", torch.ScalarType.Int32, 4 },
        { "<i2", torch.ScalarType.Int16, 2 },
        { "|i1", torch.ScalarType.Int8, 1 },
        { "|u1", torch.ScalarType.Byte, 1 },
        { "|b1", torch.ScalarType.Bool, 1 },
    };

    [Theory]
    [MemberData(nameof(Dtypes))]
    public void EachDtypeLoads(string descr, torch.ScalarType type, int size)
    {
        double[] values = [1.5, -2.0, 0.0, 3.0, 100.0, -0.25];
        var data = new byte[values.Length * size];
        var expected = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            var s = data.AsSpan(i * size);
            double v = values[i];
            switch (descr)
            {
                case "<f8": BinaryPrimitives.WriteDoubleLittleEndian(s, v); expected[i] = v; break;
                case "<f4": BinaryPrimitives.WriteSingleLittleEndian(s, (float)v); expected[i] = v; break;
                case "<f2": BinaryPrimitives.WriteHalfLittleEndian(s, (Half)v); expected[i] = v; break;
                case "<i8": BinaryPrimitives.WriteInt64LittleEndian(s, (long)v); expected[i] = (long)v; break;
                case "<i4": BinaryPrimitives.WriteInt32LittleEndian(s, (int)v); expected[i] = (int)v; break;
                case "<i2": BinaryPrimitives.WriteInt16LittleEndian(s, (short)v); expected[i] = (short)v; break;
                case "|i1": s[0] = (byte)(sbyte)v; expected[i] = (sbyte)v; break;
                case "|u1": s[0] = (byte)(i * 50); expected[i] = i * 50; break;
                case "|b1": s[0] = v > 0 ? (byte)1 : (byte)0; expected[i] = v > 0 ? 1 : 0; break;
            }
        }

        using var dir = new TempDir();
        string path = WriteNpy(dir, "a.npy", NpyBytes(Dict(descr, "(2, 3)"), data));
        using var t = Npy.Load(path);
        Assert.Equal(type, t.dtype);
        Assert.Equal([2L, 3L], t.shape);
        using var d = t.to(torch.float64);
        Assert.Equal(expected, d.data<double>().ToArray());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void HeaderVersionsLoad(int major)
    {
        using var dir = new TempDir();
        string path = WriteNpy(dir, $"v{major}.npy", NpyBytes(Dict("<f4", "(3,)"), F32(1, 2, 3), major));
        using var t = Npy.Load(path);
        Assert.Equal([1f, 2f, 3f], t.data<float>().ToArray());
    }

    [Theory]
    [InlineData("()", new long[0], 1)]
    [InlineData("(0, 3)", new long[] { 0, 3 }, 0)]
    [InlineData("(4,)", new long[] { 4 }, 4)]
    [InlineData("(1L, 2L)", new long[] { 1, 2 }, 2)]
    public void ShapesLoad(string shape, long[] expected, int count)
    {
        using var dir = new TempDir();
        string path = WriteNpy(dir, "s.npy", NpyBytes(Dict("<f4", shape), F32(Enumerable.Range(1, count).Select(i => (float)i).ToArray())));
        using var t = Npy.Load(path);
        Assert.Equal(expected, t.shape);
        Assert.Equal(count, t.numel());
    }

    [Fact]
    public void HeaderKeyOrderAndQuotesDoNotMatter()
    {
        using var dir = new TempDir();
        string path = WriteNpy(dir, "o.npy", NpyBytes("{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<i8\"}", Concat(BitConverter.GetBytes(5L), BitConverter.GetBytes(-6L))));
        using var t = Npy.Load(path);
        Assert.Equal([5L, -6L], t.data<long>().ToArray());
    }

    [Fact]
    public void FortranFlagIsHarmlessForOneDimensionalArrays()
    {
        using var dir = new TempDir();
        string path = WriteNpy(dir, "f1.npy", NpyBytes(Dict("<f4", "(3, 1)", "True"), F32(1, 2, 3)));
        using var t = Npy.Load(path);
        Assert.Equal([1f, 2f, 3f], t.flatten().data<float>().ToArray());
    }

    [Fact]
    public void LargeArrayIsReadInPieces()
    {
        using var dir = new TempDir();
        var values = Enumerable.Range(0, 300_001).Select(i => i * 0.5f).ToArray();
        string path = WriteNpy(dir, "big.npy", NpyBytes(Dict("<f4", "(300001,)"), F32(values)));
        using var t = Npy.Load(path);
        Assert.Equal(values, t.data<float>().ToArray());
    }

    [Fact]
    public void StreamOverloadNamesItsSource()
    {
        using var ms = new MemoryStream(NpyBytes(Dict("<f4", "(2,)"), F32(1, 2)));
        using var t = Npy.Load(ms, "memory");
        Assert.Equal([1f, 2f], t.data<float>().ToArray());
        using var bad = new MemoryStream(NpyBytes(Dict(">f4", "(2,)"), F32(1, 2)));
        AssertThrows(() => Npy.Load(bad, "memory"), "memory", null, "little-endian");
    }

    public static TheoryData<byte[], string> BadNpy => new()
    {
        { NpyBytes(Dict("<f4", "(2, 3)", "True"), F32(1, 2, 3, 4, 5, 6)), "Fortran" },
        { NpyBytes(Dict(">f4", "(2,)"), F32(1, 2)), "little-endian" },
        { NpyBytes(Dict(">i8", "(1,)"), new byte[8]), "little-endian" },
        { NpyBytes(Dict("|O", "(1,)"), new byte[8]), "object dtype" },
        { NpyBytes("{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }", new byte[8]), "structured" },
        { NpyBytes(Dict("<c8", "(1,)"), new byte[8]), "unsupported dtype '<c8'" },
        { NpyBytes(Dict("<u4", "(1,)"), new byte[4]), "unsupported dtype '<u4'" },
        { NpyBytes(Dict("<U5", "(1,)"), new byte[20]), "unsupported dtype" },
        { NpyBytes(Dict("<f4", "(2, 3)"), F32(1, 2, 3, 4, 5)), "truncated" },
        { NpyBytes(Dict("<f4", "(2, -3)"), F32(1)), "non-negative" },
        { NpyBytes(Dict("<f4", "(2, 3.0)"), F32(1)), "not a valid Python dict" },
        { NpyBytes(Dict("<f4", "[2, 'x']"), F32(1)), "non-negative integers" },
        { NpyBytes("{'descr': '<f4', 'shape': (1,), }", F32(1)), "exactly the keys" },
        { NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'extra': 1}", F32(1)), "exactly the keys" },
        { NpyBytes("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", F32(1)), "more than once" },
        { NpyBytes("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", F32(1)), "True or False" },
        { NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,) ", F32(1)), "not a valid Python dict" },
        { NpyBytes("['descr']", F32(1)), "not a dict" },
        { NpyBytes(Dict("<f4", "(1,)"), F32(1), major: 4), "unsupported NPY format version 4.0" },
        { NpyBytes(Dict("<f4", "(1,)"), F32(1), major: 1, minor: 1), "unsupported NPY format version 1.1" },
        { Concat("NUMPY\x01\x00"u8.ToArray(), new byte[8]), "bad magic" },
        { NpyBytes(Dict("<f4", "(1,)"), F32(1))[..7], "truncated" },
        { NpyBytes(Dict("<f4", "(1,)"), F32(1))[..9], "truncated" },
        { NpyBytes(Dict("<f4", "(1,)"), F32(1))[..40], "truncated" },
        { NpyBytes(Dict("<f4", "(4611686018427387904, 8)"), F32(1)), "too large" },
    };

    [Theory]
    [MemberData(nameof(BadNpy))]
    public void MalformedNpyIsRejectedNamingTheFile(byte[] bytes, string fragment)
    {
        using var dir = new TempDir();
        string path = WriteNpy(dir, "bad.npy", bytes);
        AssertThrows(() => Npy.Load(path).Dispose(), path, null, fragment);
    }

    [Fact]
    public void TruncatedNpyStreamWithUnknownLengthIsRejected()
    {
        // A non-seekable stream cannot be checked up front: the read itself must detect the short data.
        var bytes = NpyBytes(Dict("<f4", "(2, 3)"), F32(1, 2, 3, 4, 5));
        using var stream = new NonSeekable(bytes);
        AssertThrows(() => Npy.Load(stream, "pipe").Dispose(), "pipe", null, "truncated");
    }

    private sealed class NonSeekable(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();
    }

    [Fact]
    public void MissingNpyFileIsRejected()
    {
        using var dir = new TempDir();
        string path = dir.File("none.npy");
        AssertThrows(() => Npy.Load(path).Dispose(), path, null, "not found");
    }

    private static string WriteNpz(TempDir dir, string name, params (string Member, byte[] Bytes, CompressionLevel Level)[] members)
    {
        string path = dir.File(name);
        using var zip = ZipFile.Open(path, ZipArchiveMode.Create);
        foreach (var (member, bytes, level) in members)
        {
            var entry = zip.CreateEntry(member, level);
            using var s = entry.Open();
            s.Write(bytes);
        }

        return path;
    }

    [Theory]
    [InlineData(CompressionLevel.NoCompression)]
    [InlineData(CompressionLevel.Optimal)]
    public void BadArrayInsideAnArchiveIsNamed(CompressionLevel level)
    {
        using var dir = new TempDir();
        string path = WriteNpz(dir, "bad.npz",
            ("good.npy", NpyBytes(Dict("<f4", "(2,)"), F32(1, 2)), level),
            ("fortran.npy", NpyBytes(Dict("<f4", "(2, 2)", "True"), F32(1, 2, 3, 4)), level));
        AssertThrows(() => Npz.Load(path).Dispose(), path, "fortran", "Fortran");

        string cut = WriteNpz(dir, "cut.npz", ("short.npy", NpyBytes(Dict("<f8", "(4,)"), new byte[20]), level));
        AssertThrows(() => Npz.Load(cut).Dispose(), cut, "short", "truncated");

        string big = WriteNpz(dir, "big.npz", (">be.npy", NpyBytes(Dict(">f4", "(1,)"), F32(1)), level));
        AssertThrows(() => Npz.Load(big).Dispose(), big, ">be", "little-endian");

        string obj = WriteNpz(dir, "obj.npz", ("o.npy", NpyBytes(Dict("|O", "(1,)"), new byte[8]), level));
        AssertThrows(() => Npz.Load(obj).Dispose(), obj, "o", "object dtype");
    }

    [Fact]
    public void NonNpyMembersAreIgnoredAndDuplicatesRejected()
    {
        using var dir = new TempDir();
        string path = WriteNpz(dir, "mixed.npz",
            ("a.npy", NpyBytes(Dict("<f4", "(1,)"), F32(4)), CompressionLevel.Optimal),
            ("readme.txt", "hello"u8.ToArray(), CompressionLevel.Optimal));
        using (var npz = Npz.Load(path))
        {
            Assert.Equal(["a"], npz.Names);
            Assert.Equal(4f, npz["a"][0].item<float>());
            Assert.Equal(["a"], npz.Select(kv => kv.Key));
        }

        string dup = WriteNpz(dir, "dup.npz",
            ("a.npy", NpyBytes(Dict("<f4", "(1,)"), F32(4)), CompressionLevel.Optimal),
            ("a.npy", NpyBytes(Dict("<f4", "(1,)"), F32(5)), CompressionLevel.Optimal));
        AssertThrows(() => Npz.Load(dup).Dispose(), dup, "a", "more than once");
    }

    [Fact]
    public void NotAZipIsRejected()
    {
        using var dir = new TempDir();
        string path = WriteNpy(dir, "fake.npz", NpyBytes(Dict("<f4", "(1,)"), F32(1)));
        AssertThrows(() => Npz.Load(path).Dispose(), path, null, "not a valid zip archive");
        string missing = dir.File("missing.npz");
        AssertThrows(() => Npz.Load(missing).Dispose(), missing, null, "not found");
    }

    [Fact]
    public void CorruptDeflateDataIsRejectedNamingTheArray()
    {
        using var dir = new TempDir();
        var payload = NpyBytes(Dict("<f4", "(4096,)"), F32(Enumerable.Range(0, 4096).Select(i => (float)(i % 7)).ToArray()));
        string path = WriteNpz(dir, "corrupt.npz", ("w.npy", payload, CompressionLevel.Optimal));

        // Overwrite the middle of the compressed member data (local header is 30 bytes + the 5-byte name).
        var bytes = File.ReadAllBytes(path);
        long compressedLength;
        using (var zip = ZipFile.OpenRead(path))
        {
            compressedLength = zip.Entries[0].CompressedLength;
        }

        for (int i = 0; i < compressedLength / 2; i++)
        {
            bytes[35 + (compressedLength / 4) + i] = 0xFF;
        }

        File.WriteAllBytes(path, bytes);
        var ex = Assert.Throws<TensorFileException>(() => Npz.Load(path).Dispose());
        Assert.Equal(path, ex.FilePath);
        Assert.Equal("w", ex.TensorName);
    }
}
