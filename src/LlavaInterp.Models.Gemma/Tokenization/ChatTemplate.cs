using System.Text;
using System.Text.RegularExpressions;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Recognises chat templates (Jinja source from <c>tokenizer_config.json</c> or <c>chat_template.json</c>) that this
/// library can render natively. Only Gemma's template is implemented (<see cref="GemmaChatFormat"/>).
/// </summary>
/// <remarks>
/// Recognition compares the template's structure, not its exact text: both templates are reduced to the output
/// Jinja would produce around each tag (Hugging Face compiles templates with <c>trim_blocks</c> and
/// <c>lstrip_blocks</c>; <c>-</c> whitespace control and the dropped final newline are applied) and to a canonical
/// spelling of every tag (whitespace, quote style, <c>x['y']</c> vs <c>x.y</c>, parentheses around an <c>if</c>
/// condition, <c>{{ 'literal' }}</c> vs plain text, comments). Templates that differ only in such spelling render
/// the same text and are accepted; any other difference is rejected.
/// </remarks>
public static partial class ChatTemplate
{
    /// <summary>Gemma's chat template as published with Gemma-1 / Gemma-2 instruction-tuned checkpoints.</summary>
    public const string GemmaTemplate =
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        + "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
        + "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
        + "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

    private static readonly Lazy<List<string>> GemmaCanonical = new(() => Canonicalise(GemmaTemplate));

    /// <summary>Whether <paramref name="template"/> renders like Gemma's chat template.</summary>
    public static bool IsGemmaTemplate(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        return Canonicalise(template).SequenceEqual(GemmaCanonical.Value);
    }

    /// <summary>Returns the chat format a template implements.</summary>
    /// <param name="template">The Jinja template source.</param>
    /// <param name="bosToken">Value of the template's <c>bos_token</c> variable.</param>
    /// <exception cref="UnsupportedChatTemplateException">
    /// The template is not Gemma's. Render the prompt yourself and tokenize it with <see cref="GemmaTokenizer.Encode"/>.
    /// </exception>
    public static GemmaChatFormat Recognise(string template, string bosToken = "<bos>")
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(bosToken);
        if (!IsGemmaTemplate(template))
        {
            string head = template.Length > 80 ? template[..80] + "..." : template;
            throw new UnsupportedChatTemplateException(
                $"the chat template is not Gemma's and cannot be rendered by this library (template starts: \"{head}\"). "
                + "Render the prompt yourself and pass it to GemmaTokenizer.Encode (addSpecialTokens: false keeps only the <bos> written in it).");
        }

