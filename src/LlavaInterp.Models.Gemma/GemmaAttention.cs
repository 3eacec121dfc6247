using LlavaInterp.Nn;
using LlavaInterp.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Gemma self-attention as HF 4.46 <c>GemmaAttention</c> (eager): q/k/v projections, RoPE (rotate-half), grouped-query
/// attention (query head h reads key/value head h / (heads / kv_heads)), scores·(1/√head_dim), additive mask,
/// softmax in float32 cast back to the model dtype, <c>o_proj</c>. State-dict keys: <c>q_proj.weight</c>
/// [heads·head_dim, hidden], <c>k_proj.weight</c>/<c>v_proj.weight</c> [kv_heads·head_dim, hidden], <c>o_proj.weight</c>
/// [hidden, heads·head_dim], plus <c>.bias</c> of each when <c>attention_bias</c> is set.
/// </summary>
/// <remarks>
/// Hook points (TransformerLens names, <c>blocks.{i}.attn.</c> prefix; new positions only during cached decoding):
/// <c>hook_q</c> [batch, pos, heads, head_dim] and <c>hook_k</c>/<c>hook_v</c> [batch, pos, kv_heads, head_dim]
/// (projections, before RoPE); <c>hook_rot_q</c> [batch, pos, heads, head_dim] and <c>hook_rot_k</c>
/// [batch, pos, kv_heads, head_dim] (after RoPE; the cache stores what <c>hook_rot_k</c>/<c>hook_v</c> return);
/// <c>hook_attn_scores</c> [batch, heads, pos, past+pos] (scaled and masked, before softmax);
/// <c>hook_pattern</c> [batch, heads, pos, past+pos]; <c>hook_z</c> [batch, pos, heads, head_dim] (pattern·V, before
/// <c>o_proj</c>). While neither <c>hook_attn_scores</c> nor <c>hook_pattern</c> is hooked or cached, attention runs
/// through libtorch's fused <c>scaled_dot_product_attention</c> (equal to eager within float rounding) and those two
/// activations are never materialised. Optional (TransformerLens's <c>use_attn_result</c>, see
/// <see cref="GemmaHookFlags"/>): <c>hook_result</c> [batch, pos, heads, hidden], each head's share of the output
/// (<c>z_h · W_O[:, h]ᵀ</c>); the output is then their sum.
/// </remarks>
internal sealed class GemmaAttention : nn.Module<Tensor, GemmaLayerContext, Tensor>
{
    [ComponentName(Name = "q_proj")]
    private readonly CastLinear _qProj;

    [ComponentName(Name = "k_proj")]
    private readonly CastLinear _kProj;

    [ComponentName(Name = "v_proj")]
    private readonly CastLinear _vProj;

    [ComponentName(Name = "o_proj")]
    private readonly CastLinear _oProj;

    [ComponentName(Name = "hook_q")]
    private readonly HookPoint _hookQ;

    [ComponentName(Name = "hook_k")]
    private readonly HookPoint _hookK;

    [ComponentName(Name = "hook_v")]
    private readonly HookPoint _hookV;

    [ComponentName(Name = "hook_rot_q")]
    private readonly HookPoint _hookRotQ;

    [ComponentName(Name = "hook_rot_k")]
    private readonly HookPoint _hookRotK;

    [ComponentName(Name = "hook_attn_scores")]
    private readonly HookPoint _hookAttnScores;

    [ComponentName(Name = "hook_pattern")]
    private readonly HookPoint _hookPattern;

    [ComponentName(Name = "hook_z")]
    private readonly HookPoint _hookZ;

    [ComponentName(Name = "hook_result")]
    private readonly HookPoint _hookResult;

    private readonly GemmaHookFlags _flags;

    private readonly double _scaling;

