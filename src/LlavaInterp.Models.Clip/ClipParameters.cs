using TorchSharp;
using TorchSharp.Modules;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// Builds parameters from <c>torch.empty</c>: nothing is initialised (the weights come from a checkpoint), nothing is
/// allocated on the meta device, and CPU memory is only touched when weights are converted in (mapped weights replace the
/// storage instead).
/// </summary>
internal static class ClipParameters
{
    public static Parameter Empty(torch.Device device, torch.ScalarType dtype, params long[] shape) =>
        new(torch.empty(shape, dtype, device));

    /// <summary>A linear layer with bias, weight [out, in], bias [out], left uninitialised.</summary>
    public static Linear Linear(long inFeatures, long outFeatures, torch.Device device, torch.ScalarType dtype) =>
        torch.nn.Linear(Empty(device, dtype, outFeatures, inFeatures), Empty(device, dtype, outFeatures));

    /// <summary>A LayerNorm over the last dimension (weight 1, bias 0 until loaded).</summary>
    public static LayerNorm LayerNorm(long width, double eps, torch.Device device, torch.ScalarType dtype) =>
        torch.nn.LayerNorm(width, eps, device: device, dtype: dtype);
}
