using System.Diagnostics;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Nn;

/// <summary>
/// The pairs of storage dtype (parameters) and compute dtype (activations) a model accepts, and the load-time choice
/// between them: float32, bfloat16 or float16 computed in their own dtype, or bfloat16/float16 weights computed in
/// float32 (half the weight memory, float32 arithmetic on the rounded weights).
/// </summary>
public static class ComputeDTypes
{
    /// <summary>The speed-up of the storage dtype's <c>linear</c> over float32 from which the probe computes in it.</summary>
    public const double AutoSpeedupThreshold = 1.2;

    /// <summary>
    /// Checks a storage/compute pair and returns the compute dtype (<paramref name="compute"/>, or
    /// <paramref name="storage"/> when null).
    /// </summary>
    /// <param name="storage">Parameter dtype.</param>
    /// <param name="compute">Activation dtype, or <see langword="null"/> for the storage dtype.</param>
    /// <param name="storageName">The option or parameter that set <paramref name="storage"/>, for the message.</param>
    /// <param name="computeName">The option or parameter that set <paramref name="compute"/>, for the message.</param>
    /// <exception cref="ArgumentException">Not float32/bfloat16/float16, or a compute dtype that is not the storage dtype
    /// or float32 (a narrower or differently rounded compute dtype would lose what the stored weights hold); its
    /// <see cref="ArgumentException.ParamName"/> is the option at fault.</exception>
    public static ScalarType Resolve(ScalarType storage, ScalarType? compute, string storageName, string computeName)
    {
        if (!IsSupported(storage))
        {
            throw new ArgumentException($"{storageName} {storage} is not supported: use Float32, BFloat16 or Float16.", storageName);
        }

        var resolved = compute ?? storage;
        if (!IsSupported(resolved))
        {
            throw new ArgumentException($"{computeName} {resolved} is not supported: use Float32, BFloat16 or Float16.", computeName);
        }

        if (resolved != storage && resolved != ScalarType.Float32)
        {
            throw new ArgumentException($"{computeName} {resolved} with {storageName} {storage}: the compute dtype must be the storage dtype or Float32 (store the weights in {resolved} instead).", computeName);
        }

        return resolved;
    }

    /// <summary>
    /// The compute dtype a load uses: the explicit one (<see cref="Resolve"/>), or with <paramref name="auto"/> the
    /// result of <see cref="ComputeDTypeProbe.Run"/> at the model's MLP shape, logged to <paramref name="logger"/>.
    /// </summary>
    /// <param name="storage">Parameter dtype (bfloat16 or float16 when <paramref name="auto"/>).</param>
    /// <param name="compute">Explicit compute dtype (must be null when <paramref name="auto"/>).</param>
    /// <param name="auto">Let the probe choose.</param>
    /// <param name="hidden">The model's hidden width (the probe's input width).</param>
    /// <param name="intermediate">The model's MLP width (the probe's output width, capped).</param>
    /// <param name="device">Where the model runs.</param>
    /// <param name="logger">Receives the probe's timings and choice.</param>
    /// <param name="probe">The probe's result, or <see langword="null"/> without <paramref name="auto"/>.</param>
    /// <exception cref="ArgumentException">A bad combination; <see cref="ArgumentException.ParamName"/> names the option
    /// (<c>DType</c>, <c>ComputeDType</c> or <c>AutoComputeDType</c>).</exception>
    public static ScalarType Choose(ScalarType storage, ScalarType? compute, bool auto, long hidden, long intermediate, Device device, ILogger logger, out ComputeDTypeProbeResult? probe)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(logger);
        const string DType = "DType", Compute = "ComputeDType", Auto = "AutoComputeDType";
        probe = null;
        if (!auto)
        {
            return Resolve(storage, compute, DType, Compute);
        }

        if (compute is not null)
        {
            throw new ArgumentException($"{Auto} chooses the compute dtype itself: leave {Compute} null (it is {compute}).", Auto);
        }

        if (storage is not (ScalarType.BFloat16 or ScalarType.Float16))
        {
            throw new ArgumentException($"{Auto} chooses between computing in the storage dtype and in Float32, so {DType} must be BFloat16 or Float16 (it is {storage}).", Auto);
        }

