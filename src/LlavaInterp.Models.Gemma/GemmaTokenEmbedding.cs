using LlavaInterp.Nn;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// The token embedding table (HF <c>embed_tokens</c>, state-dict key <c>weight</c> [vocab, hidden]). A plain lookup:
/// the <c>sqrt(hidden)</c> normaliser is applied by <see cref="GemmaModel"/>, as in HF. The weight is built with
/// <c>torch.empty</c> so that building a large model (or one on the meta device) allocates nothing until it is loaded.
/// </summary>
public sealed class GemmaTokenEmbedding : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Parameter _weight;

    /// <summary>Creates the table with uninitialised values.</summary>
    /// <param name="vocabSize">Rows.</param>
    /// <param name="hiddenSize">Columns.</param>
    /// <param name="dtype">Storage dtype of the table.</param>
    /// <param name="device">Parameter device.</param>
    /// <param name="computeDType">The dtype rows are returned in; <see langword="null"/> = <paramref name="dtype"/>.</param>
    public GemmaTokenEmbedding(long vocabSize, long hiddenSize, ScalarType dtype, Device device, ScalarType? computeDType = null)
        : base(nameof(GemmaTokenEmbedding))
    {
        VocabSize = vocabSize;
        ComputeDType = computeDType ?? dtype;
        _weight = EmptyModules.Parameter(dtype, device, vocabSize, hiddenSize);
        RegisterComponents();
    }

    /// <summary>Number of rows.</summary>
    public long VocabSize { get; }

    /// <summary>The dtype of the rows <see cref="forward"/> returns.</summary>
    public ScalarType ComputeDType { get; }

    /// <summary>The table [vocab, hidden]; with tied embeddings it is also the unembedding.</summary>
    public Parameter Weight => _weight;

    /// <summary>Looks up rows.</summary>
    /// <param name="input">Token ids [batch, pos] (int64), already checked to lie in [0, vocab).</param>
    /// <returns>[batch, pos, hidden] in <see cref="ComputeDType"/>.</returns>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var shape = input.shape.Append(_weight.shape[1]).ToArray();

        // Gather, then cast only the rows taken (the cast is exact and element-wise, so the order does not matter).
        var rows = _weight.index_select(0, input.reshape(-1)).view(shape);
        return WeightCast.To(rows, ComputeDType).MoveToOuterDisposeScope();
    }
}
