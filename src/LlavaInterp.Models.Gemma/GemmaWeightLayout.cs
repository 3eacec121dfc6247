using LlavaInterp.Loading;
using LlavaInterp.TensorFiles;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Where a checkpoint keeps the Gemma decoder's tensors. The model's own parameter names are the standalone
/// <c>GemmaForCausalLM</c> names (<c>model.embed_tokens.weight</c>, <c>model.layers.N...</c>, <c>model.norm.weight</c>,
/// <c>lm_head.weight</c>); a layout maps them to checkpoint names.
/// </summary>
/// <param name="DecoderPrefix">Checkpoint prefix that replaces the model's <c>model.</c> prefix.</param>
/// <param name="LmHeadKey">Checkpoint name of the untied <c>lm_head.weight</c> (ignored when embeddings are tied).</param>
/// <param name="Scope">Checkpoint name prefixes that belong to the decoder; names under them that map to no
/// parameter are "unexpected" in strict loading (an empty prefix claims every name).</param>
public sealed record GemmaWeightLayout(string DecoderPrefix, string LmHeadKey, IReadOnlyList<string> Scope)
{
    /// <summary>Standalone <c>GemmaForCausalLM</c>: <c>model.layers.N...</c>, <c>lm_head.weight</c>; every tensor is the decoder's.</summary>
    public static GemmaWeightLayout Standalone { get; } = FromPrefix(string.Empty);

    /// <summary>A standalone layout nested under <paramref name="prefix"/> (as a multimodal model nests the decoder).</summary>
    public static GemmaWeightLayout FromPrefix(string prefix)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        return new GemmaWeightLayout(prefix + "model.", prefix + "lm_head.weight", [prefix]);
    }

    /// <summary>The checkpoint name of a model parameter (<c>model.X</c> → prefix + <c>X</c>; <c>lm_head.weight</c> → <see cref="LmHeadKey"/>).</summary>
    public string KeyFor(string parameterName)
    {
        ArgumentNullException.ThrowIfNull(parameterName);
        if (parameterName == "lm_head.weight")
        {
            return LmHeadKey;
        }

        if (parameterName.StartsWith("model.", StringComparison.Ordinal))
        {
            return DecoderPrefix + parameterName["model.".Length..];
        }

        throw new ArgumentException($"'{parameterName}' is not a Gemma parameter name.", nameof(parameterName));
    }

    /// <summary>Whether a checkpoint name belongs to the decoder's part of the checkpoint.</summary>
    public bool InScope(string key) => Scope.Any(p => key.StartsWith(p, StringComparison.Ordinal));

    /// <summary>
    /// The naming <see cref="WeightLoader"/> loads a <see cref="HookedGemma"/> with. With tied embeddings the model has no
    /// <c>lm_head.weight</c>; a stored one is then not the model's (HF ties it to the embedding), so never unexpected.
    /// </summary>
    internal WeightNaming Naming(bool tiedEmbeddings) => new(
        DecoderPrefix,
        KeyFor,
        key => InScope(key) && !(tiedEmbeddings && key == LmHeadKey));
}
