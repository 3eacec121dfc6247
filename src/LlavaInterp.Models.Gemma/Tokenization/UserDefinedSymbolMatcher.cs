namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Finds USER_DEFINED sentencepiece symbols in text the way sentencepiece's normalizer does (its prefix matcher):
/// scanning left to right, at each position the longest symbol starting there is taken as one frozen unit that BPE
/// never merges with its neighbours. Cutting the text at these symbols before BPE therefore gives the same pieces.
/// </summary>
internal sealed class UserDefinedSymbolMatcher
{
    private readonly Node _root = new();

    public UserDefinedSymbolMatcher(IEnumerable<string> symbols)
    {
        foreach (string symbol in symbols)
        {
            if (symbol.Length == 0)
            {
                continue;
            }

            var node = _root;
            foreach (char c in symbol)
            {
                if (!node.Children.TryGetValue(c, out var next))
                {
                    next = new Node();
                    node.Children.Add(c, next);
                }

                node = next;
            }

            node.Terminal = true;
        }
    }

    public bool IsEmpty => _root.Children.Count == 0;

    /// <summary>Splits text into runs of plain text and whole symbols; <c>IsSymbol</c> marks the latter.</summary>
    public IEnumerable<(string Text, bool IsSymbol)> Split(string text)
    {
        if (IsEmpty)
        {
            if (text.Length > 0)
            {
                yield return (text, false);
            }

            yield break;
        }

        int plainStart = 0;
        int i = 0;
        while (i < text.Length)
        {
            int matchLength = LongestMatchAt(text, i);
            if (matchLength == 0)
            {
                i++;
                continue;
            }

            if (i > plainStart)
            {
                yield return (text[plainStart..i], false);
            }

            yield return (text.Substring(i, matchLength), true);
            i += matchLength;
            plainStart = i;
        }

        if (plainStart < text.Length)
        {
            yield return (text[plainStart..], false);
        }
    }

    private int LongestMatchAt(string text, int start)
    {
        var node = _root;
        int best = 0;
        for (int j = start; j < text.Length; j++)
        {
            if (!node.Children.TryGetValue(text[j], out var next))
            {
                break;
            }

            node = next;
            if (node.Terminal)
            {
                best = j - start + 1;
            }
        }

        return best;
    }

    private sealed class Node
    {
        public Dictionary<char, Node> Children { get; } = new();

        public bool Terminal { get; set; }
    }
}
