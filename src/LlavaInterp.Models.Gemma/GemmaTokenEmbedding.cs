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
    public GemmaTokenEmbedding(long vocabSize, long hiddenSize, ScalarType dtype, Device device)
        : base(nameof(GemmaTokenEmbedding))
    {
        VocabSize = vocabSize;
        _weight = EmptyModules.Parameter(dtype, device, vocabSize, hiddenSize);
        RegisterComponents();
    }

    /// <summary>Number of rows.</summary>
    public long VocabSize { get; }

    /// <summary>The table [vocab, hidden]; with tied embeddings it is also the unembedding.</summary>
    public Parameter Weight => _weight;

    /// <summary>Looks up rows.</summary>
    /// <param name="input">Token ids [batch, pos] (int64), already checked to lie in [0, vocab).</param>
    /// <returns>[batch, pos, hidden] in the weight dtype.</returns>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var shape = input.shape.Append(_weight.shape[1]).ToArray();
        return _weight.index_select(0, input.reshape(-1)).view(shape).MoveToOuterDisposeScope();
    }
}
