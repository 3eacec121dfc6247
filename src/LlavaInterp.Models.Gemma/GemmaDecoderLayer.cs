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
/// Optional, as in TransformerLens (off unless switched on through <see cref="GemmaHookFlags"/>): <c>hook_attn_in</c>
/// [batch, pos, heads, hidden] (resid_pre copied per head; key/value head g reads the copy of its group's first
/// query head), <c>hook_q_input</c> [batch, pos, heads, hidden] with <c>hook_k_input</c>/<c>hook_v_input</c>
/// [batch, pos, kv_heads, hidden] (per-head inputs of Q, K and V, each normalised by <c>ln1</c> on its own), and
/// <c>hook_mlp_in</c> [batch, pos, hidden] (a copy of resid_mid, the input of <c>ln2</c>).
/// </remarks>
internal sealed class GemmaDecoderLayer : nn.Module<Tensor, GemmaLayerContext, Tensor>
{
    // Field order = hook execution order: RegisterComponents registers fields in declaration order and
    // named_modules below walks depth-first, so HookNames list this layer's hooks as they fire.
    [ComponentName(Name = "hook_resid_pre")]
    private readonly HookPoint _hookResidPre;

    [ComponentName(Name = "hook_attn_in")]
    private readonly HookPoint _hookAttnIn;

    [ComponentName(Name = "hook_q_input")]
    private readonly HookPoint _hookQInput;

    [ComponentName(Name = "hook_k_input")]
    private readonly HookPoint _hookKInput;

    [ComponentName(Name = "hook_v_input")]
    private readonly HookPoint _hookVInput;

    [ComponentName(Name = "input_layernorm")]
    private readonly GemmaRmsNorm _inputLayernorm;

    [ComponentName(Name = "self_attn")]
    private readonly GemmaAttention _selfAttn;

    [ComponentName(Name = "hook_attn_out")]
    private readonly HookPoint _hookAttnOut;

    [ComponentName(Name = "hook_resid_mid")]
    private readonly HookPoint _hookResidMid;

    [ComponentName(Name = "hook_mlp_in")]
    private readonly HookPoint _hookMlpIn;

    [ComponentName(Name = "post_attention_layernorm")]
    private readonly GemmaRmsNorm _postAttentionLayernorm;

    [ComponentName(Name = "mlp")]
    private readonly GemmaMlp _mlp;

    [ComponentName(Name = "hook_mlp_out")]
    private readonly HookPoint _hookMlpOut;

    [ComponentName(Name = "hook_resid_post")]
    private readonly HookPoint _hookResidPost;

    private readonly GemmaHookFlags _flags;

    /// <summary>Creates the layer with uninitialised weights.</summary>
    public GemmaDecoderLayer(GemmaConfig config, int layer, ScalarType dtype, Device device, GemmaHookFlags flags)
        : base(nameof(GemmaDecoderLayer))
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(flags);
        Layer = layer;
        _flags = flags;
        string p = $"blocks.{layer}.";
        _hookResidPre = new HookPoint(p + "hook_resid_pre", layer);
        _hookAttnIn = new HookPoint(p + "hook_attn_in", layer);
        _hookQInput = new HookPoint(p + "hook_q_input", layer);
        _hookKInput = new HookPoint(p + "hook_k_input", layer);
        _hookVInput = new HookPoint(p + "hook_v_input", layer);
        _inputLayernorm = new GemmaRmsNorm(config.HiddenSize, config.RmsNormEps, p + "ln1", layer, dtype, device);
        _selfAttn = new GemmaAttention(config, layer, dtype, device, flags);
        _hookAttnOut = new HookPoint(p + "hook_attn_out", layer);
        _hookResidMid = new HookPoint(p + "hook_resid_mid", layer);
        _hookMlpIn = new HookPoint(p + "hook_mlp_in", layer);
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
        var attnOut = _hookAttnOut.call(_flags.UseAttnIn || _flags.UseSplitQkvInput
            ? PerHeadAttention(residual, context)
            : _selfAttn.call(_inputLayernorm.call(residual), context));
        var mid = _hookResidMid.call(residual + attnOut);
        var mlpIn = _flags.UseHookMlpIn ? _hookMlpIn.call(mid.clone()) : mid;
        var mlpOut = _hookMlpOut.call(_mlp.call(_postAttentionLayernorm.call(mlpIn)));
        return HookResults.ReturnFrom(scope, _hookResidPost.call(mid + mlpOut));
    }

    // TransformerLens's use_attn_in / use_split_qkv_input: the residual stream copied once per head so a hook can
    // edit what one head reads; ln1 then normalises each copy on its own.
    private Tensor PerHeadAttention(Tensor residual, GemmaLayerContext context)
    {
        int heads = _selfAttn.NumHeads;
        int kvHeads = _selfAttn.NumKeyValueHeads;
        var attnIn = _flags.UseAttnIn ? _hookAttnIn.call(PerHead(residual, heads)) : null;
        Tensor qIn, kIn, vIn;
        if (_flags.UseSplitQkvInput)
        {
            // TransformerLens: the split inputs are copies of resid_pre (not of hook_attn_in), and ln1 runs on each.
            qIn = _hookQInput.call(PerHead(residual, heads));
            kIn = _hookKInput.call(PerHead(residual, kvHeads));
            vIn = _hookVInput.call(PerHead(residual, kvHeads));
        }
        else
        {
            // One input for Q, K and V: normalise it once (ln1's hooks fire once, as without the switch).
            var normalized = _inputLayernorm.call(attnIn!);
            return _selfAttn.ForwardPerHead(normalized, normalized, normalized, context);
        }

        return _selfAttn.ForwardPerHead(_inputLayernorm.call(qIn), _inputLayernorm.call(kIn), _inputLayernorm.call(vIn), context);
    }

    // [batch, pos, hidden] → [batch, pos, heads, hidden], a real copy per head (a hook may edit one in place).
    private static Tensor PerHead(Tensor x, int heads) => x.unsqueeze(2).expand(x.shape[0], x.shape[1], heads, x.shape[2]).clone();
}
