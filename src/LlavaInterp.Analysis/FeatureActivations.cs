using LlavaInterp.Sae;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Analysis;

/// <summary>A feature and a value (an activation or an aggregate of activations).</summary>
/// <param name="Index">The feature index.</param>
/// <param name="Value">The value.</param>
public readonly record struct FeatureValue(int Index, double Value);

/// <summary>How activations of several positions are combined.</summary>
public enum FeatureAggregation
{
    /// <summary>Sum over the positions.</summary>
    Sum,

    /// <summary>Mean over the positions.</summary>
    Mean,

    /// <summary>Maximum over the positions.</summary>
    Max,
}

/// <summary>Ranking of SAE features on feature activations [positions, d_sae] (or [1, positions, d_sae]).</summary>
public static class FeatureActivations
{
    /// <summary>
    /// Combines the selected positions' activations per feature: [d_sae] in the activations' dtype. Positions are
    /// resolved with offset 0 (the tensor starts at the first token). The caller owns the result.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong rank, a batch of more than one, or no position selected.</exception>
    public static Tensor Aggregate(Tensor acts, PositionSelector positions, FeatureAggregation aggregation = FeatureAggregation.Sum)
    {
        ArgumentNullException.ThrowIfNull(acts);
        ArgumentNullException.ThrowIfNull(positions);
        using var scope = torch.NewDisposeScope();
        var rows = Rows(acts, positions);
        var result = aggregation switch
        {
            FeatureAggregation.Sum => rows.sum(dim: 0),
            FeatureAggregation.Mean => rows.mean([0L]),
            FeatureAggregation.Max => rows.max(0).values,
            _ => throw new ArgumentOutOfRangeException(nameof(aggregation), aggregation, "Unknown aggregation."),
        };
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The <paramref name="k"/> features with the largest aggregate over the selected positions, largest first
    /// (<c>torch.topk</c> order), e.g. <c>TopK(acts, PositionSelector.Last, FeatureAggregation.Sum, 10)</c> or the image
    /// positions' sum.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong rank, a batch of more than one, or no position selected.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="k"/> is not in 1..d_sae.</exception>
    public static IReadOnlyList<FeatureValue> TopK(Tensor acts, PositionSelector positions, FeatureAggregation aggregation = FeatureAggregation.Sum, int k = 10)
    {
        ArgumentNullException.ThrowIfNull(acts);
        using var scope = torch.NewDisposeScope();
        var aggregate = Aggregate(acts, positions, aggregation);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, aggregate.shape[0]);
        var (values, indices) = aggregate.topk(k);
        var v = values.to(ScalarType.Float64).cpu().data<double>().ToArray();
        var i = indices.cpu().data<long>().ToArray();
        return Enumerable.Range(0, k).Select(j => new FeatureValue((int)i[j], v[j])).ToArray();
    }

    /// <summary>The selected rows [n, d_sae] of activations [positions, d_sae] or [1, positions, d_sae].</summary>
    internal static Tensor Rows(Tensor acts, PositionSelector positions)
    {
        var a = acts;
        if (a.dim() == 3)
        {
            if (a.shape[0] != 1)
            {
                throw new ArgumentException($"Expected activations [positions, d_sae] or [1, positions, d_sae], got [{string.Join(", ", acts.shape)}]; select one batch row first.", nameof(acts));
            }

            a = a[0];
        }

        if (a.dim() != 2)
        {
            throw new ArgumentException($"Expected activations [positions, d_sae] or [1, positions, d_sae], got [{string.Join(", ", acts.shape)}].", nameof(acts));
        }

        var sel = positions.Resolve(0, a.shape[0]);
        if (sel.Length == 0)
        {
            throw new ArgumentException($"{positions.Description} selects nothing among {a.shape[0]} positions.", nameof(positions));
        }

        return sel.Length == a.shape[0] ? a : a.index_select(0, torch.tensor(sel, device: a.device));
    }
}
