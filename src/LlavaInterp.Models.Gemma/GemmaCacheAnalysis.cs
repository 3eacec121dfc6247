using LlavaInterp.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>Which sublayer outputs <see cref="GemmaCacheAnalysis.DecomposeResid"/> returns (TransformerLens's <c>mode</c>).</summary>
public enum ResidComponents
{
    /// <summary>Attention and MLP outputs.</summary>
    All,

    /// <summary>MLP outputs only.</summary>
    Mlp,

    /// <summary>Attention outputs only.</summary>
    Attn,
}

/// <summary>A stack of residual-stream components [components, (batch,) (pos,) hidden] with one label per component.</summary>
public sealed class ResidualStack : IDisposable
{
    internal ResidualStack(Tensor components, IReadOnlyList<string> labels)
    {
        Components = components;
        Labels = labels;
    }

    /// <summary>The stacked components (owned by this object).</summary>
    public Tensor Components { get; }

    /// <summary>TransformerLens's labels: <c>0_pre</c>, <c>0_mid</c>, <c>final_post</c>, <c>embed</c>, <c>3_attn_out</c>, <c>L2H1</c>, <c>remainder</c>.</summary>
    public IReadOnlyList<string> Labels { get; }

    /// <inheritdoc/>
    public void Dispose() => Components.Dispose();
}

/// <summary>
/// TransformerLens's <c>ActivationCache</c> analysis (<c>accumulated_resid</c>, <c>decompose_resid</c>,
/// <c>stack_head_results</c>, <c>apply_ln_to_stack</c>, <c>logit_attrs</c>) over a cache of a Gemma decoder, also the
/// one inside <c>HookedLlava</c> (pass its <c>LanguageModel</c>). Layer arguments follow TransformerLens: components
/// up to the input of block <c>layer</c>; <see langword="null"/>, -1 or <c>n_layers</c> mean "up to the unembedding".
/// A <c>position</c> keeps one position (negative counts from the end) and drops that dimension, like an integer
/// <c>pos_slice</c>. Every result is a new tensor the caller owns; the cache is not changed.
/// </summary>
/// <remarks>
/// Layer-norm handling follows TransformerLens with unfolded weights: <see cref="ApplyLnToStack"/> multiplies by the
/// cached <c>hook_scale</c> (this library stores HF's factor <c>1/rms</c>), without the <c>(1 + w)</c> gain;
/// <see cref="TokensToResidualDirections"/> folds the final norm's gain into the unembedding instead, so
/// <c>LogitAttrs</c> of a decomposition sums to the model's logits.
/// </remarks>
public static class GemmaCacheAnalysis
{
    /// <summary>
    /// TransformerLens <c>accumulated_resid</c>: <c>resid_pre</c> of every block before <paramref name="layer"/>
    /// (labels <c>{l}_pre</c>, plus <c>{l}_mid</c> with <paramref name="inclMid"/>), the block's own <c>resid_pre</c>
    /// (and <c>resid_mid</c> with <paramref name="mlpInput"/>), and at the end the final <c>resid_post</c>
    /// (<c>final_post</c>) when <paramref name="layer"/> is the number of layers.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The layer is outside [0, n_layers].</exception>
    /// <exception cref="KeyNotFoundException">The cache lacks an activation the stack needs (the message names it).</exception>
    public static ResidualStack AccumulatedResid(this ActivationCache cache, HookedGemma model, int? layer = null, bool inclMid = false, bool applyLn = false, bool mlpInput = false, long? position = null)
    {
        Check(cache, model);
        int n = model.Config.NumHiddenLayers;
        int upTo = ResolveLayer(layer, n);
        var parts = new List<Tensor>();
        var labels = new List<string>();
        for (int l = 0; l <= upTo; l++)
        {
            if (l == n)
            {
                parts.Add(cache[$"blocks.{n - 1}.hook_resid_post"]);
                labels.Add("final_post");
                continue;
            }

            parts.Add(cache[$"blocks.{l}.hook_resid_pre"]);
            labels.Add($"{l}_pre");
            if ((inclMid && l < upTo) || (mlpInput && l == upTo))
            {
                parts.Add(cache[$"blocks.{l}.hook_resid_mid"]);
                labels.Add($"{l}_mid");
            }
        }

        return Finish(cache, model, parts, labels, applyLn, upTo, mlpInput, position);
    }

    /// <summary>
    /// TransformerLens <c>decompose_resid</c>: <c>hook_embed</c> (<c>embed</c>) and every block's <c>attn_out</c> and
    /// <c>mlp_out</c> before <paramref name="layer"/> (<c>{l}_attn_out</c>, <c>{l}_mlp_out</c>), plus block
    /// <paramref name="layer"/>'s <c>attn_out</c> with <paramref name="mlpInput"/>. The components sum to that block's
    /// <c>resid_pre</c> (or <c>resid_mid</c>, or the final <c>resid_post</c>). Gemma has no positional embedding
    /// component (RoPE acts inside attention).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The layer is outside [0, n_layers].</exception>
    /// <exception cref="KeyNotFoundException">The cache lacks an activation the stack needs.</exception>
    public static ResidualStack DecomposeResid(this ActivationCache cache, HookedGemma model, int? layer = null, bool mlpInput = false, ResidComponents mode = ResidComponents.All, bool applyLn = false, bool inclEmbeds = true, long? position = null)
    {
        Check(cache, model);
        int upTo = ResolveLayer(layer, model.Config.NumHiddenLayers);
        bool attn = mode != ResidComponents.Mlp;
        bool mlp = mode != ResidComponents.Attn;
        var parts = new List<Tensor>();
        var labels = new List<string>();
        if (inclEmbeds)
        {
            parts.Add(cache["hook_embed"]);
            labels.Add("embed");
        }

        for (int l = 0; l < upTo; l++)
        {
            if (attn)
            {
                parts.Add(cache[$"blocks.{l}.hook_attn_out"]);
                labels.Add($"{l}_attn_out");
            }

            if (mlp)
            {
                parts.Add(cache[$"blocks.{l}.hook_mlp_out"]);
                labels.Add($"{l}_mlp_out");
            }
        }

        if (mlpInput && attn)
        {
            parts.Add(cache[$"blocks.{upTo}.hook_attn_out"]);
            labels.Add($"{upTo}_attn_out");
        }

        return Finish(cache, model, parts, labels, applyLn, upTo, mlpInput, position);
    }

    /// <summary>
    /// TransformerLens <c>stack_head_results</c>: each head's contribution to the residual stream for every block
    /// before <paramref name="layer"/>, labels <c>L{l}H{h}</c> in layer-then-head order; with
    /// <paramref name="inclRemainder"/> a last <c>remainder</c> = <c>resid_post</c> of block <c>layer - 1</c> minus
    /// their sum. Uses <c>attn.hook_result</c> when it was cached (<see cref="HookedGemma.UseAttnResult"/>), else
    /// computes it from the cached <c>attn.hook_z</c> and <c>o_proj</c> (TransformerLens's <c>compute_head_results</c>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The layer is outside [0, n_layers].</exception>
    /// <exception cref="KeyNotFoundException">The cache lacks <c>hook_z</c>/<c>hook_result</c> of a block.</exception>
    public static ResidualStack StackHeadResults(this ActivationCache cache, HookedGemma model, int? layer = null, bool inclRemainder = false, bool applyLn = false, long? position = null)
    {
        Check(cache, model);
        int heads = model.Config.NumAttentionHeads;
        int upTo = ResolveLayer(layer, model.Config.NumHiddenLayers);
        using var scope = NewDisposeScope();
        var perLayer = new List<Tensor>();
        var labels = new List<string>();
        for (int l = 0; l < upTo; l++)
        {
            perLayer.Add(HeadResults(cache, model, l));
            labels.AddRange(Enumerable.Range(0, heads).Select(h => $"L{l}H{h}"));
        }

        // [..., layers·heads, hidden] → [layers·heads, ..., hidden].
        Tensor? components = perLayer.Count > 0 ? cat(perLayer, -2).movedim([-2L], [0L]) : null;
        if (inclRemainder)
        {
            if (upTo == 0)
            {
                throw new ArgumentOutOfRangeException(nameof(layer), "StackHeadResults with a remainder needs layer ≥ 1 (the remainder is resid_post of layer - 1).");
            }

            var target = cache[$"blocks.{upTo - 1}.hook_resid_post"];
            var remainder = components is null ? target : target - components.sum(0L).to(target.dtype);
            components = components is null ? remainder.unsqueeze(0) : cat([components, remainder.unsqueeze(0).to(components.dtype)], 0);
            labels.Add("remainder");
        }

        components ??= zeros([0, .. cache["hook_embed"].shape], dtype: cache["hook_embed"].dtype, device: cache["hook_embed"].device);
        components = Select(components, position, dim: -2);
        if (applyLn)
        {
            components = ApplyLnToStack(cache, components, model, upTo, mlpInput: false, position);
        }

        return new ResidualStack(components.MoveToOuterDisposeScope(), labels);
    }

    /// <summary>
    /// TransformerLens <c>apply_ln_to_stack</c>: treats each component as part of the input of block
    /// <paramref name="layer"/>'s <c>ln1</c> (<c>ln2</c> with <paramref name="mlpInput"/>; <c>ln_final</c> for
    /// <see langword="null"/>, -1 or n_layers) and applies that norm's cached scale, in float32: what the component
    /// contributes to the normalised stream (before the <c>(1 + w)</c> gain). Give the same
    /// <paramref name="position"/> the stack was made with.
    /// </summary>
    /// <exception cref="KeyNotFoundException">The cache lacks the norm's <c>hook_scale</c>.</exception>
    public static Tensor ApplyLnToStack(this ActivationCache cache, Tensor residualStack, HookedGemma model, int? layer = null, bool mlpInput = false, long? position = null)
    {
        Check(cache, model);
        ArgumentNullException.ThrowIfNull(residualStack);
        int upTo = ResolveLayer(layer, model.Config.NumHiddenLayers);
        string key = upTo == model.Config.NumHiddenLayers ? "ln_final.hook_scale" : $"blocks.{upTo}.ln{(mlpInput ? 2 : 1)}.hook_scale";
        using var scope = NewDisposeScope();
        var scale = Select(cache[key], position, dim: -2);
        return (residualStack.to(ScalarType.Float32) * scale).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// TransformerLens <c>logit_attrs</c>: applies the final norm's cached scale to <paramref name="residualStack"/>
    /// and takes the dot product of each component with the tokens' residual directions
    /// (<see cref="TokensToResidualDirections"/>), minus those of <paramref name="incorrectTokens"/> when given (a
    /// logit difference). <paramref name="tokens"/>: a scalar (every position), [batch] (one token per example, every
    /// position) or [batch, pos] (per position; [batch] when the stack has one position).
    /// Result: [components, (batch,) (pos)].
    /// </summary>
    /// <exception cref="ArgumentException">The token shapes differ.</exception>
    public static Tensor LogitAttrs(this ActivationCache cache, HookedGemma model, Tensor residualStack, Tensor tokens, Tensor? incorrectTokens = null, long? position = null)
    {
        Check(cache, model);
        ArgumentNullException.ThrowIfNull(residualStack);
        ArgumentNullException.ThrowIfNull(tokens);
        if (incorrectTokens is not null && !incorrectTokens.shape.SequenceEqual(tokens.shape))
        {
            throw new ArgumentException($"tokens [{string.Join(", ", tokens.shape)}] and incorrectTokens [{string.Join(", ", incorrectTokens.shape)}] must have the same shape.", nameof(incorrectTokens));
        }

        using var scope = NewDisposeScope();
        var directions = TokensToResidualDirections(model, tokens);
        if (incorrectTokens is not null)
        {
            directions = directions - TokensToResidualDirections(model, incorrectTokens);
        }

        var scaled = ApplyLnToStack(cache, residualStack, model, null, mlpInput: false, position);

        // One token per example over every position: broadcast over the position dimension.
        if (tokens.dim() == 1 && cache.HasBatchDim && scaled.dim() == 4 && tokens.shape[0] == scaled.shape[1])
        {
            directions = directions.unsqueeze(-2);
        }

        return (scaled * directions.to(device: scaled.device)).sum(-1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// TransformerLens <c>tokens_to_residual_directions</c> with the final norm folded in: the unembedding row of each
    /// token times the final norm's gain <c>(1 + w)</c>, float32, shape <c>tokens.shape + [hidden]</c>. The logit of
    /// token t is then <c>ln_final.hook_normalized · direction(t)</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A token id is outside the vocabulary.</exception>
    public static Tensor TokensToResidualDirections(this HookedGemma model, Tensor tokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(tokens);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var ids = tokens.to(ScalarType.Int64, model.Device);
        long vocab = model.UnembedWeight.shape[0];
        if (ids.numel() > 0 && (ids.min().item<long>() < 0 || ids.max().item<long>() >= vocab))
        {
            throw new ArgumentOutOfRangeException(nameof(tokens), $"Token ids must be in [0, {vocab}).");
        }

        var rows = model.UnembedWeight.index_select(0, ids.flatten()).to(ScalarType.Float32);
        var gain = model.Model.Norm.Weight.to(ScalarType.Float32) + 1.0;
        return (rows * gain).reshape([.. tokens.shape, rows.shape[1]]).MoveToOuterDisposeScope();
    }

    private static ResidualStack Finish(ActivationCache cache, HookedGemma model, List<Tensor> parts, List<string> labels, bool applyLn, int layer, bool mlpInput, long? position)
    {
        using var scope = NewDisposeScope();
        var components = stack(parts.Select(p => Select(p, position, dim: -2)).ToArray());
        if (applyLn)
        {
            components = ApplyLnToStack(cache, components, model, layer, mlpInput, position);
        }

        return new ResidualStack(components.MoveToOuterDisposeScope(), labels);
    }

    // [..., pos, heads, hidden] for block l: the cached result, or z · W_O per head.
    private static Tensor HeadResults(ActivationCache cache, HookedGemma model, int l)
    {
        if (cache.TryGetValue($"blocks.{l}.attn.hook_result", out var result))
        {
            return result;
        }

        return model.Model.Layers[l].SelfAttn.HeadResults(cache[$"blocks.{l}.attn.hook_z"]);
    }

    private static Tensor Select(Tensor x, long? position, int dim) => position is long p ? x.select(dim, p) : x;

    private static int ResolveLayer(int? layer, int numLayers)
    {
        int resolved = layer is null or -1 ? numLayers : layer.Value;
        if (resolved < 0 || resolved > numLayers)
        {
            throw new ArgumentOutOfRangeException(nameof(layer), $"layer {layer} is outside [0, {numLayers}] (or -1/null for the final stream).");
        }

        return resolved;
    }

    private static void Check(ActivationCache cache, HookedGemma model)
    {
        ArgumentNullException.ThrowIfNull(cache);
        ArgumentNullException.ThrowIfNull(model);
    }
}
