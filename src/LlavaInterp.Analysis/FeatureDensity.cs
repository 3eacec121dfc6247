using LlavaInterp.Sae;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Analysis;

/// <summary>
/// Measures how often each feature fires: accumulates, over many inputs, the number of positions where a feature's
/// activation exceeds <see cref="ActiveThreshold"/>. Dense features (active on a large fraction of positions) rarely
/// explain a particular input; <see cref="ExcludeDense"/> drops them from a ranking. Thread-safe.
/// </summary>
public sealed class FeatureDensity
{
    private readonly long[] _counts;
    private readonly object _lock = new();
    private long _positions;

    /// <summary>Creates an empty accumulator.</summary>
    /// <param name="dSae">Number of features.</param>
    /// <param name="activeThreshold">A feature counts as active where its activation is strictly greater than this.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dSae"/> is not positive.</exception>
    public FeatureDensity(int dSae, double activeThreshold = 0.0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(dSae, 1);
        DSae = dSae;
        ActiveThreshold = activeThreshold;
        _counts = new long[dSae];
    }

    /// <summary>Number of features.</summary>
    public int DSae { get; }

    /// <summary>Activation a feature must exceed to count as active.</summary>
    public double ActiveThreshold { get; }

    /// <summary>Number of positions seen.</summary>
    public long Positions
    {
        get
        {
            lock (_lock)
            {
                return _positions;
            }
        }
    }

    /// <summary>
    /// Adds feature activations [..., positions, d_sae] (every leading dimension counts as positions). With a selector,
    /// only those positions of the second-to-last dimension count (offset 0).
    /// </summary>
    /// <exception cref="ArgumentException">The last dimension is not d_sae.</exception>
    public void Add(Tensor featureActs, PositionSelector? positions = null)
    {
        ArgumentNullException.ThrowIfNull(featureActs);
        if (featureActs.dim() == 0 || featureActs.shape[^1] != DSae)
        {
            throw new ArgumentException($"Feature activations have shape [{string.Join(", ", featureActs.shape)}] but the accumulator has d_sae {DSae}.", nameof(featureActs));
        }

        using var scope = torch.NewDisposeScope();
        var acts = featureActs;
        if (positions is not null && !positions.IsAll && acts.dim() >= 2)
        {
            var sel = positions.Resolve(0, acts.shape[^2]);
            acts = acts.index_select(acts.dim() - 2, torch.tensor(sel, device: acts.device));
        }

        var flat = acts.reshape(-1, DSae);
        var counts = flat.gt(ActiveThreshold).sum(dim: 0, type: ScalarType.Int64).cpu().data<long>().ToArray();
        lock (_lock)
        {
            for (int i = 0; i < DSae; i++)
            {
                _counts[i] += counts[i];
            }

            _positions += flat.shape[0];
        }
    }

    /// <summary>Positions where the feature was active.</summary>
    public long ActiveCount(int feature)
    {
        CheckFeature(feature);
        lock (_lock)
        {
            return _counts[feature];
        }
    }

    /// <summary>Fraction of positions where the feature was active (0 before any position was added).</summary>
    public double Density(int feature)
    {
        CheckFeature(feature);
        lock (_lock)
        {
            return _positions == 0 ? 0.0 : (double)_counts[feature] / _positions;
        }
    }

    /// <summary>Every feature's density, by feature index.</summary>
    public IReadOnlyList<double> Densities()
    {
        lock (_lock)
        {
            long n = _positions;
            return _counts.Select(c => n == 0 ? 0.0 : (double)c / n).ToArray();
        }
    }

    /// <summary>Features active on more than <paramref name="maxDensity"/> of the positions, ascending.</summary>
    public IReadOnlyList<int> DenseFeatures(double maxDensity)
    {
        var d = Densities();
        return Enumerable.Range(0, DSae).Where(i => d[i] > maxDensity).ToArray();
    }

    /// <summary>The ranking without features whose density exceeds <paramref name="maxDensity"/> (order kept).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A ranked feature is out of range.</exception>
    public IReadOnlyList<FeatureValue> ExcludeDense(IEnumerable<FeatureValue> ranked, double maxDensity)
    {
        ArgumentNullException.ThrowIfNull(ranked);
        var d = Densities();
        return ranked.Where(f =>
        {
            CheckFeature(f.Index);
            return d[f.Index] <= maxDensity;
        }).ToArray();
    }

    private void CheckFeature(int feature)
    {
        if (feature < 0 || feature >= DSae)
        {
            throw new ArgumentOutOfRangeException(nameof(feature), feature, $"The accumulator has {DSae} features.");
        }
    }
}
