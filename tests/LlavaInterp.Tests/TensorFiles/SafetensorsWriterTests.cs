using System.Buffers.Binary;
using System.Text;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static LlavaInterp.Tests.TensorFiles.RawFiles;

namespace LlavaInterp.Tests.TensorFiles;

public sealed class SafetensorsWriterTests
{
    private static void AssertSameBytes(byte[] expected, byte[] actual, string what)
    {
        int n = Math.Min(expected.Length, actual.Length);
        int first = expected.AsSpan(0, n).CommonPrefixLength(actual.AsSpan(0, n));
        Assert.True(expected.Length == actual.Length && first == n,
            $"{what}: lengths {expected.Length} vs {actual.Length}, first difference at byte {first}");
    }

    private static byte[] Resave(string original, TempDir dir)
    {
        using var file = SafetensorsFile.Open(original);
        var tensors = file.Names.Select(n => KeyValuePair.Create(n, file.Load(n))).ToList();
        try
        {
            string output = dir.File(Path.GetFileName(original));
            SafetensorsWriter.Save(output, tensors, file.Metadata.Count > 0 ? file.Metadata : null);
            return File.ReadAllBytes(output);
        }
        finally
        {
            tensors.ForEach(t => t.Value.Dispose());
        }
    }

    private static string HeaderText(byte[] file)
    {
        int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        return Encoding.UTF8.GetString(file, 8, length);
    }

    [Fact]
    public void GoldenFileIsReproducedByteForByte()
    {
        using var dir = new TempDir();
        string golden = Fixture.Path("golden.safetensors");
        AssertSameBytes(File.ReadAllBytes(golden), Resave(golden, dir), "golden.safetensors");
    }

    [Fact]
    public void ModelFileAndShardsAreReproducedByteForByte()
    {
        using var dir = new TempDir();
        var files = Directory.EnumerateFiles(Fixture.ShardedModelDir, "*.safetensors").Append(Path.Combine(Fixture.ModelDir, "model.safetensors"));
        int count = 0;
        foreach (var file in files)
        {
            using var sub = new TempDir();
            AssertSameBytes(File.ReadAllBytes(file), Resave(file, sub), file);
            count++;
        }

        Assert.Equal(6, count);
    }

    [Fact]
    public void MatchesTheReferenceCratesPublishedExamples()
    {
        // The byte layouts the Rust crate's own unit tests pin (test_serialization, test_serialization_forced_alignement, test_empty).
        using var data = torch.arange(0f, 6f).reshape(1, 2, 3);
        byte[] payload = F32(0, 1, 2, 3, 4, 5);

        var one = SafetensorsWriter.BuildHeader([KeyValuePair.Create("attn.0", data)]);
        Assert.Equal(Concat([64, 0, 0, 0, 0, 0, 0, 0], Encoding.ASCII.GetBytes("""{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}""")), one);

        using var data4 = data.reshape(1, 1, 2, 3);
        using var ms = new MemoryStream();
        SafetensorsWriter.Save(ms, [KeyValuePair.Create("attn0", data4)]);
        Assert.Equal(Concat([72, 0, 0, 0, 0, 0, 0, 0], Encoding.ASCII.GetBytes("""{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       """), payload), ms.ToArray());

        Assert.Equal(Concat([8, 0, 0, 0, 0, 0, 0, 0], Encoding.ASCII.GetBytes("{}      ")), SafetensorsWriter.BuildHeader([]));
        Assert.Equal(
            Concat([40, 0, 0, 0, 0, 0, 0, 0], Encoding.ASCII.GetBytes("""{"__metadata__":{"framework":"pt"}}     """)),
            SafetensorsWriter.BuildHeader([], new Dictionary<string, string> { ["framework"] = "pt" }));
    }

    private static List<KeyValuePair<string, torch.Tensor>> AllDtypes()
    {
        var values = new double[] { 1.5, -2.25, 0, 1024, -0.5, 3 };
        var ints = new long[] { 1, -2, 0, 100, -128, 127 };
        return
        [
            KeyValuePair.Create("f64", torch.tensor(values).reshape(2, 3)),
            KeyValuePair.Create("f32.t", torch.tensor(values).to(torch.float32).reshape(2, 3).t()), // non-contiguous
            KeyValuePair.Create("f16", torch.tensor(values).to(torch.float16)),
            KeyValuePair.Create("bf16", torch.tensor(values).to(torch.bfloat16).reshape(3, 2)),
            KeyValuePair.Create("i64", torch.tensor(ints)),
            KeyValuePair.Create("i32", torch.tensor(ints).to(torch.int32).reshape(1, 6)),
            KeyValuePair.Create("i16", torch.tensor(ints).to(torch.int16)),
            KeyValuePair.Create("i8", torch.tensor(ints).to(torch.int8)),
            KeyValuePair.Create("u8", torch.tensor(new byte[] { 0, 1, 255, 7, 128 })),
            KeyValuePair.Create("bool", torch.tensor(new[] { true, false, true })),
            KeyValuePair.Create("empty", torch.zeros(0, 5)),
            KeyValuePair.Create("scalar", torch.tensor(7.25)),
        ];
    }

