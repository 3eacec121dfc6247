using LlavaInterp.Sae;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Analysis;

/// <summary>
/// Lays feature activations at the image-token positions out on the image's patch grid. LLaVA's image tokens follow
/// the CLIP patches row-major (token <c>r·gridW + c</c> is patch row r, column c), so the i-th image position maps to
/// grid cell (i / gridW, i % gridW).
/// </summary>
public static class SpatialMap
{
    /// <summary>One feature's activations on the patch grid: [gridH, gridW] float32. The caller owns it.</summary>
    /// <param name="acts">Feature activations [positions, d_sae] or [1, positions, d_sae].</param>
    /// <param name="imagePositions">The absolute positions of the image tokens, in patch order; gridH·gridW of them.</param>
    /// <param name="feature">The feature.</param>
    /// <param name="gridH">Patch rows.</param>
    /// <param name="gridW">Patch columns.</param>
    /// <exception cref="ArgumentException">Shape, position count or grid mismatch; a position or feature out of range.</exception>
    public static Tensor FromActivations(Tensor acts, IEnumerable<long> imagePositions, int feature, int gridH, int gridW)
    {
        using var scope = torch.NewDisposeScope();
        var maps = FromActivations(acts, imagePositions, [feature], gridH, gridW);
        return maps[0].MoveToOuterDisposeScope();
    }

    /// <summary>Several features' maps: [features, gridH, gridW] float32. The caller owns it.</summary>
    /// <exception cref="ArgumentException">Shape, position count or grid mismatch; a position or feature out of range.</exception>
    public static Tensor FromActivations(Tensor acts, IEnumerable<long> imagePositions, IReadOnlyList<int> features, int gridH, int gridW)
    {
        ArgumentNullException.ThrowIfNull(acts);
        ArgumentNullException.ThrowIfNull(imagePositions);
        ArgumentNullException.ThrowIfNull(features);
        ArgumentOutOfRangeException.ThrowIfLessThan(gridH, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(gridW, 1);
        var positions = imagePositions.ToArray();
        if (positions.Length != (long)gridH * gridW)
        {
            throw new ArgumentException($"{positions.Length} image positions do not fill a {gridH}×{gridW} grid ({gridH * gridW} patches).", nameof(imagePositions));
        }

        if (features.Count == 0)
        {
            throw new ArgumentException("At least one feature is needed.", nameof(features));
        }

        using var scope = torch.NewDisposeScope();
        var a = acts.dim() == 3 && acts.shape[0] == 1 ? acts[0] : acts;
        if (a.dim() != 2)
        {
            throw new ArgumentException($"Expected activations [positions, d_sae] or [1, positions, d_sae], got [{string.Join(", ", acts.shape)}].", nameof(acts));
        }

        long n = a.shape[0];
        long dSae = a.shape[1];
        foreach (var p in positions)
        {
            if (p < 0 || p >= n)
            {
                throw new ArgumentException($"Image position {p} is outside the {n} positions of the activations.", nameof(imagePositions));
            }
        }

        foreach (var f in features)
        {
            if (f < 0 || f >= dSae)
            {
                throw new ArgumentException($"Feature {f} is out of range: the activations have {dSae} features.", nameof(features));
            }
        }

        var rows = a.index_select(0, torch.tensor(positions, device: a.device));
        var cols = rows.index_select(1, torch.tensor(features.Select(f => (long)f).ToArray(), device: a.device));
        return cols.t().reshape(features.Count, gridH, gridW).to(ScalarType.Float32).contiguous().MoveToOuterDisposeScope();
    }

    /// <summary>The grid of a square patch layout (CLIP: √tokens per side).</summary>
    /// <exception cref="ArgumentException">The count is not a perfect square.</exception>
    public static (int GridH, int GridW) SquareGrid(int imageTokens)
    {
        int side = (int)Math.Round(Math.Sqrt(imageTokens));
        if (side < 1 || side * side != imageTokens)
        {
            throw new ArgumentException($"{imageTokens} image tokens do not form a square grid; give gridH and gridW.", nameof(imageTokens));
        }

        return (side, side);
    }
}
