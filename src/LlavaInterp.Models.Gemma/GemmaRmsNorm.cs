using LlavaInterp.Nn;
using LlavaInterp.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Gemma RMSNorm exactly as HF 4.46 <c>GemmaRMSNorm</c>: in float32,
/// <c>y = x·rsqrt(mean(x²) + eps)·(1 + w)</c>, then cast back to the input dtype. The stored weight <c>w</c> is an
/// offset from 1. State-dict key: <c>weight</c> [dim].
/// </summary>
/// <remarks>
/// Hook points (<c>{prefix}</c> = <c>blocks.i.ln1</c>, <c>blocks.i.ln2</c> or <c>ln_final</c>), always float32:
/// <list type="bullet">
/// <item><c>{prefix}.hook_scale</c> [batch, pos, 1]: the factor <c>1/rms = rsqrt(mean(x²) + eps)</c> HF multiplies by.
/// TransformerLens stores the reciprocal (<c>rms</c>, which it divides by); storing the factor keeps the arithmetic
/// identical to HF.</item>
/// <item><c>{prefix}.hook_normalized</c> [batch, pos, dim]: <c>x·scale</c>, before the <c>(1 + w)</c> weight (as in
/// TransformerLens with unfolded weights).</item>
/// </list>
/// </remarks>
internal sealed class GemmaRmsNorm : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Parameter _weight;

    [ComponentName(Name = "hook_scale")]
    private readonly HookPoint _hookScale;

    [ComponentName(Name = "hook_normalized")]
    private readonly HookPoint _hookNormalized;

    /// <summary>Creates the norm with an uninitialised weight (load or initialise it before use).</summary>
    /// <param name="dim">Normalised width.</param>
    /// <param name="eps">Added to the mean square.</param>
    /// <param name="hookPrefix">TransformerLens name prefix of the hook points, e.g. <c>blocks.0.ln1</c>.</param>
    /// <param name="layer">Block index for hook contexts, or <see langword="null"/> for <c>ln_final</c>.</param>
    /// <param name="dtype">Parameter dtype.</param>
    /// <param name="device">Parameter device.</param>
    public GemmaRmsNorm(long dim, double eps, string hookPrefix, int? layer, ScalarType dtype, Device device)
        : base(nameof(GemmaRmsNorm))
    {
        Eps = eps;
        _weight = EmptyModules.Parameter(dtype, device, dim);
        _hookScale = new HookPoint(hookPrefix + ".hook_scale", layer);
        _hookNormalized = new HookPoint(hookPrefix + ".hook_normalized", layer);
        RegisterComponents();
    }

    /// <summary>The epsilon added to the mean square.</summary>
    public double Eps { get; }

    /// <summary>The stored weight <c>w</c> (the norm multiplies by <c>1 + w</c>).</summary>
    public Parameter Weight => _weight;

    /// <summary>The <c>hook_scale</c> hook point.</summary>
    public HookPoint HookScale => _hookScale;

    /// <summary>The <c>hook_normalized</c> hook point.</summary>
    public HookPoint HookNormalized => _hookNormalized;

    /// <summary>Normalises over the last dimension.</summary>
    /// <param name="input">[..., dim] in the model dtype.</param>
    /// <returns>[..., dim] in the input dtype.</returns>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input.dtype == ScalarType.Float32 ? input : input.to(ScalarType.Float32);
        var scale = _hookScale.call(x.pow(2).mean([-1L], keepdim: true).add(Eps).rsqrt());
        var normalized = _hookNormalized.call(x * scale);
        var gain = _weight.to(ScalarType.Float32) + 1.0;
        var output = normalized * gain;
        if (output.dtype != input.dtype)
        {
            output = output.to(input.dtype);
        }

        return output.MoveToOuterDisposeScope();
    }
}
