using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.TensorFiles;

public sealed class SafetensorsReadTests
{
    [Fact]
    public void GoldenFileOpensWithManifestShapes()
    {
        var golden = Fixture.Golden;
        foreach (var item in Fixture.Manifest.GetProperty("keys").EnumerateObject())
        {
            var entry = golden.GetEntry(item.Name);
            var shape = item.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            Assert.Equal(shape, entry.Shape);
            Assert.Equal(item.Value.GetProperty("dtype").GetString(), entry.DType);
        }
    }

    [Fact]
    public void LoadsMappedValuesAndConverts()
    {
        using var ids = Fixture.Load("prompt.image_chat.input_ids");
        Assert.Equal(torch.ScalarType.Int64, ids.dtype);
        Assert.Equal(2L, ids[0, 0].item<long>());
        using var f = Fixture.Golden.Load("vision.embeddings", torch.ScalarType.Float64);
        Assert.Equal(torch.ScalarType.Float64, f.dtype);
        using var g = Fixture.Load("vision.embeddings");
        Assert.Equal(g.to(torch.float64).sum().item<double>(), f.sum().item<double>(), 9);
    }
}
