using LlavaInterp.Hooks;
using LlavaInterp.Nn;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace LlavaInterp.Models.Clip;

/// <summary>HF <c>CLIPMLP</c>: <c>fc2(act(fc1(x)))</c>, both with biases; the activation is the config's <c>hidden_act</c>.</summary>
internal sealed class ClipMlp : torch.nn.Module<torch.Tensor, torch.Tensor>
{
    [ComponentName(Name = "fc1")]
    private readonly CastLinear _fc1;

    // [batch, pos, d_mlp]: fc1 output, before the activation.
    [ComponentName(Name = "hook_pre")]
    private readonly HookPoint _hookPre;

    // [batch, pos, d_mlp]: after the activation.
    [ComponentName(Name = "hook_post")]
    private readonly HookPoint _hookPost;

    [ComponentName(Name = "fc2")]
    private readonly CastLinear _fc2;

    private readonly Func<torch.Tensor, torch.Tensor> _activation;

    internal ClipMlp(ClipVisionConfig config, string hookPrefix, int layer, torch.Device device, torch.ScalarType dtype)
        : base(nameof(ClipMlp))
    {
        _fc1 = new CastLinear(config.HiddenSize, config.IntermediateSize, true, dtype, device);
        _hookPre = new HookPoint(hookPrefix + "hook_pre", layer);
        _hookPost = new HookPoint(hookPrefix + "hook_post", layer);
        _fc2 = new CastLinear(config.IntermediateSize, config.HiddenSize, true, dtype, device);
        _activation = Activation.Get(config.HiddenAct, nameof(ClipVisionConfig), "hidden_act").Apply;
        RegisterComponents();
    }

    /// <summary>First projection (weight [d_mlp, d_model]).</summary>
    public CastLinear Fc1 => _fc1;

    /// <summary>Second projection (weight [d_model, d_mlp]).</summary>
    public CastLinear Fc2 => _fc2;

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override torch.Tensor forward(torch.Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        var pre = _hookPre.call(_fc1.call(hidden));
        var post = _hookPost.call(_activation(pre));
        return _fc2.call(post).MoveToOuterDisposeScope();
    }
}
