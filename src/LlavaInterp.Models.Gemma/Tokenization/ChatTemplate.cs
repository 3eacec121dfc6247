using System.Globalization;
using System.Text;

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
public static class ChatTemplate
{
    /// <summary>Gemma's chat template as published with Gemma-1 / Gemma-2 instruction-tuned checkpoints.</summary>
    public const string GemmaTemplate =
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        + "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
        + "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
        + "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

    private static readonly Lazy<List<Node>> GemmaCanonical = new(() => Canonicalise(GemmaTemplate)
        ?? throw new InvalidOperationException("the built-in Gemma template does not parse."));

    /// <summary>Whether <paramref name="template"/> renders like Gemma's chat template.</summary>
    public static bool IsGemmaTemplate(string template)
    {
        ArgumentNullException.ThrowIfNull(template);
        var nodes = Canonicalise(template);
        return nodes is not null && nodes.SequenceEqual(GemmaCanonical.Value);
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

    private enum NodeKind
    {
        Text,
        Expression,
        Statement,
    }

    private readonly record struct Node(NodeKind Kind, string Value);

    private enum TagKind
    {
        Expression,
        Statement,
        Comment,
    }

    private sealed class RawTag
    {
        public TagKind Kind { get; init; }

        public string Body { get; init; } = "";

        public bool TrimLeft { get; init; }

        public bool TrimRight { get; init; }

        public bool KeepLeft { get; init; }

        public bool KeepRight { get; init; }
    }

    /// <summary>Reduces a template to canonical nodes, or null when it is not a well-formed template.</summary>
    private static List<Node>? Canonicalise(string template)
    {
        // 1. Split into text and tags.
        var parts = new List<object>();
        var text = new StringBuilder();
        int i = 0;
        while (i < template.Length)
        {
            if (template[i] == '{' && i + 1 < template.Length && template[i + 1] is '{' or '%' or '#')
            {
                char open = template[i + 1];
                var kind = open == '{' ? TagKind.Expression : open == '%' ? TagKind.Statement : TagKind.Comment;
                char close = open == '{' ? '}' : open;
                int bodyStart = i + 2;
                int end = FindTagEnd(template, bodyStart, close, kind == TagKind.Comment);
                if (end < 0)
                {
                    return null;
                }

                string body = template[bodyStart..end];
                bool trimLeft = body.StartsWith('-');
                bool keepLeft = body.StartsWith('+');
                bool trimRight = body.EndsWith('-');
                bool keepRight = body.EndsWith('+');
                if (trimLeft || keepLeft)
                {
                    body = body[1..];
                }

                if ((trimRight || keepRight) && body.Length > 0)
                {
                    body = body[..^1];
                }

                parts.Add(text.ToString());
                text.Clear();
                parts.Add(new RawTag { Kind = kind, Body = body, TrimLeft = trimLeft, TrimRight = trimRight, KeepLeft = keepLeft, KeepRight = keepRight });
                i = end + 2;
                continue;
            }

            text.Append(template[i]);
            i++;
        }

        parts.Add(text.ToString());

        // 2. Whitespace: '-' control, lstrip_blocks, trim_blocks, and Jinja dropping one final newline.
        //    lstrip_blocks looks at the source line, so decide it before any text is trimmed.
        var lstrip = new bool[parts.Count];
        for (int p = 1; p < parts.Count; p += 2)
        {
            var tag = (RawTag)parts[p];
            string before = (string)parts[p - 1];
            int lineStart = before.LastIndexOf('\n') + 1;
            lstrip[p] = tag.Kind != TagKind.Expression && !tag.TrimLeft && !tag.KeepLeft
                && (lineStart > 0 || p == 1) && before.AsSpan(lineStart).TrimStart(" \t").IsEmpty;
        }

        for (int p = 1; p < parts.Count; p += 2)
        {
            var tag = (RawTag)parts[p];
            string before = (string)parts[p - 1];
            string after = (string)parts[p + 1];
            if (tag.TrimLeft)
            {
                before = before.TrimEnd();
            }
            else if (lstrip[p])
            {
                before = before[..(before.LastIndexOf('\n') + 1)];
            }

            if (tag.TrimRight)
            {
                after = after.TrimStart();
            }
            else if (tag.Kind != TagKind.Expression && !tag.KeepRight)
            {
                if (after.StartsWith("\r\n", StringComparison.Ordinal))
                {
                    after = after[2..];
                }
                else if (after.StartsWith('\n'))
                {
                    after = after[1..];
                }
            }

            parts[p - 1] = before;
            parts[p + 1] = after;
        }

        string last = (string)parts[^1];
        if (last.EndsWith('\n'))
        {
            parts[^1] = last.EndsWith("\r\n", StringComparison.Ordinal) ? last[..^2] : last[..^1];
        }

        // 3. Canonical nodes; adjacent text merged.
        var nodes = new List<Node>();
        var pending = new StringBuilder();
        for (int p = 0; p < parts.Count; p++)
        {
            if (parts[p] is string s)
            {
                pending.Append(s);
                continue;
            }

            var tag = (RawTag)parts[p];
            if (tag.Kind == TagKind.Comment)
            {
                continue;
            }

            var tokens = Lex(tag.Body);
            if (tokens is null)
            {
                return null;
            }

            if (tag.Kind == TagKind.Expression && tokens.Count == 1 && tokens[0].IsString)
            {
                pending.Append(tokens[0].Text);
                continue;
            }

            if (pending.Length > 0)
            {
                nodes.Add(new Node(NodeKind.Text, pending.ToString()));
                pending.Clear();
            }

            nodes.Add(new Node(tag.Kind == TagKind.Expression ? NodeKind.Expression : NodeKind.Statement, Serialise(Simplify(tokens))));
        }

        if (pending.Length > 0)
        {
            nodes.Add(new Node(NodeKind.Text, pending.ToString()));
        }

        return nodes;
    }

    private static int FindTagEnd(string template, int from, char close, bool isComment)
    {
        char quote = '\0';
        for (int j = from; j + 1 < template.Length; j++)
        {
            char c = template[j];
            if (quote != '\0')
            {
                if (c == '\\')
                {
                    j++;
                }
                else if (c == quote)
                {
                    quote = '\0';
                }

                continue;
            }

            if (!isComment && c is '\'' or '"')
            {
                quote = c;
                continue;
            }

            if (c == close && template[j + 1] == '}')
            {
                return j;
            }
        }

        return -1;
    }

    private readonly record struct Token(string Text, bool IsString, bool IsWord);

    private static readonly string[] MultiCharOperators = ["==", "!=", "<=", ">=", "//", "**"];

    private static List<Token>? Lex(string body)
    {
        var tokens = new List<Token>();
        int i = 0;
        while (i < body.Length)
        {
            char c = body[i];
            if (char.IsWhiteSpace(c))
            {
                i++;
                continue;
            }

            if (c is '\'' or '"')
            {
                var value = new StringBuilder();
                int j = i + 1;
                bool closed = false;
                while (j < body.Length)
                {
                    char d = body[j];
                    if (d == c)
                    {
                        closed = true;
                        break;
                    }

                    if (d == '\\' && j + 1 < body.Length)
                    {
                        j++;
                        value.Append(body[j] switch
                        {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            _ => body[j],
                        });
                    }
                    else
                    {
                        value.Append(d);
                    }

                    j++;
                }

                if (!closed)
                {
                    return null;
                }

                tokens.Add(new Token(value.ToString(), IsString: true, IsWord: false));
                i = j + 1;
                continue;
            }

            if (char.IsLetterOrDigit(c) || c == '_')
            {
                int j = i;
                while (j < body.Length && (char.IsLetterOrDigit(body[j]) || body[j] == '_' || (body[j] == '.' && char.IsDigit(c))))
                {
                    j++;
                }

                tokens.Add(new Token(body[i..j], IsString: false, IsWord: true));
                i = j;
                continue;
            }

            string? op = MultiCharOperators.FirstOrDefault(o => string.CompareOrdinal(body, i, o, 0, o.Length) == 0);
            op ??= c.ToString();
            tokens.Add(new Token(op, IsString: false, IsWord: false));
            i += op.Length;
        }

        return tokens;
    }

    /// <summary>Spelling-only rewrites: <c>x['name']</c> → <c>x.name</c>; <c>if (cond)</c> → <c>if cond</c>.</summary>
    private static List<Token> Simplify(List<Token> tokens)
    {
        var result = new List<Token>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            if (tokens[i].Text == "[" && !tokens[i].IsString && i + 2 < tokens.Count && tokens[i + 1].IsString
                && tokens[i + 2].Text == "]" && !tokens[i + 2].IsString && IsIdentifier(tokens[i + 1].Text)
                && result.Count > 0 && !result[^1].IsString && (result[^1].IsWord || result[^1].Text is ")" or "]"))
            {
                result.Add(new Token(".", false, false));
                result.Add(new Token(tokens[i + 1].Text, IsString: false, IsWord: true));
                i += 2;
                continue;
            }

            result.Add(tokens[i]);
        }

        if (result.Count >= 3 && result[0].IsWord && result[0].Text is "if" or "elif"
            && result[1].Text == "(" && !result[1].IsString && result[^1].Text == ")" && !result[^1].IsString
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
            if (tokens[i].IsString)
            {
                continue;
            }

            if (tokens[i].Text == "(")
            {
                depth++;
            }
            else if (tokens[i].Text == ")" && --depth == 0)
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
            var token = tokens[i];
            if (i > 0 && token.IsWord && tokens[i - 1].IsWord)
            {
                sb.Append(' ');
            }

            if (token.IsString)
            {
                sb.Append('\'');
                foreach (char c in token.Text)
                {
                    sb.Append(c switch
                    {
                        '\\' => "\\\\",
                        '\'' => "\\'",
                        '\n' => "\\n",
                        '\t' => "\\t",
                        '\r' => "\\r",
                        _ => c.ToString(CultureInfo.InvariantCulture),
                    });
                }

                sb.Append('\'');
            }
            else
            {
                sb.Append(token.Text);
            }
        }

        return sb.ToString();
    }
}