    [Fact]
    public void EveryDtypeRoundTripsInTheReferenceLayoutOrder()
    {
        using var dir = new TempDir();
        var tensors = AllDtypes();
        try
        {
            string path = dir.File("all.safetensors");
            SafetensorsWriter.Save(path, tensors);
            using var f = SafetensorsFile.Open(path);
            Assert.Equal(tensors.Select(t => t.Key).OrderBy(n => n, StringComparer.Ordinal), f.Names);
            foreach (var (name, original) in tensors)
            {
                using var loaded = f.Load(name);
                Assert.Equal(original.dtype, loaded.dtype);
                Assert.Equal(original.shape, loaded.shape);
                Assert.Equal(TensorBytes.ToBytes(original), TensorBytes.ToBytes(loaded));
            }

            // Data laid out by descending dtype rank (I64 before F64 as in the Rust enum), then by name.
            var byOffset = f.Names.Select(f.GetEntry).OrderBy(e => e.Begin).ThenBy(e => e.End).Select(e => e.Name).ToList();
            // ("scalar" is F64; the 0-byte "empty" shares its offset with "f32.t" and sorts first here by End.)
            Assert.Equal(["i64", "f64", "scalar", "empty", "f32.t", "i32", "bf16", "f16", "i16", "i8", "u8", "bool"], byOffset);
            Assert.Equal(0, f.DataStart % 8);
        }
        finally
        {
            tensors.ForEach(t => t.Value.Dispose());
        }
    }

    [Fact]
    public void LargeTensorIsWrittenInPiecesAndRoundTrips()
    {
        // Over the 1 MiB piece size and not a multiple of it.
        using var dir = new TempDir();
        using var big = torch.arange(300_001, dtype: torch.float32).mul(0.5f);
        string path = dir.File("big.safetensors");
        SafetensorsWriter.Save(path, [KeyValuePair.Create("big", big)]);
        using var f = SafetensorsFile.Open(path);
        using var loaded = f.Load("big");
        Assert.Equal(TensorBytes.ToBytes(big), TensorBytes.ToBytes(loaded));
    }

    [Fact]
    public void NamesAreEscapedAndOrderedLikeSerdeJson()
    {
        using var dir = new TempDir();
        string[] names = ["😀", "\uFF61", "é", "quote\"back\\slash", "ctl\u0001\n\t\u001f\u007f"];
        var tensors = names.Select((n, i) => KeyValuePair.Create(n, torch.full(1, (float)i))).ToList();
        try
        {
            string path = dir.File("names.safetensors");
            SafetensorsWriter.Save(path, tensors);
            byte[] bytes = File.ReadAllBytes(path);
            string header = HeaderText(bytes);

            // Only quote, backslash and control characters are escaped (lowercase \u00xx); UTF-8 stays raw; DEL is not escaped.
            Assert.Contains("\"quote\\\"back\\\\slash\"", header, StringComparison.Ordinal);
            Assert.Contains("\"ctl\\u0001\\n\\t\\u001f\u007f\"", header, StringComparison.Ordinal);
            Assert.Contains("\"é\"", header, StringComparison.Ordinal);
            Assert.DoesNotContain("\\u00e9", header, StringComparison.Ordinal);

            // Rust orders names by UTF-8 bytes: U+FF61 (EF BD A1) before U+1F600 (F0 9F 98 80), unlike UTF-16 order.
            Assert.True(header.IndexOf("\uFF61", StringComparison.Ordinal) < header.IndexOf("😀", StringComparison.Ordinal));
            Assert.True(header.IndexOf("ctl", StringComparison.Ordinal) < header.IndexOf("quote", StringComparison.Ordinal));

            using var f = SafetensorsFile.Open(path);
            for (int i = 0; i < names.Length; i++)
            {
                using var t = f.Load(names[i]);
                Assert.Equal((float)i, t[0].item<float>());
            }
        }
        finally
        {
            tensors.ForEach(t => t.Value.Dispose());
        }
    }

    [Fact]
    public void MetadataIsWrittenFirstInItsOrderAndOnlyWhenGiven()
    {
        using var a = torch.ones(1);
        var meta = new Dictionary<string, string> { ["zeta"] = "1", ["alpha"] = "x\"y" };
        string withMeta = Encoding.UTF8.GetString(SafetensorsWriter.BuildHeader([KeyValuePair.Create("a", a)], meta));
        Assert.StartsWith("{\"__metadata__\":{\"zeta\":\"1\",\"alpha\":\"x\\\"y\"},\"a\":{", withMeta[8..], StringComparison.Ordinal);
        string none = Encoding.UTF8.GetString(SafetensorsWriter.BuildHeader([KeyValuePair.Create("a", a)]));
        Assert.StartsWith("{\"a\":{", none[8..], StringComparison.Ordinal);
        string empty = Encoding.UTF8.GetString(SafetensorsWriter.BuildHeader([KeyValuePair.Create("a", a)], new Dictionary<string, string>()));
        Assert.StartsWith("{\"__metadata__\":{},\"a\":{", empty[8..], StringComparison.Ordinal);

        using var dir = new TempDir();
        string path = dir.File("m.safetensors");
        SafetensorsWriter.Save(path, [KeyValuePair.Create("a", a)], meta);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(meta.ToList(), f.Metadata.ToList());
        Assert.Equal(["zeta", "alpha"], f.Metadata.Keys);
    }

