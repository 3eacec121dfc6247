using LlavaInterp.Nn;
using LlavaInterp.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// HF <c>CLIPEncoderLayer</c>, pre-norm: <c>h += self_attn(layer_norm1(h))</c>, then <c>h += mlp(layer_norm2(h))</c>.
/// Hook points are named <c>{prefix}blocks.{i}.…</c> after TransformerLens. Fields are declared in forward order so the
/// hook points are listed in the order they fire.
/// </summary>
internal sealed class ClipEncoderLayer : torch.nn.Module<torch.Tensor, torch.Tensor>
{
    // [batch, pos, d_model]: the layer input.
    [ComponentName(Name = "hook_resid_pre")]
    private readonly HookPoint _hookResidPre;

    [ComponentName(Name = "layer_norm1")]
    private readonly CastLayerNorm _layerNorm1;

    // [batch, pos, d_model]: layer_norm1 output (weight and bias applied).
    [ComponentName(Name = "hook_ln1_normalized")]
    private readonly HookPoint _hookLn1;

    [ComponentName(Name = "self_attn")]
    private readonly ClipAttention _selfAttn;

    // [batch, pos, d_model]: attention output after out_proj.
    [ComponentName(Name = "hook_attn_out")]
    private readonly HookPoint _hookAttnOut;

    // [batch, pos, d_model]: resid_pre + attn_out.
    [ComponentName(Name = "hook_resid_mid")]
    private readonly HookPoint _hookResidMid;

    [ComponentName(Name = "layer_norm2")]
    private readonly CastLayerNorm _layerNorm2;

    // [batch, pos, d_model]: layer_norm2 output.
    [ComponentName(Name = "hook_ln2_normalized")]
    private readonly HookPoint _hookLn2;

    [ComponentName(Name = "mlp")]
    private readonly ClipMlp _mlp;

    // [batch, pos, d_model]: MLP output after fc2.
    [ComponentName(Name = "hook_mlp_out")]
    private readonly HookPoint _hookMlpOut;

    // [batch, pos, d_model]: resid_mid + mlp_out, the layer output.
    [ComponentName(Name = "hook_resid_post")]
    private readonly HookPoint _hookResidPost;

    internal ClipEncoderLayer(ClipVisionConfig config, string hookPrefix, int layer, torch.Device device, torch.ScalarType dtype)
        : base(nameof(ClipEncoderLayer))
    {
        string p = $"{hookPrefix}blocks.{layer}.";
        _hookResidPre = new HookPoint(p + "hook_resid_pre", layer);
        _selfAttn = new ClipAttention(config, p + "attn.", layer, device, dtype);
        _layerNorm1 = new CastLayerNorm(config.HiddenSize, config.LayerNormEps, dtype, device);
        _hookLn1 = new HookPoint(p + "ln1.hook_normalized", layer);
        _hookAttnOut = new HookPoint(p + "hook_attn_out", layer);
        _hookResidMid = new HookPoint(p + "hook_resid_mid", layer);
        _mlp = new ClipMlp(config, p + "mlp.", layer, device, dtype);
        _layerNorm2 = new CastLayerNorm(config.HiddenSize, config.LayerNormEps, dtype, device);
        _hookLn2 = new HookPoint(p + "ln2.hook_normalized", layer);
        _hookMlpOut = new HookPoint(p + "hook_mlp_out", layer);
        _hookResidPost = new HookPoint(p + "hook_resid_post", layer);
        RegisterComponents();
    }

    /// <summary>The attention block.</summary>
    public ClipAttention SelfAttn => _selfAttn;

    /// <summary>LayerNorm before attention.</summary>
    public CastLayerNorm LayerNorm1 => _layerNorm1;

    /// <summary>The MLP block.</summary>
    public ClipMlp Mlp => _mlp;

    /// <summary>LayerNorm before the MLP.</summary>
    public CastLayerNorm LayerNorm2 => _layerNorm2;

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override torch.Tensor forward(torch.Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        var residPre = _hookResidPre.call(hidden);
        var attnOut = _hookAttnOut.call(_selfAttn.call(_hookLn1.call(_layerNorm1.call(residPre))));
        var residMid = _hookResidMid.call(residPre + attnOut);
        var mlpOut = _hookMlpOut.call(_mlp.call(_hookLn2.call(_layerNorm2.call(residMid))));
        return HookResults.ReturnFrom(scope, _hookResidPost.call(residMid + mlpOut));
    }
}
