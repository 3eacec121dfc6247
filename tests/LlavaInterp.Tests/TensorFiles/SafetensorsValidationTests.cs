using System.Text;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using static LlavaInterp.Tests.TensorFiles.RawFiles;

namespace LlavaInterp.Tests.TensorFiles;

/// <summary>Each malformed file is rejected with a <see cref="TensorFileException"/> naming the file and, where one is at fault, the tensor.</summary>
public sealed class SafetensorsValidationTests
{
    private const string A16 = """{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}""";

    private static void Open(string path)
    {
        using var f = SafetensorsFile.Open(path);
    }

    [Fact]
    public void ValidSmallFileOpens()
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "ok.safetensors", A16, F32(1, 2, 3, 4));
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(["a"], f.Names);
        Assert.Empty(f.Metadata);
        using var a = f.Load("a");
        Assert.Equal([1f, 2f, 3f, 4f], a.data<float>().ToArray());
    }

    [Fact]
    public void MissingFileIsRejected()
    {
        using var dir = new TempDir();
        string path = dir.File("absent.safetensors");
        AssertThrows(() => Open(path), path, null, "not found");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    public void FileShorterThanTheLengthPrefixIsRejected(int length)
    {
        using var dir = new TempDir();
        string path = dir.File("short.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        AssertThrows(() => Open(path), path, null, "truncated");
    }

    [Fact]
    public void DataCutShortIsRejectedNamingTheTensor()
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "cut.safetensors", A16, F32(1, 2));
        AssertThrows(() => Open(path), path, "a", "past the end of the data area");
    }

    [Fact]
    public void HeaderLengthPastEndOfFileIsRejected()
    {
        using var dir = new TempDir();
        string path = dir.File("hdr.safetensors");
        File.WriteAllBytes(path, Safetensors(Encoding.UTF8.GetBytes("{}      "), [], declaredLength: 100));
        AssertThrows(() => Open(path), path, null, "past the end of the file");
    }

    [Theory]
    [InlineData(100_000_001UL)]
    [InlineData(ulong.MaxValue)]
    public void HeaderLengthOverTheBoundIsRejected(ulong declared)
    {
        using var dir = new TempDir();
        string path = dir.File("big.safetensors");
        File.WriteAllBytes(path, Safetensors(Encoding.UTF8.GetBytes("{}      "), [], declaredLength: declared));
        AssertThrows(() => Open(path), path, null, "exceeds");
    }

    [Fact]
    public void InvalidUtf8HeaderIsRejected()
    {
        using var dir = new TempDir();
        string path = dir.File("utf8.safetensors");
        var header = Encoding.UTF8.GetBytes("""{"a?":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""");
        header[3] = 0xFF; // the '?' becomes a byte that is never valid UTF-8
        File.WriteAllBytes(path, Safetensors(header, F32(1)));
        AssertThrows(() => Open(path), path, null, "UTF-8");
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}""")]
    [InlineData("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},}""")]
    [InlineData("not json")]
    [InlineData("")]
    public void BadJsonIsRejected(string header)
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "json.safetensors", header, F32(1));
        AssertThrows(() => Open(path), path, null, "JSON");
    }

    [Theory]
    [InlineData("[1,2]")]
    [InlineData("\"text\"")]
    [InlineData("42")]
    public void NonObjectHeaderIsRejected(string header)
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "arr.safetensors", header, []);
        AssertThrows(() => Open(path), path, null, "not a JSON object");
    }

    [Theory]
    [InlineData("F8_E4M3")]
    [InlineData("f32")]
    [InlineData("U64")]
    [InlineData("C64")]
    public void UnknownDtypeIsRejected(string dtype)
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "dtype.safetensors", $$$"""{"w":{"dtype":"{{{dtype}}}","shape":[4],"data_offsets":[0,16]}}""", F32(1, 2, 3, 4));
        AssertThrows(() => Open(path), path, "w", $"unknown dtype '{dtype}'");
    }

    [Theory]
    [InlineData("[2,2]", "[0,12]")]
    [InlineData("[3]", "[0,16]")]
    [InlineData("[]", "[0,0]")]
    [InlineData("[0,4]", "[0,4]")]
    public void ShapeTimesDtypeSizeMustEqualTheSpan(string shape, string offsets)
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "size.safetensors", $$$"""{"w":{"dtype":"F32","shape":{{{shape}}},"data_offsets":{{{offsets}}}}}""", F32(1, 2, 3, 4));
        AssertThrows(() => Open(path), path, "w", "bytes but data_offsets span");
    }

    [Fact]
    public void SpanPastTheDataAreaIsRejected()
    {
        using var dir = new TempDir();
        string header = """{"ok":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}""";
        string path = WriteSafetensors(dir, "past.safetensors", header, F32(1, 2, 3, 4));
        AssertThrows(() => Open(path), path, "w", "past the end of the data area");
    }

    [Theory]
    [InlineData("[4,2]")]
    [InlineData("[\"0\",8]")]
    [InlineData("[0]")]
    [InlineData("[0,8,16]")]
    [InlineData("[-8,0]")]
    [InlineData("[0.0,8]")]
    public void MalformedOffsetsAreRejected(string offsets)
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "off.safetensors", $$$"""{"w":{"dtype":"F32","shape":[2],"data_offsets":{{{offsets}}}}}""", F32(1, 2, 3, 4));
        AssertThrows(() => Open(path), path, "w", "data_offsets");
    }

    [Theory]
    [InlineData("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", "non-negative")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}""", "non-negative")]
    [InlineData("""{"w":{"dtype":"F32","data_offsets":[0,4]}}""", "'shape'")]
    [InlineData("""{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}""", "'dtype'")]
    [InlineData("""{"w":[1,2]}""", "must be an object")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}""", "'shape' appears more than once")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}""", "too large")]
    public void MalformedEntriesAreRejected(string header, string fragment)
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "entry.safetensors", header, F32(1));
        AssertThrows(() => Open(path), path, "w", fragment);
    }

    [Fact]
    public void UnknownEntryFieldsAreIgnored()
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "extra.safetensors", """{"w":{"dtype":"F32","note":"x","shape":[1],"data_offsets":[0,4]}}""", F32(7));
        using var f = SafetensorsFile.Open(path);
        using var w = f.Load("w");
        Assert.Equal(7f, w[0].item<float>());
    }

    [Fact]
    public void OverlappingSpansAreRejected()
    {
        using var dir = new TempDir();
        string header = """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}""";
        string path = WriteSafetensors(dir, "overlap.safetensors", header, F32(1, 2, 3, 4, 5, 6));
        AssertThrows(() => Open(path), path, "b", "overlaps tensor 'a'");
    }

    [Fact]
    public void EmptyTensorInsideAnotherSpanIsAnOverlap()
    {
        using var dir = new TempDir();
        string header = """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}""";
        string path = WriteSafetensors(dir, "overlap0.safetensors", header, F32(1, 2, 3, 4));
        AssertThrows(() => Open(path), path, "e", "overlaps");
    }

    [Fact]
    public void DuplicateTensorNamesAreRejected()
    {
        // JsonDocument keeps both copies of a repeated key; the reader must not silently pick one.
        using var dir = new TempDir();
        string header = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""";
        string path = WriteSafetensors(dir, "dup.safetensors", header, F32(1, 2, 3, 4));
        AssertThrows(() => Open(path), path, "a", "more than once");
    }

    [Fact]
    public void DuplicateNamesSpelledWithEscapesAreRejected()
    {
        using var dir = new TempDir();
        string header = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"\u0061":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""";
        string path = WriteSafetensors(dir, "dupesc.safetensors", header, F32(1, 2, 3, 4));
        AssertThrows(() => Open(path), path, "a", "more than once");
    }

    [Theory]
    [InlineData("""{"__metadata__":{"format":"pt"},"__metadata__":{"format":"np"}}""", "__metadata__ appears more than once")]
    [InlineData("""{"__metadata__":{"format":"pt","format":"np"}}""", "'format' appears more than once")]
    [InlineData("""{"__metadata__":{"format":1}}""", "not a string")]
    [InlineData("""{"__metadata__":[]}""", "not an object")]
    public void BadMetadataIsRejected(string header, string fragment)
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "meta.safetensors", header, []);
        AssertThrows(() => Open(path), path, null, fragment);
    }

    [Fact]
    public void MetadataIsExposedInFileOrder()
    {
        using var dir = new TempDir();
        string header = """{"__metadata__":{"zeta":"1","alpha":"two \"quoted\"","format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        string path = WriteSafetensors(dir, "meta.safetensors", header, F32(1));
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(["zeta", "alpha", "format"], f.Metadata.Keys);
        Assert.Equal("two \"quoted\"", f.Metadata["alpha"]);
        Assert.Equal(["a"], f.Names);
        Assert.False(f.Contains("__metadata__"));
    }

    [Fact]
    public void GoldenMetadataIsExposed()
    {
        Assert.Equal("golden-v1", Fixture.Golden.Metadata["format"]);
        using var model = SafetensorsFile.Open(Path.Combine(Fixture.ModelDir, "model.safetensors"));
        Assert.Equal("pt", Assert.Single(model.Metadata).Value);
    }

    [Fact]
    public void UnknownTensorNameIsRejectedOnLoad()
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "ok.safetensors", A16, F32(1, 2, 3, 4));
        using var f = SafetensorsFile.Open(path);
        AssertThrows(() => f.Load("nope").Dispose(), path, "nope", "no such tensor");
        AssertThrows(() => f.GetEntry("nope"), path, "nope", "no such tensor");
    }

    [Fact]
    public void LoadAfterDisposeThrows()
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "ok.safetensors", A16, F32(1, 2, 3, 4));
        var f = SafetensorsFile.Open(path);
        f.Dispose();
        Assert.Throws<ObjectDisposedException>(() => f.Load("a"));
    }

    [Fact]
    public void DirectoryIsNotAFile()
    {
        using var dir = new TempDir();
        AssertThrows(() => Open(dir.Path), dir.Path, null, "not found");
    }
}
