using LlavaInterp.Hub;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace LlavaInterp.Llava;

/// <summary>How <see cref="HookedLlava.FromPretrainedAsync"/> loads a model.</summary>
public sealed record LlavaLoadOptions
{
    /// <summary>Parameter dtype: float32 (default, exact to HF's float32 numbers), bfloat16 or float16.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>
    /// Activation dtype; <see langword="null"/> (default) = <see cref="DType"/>. <c>DType = BFloat16, ComputeDType =
    /// Float32</c> keeps the weights in bfloat16 (half the memory; bfloat16 tensors in the file stay mapped) and runs
    /// the vision tower, projector and language model in float32, each weight cast at its use: the numbers of the
    /// float32 model on bfloat16-rounded weights. Otherwise it must equal <see cref="DType"/>.
    /// </summary>
    public ScalarType? ComputeDType { get; init; }

    /// <summary>
    /// With <see cref="DType"/> BFloat16 or Float16 and no <see cref="ComputeDType"/>: a short start-up probe times a
    /// <c>linear</c> at the language model's MLP shape in both dtypes and computes in the storage dtype where it is at
    /// least <see cref="LlavaInterp.Nn.ComputeDTypes.AutoSpeedupThreshold"/> times faster than float32, else in float32.
    /// The result is logged and kept in <see cref="HookedLlava.ComputeDTypeProbe"/>. Default false.
    /// </summary>
    public bool AutoComputeDType { get; init; }

    /// <summary>Device; null is the CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>
    /// Fail on missing or unexpected checkpoint tensors. Default true.
    /// Either way, before the model is built, the configuration is checked against the checkpoint's headers
    /// (a <c>ConfigException</c>): every stored tensor's shape, and the layer count (equal when strict; never more
    /// layers than stored otherwise).
    /// </summary>
    public bool Strict { get; init; } = true;

    /// <summary>
    /// <see cref="LlavaInterp.Loading.WeightLoading.Mapped"/> (default): weights stored in the parameter dtype stay views of
    /// the memory-mapped file, which must then not be truncated or rewritten while the model lives (SIGBUS);
    /// <see cref="LlavaInterp.Loading.WeightLoading.Copied"/>: every weight is copied into memory and the file is free.
    /// </summary>
    public LlavaInterp.Loading.WeightLoading WeightLoading { get; init; } = LlavaInterp.Loading.WeightLoading.Mapped;

    /// <summary>Hub access for repo ids; null reads the environment (<c>HF_HOME</c>, <c>HF_TOKEN</c>, <c>HF_HUB_OFFLINE</c>, …).</summary>
    public HubOptions? Hub { get; init; }

    /// <summary>Hub revision (branch, tag or commit); null is <c>main</c>.</summary>
    public string? Revision { get; init; }

    /// <summary>Reports download progress of hub files.</summary>
    public IProgress<HubDownloadProgress>? DownloadProgress { get; init; }

    /// <summary>Reports each weight tensor loaded (mapped or converted), counted over the whole model.</summary>
    public IProgress<LlavaInterp.Loading.WeightLoadProgress>? LoadProgress { get; init; }

    /// <summary>Logger for loading, downloading and generation.</summary>
    public ILogger? Logger { get; init; }
}
