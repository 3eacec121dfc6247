using TorchSharp;
namespace LlavaInterp.Tests;
public sealed class SmokeTests
{
    [Fact]
    public void TorchSharpLoads()
    {
        using var t = torch.ones(2, 3);
        Assert.Equal(6.0f, t.sum().item<float>());
    }
}