    [Fact]
    public void StreamAndFileOutputsAreIdentical()
    {
        using var dir = new TempDir();
        var tensors = AllDtypes();
        try
        {
            string path = dir.File("s.safetensors");
            SafetensorsWriter.Save(path, tensors, new Dictionary<string, string> { ["format"] = "pt" });
            using var ms = new MemoryStream();
            SafetensorsWriter.Save(ms, tensors, new Dictionary<string, string> { ["format"] = "pt" });
            Assert.Equal(File.ReadAllBytes(path), ms.ToArray());
        }
        finally
        {
            tensors.ForEach(t => t.Value.Dispose());
        }
    }

    private sealed class CallbackProgress(Action<long> onReport) : IProgress<long>
    {
        public void Report(long value) => onReport(value);
    }

    [Fact]
    public void CancellationMidWayLeavesNoFile()
    {
        using var dir = new TempDir();
        using var a = torch.ones(1000, dtype: torch.int64);
        using var b = torch.ones(1000);
        using var cts = new CancellationTokenSource();
        var reports = new List<long>();
        var progress = new CallbackProgress(n =>
        {
            reports.Add(n);
            cts.Cancel();
        });
        string path = dir.File("out.safetensors");
        Assert.ThrowsAny<OperationCanceledException>(() =>
            SafetensorsWriter.Save(path, [KeyValuePair.Create("a", a), KeyValuePair.Create("b", b)], null, progress, cts.Token));
        Assert.Equal([8000L], reports); // the first tensor (I64 "a") was written before the cancellation
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void FailureMidWayLeavesNoFileAndKeepsTheOldOne()
    {
        using var dir = new TempDir();
        string path = dir.File("out.safetensors");
        File.WriteAllText(path, "previous content");
        using var a = torch.ones(1000, dtype: torch.int64);
        var b = torch.ones(1000);

        // Disposing "b" after "a" is written makes reading b's data fail half-way through the file.
        var progress = new CallbackProgress(_ => b.Dispose());
        var ex = Assert.Throws<TensorFileException>(() =>
            SafetensorsWriter.Save(path, [KeyValuePair.Create("a", a), KeyValuePair.Create("b", b)], null, progress));
        Assert.Equal("b", ex.TensorName);
        Assert.Equal(path, ex.FilePath);
        Assert.Equal("previous content", File.ReadAllText(path));
        Assert.Single(Directory.EnumerateFileSystemEntries(dir.Path));
    }

    [Fact]
    public void InvalidInputIsRejectedBeforeAnyFileIsCreated()
    {
        using var dir = new TempDir();
        string path = dir.File("bad.safetensors");
        using var ok = torch.ones(2);
        using var complex = torch.ones(2, dtype: torch.complex64);

        AssertThrows(() => SafetensorsWriter.Save(path, [KeyValuePair.Create("x", ok), KeyValuePair.Create("x", ok)]), path, "x", "more than once");
        AssertThrows(() => SafetensorsWriter.Save(path, [KeyValuePair.Create("__metadata__", ok)]), path, "__metadata__", "reserved");
        AssertThrows(() => SafetensorsWriter.Save(path, [KeyValuePair.Create("c", complex)]), path, "c", "cannot be stored");
        AssertThrows(() => SafetensorsWriter.Save(path, [KeyValuePair.Create("n", (torch.Tensor)null!)]), path, "n", "null");
        AssertThrows(() => SafetensorsWriter.Save(path, [KeyValuePair.Create("bad\uD800", ok)]), path, "bad\uD800", "Unicode");
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Path));

        string nowhere = Path.Combine(dir.Path, "missing", "x.safetensors");
        AssertThrows(() => SafetensorsWriter.Save(nowhere, [KeyValuePair.Create("x", ok)]), nowhere, null, "folder does not exist");
    }

    [Fact]
    public void OverwritesAnExistingFile()
    {
        using var dir = new TempDir();
        string path = dir.File("o.safetensors");
        File.WriteAllText(path, "old");
        using var a = torch.full(3, 2f);
        SafetensorsWriter.Save(path, [KeyValuePair.Create("a", a)]);
        using var f = SafetensorsFile.Open(path);
        using var loaded = f.Load("a");
        Assert.Equal([2f, 2f, 2f], loaded.data<float>().ToArray());
        Assert.Single(Directory.EnumerateFileSystemEntries(dir.Path));
    }
}
