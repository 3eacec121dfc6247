using LlavaInterp.Sae;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Analysis;

/// <summary>
/// Accumulates over several images: the mean of each image's per-feature aggregate (a class's profile) and how often
/// each feature is active at the selected positions (its density, for dropping dense features).
/// </summary>
public sealed class FeatureTally : IDisposable
{
    private Tensor _sum;

    /// <summary>An empty tally for an SAE of <paramref name="dSae"/> features.</summary>
    public FeatureTally(int dSae)
    {
        _sum = torch.zeros(dSae, ScalarType.Float64).DetachFromDisposeScope();
        Density = new FeatureDensity(dSae);
    }

    /// <summary>Number of images added.</summary>
    public int Images { get; private set; }

    /// <summary>Activity counts at the selected positions of every image added.</summary>
    public FeatureDensity Density { get; }

    /// <summary>Adds one image's activations: its aggregate over <paramref name="positions"/> and its activity counts there.</summary>
    public void Add(PromptFeatures features, PromptPositions positions, FeatureAggregation aggregation)
    {
        ArgumentNullException.ThrowIfNull(features);
        using var scope = torch.NewDisposeScope();
        var selector = features.Select(positions);
        var aggregate = FeatureActivations.Aggregate(features.Acts, selector, aggregation);
        var sum = (_sum + aggregate.to(ScalarType.Float64)).DetachFromDisposeScope();
        _sum.Dispose();
        _sum = sum;
        Density.Add(features.Acts, selector);
        Images++;
    }

    /// <summary>The mean aggregate over the images, [d_sae] float64; the caller owns it.</summary>
    /// <exception cref="InvalidOperationException">No image was added.</exception>
    public Tensor Mean() => Images == 0 ? throw new InvalidOperationException("No image was added.") : _sum / Images;

    /// <summary>Every feature's active count, by index.</summary>
    public long[] ActiveCounts() => Enumerable.Range(0, Density.DSae).Select(Density.ActiveCount).ToArray();

    /// <summary>
    /// Features active on more than <paramref name="maxDensity"/> of the positions counted by several tallies (or
    /// stored counts): Σ counts / Σ positions.
    /// </summary>
    public static IReadOnlySet<int> DenseFeatures(IEnumerable<(long[] Counts, long Positions)> parts, double maxDensity)
    {
        long[]? total = null;
        long positions = 0;
        foreach (var (counts, n) in parts)
        {
            total ??= new long[counts.Length];
            if (counts.Length != total.Length)
            {
                throw new ArgumentException($"Active counts of {counts.Length} and {total.Length} features cannot be combined.", nameof(parts));
            }

            for (int i = 0; i < counts.Length; i++)
            {
                total[i] += counts[i];
            }

            positions += n;
        }

        if (total is null || positions == 0)
        {
            return new HashSet<int>();
        }

        return Enumerable.Range(0, total.Length).Where(i => (double)total[i] / positions > maxDensity).ToHashSet();
    }

    /// <inheritdoc/>
    public void Dispose() => _sum.Dispose();
}
