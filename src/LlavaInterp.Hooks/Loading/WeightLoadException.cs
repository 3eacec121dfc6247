using System.Text;

namespace LlavaInterp.Loading;

/// <summary>A checkpoint tensor whose shape differs from the parameter it should fill.</summary>
/// <param name="Name">The checkpoint tensor name (with its prefix).</param>
/// <param name="Expected">The parameter's shape.</param>
/// <param name="Actual">The checkpoint tensor's shape.</param>
public sealed record WeightShapeMismatch(string Name, IReadOnlyList<long> Expected, IReadOnlyList<long> Actual)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name}: expected [{string.Join(", ", Expected)}], checkpoint has [{string.Join(", ", Actual)}]";
}

/// <summary>
/// Thrown when a checkpoint does not fit a module: tensors the module needs are missing, tensors under the module's
/// prefix are not used by it (strict loading), or shapes differ. Every offending tensor is listed by name.
/// </summary>
public sealed class WeightLoadException : Exception
{
    private const int ListedPerKind = 10;

    /// <summary>Creates the exception.</summary>
    /// <param name="source">The checkpoint (file path or description).</param>
    /// <param name="prefix">The prefix the module's parameter names were looked up under.</param>
    /// <param name="missing">Checkpoint names (with prefix) the module needs but the checkpoint lacks.</param>
    /// <param name="unexpected">Checkpoint names under the prefix that the module does not use.</param>
    /// <param name="shapeMismatches">Tensors present in both with different shapes.</param>
    public WeightLoadException(string source, string prefix, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<WeightShapeMismatch> shapeMismatches)
        : base(Format(source, prefix, missing, unexpected, shapeMismatches))
    {
        Checkpoint = source;
        Prefix = prefix;
        Missing = missing;
        Unexpected = unexpected;
        ShapeMismatches = shapeMismatches;
    }

    /// <summary>The checkpoint (file path or description).</summary>
    public string Checkpoint { get; }

    /// <summary>The prefix the module's parameter names were looked up under.</summary>
    public string Prefix { get; }

    /// <summary>Checkpoint names (with prefix) the module needs but the checkpoint lacks.</summary>
    public IReadOnlyList<string> Missing { get; }

    /// <summary>Checkpoint names under the prefix that the module does not use.</summary>
    public IReadOnlyList<string> Unexpected { get; }

    /// <summary>Tensors present in both with different shapes.</summary>
    public IReadOnlyList<WeightShapeMismatch> ShapeMismatches { get; }

    private static string Format(string source, string prefix, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<WeightShapeMismatch> mismatches)
    {
        var sb = new StringBuilder($"{source}: the checkpoint does not fit the module (prefix '{prefix}').");
        Append(sb, "missing", missing.Select(m => m));
        Append(sb, "unexpected", unexpected.Select(u => u));
        Append(sb, "shape mismatch", mismatches.Select(m => m.ToString()));
        return sb.ToString();
    }

    private static void Append(StringBuilder sb, string kind, IEnumerable<string> items)
    {
        var list = items.ToList();
        if (list.Count == 0)
        {
            return;
        }

        sb.Append($" {list.Count} {kind}: {string.Join(", ", list.Take(ListedPerKind))}");
        sb.Append(list.Count > ListedPerKind ? $", ... ({list.Count - ListedPerKind} more)." : ".");
    }
}