        probe = ComputeDTypeProbe.Run(storage, hidden, intermediate, device);
        logger.LogInformation(
            "Compute dtype probe on {Device}: linear [{Tokens} x {In}] x [{In} x {Out}] took {Float32Ms:F1} ms in Float32, {StorageMs:F1} ms in {Storage} ({Speedup:F2}x); computing in {Chosen} with {Storage} weights.",
            device, probe.Tokens, probe.InFeatures, probe.InFeatures, probe.OutFeatures, probe.Float32Time.TotalMilliseconds, probe.StorageTime.TotalMilliseconds, storage, probe.Speedup, probe.Chosen, storage);
        return probe.Chosen;
    }

    private static bool IsSupported(ScalarType dtype) => dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;
}

/// <summary>What <see cref="ComputeDTypeProbe.Run"/> measured and chose.</summary>
/// <param name="StorageDType">The narrow dtype that was timed against float32.</param>
/// <param name="Tokens">Rows of the timed input.</param>
/// <param name="InFeatures">Input width (the model's hidden width).</param>
/// <param name="OutFeatures">Output width (the model's MLP width, capped).</param>
/// <param name="Float32Time">Best time of the float32 <c>linear</c>.</param>
/// <param name="StorageTime">Best time of the <paramref name="StorageDType"/> <c>linear</c>.</param>
public sealed record ComputeDTypeProbeResult(ScalarType StorageDType, long Tokens, long InFeatures, long OutFeatures, TimeSpan Float32Time, TimeSpan StorageTime)
{
    /// <summary>Float32 time over storage-dtype time (above 1: the narrow dtype is faster).</summary>
    public double Speedup => Float32Time.TotalSeconds / Math.Max(StorageTime.TotalSeconds, 1e-9);

    /// <summary>The compute dtype chosen: the storage dtype when <see cref="Speedup"/> reaches
    /// <see cref="ComputeDTypes.AutoSpeedupThreshold"/>, else float32.</summary>
    public ScalarType Chosen => Speedup >= ComputeDTypes.AutoSpeedupThreshold ? StorageDType : ScalarType.Float32;
}

/// <summary>
/// A short start-up measurement of whether a narrow dtype's matrix product beats float32 on this machine (oneDNN's
/// bfloat16 GEMM is ~2x float32 on CPUs with AVX512_BF16 and far slower on AVX2-only ones).
/// </summary>
public static class ComputeDTypeProbe
{
    // A few hundred prompt positions; the output width is capped so the probe's weights stay small (first-touch page
    // faults on a VM cost more than the products) and the whole probe takes well under a second at Gemma-2b's width.
    private const long Tokens = 256;
    private const long MaxOutFeatures = 4096;
    private const int Runs = 3;

    /// <summary>
    /// Times <c>linear([256, in] x [out, in]ᵀ)</c> in float32 and in <paramref name="storage"/> (contiguous inputs,
    /// one warm-up each, then the best of three, interleaved so drifting load hits both alike).
    /// </summary>
    /// <param name="storage">The narrow dtype (bfloat16 or float16).</param>
    /// <param name="inFeatures">Input width.</param>
    /// <param name="outFeatures">Output width; capped at 4096.</param>
    /// <param name="device">Where to time.</param>
    public static ComputeDTypeProbeResult Run(ScalarType storage, long inFeatures, long outFeatures, Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentOutOfRangeException.ThrowIfLessThan(inFeatures, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outFeatures, 1);
        long outWidth = Math.Min(outFeatures, MaxOutFeatures);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();

        // Values in a normal range: uninitialised memory could hold denormals or NaNs, which some kernels run slower on.
        var x32 = full(Tokens, inFeatures, 0.01f, ScalarType.Float32, device);
        var w32 = full(outWidth, inFeatures, 0.01f, ScalarType.Float32, device);
        var xNarrow = x32.to(storage);
        var wNarrow = w32.to(storage);
        var best32 = TimeSpan.MaxValue;
        var bestNarrow = TimeSpan.MaxValue;
        for (int run = 0; run <= Runs; run++)
        {
            var t32 = Time(x32, w32);
            var tNarrow = Time(xNarrow, wNarrow);
            if (run > 0)
            {
                best32 = t32 < best32 ? t32 : best32;
                bestNarrow = tNarrow < bestNarrow ? tNarrow : bestNarrow;
            }
        }

        return new ComputeDTypeProbeResult(storage, Tokens, inFeatures, outWidth, best32, bestNarrow);
    }

    private static TimeSpan Time(Tensor x, Tensor w)
    {
        var watch = Stopwatch.StartNew();
        using var y = nn.functional.linear(x, w);

        // On an asynchronous device the product is only done once a value is read.
        if (y.device_type != DeviceType.CPU)
        {
            _ = y[0, 0].to(ScalarType.Float32).item<float>();
        }

        return watch.Elapsed;
    }
}
