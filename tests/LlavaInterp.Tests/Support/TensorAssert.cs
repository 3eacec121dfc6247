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

    /// <summary>
    /// Asserts |actual - expected| ≤ atol + rtol·|expected| for one number, plus half a unit of the last printed
    /// decimal when <paramref name="printedDecimals"/> says the value was read back from text. Never compare through
    /// rounding: last-bit differences between CPUs flip a rounded digit.
    /// </summary>
    public static void Close(double expected, double actual, int? printedDecimals = null, double atol = ActivationAtol, double rtol = ActivationRtol, string what = "")
    {
        double bound = atol + rtol * Math.Abs(expected) + (printedDecimals is int d ? 0.5 * Math.Pow(10, -d) : 0);
        Assert.True(Math.Abs(actual - expected) <= bound && !double.IsNaN(actual),
            $"{what}: {actual:R} differs from {expected:R} by more than {bound:E3} (atol {atol:E1} + rtol {rtol:E1}·|ref|{(printedDecimals is null ? "" : $" + printing to {printedDecimals} decimals")})");
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
