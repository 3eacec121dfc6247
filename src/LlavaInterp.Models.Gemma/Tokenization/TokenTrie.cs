namespace LlavaInterp.Models.Gemma;

/// <summary>
/// A character trie of token strings with the two scans the tokenizer needs: <see cref="SplitAddedTokens"/> for
/// Hugging Face's added tokens and <see cref="SplitLongestMatch"/> for sentencepiece's USER_DEFINED symbols.
/// </summary>
internal sealed class TokenTrie
{
    private readonly Node _root = new();

    /// <summary>Builds the trie; empty strings are ignored (they match nowhere).</summary>
    public TokenTrie(IEnumerable<string> tokens)
    {
        foreach (string token in tokens)
        {
            if (token.Length == 0)
            {
                continue;
            }

            var node = _root;
            foreach (char c in token)
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

    /// <summary>
    /// Cuts <paramref name="text"/> at every added-token boundary the way Hugging Face's slow tokenizers do
    /// (<c>tokenization_utils.Trie.split</c>): a greedy scan that cuts at the first completed match, extended to the
    /// longest token that starts at the same place or at an earlier partial match. The scan is reproduced step for
    /// step (including its handling of overlapping tokens) so that the cut points equal the reference's, not merely a
    /// "leftmost-longest" approximation. Pieces keep their order and cover the text.
    /// </summary>
    public List<string> SplitAddedTokens(string text)
    {
        var offsets = new List<int> { 0 };
        if (IsEmpty)
        {
            return Cut(text, offsets);
        }

        // Partial matches in order of their start (the reference's OrderedDict).
        var states = new List<(int Start, Node Node)>();
        var toRemove = new HashSet<int>();
        int skip = 0;
        for (int current = 0; current < text.Length; current++)
        {
            if (skip > 0 && current < skip)
            {
                continue;
            }

            char currentChar = text[current];
            toRemove.Clear();
            bool reset = false;
            for (int s = 0; s < states.Count; s++)
            {
                int start = states[s].Start;
                var pointer = states[s].Node;
                if (pointer.Terminal)
                {
                    int end = current;
                    for (int l = 0; l < states.Count; l++)
                    {
                        int lookStart = states[l].Start;
                        var lookPointer = states[l].Node;
                        if (lookStart > start)
                        {
                            break;
                        }

                        int lookahead;
                        if (lookStart < start)
                        {
                            // That pointer already consumed the current character in this step.
                            lookahead = current + 1;
                            end = current + 1;
                        }
                        else
                        {
                            lookahead = current;
                            end = current;
                        }

                        while (lookahead < text.Length && lookPointer.Children.TryGetValue(text[lookahead], out var next))
                        {
                            lookPointer = next;
                            lookahead++;
                            if (lookPointer.Terminal)
                            {
                                start = lookStart;
                                end = lookahead;
                                skip = lookahead;
                            }
                        }
                    }

                    offsets.Add(start);
                    offsets.Add(end);
                    reset = true;
                    break;
                }

                if (pointer.Children.TryGetValue(currentChar, out var child))
                {
                    states[s] = (start, child);
                }
                else
                {
                    toRemove.Add(start);
                }
            }

            if (reset)
            {
                states.Clear();
            }
            else if (toRemove.Count > 0)
            {
                states.RemoveAll(st => toRemove.Contains(st.Start));
            }

            if (_root.Children.TryGetValue(currentChar, out var first))
            {
                states.Add((current, first));
            }
        }

        foreach (var (start, node) in states)
        {
            if (node.Terminal)
            {
                offsets.Add(start);
                offsets.Add(text.Length);
                break;
            }
        }

        return Cut(text, offsets);
    }

    /// <summary>
    /// Splits text into runs of plain text and whole tokens (<c>IsToken</c>) the way sentencepiece's normalizer
    /// matches USER_DEFINED symbols (its prefix matcher): left to right, at each position the longest token starting
    /// there is one frozen unit that BPE never merges with its neighbours.
    /// </summary>
    public IEnumerable<(string Text, bool IsToken)> SplitLongestMatch(string text)
    {
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

    private static List<string> Cut(string text, List<int> offsets)
    {
        offsets.Add(text.Length);
        var pieces = new List<string>();
        int start = 0;
        foreach (int end in offsets)
        {
            // start > end cannot arise from the scan above; the reference skips such an offset too.
            if (start >= end)
            {
                continue;
            }

            pieces.Add(text[start..end]);
            start = end;
        }

        return pieces;
    }

    private sealed class Node
    {
        public Dictionary<char, Node> Children { get; } = new();

        public bool Terminal { get; set; }
    }
}
