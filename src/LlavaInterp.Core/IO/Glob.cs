using System.Text;
using System.Text.RegularExpressions;

namespace LlavaInterp.IO;

/// <summary>Which wildcards a <see cref="Glob"/> understands.</summary>
public enum GlobSyntax
{
    /// <summary>Python's <c>fnmatch</c>: <c>*</c>, <c>?</c>, <c>[seq]</c>, <c>[!seq]</c> (what huggingface_hub's allow patterns use).</summary>
    Fnmatch,

    /// <summary>Only <c>*</c> is a wildcard; every other character matches itself (hook names, where <c>?</c> and <c>[</c> are literal).</summary>
    StarOnly,
}

/// <summary>
/// A whole-string glob pattern. <c>*</c> and <c>?</c> match any character, <c>/</c> and <c>.</c> included (as in
/// <c>fnmatch</c>; there is no path-segment rule). Matching is ordinal.
/// </summary>
public sealed class Glob
{
    private readonly Regex _regex;

    /// <summary>Compiles <paramref name="pattern"/>.</summary>
    public Glob(string pattern, GlobSyntax syntax = GlobSyntax.Fnmatch)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        Pattern = pattern;
        Syntax = syntax;
        string body = syntax == GlobSyntax.StarOnly
            ? string.Join(".*", pattern.Split('*').Select(Regex.Escape))
            : FnmatchToRegex(pattern);
        _regex = new Regex("^" + body + "$", RegexOptions.CultureInvariant | RegexOptions.Singleline);
    }

    /// <summary>The pattern as given.</summary>
    public string Pattern { get; }

    /// <summary>The wildcards understood.</summary>
    public GlobSyntax Syntax { get; }

    /// <summary>Whether <paramref name="pattern"/> holds an <c>fnmatch</c> wildcard.</summary>
    public static bool HasWildcard(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        return pattern.IndexOfAny(['*', '?', '[']) >= 0;
    }

    /// <summary>Whether the whole of <paramref name="text"/> matches.</summary>
    public bool IsMatch(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return _regex.IsMatch(text);
    }

    /// <inheritdoc/>
    public override string ToString() => Pattern;

    private static string FnmatchToRegex(string pattern)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            switch (c)
            {
                case '*':
                    sb.Append(".*");
                    break;
                case '?':
                    sb.Append('.');
                    break;
                case '[':
                    int start = i + 1;
                    if (start < pattern.Length && pattern[start] == '!')
                    {
                        start++;
                    }

                    // As in fnmatch, a ']' right after '[' or '[!' belongs to the set.
                    if (start < pattern.Length && pattern[start] == ']')
                    {
                        start++;
                    }

                    int close = start < pattern.Length ? pattern.IndexOf(']', start) : -1;
                    if (close < 0)
                    {
                        sb.Append(@"\[");
                        break;
                    }

                    string set = pattern[(i + 1)..close];
                    sb.Append('[');
                    if (set.StartsWith('!'))
                    {
                        sb.Append('^');
                        set = set[1..];
                    }
                    else if (set.StartsWith('^'))
                    {
                        sb.Append('\\');
                    }

                    sb.Append(set.Replace(@"\", @"\\", StringComparison.Ordinal).Replace("[", @"\[", StringComparison.Ordinal)
                        .Replace("]", @"\]", StringComparison.Ordinal)).Append(']');
                    i = close;
                    break;
                default:
                    sb.Append(Regex.Escape(c.ToString()));
                    break;
            }
        }

        return sb.ToString();
    }
}
