using LlavaInterp.IO;
using LlavaInterp.Samples;

namespace LlavaInterp.Cli;

/// <summary>
/// Hook-name patterns for <c>--hooks</c>: <c>*</c> matches any run of characters (dots included), everything else
/// matches itself, and the whole name must match (<c>blocks.*.hook_resid_post</c>, <c>vision.*</c>, <c>*</c>).
/// </summary>
public sealed class HookGlob
{
    private readonly Glob _glob;

    /// <summary>Compiles a pattern.</summary>
    /// <exception cref="CliUsageException">An empty pattern.</exception>
    public HookGlob(string pattern)
    {
        if (string.IsNullOrWhiteSpace(pattern))
        {
            throw new CliUsageException("--hooks needs a non-empty pattern.");
        }

        Pattern = pattern;
        _glob = new Glob(pattern, GlobSyntax.StarOnly);
    }

    /// <summary>The pattern as given.</summary>
    public string Pattern { get; }

    /// <summary>Whether a hook name matches.</summary>
    public bool IsMatch(string name) => _glob.IsMatch(name);

    /// <summary>
    /// Splits <c>--hooks</c> values at commas. An empty pattern (<c>','</c>, <c>'a,,b'</c>, a trailing comma) is a usage
    /// error: it would otherwise vanish and, with nothing left, write a file without activations.
    /// </summary>
    /// <exception cref="CliUsageException">A value holds an empty pattern.</exception>
    public static IReadOnlyList<string> Patterns(IEnumerable<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var patterns = new List<string>();
        foreach (string value in values)
        {
            var parts = value.Split(',', StringSplitOptions.TrimEntries);
            if (parts.Any(p => p.Length == 0))
            {
                throw new CliUsageException($"--hooks '{value}' holds an empty hook pattern: give names or patterns separated by commas, e.g. 'blocks.*.hook_resid_post,hook_image_features'.");
            }

            patterns.AddRange(parts);
        }

        return patterns;
    }

    /// <summary>
    /// The patterns of <c>--hooks</c> values (each may hold several, comma-separated); every pattern must match at least
    /// one of <paramref name="hookNames"/>, so a typo fails instead of silently caching nothing.
    /// </summary>
    /// <exception cref="CliUsageException">A pattern matches no hook point.</exception>
    public static IReadOnlyList<HookGlob> ParseAll(IEnumerable<string> values, IReadOnlyList<string> hookNames)
    {
        var globs = Patterns(values).Select(v => new HookGlob(v)).ToList();
        foreach (var g in globs)
        {
            if (!hookNames.Any(g.IsMatch))
            {
                string hint = string.Join(", ", hookNames.Where(n => n.StartsWith("blocks.0.", StringComparison.Ordinal) || !n.StartsWith("blocks.", StringComparison.Ordinal) && !n.StartsWith("vision.blocks.", StringComparison.Ordinal)).Take(8));
                throw new CliUsageException($"--hooks '{g.Pattern}' matches no hook point of the model (hook points include {hint}, ...).");
            }
        }

        return globs;
    }
}
