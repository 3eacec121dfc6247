using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Output of one forward pass. Owns <see cref="Logits"/>, <see cref="ResidualStream"/> and
/// <see cref="LastHiddenState"/> (dispose the output); <see cref="Cache"/> is the caller's cache, not disposed here.
/// </summary>
public sealed class GemmaOutput : IDisposable
{
    /// <summary>
    /// Logits [batch, pos (or LogitsToKeep), vocab] as float32 (computed in the model dtype, like HF's <c>lm_head</c>,
    /// then widened as HF <c>generate</c> does); <see langword="null"/> when not computed or stopped early.
    /// </summary>
    public Tensor? Logits { get; init; }

    /// <summary>
    /// The residual stream [batch, pos, hidden] in the model dtype: the output of the last block run
    /// (<c>blocks.{last}.hook_resid_post</c>, before the final norm), or the stream entering
    /// <see cref="GemmaInput.StopAtLayer"/>.
    /// </summary>
    public required Tensor ResidualStream { get; init; }

    /// <summary>
    /// HF's <c>last_hidden_state</c>: the final norm of <see cref="ResidualStream"/> [batch, pos, hidden]
    /// (<c>hidden_states[-1]</c>); <see langword="null"/> when stopped early.
    /// </summary>
    public Tensor? LastHiddenState { get; init; }

    /// <summary>The cache the pass appended to, if one was given.</summary>
    public GemmaKvCache? Cache { get; init; }

    /// <summary>Number of positions before this pass (the absolute position of its first token).</summary>
    public long PastLength { get; init; }

    /// <summary>Float32 sums of the stream entering the first block and leaving each block run [blocks run + 1]; a
    /// non-finite sum marks a non-finite stream. Read only when the logits are not finite.</summary>
    internal Tensor? Checksums { get; init; }

    /// <summary>First block index covered by <see cref="Checksums"/>.</summary>
    internal int FirstLayer { get; init; }

    /// <summary>Disposes the tensors this output owns.</summary>
    public void Dispose()
    {
        Logits?.Dispose();
        ResidualStream.Dispose();
        LastHiddenState?.Dispose();
        Checksums?.Dispose();
    }
}
