using LlavaInterp.Nn;
using LlavaInterp.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// HF <c>CLIPAttention</c> (eager): bidirectional multi-head self-attention, no mask. q, k, v and out projections have
/// biases; q is multiplied by head_dim^-0.5 before q·kᵀ, as HF does.
/// </summary>
internal sealed class ClipAttention : torch.nn.Module<torch.Tensor, torch.Tensor>
{
    [ComponentName(Name = "k_proj")]
    private readonly CastLinear _kProj;

    [ComponentName(Name = "v_proj")]
    private readonly CastLinear _vProj;

    [ComponentName(Name = "q_proj")]
    private readonly CastLinear _qProj;

    [ComponentName(Name = "out_proj")]
    private readonly CastLinear _outProj;

    // [batch, pos, head, d_head], before the head_dim^-0.5 scale.
    [ComponentName(Name = "hook_q")]
    private readonly HookPoint _hookQ;

    // [batch, pos, head, d_head]
    [ComponentName(Name = "hook_k")]
    private readonly HookPoint _hookK;

    // [batch, pos, head, d_head]
    [ComponentName(Name = "hook_v")]
    private readonly HookPoint _hookV;

    // [batch, head, query_pos, key_pos]: scaled q·kᵀ before softmax.
    [ComponentName(Name = "hook_attn_scores")]
    private readonly HookPoint _hookAttnScores;

    // [batch, head, query_pos, key_pos]: softmax of the scores.
    [ComponentName(Name = "hook_pattern")]
    private readonly HookPoint _hookPattern;

    // [batch, pos, head, d_head]: pattern·v per head, before out_proj.
    [ComponentName(Name = "hook_z")]
    private readonly HookPoint _hookZ;

    private readonly int _heads;
    private readonly int _headDim;
    private readonly double _scale;

    internal ClipAttention(ClipVisionConfig config, string hookPrefix, int layer, torch.Device device, torch.ScalarType dtype)
        : base(nameof(ClipAttention))
    {
        long d = config.HiddenSize;
        _heads = config.NumAttentionHeads;
        _headDim = config.HeadDim;
        _scale = Math.Pow(_headDim, -0.5);
        _kProj = new CastLinear(d, d, true, dtype, device);
        _vProj = new CastLinear(d, d, true, dtype, device);
        _qProj = new CastLinear(d, d, true, dtype, device);
        _outProj = new CastLinear(d, d, true, dtype, device);
        _hookQ = new HookPoint(hookPrefix + "hook_q", layer);
        _hookK = new HookPoint(hookPrefix + "hook_k", layer);
        _hookV = new HookPoint(hookPrefix + "hook_v", layer);
        _hookAttnScores = new HookPoint(hookPrefix + "hook_attn_scores", layer);
        _hookPattern = new HookPoint(hookPrefix + "hook_pattern", layer);
        _hookZ = new HookPoint(hookPrefix + "hook_z", layer);
        RegisterComponents();
    }

    /// <summary>Query projection (weight [d_model, d_model], bias [d_model]).</summary>
    public CastLinear QProj => _qProj;

    /// <summary>Key projection.</summary>
    public CastLinear KProj => _kProj;

    /// <summary>Value projection.</summary>
    public CastLinear VProj => _vProj;

    /// <summary>Output projection.</summary>
    public CastLinear OutProj => _outProj;

    /// <summary>[batch, pos, d_model] → [batch, pos, d_model] (after <c>out_proj</c>).</summary>
    public override torch.Tensor forward(torch.Tensor hidden)
    {
        using var scope = torch.NewDisposeScope();
        long batch = hidden.shape[0], pos = hidden.shape[1];
        var q = _hookQ.call(_qProj.call(hidden).view(batch, pos, _heads, _headDim));
        var k = _hookK.call(_kProj.call(hidden).view(batch, pos, _heads, _headDim));
        var v = _hookV.call(_vProj.call(hidden).view(batch, pos, _heads, _headDim));

        var kh = k.transpose(1, 2);
        var vh = v.transpose(1, 2);
        torch.Tensor attended;
        if (!_hookAttnScores.IsHooked && !_hookPattern.IsHooked)
        {
            // Nobody looks at the scores or the pattern: libtorch's fused kernel (default scale head_dim^-0.5, as here).
            attended = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), kh, vh);
        }
        else
        {
            // HF scales the projected queries (not the scores); doing the same keeps the rounding identical.
            var qh = (q * _scale).transpose(1, 2);                       // [batch, head, pos, d_head]
            var scores = _hookAttnScores.call(torch.matmul(qh, kh.transpose(-1, -2)));
            var pattern = _hookPattern.call(torch.softmax(scores, -1));
            attended = torch.matmul(pattern, vh);
        }

        var z = _hookZ.call(attended.transpose(1, 2)); // [batch, pos, head, d_head]
        return _outProj.call(z.reshape(batch, pos, -1)).MoveToOuterDisposeScope();
    }
}
