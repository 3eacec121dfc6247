using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Nn;

/// <summary>
/// <c>nn.LayerNorm</c> over the last dimension whose affine parameters may be stored in a narrower dtype than the input:
/// they are cast to the input's dtype at each call. State-dict keys <c>weight</c> and <c>bias</c> [width], initialised
/// to 1 and 0 (as <c>nn.LayerNorm</c>) until loaded.
/// </summary>
public sealed class CastLayerNorm : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Parameter _weight;

    [ComponentName(Name = "bias")]
    private readonly Parameter _bias;

    private readonly long[] _shape;

    /// <summary>Creates the norm.</summary>
    /// <param name="width">Normalised width (the last dimension).</param>
    /// <param name="eps">Added to the variance.</param>
    /// <param name="dtype">Storage dtype of the parameters.</param>
    /// <param name="device">Parameter device.</param>
    public CastLayerNorm(long width, double eps, ScalarType dtype, Device device)
        : base(nameof(CastLayerNorm))
    {
        Eps = eps;
        _shape = [width];
        _weight = EmptyModules.Own(ones(width, dtype, device));
        _bias = EmptyModules.Own(zeros(width, dtype, device));
        RegisterComponents();
    }

    /// <summary>The epsilon added to the variance.</summary>
    public double Eps { get; }

    /// <summary>The scale [width] in its storage dtype.</summary>
    public Parameter Weight => _weight;

    /// <summary>The shift [width] in its storage dtype.</summary>
    public Parameter Bias => _bias;

    /// <summary>Normalises over the last dimension, in the input's dtype.</summary>
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (_weight.dtype == input.dtype)
        {
            return nn.functional.layer_norm(input, _shape, _weight, _bias, Eps);
        }

        using var scope = NewDisposeScope();
        return nn.functional.layer_norm(input, _shape, _weight.to(input.dtype), _bias.to(input.dtype), Eps).MoveToOuterDisposeScope();
    }
}
