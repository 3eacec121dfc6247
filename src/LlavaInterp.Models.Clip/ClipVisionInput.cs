using TorchSharp;

namespace LlavaInterp.Models.Clip;

/// <summary>Input of the CLIP vision tower.</summary>
/// <param name="PixelValues">Preprocessed images [batch, channels, image_size, image_size] (any float dtype; cast to the
/// weight dtype and device as HF does).</param>
public sealed record ClipVisionInput(torch.Tensor PixelValues)
{
    /// <summary>
    /// Run layers <c>0 .. StopAtLayer-1</c> only (TransformerLens <c>stop_at_layer</c>); negative values count from the
    /// end (-1 skips the last layer). <see langword="null"/> runs every layer. The pooled output exists only when every
    /// layer ran.
    /// </summary>
    public int? StopAtLayer { get; init; }

    /// <summary>Return HF's <c>hidden_states</c>: the <c>pre_layrnorm</c> output, then every layer's output.</summary>
    public bool OutputHiddenStates { get; init; }
}
