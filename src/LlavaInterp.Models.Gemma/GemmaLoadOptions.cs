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
