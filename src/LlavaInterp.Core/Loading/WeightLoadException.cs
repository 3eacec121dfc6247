using System.Text;
using TorchSharp;

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
/// A checkpoint tensor whose stored dtype cannot fill the parameter: a different kind of number (e.g. integers for a
/// floating-point weight), or a dtype this library does not read. Precision differences within a kind (F32 stored,
/// BF16 parameter) are converted, not reported.
/// </summary>
/// <param name="Name">The checkpoint tensor name (with its prefix).</param>
/// <param name="Expected">The parameter's dtype.</param>
/// <param name="Actual">The stored safetensors dtype, e.g. <c>I64</c>.</param>
public sealed record WeightDTypeMismatch(string Name, torch.ScalarType Expected, string Actual)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Name}: stored dtype {Actual} cannot fill a {Expected} parameter";
}

/// <summary>
/// Thrown when a checkpoint does not fit a module: tensors the module needs are missing, tensors in the module's part
/// of the checkpoint are not used by it (strict loading), shapes differ, stored dtypes are unusable, or the checkpoint's
/// layout is not recognised. Every offending tensor is listed by name.
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
        : this(source, prefix, missing, unexpected, shapeMismatches, [])
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="source">The checkpoint (file path or description).</param>
    /// <param name="prefix">The prefix the module's parameter names were looked up under.</param>
    /// <param name="missing">Checkpoint names (with prefix) the module needs but the checkpoint lacks.</param>
    /// <param name="unexpected">Checkpoint names under the prefix that the module does not use.</param>
    /// <param name="shapeMismatches">Tensors present in both with different shapes.</param>
    /// <param name="dtypeMismatches">Tensors whose stored dtype cannot fill the parameter.</param>
    public WeightLoadException(string source, string prefix, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<WeightShapeMismatch> shapeMismatches, IReadOnlyList<WeightDTypeMismatch> dtypeMismatches)
        : base(Format(source, prefix, missing, unexpected, shapeMismatches, dtypeMismatches))
    {
        Checkpoint = source;
        Prefix = prefix;
        Missing = missing;
        Unexpected = unexpected;
        ShapeMismatches = shapeMismatches;
        DTypeMismatches = dtypeMismatches;
    }

    /// <summary>Creates an exception about the checkpoint as a whole (e.g. no known layout recognised); the lists are empty.</summary>
    /// <param name="source">The checkpoint (file path or description).</param>
    /// <param name="message">What is wrong.</param>
    public WeightLoadException(string source, string message)
        : base($"{source}: {message}")
    {
        Checkpoint = source;
        Prefix = string.Empty;
        Missing = [];
        Unexpected = [];
        ShapeMismatches = [];
        DTypeMismatches = [];
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

    /// <summary>Tensors whose stored dtype cannot fill the parameter.</summary>
    public IReadOnlyList<WeightDTypeMismatch> DTypeMismatches { get; }

    private static string Format(string source, string prefix, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<WeightShapeMismatch> shapes, IReadOnlyList<WeightDTypeMismatch> dtypes)
    {
        var sb = new StringBuilder($"{source}: the checkpoint does not fit the module (prefix '{prefix}').");
        Append(sb, "missing", missing);
        Append(sb, "unexpected", unexpected);
        Append(sb, "shape mismatch", shapes.Select(m => m.ToString()));
        Append(sb, "dtype mismatch", dtypes.Select(m => m.ToString()));
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
