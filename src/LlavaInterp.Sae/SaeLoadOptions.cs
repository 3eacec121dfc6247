using Microsoft.Extensions.Logging;
using TorchSharp;

namespace LlavaInterp.Sae;

/// <summary>How to load a sparse autoencoder.</summary>
public sealed record SaeLoadOptions
{
    /// <summary>Where the weights go; null is the CPU (as SAELens's <c>load_from_pretrained</c>, which ignores the saved device).</summary>
    public torch.Device? Device { get; init; }

    /// <summary>Compute in this dtype instead of the config's <c>dtype</c>.</summary>
    public torch.ScalarType? DType { get; init; }

    /// <summary>
    /// <see cref="LlavaInterp.Loading.WeightLoading.Mapped"/> (default): weights stored in the parameter dtype stay views of
    /// the memory-mapped file, which must then not be truncated or rewritten while the model lives (SIGBUS);
    /// <see cref="LlavaInterp.Loading.WeightLoading.Copied"/>: every weight is copied into memory and the file is free.
    /// </summary>
    public LlavaInterp.Loading.WeightLoading WeightLoading { get; init; } = LlavaInterp.Loading.WeightLoading.Mapped;

    /// <summary>
    /// A constant activation-norm scaling factor to fold into the weights (W_enc·s, W_dec/s, b_dec/s) after loading;
    /// the SAE then takes raw activations and its <c>normalize_activations</c> becomes <c>"none"</c>. Overrides the
    /// release table. An SAE that normalizes at run time (<c>constant_norm_rescale</c>, <c>layer_norm</c>) refuses it.
    /// </summary>
    public double? NormScalingFactor { get; init; }

    /// <summary>
    /// The SAELens release the folder comes from (with <see cref="SaeId"/>): its Neuronpedia id and config overrides
    /// are applied, and its norm scaling factor is folded when the config says <c>expected_average_only_in</c>.
    /// </summary>
    public string? Release { get; init; }

    /// <summary>The SAE id within <see cref="Release"/>.</summary>
    public string? SaeId { get; init; }

    /// <summary>Receives warnings (e.g. an unfolded <c>expected_average_only_in</c> normalization).</summary>
    public ILogger? Logger { get; init; }

    /// <summary>Options for an SAE of a known release (see <see cref="SaeReleases"/>).</summary>
    /// <exception cref="SaeException">Unknown release or SAE id.</exception>
    public static SaeLoadOptions ForRelease(string release, string saeId)
    {
        _ = SaeReleases.Get(release).Get(saeId);
        return new SaeLoadOptions { Release = release, SaeId = saeId };
    }
}