        return new GemmaChatFormat(bosToken);
    }

    // A tag: {{ expression }}, {% statement %} or {# comment #}; quoted strings inside may hold the closing braces.
    // A '{{' or '{%' that never closes is left as text, which no Gemma template has, so it cannot be taken for one.
    [GeneratedRegex("""\{(?:(?<kind>\{)(?<body>(?:'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|[^'"}]|\}(?!\}))*)\}\}|(?<kind>%)(?<body>(?:'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|[^'"%]|%(?!\}))*)%\}|(?<kind>\#)(?<body>[\s\S]*?)\#\})""")]
    private static partial Regex TagPattern();

    // Tokens of a tag body: string literals, names and numbers, two-character operators, any other single character.
    [GeneratedRegex("""(?<str>'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")|\w+(?:\.[0-9]+)?|==|!=|<=|>=|//|\*\*|\S""")]
    private static partial Regex TokenPattern();

    private sealed record Tag(char Kind, string Body, bool TrimLeft, bool TrimRight, bool KeepLeft, bool KeepRight);

    private readonly record struct Token(string Text, bool IsString)
    {
        public bool IsWord => !IsString && (char.IsLetterOrDigit(Text[0]) || Text[0] == '_');

        public bool Is(string op) => !IsString && Text == op;
    }

    /// <summary>
    /// Reduces a template to what it renders around each tag plus a canonical spelling of each tag: text entries
    /// start with <c>T</c>, expressions with <c>E</c>, statements with <c>S</c>.
    /// </summary>
    private static List<string> Canonicalise(string template)
    {
        // 1. Alternate text and tags: parts[even] is text, parts[odd] a tag.
        var parts = new List<object>();
        int at = 0;
        foreach (Match m in TagPattern().Matches(template))
        {
            parts.Add(template[at..m.Index]);
            string b = m.Groups["body"].Value;
            bool trimLeft = b.StartsWith('-'), keepLeft = b.StartsWith('+');
            b = trimLeft || keepLeft ? b[1..] : b;
            bool trimRight = b.EndsWith('-'), keepRight = b.EndsWith('+');
            b = trimRight || keepRight ? b[..^1] : b;
            parts.Add(new Tag(m.Groups["kind"].Value[0], b, trimLeft, trimRight, keepLeft, keepRight));
            at = m.Index + m.Length;
        }

        parts.Add(template[at..]);

        // 2. Whitespace as Hugging Face's Jinja renders it: '-' control, lstrip_blocks, trim_blocks, and one final
        //    newline dropped. lstrip_blocks looks at the source line, so it is decided before any text is trimmed.
        var lstrip = new bool[parts.Count];
        for (int p = 1; p < parts.Count; p += 2)
        {
            var tag = (Tag)parts[p];
            string before = (string)parts[p - 1];
            int lineStart = before.LastIndexOf('\n') + 1;
            lstrip[p] = tag.Kind != '{' && !tag.TrimLeft && !tag.KeepLeft && (lineStart > 0 || p == 1)
                && before.AsSpan(lineStart).TrimStart(" \t").IsEmpty;
        }

        for (int p = 1; p < parts.Count; p += 2)
        {
            var tag = (Tag)parts[p];
            string before = (string)parts[p - 1], after = (string)parts[p + 1];
            before = tag.TrimLeft ? before.TrimEnd() : lstrip[p] ? before[..(before.LastIndexOf('\n') + 1)] : before;
            if (tag.TrimRight)
            {
                after = after.TrimStart();
            }
            else if (tag.Kind != '{' && !tag.KeepRight)
            {
                after = after.StartsWith("\r\n", StringComparison.Ordinal) ? after[2..] : after.StartsWith('\n') ? after[1..] : after;
            }

            parts[p - 1] = before;
            parts[p + 1] = after;
        }

        string last = (string)parts[^1];
        parts[^1] = last.EndsWith("\r\n", StringComparison.Ordinal) ? last[..^2] : last.EndsWith('\n') ? last[..^1] : last;

        // 3. Canonical entries; a {{ 'literal' }} is text, and adjacent text is merged.
        var entries = new List<string>();
        var text = new StringBuilder();
        foreach (object part in parts)
        {
            if (part is string s)
            {
                text.Append(s);
                continue;
            }

            var tag = (Tag)part;
            if (tag.Kind == '#')
            {
                continue;
            }

            var tokens = TokenPattern().Matches(tag.Body)
                .Select(t => t.Groups["str"].Success ? new Token(Unquote(t.Value), true) : new Token(t.Value, false))
                .ToList();
            if (tag.Kind == '{' && tokens is [{ IsString: true } literal])
            {
                text.Append(literal.Text);
                continue;
            }

            if (text.Length > 0)
            {
                entries.Add("T" + text);
                text.Clear();
            }

            entries.Add((tag.Kind == '{' ? "E" : "S") + Serialise(Simplify(tokens)));
        }

        if (text.Length > 0)
        {
            entries.Add("T" + text);
        }

        return entries;
    }

    private static string Unquote(string literal)
    {
        var value = new StringBuilder();
        for (int j = 1; j < literal.Length - 1; j++)
        {
            char c = literal[j];
            if (c == '\\')
            {
                c = literal[++j] switch { 'n' => '\n', 't' => '\t', 'r' => '\r', char other => other };
            }

            value.Append(c);
        }

        return value.ToString();
    }

    /// <summary>Spelling-only rewrites: <c>x['name']</c> → <c>x.name</c>; <c>if (cond)</c> → <c>if cond</c>.</summary>
    private static List<Token> Simplify(List<Token> tokens)
    {
        var result = new List<Token>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Is("[") && i + 2 < tokens.Count && tokens[i + 1].IsString && tokens[i + 2].Is("]")
                && IsIdentifier(tokens[i + 1].Text) && result.Count > 0 && (result[^1].IsWord || result[^1].Is(")") || result[^1].Is("]")))
            {
                result.Add(new Token(".", false));
                result.Add(new Token(tokens[i + 1].Text, false));
                i += 2;
                continue;
            }

            result.Add(tokens[i]);
        }

        if (result.Count >= 3 && (result[0].Is("if") || result[0].Is("elif")) && result[1].Is("(") && result[^1].Is(")")
            && MatchingParen(result, 1) == result.Count - 1)
        {
            result.RemoveAt(result.Count - 1);
            result.RemoveAt(1);
        }

        return result;
    }

    private static int MatchingParen(List<Token> tokens, int open)
    {
        int depth = 0;
        for (int i = open; i < tokens.Count; i++)
        {
            depth += tokens[i].Is("(") ? 1 : tokens[i].Is(")") ? -1 : 0;
            if (depth == 0)
            {
                return i;
            }
        }

        return -1;
    }

    private static bool IsIdentifier(string s) =>
        s.Length > 0 && (char.IsLetter(s[0]) || s[0] == '_') && s.All(c => char.IsLetterOrDigit(c) || c == '_');

    private static string Serialise(List<Token> tokens)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < tokens.Count; i++)
        {
            if (i > 0 && tokens[i].IsWord && tokens[i - 1].IsWord)
            {
                sb.Append(' ');
            }

            sb.Append(tokens[i].IsString
                ? "'" + tokens[i].Text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal)
                    .Replace("\n", "\\n", StringComparison.Ordinal).Replace("\t", "\\t", StringComparison.Ordinal).Replace("\r", "\\r", StringComparison.Ordinal) + "'"
                : tokens[i].Text);
        }

        return sb.ToString();
    }
}
