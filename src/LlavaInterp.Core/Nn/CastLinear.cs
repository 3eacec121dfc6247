using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Nn;

/// <summary>
/// <c>nn.Linear</c> whose weight may be stored in a narrower dtype than the activations it is applied to: the input's
/// dtype decides, the weight is cast to it at each call (<see cref="WeightCast.Linear"/>). State-dict keys are
/// <c>weight</c> [out, in] and <c>bias</c> [out], as for <c>nn.Linear</c>; both start uninitialised.
/// </summary>
public sealed class CastLinear : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Parameter _weight;

    [ComponentName(Name = "bias")]
    private readonly Parameter? _bias;

    /// <summary>Creates the layer with uninitialised parameters.</summary>
    /// <param name="inFeatures">Input width.</param>
    /// <param name="outFeatures">Output width.</param>
    /// <param name="bias">Whether the layer has a bias.</param>
    /// <param name="dtype">Storage dtype of the parameters.</param>
    /// <param name="device">Parameter device.</param>
    public CastLinear(long inFeatures, long outFeatures, bool bias, ScalarType dtype, Device device)
        : base(nameof(CastLinear))
    {
        _weight = EmptyModules.Parameter(dtype, device, outFeatures, inFeatures);
        _bias = bias ? EmptyModules.Parameter(dtype, device, outFeatures) : null;
        RegisterComponents();
    }

    /// <summary>The weight [out, in] in its storage dtype.</summary>
    public Parameter Weight => _weight;

    /// <summary>The bias [out], or <see langword="null"/>.</summary>
    public Parameter? Bias => _bias;

    /// <summary><c>x·Wᵀ + b</c> in the input's dtype.</summary>
    public override Tensor forward(Tensor input) => WeightCast.Linear(input, _weight, _bias);
}
