using System.Text;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using static LlavaInterp.Tests.TensorFiles.RawFiles;

namespace LlavaInterp.Tests.TensorFiles;

/// <summary>Names in an index or a header that are not Unicode text, or hold NUL, are typed errors naming the file.</summary>
public sealed class HeaderTextTests
{
    // Each case: the JSON with a placeholder '#' where the bad text goes, the bytes put there.
    public static TheoryData<string, byte[]> BadNames => new()
    {
        { "{\"weight_map\": {\"#\": \"x.safetensors\"}}", [0xFF, 0xFE] },
        { "{\"weight_map\": {\"a\": \"#.safetensors\"}}", [0xC3] },
        { "{\"weight_map\": {\"a\": \"x#.safetensors\"}}", Encoding.ASCII.GetBytes("\\u0000") },
        { "{\"weight_map\": {\"#\": \"x.safetensors\"}}", Encoding.ASCII.GetBytes("\\u0000") },
        { "{\"weight_map\": {\"#\": \"x.safetensors\"}}", Encoding.ASCII.GetBytes("\\ud800") },
        { "{\"weight_map\": {\"a\": \"x#.safetensors\"}}", Encoding.ASCII.GetBytes("\\udc00") },
    };

    [Theory]
    [MemberData(nameof(BadNames))]
    public void IndexNames(string template, byte[] bad)
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("x.safetensors"), Safetensors("{}", []));
        string index = dir.File(Checkpoint.IndexFileName);
        File.WriteAllBytes(index, Splice(template, bad));
        var error = Assert.Throws<TensorFileException>(() => Checkpoint.Open(dir.Path).Dispose());
        Assert.Equal(index, error.FilePath);
    }

    [Theory]
    [InlineData(new byte[] { 0xFF })]
    [InlineData(new byte[] { (byte)'\\', (byte)'u', (byte)'0', (byte)'0', (byte)'0', (byte)'0' })]
    [InlineData(new byte[] { (byte)'\\', (byte)'u', (byte)'d', (byte)'8', (byte)'0', (byte)'0' })]
    public void HeaderNames(byte[] bad)
    {
        using var dir = new TempDir();
        string path = dir.File("model.safetensors");
        byte[] header = Splice("{\"w#\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, \"__metadata__\": {\"k\": \"v\"}}", bad);
        File.WriteAllBytes(path, Safetensors(header, F32(1)));
        var error = Assert.Throws<TensorFileException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Equal(path, error.FilePath);
    }

    [Fact]
    public void HeaderMetadataWithALoneSurrogate()
    {
        using var dir = new TempDir();
        string path = dir.File("model.safetensors");
        File.WriteAllBytes(path, Safetensors("{\"__metadata__\": {\"k\": \"\\udfff\"}}", []));
        var error = Assert.Throws<TensorFileException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Equal(path, error.FilePath);
    }

    private static byte[] Splice(string template, byte[] bad)
    {
        int at = template.IndexOf('#', StringComparison.Ordinal);
        return Concat(Encoding.UTF8.GetBytes(template[..at]), bad, Encoding.UTF8.GetBytes(template[(at + 1)..]));
    }
}
