using LlavaInterp.Nn;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>How <see cref="HookedGemma.FromPretrained"/> builds and loads the model.</summary>
public sealed record GemmaLoadOptions
{
    /// <summary>
    /// Parameter dtype: float32 (default, as HF <c>from_pretrained</c> without <c>torch_dtype</c>), bfloat16 or float16.
    /// Checkpoint tensors of another dtype are converted; tensors already in this dtype are memory-mapped, not copied.
    /// </summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>
    /// Activation dtype; <see langword="null"/> (default) = <see cref="DType"/>. <c>DType = BFloat16, ComputeDType =
    /// Float32</c> keeps the weights in bfloat16 (half the memory; bfloat16 tensors in the file stay mapped) and
    /// computes in float32, each weight cast at its use: the numbers of the float32 model on bfloat16-rounded weights.
    /// Otherwise it must equal <see cref="DType"/>.
    /// </summary>
    public ScalarType? ComputeDType { get; init; }

    /// <summary>
    /// With <see cref="DType"/> BFloat16 or Float16 and no <see cref="ComputeDType"/>: a short start-up probe times a
    /// <c>linear</c> at the model's shapes in both dtypes and computes in the storage dtype where it is at least
    /// <see cref="ComputeDTypes.AutoSpeedupThreshold"/> times faster than float32, else in float32. The result is logged
    /// and kept in <see cref="HookedGemma.ComputeDTypeProbe"/>. Default false.
    /// </summary>
    public bool AutoComputeDType { get; init; }

    /// <summary>Parameter device; <see langword="null"/> = CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>
    /// Fail on missing or unexpected decoder tensors (default). Wrong shapes always fail.
    /// Either way, before the model is built, the configuration is checked against the checkpoint's headers
    /// (a <c>ConfigException</c>): every stored tensor's shape, and the layer count (equal when strict; never more
    /// layers than stored otherwise).
    /// </summary>
    public bool Strict { get; init; } = true;

    /// <summary>Checkpoint layout; <see langword="null"/> = <see cref="GemmaWeightLayout.Standalone"/>.</summary>
    public GemmaWeightLayout? Layout { get; init; }

    /// <summary>
    /// <see cref="LlavaInterp.Loading.WeightLoading.Mapped"/> (default): weights stored in the parameter dtype stay views of
    /// the memory-mapped file, which must then not be truncated or rewritten while the model lives (SIGBUS);
    /// <see cref="LlavaInterp.Loading.WeightLoading.Copied"/>: every weight is copied into memory and the file is free.
    /// </summary>
    public LlavaInterp.Loading.WeightLoading WeightLoading { get; init; } = LlavaInterp.Loading.WeightLoading.Mapped;

    /// <summary>Receives loading diagnostics (e.g. parameters left unloaded in non-strict mode).</summary>
    public ILogger? Logger { get; init; }
}
