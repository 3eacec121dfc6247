using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Input of one forward pass of <see cref="HookedGemma"/> (and <see cref="GemmaModel"/>). Give exactly one of
/// <see cref="InputIds"/> and <see cref="InputsEmbeds"/>. Tensors are only read, never modified or disposed.
/// </summary>
public sealed record GemmaInput
{
    /// <summary>Token ids [batch, pos] (int64 or int32), each in [0, vocab).</summary>
    public Tensor? InputIds { get; init; }

    /// <summary>
    /// Input embeddings [batch, pos, hidden] as HF's <c>inputs_embeds</c>: UNSCALED (the model multiplies them by
    /// <c>sqrt(hidden)</c>, as it does looked-up embeddings); converted to the model dtype. LLaVA passes its merged
    /// text+image embeddings here. With <see cref="StartAtLayer"/> this is instead the residual stream entering that
    /// block (<c>blocks.N.hook_resid_pre</c>), used as is.
    /// </summary>
    public Tensor? InputsEmbeds { get; init; }

    /// <summary>
    /// Attention mask [batch, past + pos] (1 = attend, 0 = padding; left padding supported). With a cache it covers
    /// the cached positions too. When absent: the cache's stored mask extended with ones, or no padding at all.
    /// </summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>
    /// Position ids [batch, pos] (or [1, pos]). Default: <c>cumsum(mask) - 1</c> with 1 on padding, restricted to the new
    /// positions, when a mask is known (as HF <c>generate</c> does); otherwise <c>past .. past+pos-1</c>.
    /// </summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>KV cache to read the past from and append the new positions to (see <see cref="GemmaKvCache"/>).</summary>
    public GemmaKvCache? Cache { get; init; }

    /// <summary>
    /// Start at this block instead of the embedding: <see cref="InputsEmbeds"/> then holds the residual stream
    /// (TransformerLens <c>start_at_layer</c>). Not combinable with <see cref="Cache"/>.
    /// </summary>
    public int? StartAtLayer { get; init; }

    /// <summary>
    /// Run blocks <c>start .. StopAtLayer-1</c> only and return the residual stream entering block
    /// <c>StopAtLayer</c>, without final norm or logits (TransformerLens <c>stop_at_layer</c>; negative values count from
    /// the end). Not combinable with <see cref="Cache"/>.
    /// </summary>
    public int? StopAtLayer { get; init; }

    /// <summary>Compute logits (false: stop after the final norm, e.g. when only activations are wanted).</summary>
    public bool ComputeLogits { get; init; } = true;

    /// <summary>Compute logits only for the last this-many positions (0 = all, as HF's <c>num_logits_to_keep</c>).</summary>
    public int LogitsToKeep { get; init; }

    /// <summary>
    /// Check the logits for NaN/infinity and, when one is found, name the first non-finite residual stream
    /// (<see cref="NonFiniteActivationException"/>). Off by default: the check reads every logit and waits for the
    /// device on every forward pass (one float32 sum per block as well).
    /// </summary>
    public bool CheckFinite { get; init; }

    /// <summary>Convenience: a pass over token ids.</summary>
    public static GemmaInput FromIds(Tensor inputIds, Tensor? attentionMask = null, GemmaKvCache? cache = null) =>
        new() { InputIds = inputIds, AttentionMask = attentionMask, Cache = cache };
}
