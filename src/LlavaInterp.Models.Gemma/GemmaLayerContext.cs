using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// What every decoder layer of one forward pass shares besides the hidden states: the RoPE tables, the additive
/// attention mask and the KV cache. Built by <see cref="GemmaModel"/>; the tensors belong to that forward pass.
/// </summary>
internal sealed class GemmaLayerContext
{
    internal GemmaLayerContext(Tensor cos, Tensor sin, Tensor? mask, GemmaKvCache? cache, long pastLength)
    {
        Cos = cos;
        Sin = sin;
        Mask = mask;
        Cache = cache;
        PastLength = pastLength;
    }

    /// <summary>RoPE cosines [batch, pos, head_dim] in the model dtype.</summary>
    public Tensor Cos { get; }

    /// <summary>RoPE sines [batch, pos, head_dim] in the model dtype.</summary>
    public Tensor Sin { get; }

    /// <summary>
    /// Additive mask [batch, 1, pos, past + pos] in the model dtype: 0 where a query may attend, the dtype's minimum
    /// (not −∞, so fully masked rows of left padding give a uniform pattern, not NaN) where it may not;
    /// <see langword="null"/> when nothing is masked (a single new token without padding).
    /// </summary>
    public Tensor? Mask { get; }

    /// <summary>The KV cache the layers append to, if any.</summary>
    public GemmaKvCache? Cache { get; }

    /// <summary>Number of cached positions before this pass.</summary>
    public long PastLength { get; }
}
