namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Thrown when checkpoint tensors do not fit the model: missing or unexpected names (strict loading) or wrong
/// shapes/dtypes. Every offending name is listed.
/// </summary>
public sealed class WeightLoadException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="source">The checkpoint (file or folder).</param>
    /// <param name="missing">Checkpoint names the model needs but the checkpoint lacks.</param>
    /// <param name="unexpected">Checkpoint names in the model's namespace that map to no parameter.</param>
    /// <param name="mismatched">"name: reason" for tensors of the wrong shape or dtype.</param>
    public WeightLoadException(string source, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched)
        : base(Format(source, missing, unexpected, mismatched))
    {
        CheckpointPath = source;
        MissingKeys = missing;
        UnexpectedKeys = unexpected;
        MismatchedKeys = mismatched;
    }

    /// <summary>Creates an exception with a single message (e.g. no layout recognised).</summary>
    public WeightLoadException(string source, string message)
        : base($"{source}: {message}")
    {
        CheckpointPath = source;
        MissingKeys = [];
        UnexpectedKeys = [];
        MismatchedKeys = [];
    }

    /// <summary>The checkpoint (file or folder).</summary>
    public string CheckpointPath { get; }

    /// <summary>Checkpoint names the model needs but the checkpoint lacks.</summary>
    public IReadOnlyList<string> MissingKeys { get; }

    /// <summary>Checkpoint names in the model's namespace that map to no parameter.</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; }

    /// <summary>"name: reason" for tensors of the wrong shape or dtype.</summary>
    public IReadOnlyList<string> MismatchedKeys { get; }

    private static string Format(string source, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched)
    {
        var parts = new List<string>();
        if (missing.Count > 0)
        {
            parts.Add($"missing {missing.Count} tensor(s): {List(missing)}");
        }

        if (unexpected.Count > 0)
        {
            parts.Add($"unexpected {unexpected.Count} tensor(s): {List(unexpected)}");
        }

        if (mismatched.Count > 0)
        {
            parts.Add($"{mismatched.Count} tensor(s) do not fit: {List(mismatched)}");
        }

        return $"{source}: the checkpoint does not match the model; " + string.Join("; ", parts) + ".";

        static string List(IReadOnlyList<string> names) =>
            string.Join(", ", names.Take(20)) + (names.Count > 20 ? $", ... ({names.Count - 20} more)" : string.Empty);
    }
}
