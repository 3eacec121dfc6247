using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>Builds <c>nn.Linear</c> modules without TorchSharp's random initialisation.</summary>
internal static class GemmaLinear
{
    /// <summary>
    /// A Linear [outFeatures, inFeatures] whose parameters come from <c>torch.empty</c>: nothing is touched (or, on the
    /// meta device, allocated) until weights are loaded, unlike <c>nn.Linear(in, out)</c>, which runs a Kaiming init.
    /// </summary>
    public static Linear Create(long inFeatures, long outFeatures, bool bias, ScalarType dtype, Device device)
    {
        var weight = OwnedParameter.From(empty([outFeatures, inFeatures], dtype, device));
        var b = bias ? OwnedParameter.From(empty([outFeatures], dtype, device)) : null;
        return nn.Linear(weight, b);
    }
}
