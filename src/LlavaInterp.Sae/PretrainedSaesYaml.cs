using System.Globalization;

namespace LlavaInterp.Sae;

/// <summary>
/// Reads the subset of YAML that SAELens's <c>pretrained_saes.yaml</c> uses: block mappings and sequences by indentation,
/// plain and quoted scalars, empty values, comments. Flow collections and block scalars are kept as text or skipped;
/// nothing the release table needs is written that way. A full YAML parser would be a dependency for one file.
/// </summary>
internal static class PretrainedSaesYaml
{
    private readonly record struct Line(int Number, int Indent, string Text);

    public static IReadOnlyList<SaeRelease> Parse(string text, string source)
    {
        var lines = Tokenize(text);
        int i = 0;
        object? root = lines.Count == 0 ? null : ParseBlock(lines, ref i, lines[0].Indent, source);
        if (root is not Dictionary<string, (int Line, object? Value)> top)
        {
            throw new SaeException(null, $"{source}: expected a mapping of release ids at the top level.");
        }

        if (top.TryGetValue("SAE_LOOKUP", out var lookup))
        {
            top = lookup.Value as Dictionary<string, (int Line, object? Value)>
                ?? throw new SaeException(null, $"{source}, line {lookup.Line}: SAE_LOOKUP is not a mapping.");
        }

        var releases = new List<SaeRelease>();
        foreach (var (id, (line, value)) in top)
        {
            if (string.IsNullOrWhiteSpace(id))
            {
                throw new SaeException(null, $"{source}, line {line}: a release id is empty.");
            }

            if (value is not Dictionary<string, (int Line, object? Value)> r)
            {
                throw new SaeException(null, $"{source}, line {line}: release '{id}' is not a mapping.");
            }

            string repo = Scalar(r, "repo_id") is { Length: > 0 } repoId && !string.IsNullOrWhiteSpace(repoId)
                ? repoId
                : throw new SaeException(null, $"{source}, line {line}: release '{id}' has no repo_id.");
            var saes = new List<SaeReleaseEntry>();
            if (r.TryGetValue("saes", out var list))
            {
                if (list.Value is not List<(int Line, object? Value)> items)
                {
                    throw new SaeException(null, $"{source}, line {list.Line}: 'saes' of release '{id}' is not a list.");
                }

                foreach (var (itemLine, item) in items)
                {
                    if (item is not Dictionary<string, (int Line, object? Value)> sae || Scalar(sae, "id") is not { } saeId || Scalar(sae, "path") is not { } path
                        || string.IsNullOrWhiteSpace(saeId))
                    {
                        throw new SaeException(null, $"{source}, line {itemLine}: an SAE of release '{id}' needs 'id' and 'path'.");
                    }

                    double? norm = null;
                    if (Scalar(sae, "norm_scaling_factor") is { } n)
                    {
                        norm = double.TryParse(n, NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
                            ? v
                            : throw new SaeException(null, $"{source}, line {sae["norm_scaling_factor"].Line}: norm_scaling_factor '{n}' is not a number.");
                    }

                    saes.Add(new SaeReleaseEntry(saeId, path, Scalar(sae, "neuronpedia"), norm));
                }
            }

            Dictionary<string, string>? overrides = null;
            if (r.TryGetValue("config_overrides", out var ov) && ov.Value is Dictionary<string, (int Line, object? Value)> map)
            {
                overrides = map.Where(kv => kv.Value.Value is string).ToDictionary(kv => kv.Key, kv => (string)kv.Value.Value!, StringComparer.Ordinal);
            }

            releases.Add(new SaeRelease(id, repo, Scalar(r, "model") ?? "", saes, overrides));
        }

        return releases;
    }

    private static string? Scalar(Dictionary<string, (int Line, object? Value)> map, string key) =>
        map.TryGetValue(key, out var v) ? v.Value as string : null;

    private static List<Line> Tokenize(string text)
    {
        var lines = new List<Line>();
        int number = 0;
        foreach (string raw in text.Split('\n'))
        {
            number++;
            string l = StripComment(raw.TrimEnd('\r'));
            if (l.Trim().Length == 0 || l.TrimStart().StartsWith("---", StringComparison.Ordinal))
            {
                continue;
            }

            int indent = l.Length - l.TrimStart(' ').Length;
            lines.Add(new Line(number, indent, l.Trim()));
        }

        return lines;
    }

    private static string StripComment(string l)
    {
        char quote = '\0';
        for (int i = 0; i < l.Length; i++)
        {
            char c = l[i];
            if (quote != '\0')
            {
                quote = c == quote ? '\0' : quote;
            }
            else if (c is '"' or '\'' && (i == 0 || l[i - 1] is ' ' or ':' or '-'))
            {
                quote = c;
            }
            else if (c == '#' && (i == 0 || l[i - 1] == ' '))
            {
                return l[..i];
            }
        }

        return l;
    }

    private static object? ParseBlock(List<Line> lines, ref int i, int indent, string source) =>
        lines[i].Text.StartsWith('-') && (lines[i].Text.Length == 1 || lines[i].Text[1] == ' ')
            ? ParseSequence(lines, ref i, indent, source)
            : ParseMapping(lines, ref i, indent, source);

    private static List<(int, object?)> ParseSequence(List<Line> lines, ref int i, int indent, string source)
    {
        var items = new List<(int, object?)>();
        while (i < lines.Count && lines[i].Indent == indent && lines[i].Text.StartsWith('-') && (lines[i].Text.Length == 1 || lines[i].Text[1] == ' '))
        {
            var line = lines[i];
            string rest = line.Text.Length == 1 ? "" : line.Text[2..].TrimStart();
            if (rest.Length == 0)
            {
                i++;
                items.Add((line.Number, i < lines.Count && lines[i].Indent > indent ? ParseBlock(lines, ref i, lines[i].Indent, source) : null));
            }
            else if (KeyOf(rest) is not null)
            {
                // "- id: x" opens a mapping whose keys sit where "id" sits.
                lines[i] = new Line(line.Number, indent + (line.Text.Length - rest.Length), rest);
                items.Add((line.Number, ParseMapping(lines, ref i, lines[i].Indent, source)));
            }
            else
            {
                i++;
                items.Add((line.Number, Unquote(rest)));
            }
        }

        return items;
    }

    private static Dictionary<string, (int, object?)> ParseMapping(List<Line> lines, ref int i, int indent, string source)
    {
        var map = new Dictionary<string, (int, object?)>(StringComparer.Ordinal);
        while (i < lines.Count && lines[i].Indent == indent)
        {
            var line = lines[i];
            if (KeyOf(line.Text) is not { } colon)
            {
                throw new SaeException(null, $"{source}, line {line.Number}: expected 'key: value', found '{line.Text}'.");
            }

            string key = Unquote(line.Text[..colon]) ?? "";
            string value = line.Text[(colon + 1)..].Trim();
            i++;
            object? parsed;
            if (value.Length == 0 || value is "|" or ">" or "|-" or ">-")
            {
                bool nested = i < lines.Count && (lines[i].Indent > indent || (lines[i].Indent == indent && lines[i].Text.StartsWith("- ", StringComparison.Ordinal)));
                parsed = nested && value.Length == 0 ? ParseBlock(lines, ref i, lines[i].Indent, source) : null;
                while (i < lines.Count && lines[i].Indent > indent)
                {
                    i++; // a block scalar's text: not needed
                }
            }
            else
            {
                parsed = Unquote(value);
                while (i < lines.Count && lines[i].Indent > indent)
                {
                    i++; // a plain scalar continued on more lines: not needed
                }
            }

            map[key] = (line.Number, parsed);
        }

        if (i < lines.Count && lines[i].Indent > indent)
        {
            throw new SaeException(null, $"{source}, line {lines[i].Number}: unexpected indentation.");
        }

        return map;
    }

    /// <summary>The index of the colon that ends a mapping key ("key:" or "key: value"), outside quotes; null when none.</summary>
    private static int? KeyOf(string text)
    {
        char quote = '\0';
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quote != '\0')
            {
                quote = c == quote ? '\0' : quote;
            }
            else if (i == 0 && c is '"' or '\'')
            {
                quote = c;
            }
            else if (c == ':' && (i == text.Length - 1 || text[i + 1] == ' '))
            {
                return i;
            }
        }

        return null;
    }

    private static string? Unquote(string value)
    {
        value = value.Trim();
        if (value.Length >= 2 && (value[0] == '"' && value[^1] == '"' || value[0] == '\'' && value[^1] == '\''))
        {
            return value[1..^1];
        }

        return value is "" or "~" or "null" or "Null" or "NULL" ? null : value;
    }
}