    /// <summary>Creates the attention block with uninitialised weights.</summary>
    /// <param name="config">Model configuration.</param>
    /// <param name="layer">Block index (hook names and KV cache slot).</param>
    /// <param name="dtype">Parameter dtype.</param>
    /// <param name="device">Parameter device.</param>
    /// <param name="flags">The model's optional hook switches.</param>
    public GemmaAttention(GemmaConfig config, int layer, ScalarType dtype, Device device, GemmaHookFlags flags)
        : base(nameof(GemmaAttention))
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(flags);
        Layer = layer;
        _flags = flags;
        NumHeads = config.NumAttentionHeads;
        NumKeyValueHeads = config.NumKeyValueHeads;
        HeadDim = config.HeadDim;
        // HF 4.46: self.scaling = 1 / math.sqrt(head_dim), multiplied onto q·kᵀ (a power of two for head_dim 16/64/256,
        // so identical to dividing by √head_dim there).
        _scaling = 1.0 / Math.Sqrt(config.HeadDim);
        long hidden = config.HiddenSize;
        long qWidth = (long)NumHeads * HeadDim;
        long kvWidth = (long)NumKeyValueHeads * HeadDim;
        bool bias = config.AttentionBias;
        _qProj = new CastLinear(hidden, qWidth, bias, dtype, device);
        _kProj = new CastLinear(hidden, kvWidth, bias, dtype, device);
        _vProj = new CastLinear(hidden, kvWidth, bias, dtype, device);
        _oProj = new CastLinear(qWidth, hidden, bias, dtype, device);
        string p = $"blocks.{layer}.attn.";
        _hookQ = new HookPoint(p + "hook_q", layer);
        _hookK = new HookPoint(p + "hook_k", layer);
        _hookV = new HookPoint(p + "hook_v", layer);
        _hookRotQ = new HookPoint(p + "hook_rot_q", layer);
        _hookRotK = new HookPoint(p + "hook_rot_k", layer);
        _hookAttnScores = new HookPoint(p + "hook_attn_scores", layer);
        _hookPattern = new HookPoint(p + "hook_pattern", layer);
        _hookZ = new HookPoint(p + "hook_z", layer);
        _hookResult = new HookPoint(p + "hook_result", layer);
        RegisterComponents();
    }

    /// <summary>Block index.</summary>
    public int Layer { get; }

    /// <summary>Query heads.</summary>
    public int NumHeads { get; }

    /// <summary>Key/value heads.</summary>
    public int NumKeyValueHeads { get; }

    /// <summary>Head width.</summary>
    public int HeadDim { get; }

    /// <summary><c>q_proj</c>.</summary>
    public CastLinear QProj => _qProj;

    /// <summary><c>k_proj</c>.</summary>
    public CastLinear KProj => _kProj;

    /// <summary><c>v_proj</c>.</summary>
    public CastLinear VProj => _vProj;

    /// <summary><c>o_proj</c>.</summary>
    public CastLinear OProj => _oProj;

    /// <summary>Runs attention over the new positions (and the cached ones).</summary>
    /// <param name="input">Normalised hidden states [batch, pos, hidden].</param>
    /// <param name="context">RoPE tables, mask and cache of this pass.</param>
    /// <returns>[batch, pos, hidden] (after <c>o_proj</c>).</returns>
    public override Tensor forward(Tensor input, GemmaLayerContext context)
    {
        using var scope = NewDisposeScope();
        long b = input.shape[0];
        long t = input.shape[1];
        var q = _qProj.call(input).view(b, t, NumHeads, HeadDim);
        var k = _kProj.call(input).view(b, t, NumKeyValueHeads, HeadDim);
        var v = _vProj.call(input).view(b, t, NumKeyValueHeads, HeadDim);
        return Attend(q, k, v, context, input.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Attention on per-head inputs (TransformerLens's <c>use_attn_in</c>/<c>use_split_qkv_input</c>): query head h
    /// projects <paramref name="queryInput"/>[:, :, h]; key/value head g projects its input's head g, or, when the
    /// input has one copy per query head, the copy of g's first query head.
    /// </summary>
    /// <param name="queryInput">Normalised [batch, pos, heads, hidden].</param>
    /// <param name="keyInput">Normalised [batch, pos, kv_heads or heads, hidden].</param>
    /// <param name="valueInput">Normalised [batch, pos, kv_heads or heads, hidden].</param>
    /// <param name="context">RoPE tables, mask and cache of this pass.</param>
    public Tensor ForwardPerHead(Tensor queryInput, Tensor keyInput, Tensor valueInput, GemmaLayerContext context)
    {
        using var scope = NewDisposeScope();
        var q = ProjectPerHead(queryInput, _qProj, NumHeads);
        var k = ProjectPerHead(KvHeadInputs(keyInput), _kProj, NumKeyValueHeads);
        var v = ProjectPerHead(KvHeadInputs(valueInput), _vProj, NumKeyValueHeads);
        return Attend(q, k, v, context, queryInput.dtype).MoveToOuterDisposeScope();
    }

    // From the projections [b, t, heads, head_dim] on: hooks, RoPE, cache, attention, o_proj.
    private Tensor Attend(Tensor q, Tensor k, Tensor v, GemmaLayerContext context, ScalarType dtype)
    {
        long b = q.shape[0];
        long t = q.shape[1];
        int groups = NumHeads / NumKeyValueHeads;
        q = _hookQ.call(q);
        k = _hookK.call(k);
        v = _hookV.call(v);

        // RoPE in the [batch, pos, head, dim] layout: cos/sin broadcast over heads. Element-wise identical to HF.
        var cos = context.Cos.unsqueeze(2);
        var sin = context.Sin.unsqueeze(2);
        q = _hookRotQ.call(q * cos + RotateHalf(q) * sin);
        k = _hookRotK.call(k * cos + RotateHalf(k) * sin);

        var keys = k.transpose(1, 2);
        var values = v.transpose(1, 2);
        if (context.Cache is { } cache)
        {
            (keys, values) = cache.Append(Layer, keys, values);
        }

        long s = keys.shape[2];
        Tensor z;
        if (!_hookAttnScores.IsHooked && !_hookPattern.IsHooked)
        {
            // Nobody looks at the scores or the pattern: libtorch's fused kernel (its default scale 1/sqrt(head_dim)
            // is this model's scaling). It wants one key/value head per query head; the repeat copies only K/V.
            var qh = q.transpose(1, 2);
            var kh = RepeatKv(keys, groups);
            var vh = RepeatKv(values, groups);
            z = nn.functional.scaled_dot_product_attention(qh, kh, vh, context.Mask).transpose(1, 2);
        }
        else
        {
            z = EagerAttention(q, keys, values, context.Mask, b, t, s, groups, dtype);
        }

        z = _hookZ.call(z);
        if (!_flags.UseAttnResult)
        {
            return _oProj.call(z.reshape(b, t, (long)NumHeads * HeadDim));
        }

        var result = _hookResult.call(HeadResults(z));
        var output = result.sum(2);
        return _oProj.Bias is { } bias ? output + WeightCast.To(bias, output.dtype) : output;
    }

    /// <summary>
    /// Each head's share of the output (TransformerLens <c>hook_result</c>): <c>z</c> [..., heads, head_dim] times
    /// W_O [hidden, heads·head_dim] viewed per head, [..., heads, hidden] (no bias). Summed over heads it is o_proj's
    /// product.
    /// </summary>
    internal Tensor HeadResults(Tensor z)
    {
        var wO = _oProj.Weight.to(z.dtype, z.device).view(-1, NumHeads, HeadDim);
        return einsum("...hd,mhd->...hm", z, wO);
    }

    // [b, t, n, hidden] · W [n·head_dim, hidden] per head → [b, t, n, head_dim] (+ bias).
    private Tensor ProjectPerHead(Tensor x, CastLinear projection, int heads)
    {
        var w = WeightCast.To(projection.Weight, x.dtype).view(heads, HeadDim, -1);
        var y = einsum("btnm,ndm->btnd", x, w);
        return projection.Bias is { } bias ? y + WeightCast.To(bias, x.dtype).view(heads, HeadDim) : y;
    }

    // Key/value inputs given per query head: kv head g reads its group's first query head.
    private Tensor KvHeadInputs(Tensor x)
    {
        if (x.shape[2] == NumKeyValueHeads)
        {
            return x;
        }

        int groups = NumHeads / NumKeyValueHeads;
        return x.view(x.shape[0], x.shape[1], NumKeyValueHeads, groups, x.shape[3]).select(3, 0);
    }

    /// <summary>The eager path, used whenever <c>hook_attn_scores</c> or <c>hook_pattern</c> is hooked or cached.</summary>
    private Tensor EagerAttention(Tensor q, Tensor keys, Tensor values, Tensor? mask, long b, long t, long s, int groups, ScalarType dtype)
    {
        // Grouped-query attention without materialising repeated K/V: the `groups` query heads that share a kv head
        // are stacked along the query axis ([b, kv, groups·t, d]) and multiplied with that kv head once.
        var queries = q.transpose(1, 2).reshape(b, NumKeyValueHeads, groups * t, HeadDim);
        var scores = matmul(queries, keys.transpose(2, 3)).mul(_scaling).view(b, NumHeads, t, s);
        if (mask is not null)
        {
            scores = scores + mask;
        }

        scores = _hookAttnScores.call(scores);
        var pattern = nn.functional.softmax(scores, -1, ScalarType.Float32);
        if (pattern.dtype != dtype)
        {
            pattern = pattern.to(dtype);
        }

        pattern = _hookPattern.call(pattern);
        return matmul(pattern.reshape(b, NumKeyValueHeads, groups * t, s), values)
            .view(b, NumHeads, t, HeadDim)
            .transpose(1, 2);
    }

    /// <summary>[b, kv, s, d] → [b, kv·groups, s, d], query head h reading kv head h / groups.</summary>
    private static Tensor RepeatKv(Tensor x, int groups)
    {
        if (groups == 1)
        {
            return x;
        }

        long b = x.shape[0], kv = x.shape[1], s = x.shape[2], d = x.shape[3];
        return x.unsqueeze(2).expand(b, kv, groups, s, d).reshape(b, kv * groups, s, d);
    }

    /// <summary>HF's <c>rotate_half</c>: <c>cat(-x[..., d/2:], x[..., :d/2])</c>.</summary>
    private static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        var first = x.narrow(-1, 0, half);
        var second = x.narrow(-1, half, half);
        return cat([second.neg(), first], -1);
    }
}
