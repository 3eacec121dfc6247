using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.TensorFiles;

public sealed class SafetensorsSymlinkTests
{
    // The hub cache stores snapshot files as symbolic links to blobs; the mapping must use the target's size.
    [Fact]
    public void FileBehindASymbolicLinkMapsWhole()
    {
        using var dir = new TempDir();
        string link = dir.File("model.safetensors");
        File.CreateSymbolicLink(link, System.IO.Path.Combine(Fixture.ModelDir, "model.safetensors"));
        using var viaLink = SafetensorsFile.Open(link);
        using var direct = SafetensorsFile.Open(System.IO.Path.Combine(Fixture.ModelDir, "model.safetensors"));
        Assert.Equal(direct.FileLength, viaLink.FileLength);
        foreach (var name in direct.Names)
        {
            using var a = direct.Load(name);
            using var b = viaLink.Load(name);
            TensorAssert.Close(a, b, 0, 0, name);
        }
    }
}
