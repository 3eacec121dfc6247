using TorchSharp;

namespace LlavaInterp.Tests.Support;

/// <summary>Comparisons against golden tensors with the fixture README's tolerances.</summary>
public static class TensorAssert
{
    /// <summary>The fixture README's tolerance for activations, logits and SAE tensors: |a-b| ≤ 1e-4 + 1e-4·|ref|.</summary>
    public const double ActivationAtol = 1e-4;

    /// <summary>Relative part of the activation tolerance.</summary>
    public const double ActivationRtol = 1e-4;

    /// <summary>Attention probabilities: |a-b| ≤ 1e-5.</summary>
    public const double AttentionAtol = 1e-5;

    /// <summary>Pixel values: |a-b| ≤ 1e-6.</summary>
    public const double PixelAtol = 1e-6;

    /// <summary>Asserts same shape and |actual - expected| ≤ atol + rtol·|expected| everywhere; returns max |diff|.</summary>
    public static double Close(torch.Tensor expected, torch.Tensor actual, double atol = ActivationAtol, double rtol = ActivationRtol, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        var e = expected.to(torch.float64).cpu();
        var a = actual.to(torch.float64).cpu();
        var diff = (a - e).abs();
        var bound = atol + rtol * e.abs();
        double maxDiff = diff.numel() == 0 ? 0 : diff.max().item<double>();
        bool ok = diff.le(bound).all().item<bool>() && !a.isnan().any().item<bool>();
        Assert.True(ok, $"{what}: max |diff| {maxDiff:E3} exceeds atol {atol:E1} + rtol {rtol:E1}·|ref|");
        return maxDiff;
    }

    /// <summary>Asserts exact equality of integer tensors (shape and every value).</summary>
    public static void Equal(torch.Tensor expected, torch.Tensor actual, string what = "")
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        var e = expected.to(torch.int64).cpu();
        var a = actual.to(torch.int64).cpu();
        Assert.True(e.eq(a).all().item<bool>(), $"{what}: tensors differ at {e.ne(a).sum().item<long>()} positions");
    }
}
