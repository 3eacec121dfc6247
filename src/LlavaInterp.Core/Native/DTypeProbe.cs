using System.Diagnostics;
using TorchSharp;

namespace LlavaInterp.Native;

/// <summary>What <see cref="DTypeProbe.Run"/> measured on this machine's CPU.</summary>
/// <param name="Float32GFlops">Matrix-product rate in float32.</param>
/// <param name="BFloat16GFlops">Matrix-product rate in bfloat16.</param>
/// <param name="Recommended">The faster compute dtype for a model's weights and activations.</param>
public sealed record DTypeProbeReport(double Float32GFlops, double BFloat16GFlops, torch.ScalarType Recommended);

/// <summary>
/// Picks the model dtype by measuring instead of assuming: bf16 matrix products are ~2× faster than fp32 on CPUs with
/// AVX-512 bf16 and up to hundreds of times slower on AVX2-only CPUs (measured on two AMD EPYC VMs of the same kind,
/// docs/performance.md). A short square matmul in each dtype decides; bf16 is recommended only when it is clearly
/// faster (≥ 1.25×), because it also costs precision.
/// </summary>
public static class DTypeProbe
{
    private static readonly Lazy<DTypeProbeReport> Cached = new(() => Run());

    /// <summary>The probe's result for this process (measured once, on first use; about a second on a slow CPU).</summary>
    public static DTypeProbeReport Result => Cached.Value;

    /// <summary>Measures both dtypes on the CPU now (see the type's remarks).</summary>
    /// <param name="size">Side of the square matrices.</param>
    /// <param name="repeats">Timed products per dtype (the best counts), after one warm-up.</param>
    public static DTypeProbeReport Run(int size = 512, int repeats = 3)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 16);
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        double fp32 = Rate(torch.ScalarType.Float32, size, repeats);
        double bf16 = Rate(torch.ScalarType.BFloat16, size, repeats);
        return new DTypeProbeReport(fp32, bf16, Choose(fp32, bf16));
    }

    /// <summary>The decision, separated from the machine for tests.</summary>
    public static torch.ScalarType Choose(double float32GFlops, double bfloat16GFlops) =>
        bfloat16GFlops >= 1.25 * float32GFlops ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;

    private static double Rate(torch.ScalarType dtype, int size, int repeats)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var generator = new torch.Generator(0);
        var a = torch.randn([size, size], generator: generator).to(dtype);
        var b = torch.randn([size, size], generator: generator).to(dtype);
        a.matmul(b).Dispose();
        double best = double.PositiveInfinity;
        for (int i = 0; i < repeats; i++)
        {
            var clock = Stopwatch.StartNew();
            a.matmul(b).Dispose(); // CPU ops are synchronous: the product is done when the call returns
            best = Math.Min(best, clock.Elapsed.TotalSeconds);
        }

        return 2.0 * size * size * size / best / 1e9;
    }
}
