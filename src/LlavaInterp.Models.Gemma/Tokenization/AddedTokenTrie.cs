namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Splits text on added tokens the way Hugging Face's slow tokenizers do (<c>tokenization_utils.Trie.split</c>):
/// a greedy scan that cuts at the first completed match, extended to the longest token that starts at the same
/// place or at an earlier partial match. The scan is reproduced step for step (including its handling of
/// overlapping tokens) so that the cut points equal the reference's, not merely a "leftmost-longest" approximation.
/// </summary>
internal sealed class AddedTokenTrie
{
    private readonly Node _root = new();

    public bool IsEmpty => _root.Children.Count == 0;

    public void Add(string token)
    {
        if (token.Length == 0)
        {
            return;
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

    /// <summary>Cuts <paramref name="text"/> at every added-token boundary; pieces keep their order and cover the text.</summary>
    public List<string> Split(string text)
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
