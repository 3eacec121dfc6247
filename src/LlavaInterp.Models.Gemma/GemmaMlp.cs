using LlavaInterp.Hooks;
using LlavaInterp.Nn;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Gated MLP as HF <c>GemmaMLP</c>: <c>down_proj(act(gate_proj(x)) · up_proj(x))</c>, no biases. State-dict keys:
/// <c>gate_proj.weight</c>/<c>up_proj.weight</c> [intermediate, hidden], <c>down_proj.weight</c> [hidden, intermediate].
/// </summary>
/// <remarks>
/// Hook points (<c>blocks.{i}.mlp.</c> prefix): <c>hook_pre</c> [batch, pos, intermediate] = <c>gate_proj(x)</c> before the
/// activation; <c>hook_pre_linear</c> [batch, pos, intermediate] = <c>up_proj(x)</c>; <c>hook_post</c>
/// [batch, pos, intermediate] = <c>act(gate)·up</c>, the input of <c>down_proj</c>.
/// </remarks>
internal sealed class GemmaMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")]
    private readonly CastLinear _gateProj;

    [ComponentName(Name = "up_proj")]
    private readonly CastLinear _upProj;

    [ComponentName(Name = "down_proj")]
    private readonly CastLinear _downProj;

    [ComponentName(Name = "hook_pre")]
    private readonly HookPoint _hookPre;

    [ComponentName(Name = "hook_pre_linear")]
    private readonly HookPoint _hookPreLinear;

    [ComponentName(Name = "hook_post")]
    private readonly HookPoint _hookPost;

    /// <summary>Creates the MLP with uninitialised weights.</summary>
    public GemmaMlp(GemmaConfig config, int layer, ScalarType dtype, Device device)
        : base(nameof(GemmaMlp))
    {
        ArgumentNullException.ThrowIfNull(config);
        Activation = config.ResolveActivation();
        _gateProj = new CastLinear(config.HiddenSize, config.IntermediateSize, false, dtype, device);
        _upProj = new CastLinear(config.HiddenSize, config.IntermediateSize, false, dtype, device);
        _downProj = new CastLinear(config.IntermediateSize, config.HiddenSize, false, dtype, device);
        string p = $"blocks.{layer}.mlp.";
        _hookPre = new HookPoint(p + "hook_pre", layer);
        _hookPreLinear = new HookPoint(p + "hook_pre_linear", layer);
        _hookPost = new HookPoint(p + "hook_post", layer);
        RegisterComponents();
    }

    /// <summary>The activation applied to <c>gate_proj(x)</c>.</summary>
    public Activation Activation { get; }

    /// <summary><c>gate_proj</c>.</summary>
    public CastLinear GateProj => _gateProj;

    /// <summary><c>up_proj</c>.</summary>
    public CastLinear UpProj => _upProj;

    /// <summary><c>down_proj</c>.</summary>
    public CastLinear DownProj => _downProj;

    /// <summary>Applies the MLP.</summary>
    /// <param name="input">[batch, pos, hidden].</param>
    /// <returns>[batch, pos, hidden].</returns>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var gate = _hookPre.call(_gateProj.call(input));
        var up = _hookPreLinear.call(_upProj.call(input));
        var post = _hookPost.call(Activation.Apply(gate) * up);
        return _downProj.call(post).MoveToOuterDisposeScope();
    }
}
