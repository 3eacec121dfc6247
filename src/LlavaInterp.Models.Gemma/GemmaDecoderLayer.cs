using LlavaInterp.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// One decoder layer as HF <c>GemmaDecoderLayer</c>: <c>h += self_attn(input_layernorm(h))</c>;
/// <c>h += mlp(post_attention_layernorm(h))</c>. State-dict children: <c>self_attn</c>, <c>mlp</c>,
/// <c>input_layernorm</c>, <c>post_attention_layernorm</c>.
/// </summary>
/// <remarks>
/// Hook points ([batch, pos, hidden], model dtype, <c>blocks.{i}.</c> prefix): <c>hook_resid_pre</c> (layer input),
/// <c>hook_attn_out</c> (after <c>o_proj</c>), <c>hook_resid_mid</c> (resid_pre + attn_out), <c>hook_mlp_out</c>,
/// <c>hook_resid_post</c> (layer output, HF's <c>layers[i]</c> output); the norms are <c>ln1</c>/<c>ln2</c>.
/// </remarks>
internal sealed class GemmaDecoderLayer : nn.Module<Tensor, GemmaLayerContext, Tensor>
{
    // Field order = hook execution order: RegisterComponents registers fields in declaration order and
    // named_modules below walks depth-first, so HookNames list this layer's hooks as they fire.
    [ComponentName(Name = "hook_resid_pre")]
    private readonly HookPoint _hookResidPre;

    [ComponentName(Name = "input_layernorm")]
    private readonly GemmaRmsNorm _inputLayernorm;

    [ComponentName(Name = "self_attn")]
    private readonly GemmaAttention _selfAttn;

    [ComponentName(Name = "hook_attn_out")]
    private readonly HookPoint _hookAttnOut;

    [ComponentName(Name = "hook_resid_mid")]
    private readonly HookPoint _hookResidMid;

    [ComponentName(Name = "post_attention_layernorm")]
    private readonly GemmaRmsNorm _postAttentionLayernorm;

    [ComponentName(Name = "mlp")]
    private readonly GemmaMlp _mlp;

    [ComponentName(Name = "hook_mlp_out")]
    private readonly HookPoint _hookMlpOut;

    [ComponentName(Name = "hook_resid_post")]
    private readonly HookPoint _hookResidPost;

    /// <summary>Creates the layer with uninitialised weights.</summary>
    public GemmaDecoderLayer(GemmaConfig config, int layer, ScalarType dtype, Device device)
        : base(nameof(GemmaDecoderLayer))
    {
        ArgumentNullException.ThrowIfNull(config);
        Layer = layer;
        string p = $"blocks.{layer}.";
        _hookResidPre = new HookPoint(p + "hook_resid_pre", layer);
        _inputLayernorm = new GemmaRmsNorm(config.HiddenSize, config.RmsNormEps, p + "ln1", layer, dtype, device);
        _selfAttn = new GemmaAttention(config, layer, dtype, device);
        _hookAttnOut = new HookPoint(p + "hook_attn_out", layer);
        _hookResidMid = new HookPoint(p + "hook_resid_mid", layer);
        _postAttentionLayernorm = new GemmaRmsNorm(config.HiddenSize, config.RmsNormEps, p + "ln2", layer, dtype, device);
        _mlp = new GemmaMlp(config, layer, dtype, device);
        _hookMlpOut = new HookPoint(p + "hook_mlp_out", layer);
        _hookResidPost = new HookPoint(p + "hook_resid_post", layer);
        RegisterComponents();
    }

    /// <summary>Block index.</summary>
    public int Layer { get; }

    /// <summary><c>input_layernorm</c> (TransformerLens <c>ln1</c>).</summary>
    public GemmaRmsNorm InputLayernorm => _inputLayernorm;

    /// <summary><c>self_attn</c> (TransformerLens <c>attn</c>).</summary>
    public GemmaAttention SelfAttn => _selfAttn;

    /// <summary><c>post_attention_layernorm</c> (TransformerLens <c>ln2</c>).</summary>
    public GemmaRmsNorm PostAttentionLayernorm => _postAttentionLayernorm;

    /// <summary><c>mlp</c>.</summary>
    public GemmaMlp Mlp => _mlp;

    /// <summary>Runs the layer.</summary>
    /// <param name="input">Residual stream [batch, pos, hidden].</param>
    /// <param name="context">RoPE tables, mask and cache of this pass.</param>
    /// <returns>The residual stream after the layer [batch, pos, hidden].</returns>
    public override Tensor forward(Tensor input, GemmaLayerContext context)
    {
        using var scope = NewDisposeScope();
        var residual = _hookResidPre.call(input);
        var attnOut = _hookAttnOut.call(_selfAttn.call(_inputLayernorm.call(residual), context));
        var mid = _hookResidMid.call(residual + attnOut);
        var mlpOut = _hookMlpOut.call(_mlp.call(_postAttentionLayernorm.call(mid)));
        return HookResults.ReturnFrom(scope, _hookResidPost.call(mid + mlpOut));
    }
}
