using System.Text;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Turns generated ids into text one id at a time. Each <see cref="Push"/> returns only the text that id completes:
/// a byte-fallback piece that starts a multi-byte UTF-8 character is held back until the character is complete
/// (or provably invalid). After the last id call <see cref="Flush"/>; the concatenation of every returned string
/// then equals <see cref="GemmaTokenizer.Decode"/> of all the ids. Not thread-safe; one instance per stream.
/// </summary>
public sealed class GemmaStreamingDecoder
{
    private readonly GemmaTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly StringBuilder _chunk = new();
    private GemmaTokenizer.DecodeState _state;

    internal GemmaStreamingDecoder(GemmaTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _state = new GemmaTokenizer.DecodeState(tokenizer, skipSpecialTokens);
    }

    /// <summary>Whether special ids are dropped (as <c>skip_special_tokens=True</c>).</summary>
    public bool SkipSpecialTokens => _skipSpecialTokens;

    /// <summary>Feeds one id and returns the newly completed text (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is not in the vocabulary.</exception>
    public string Push(int id)
    {
        _chunk.Clear();
        _state.Push(id, _chunk);
        return _chunk.ToString();
    }

    /// <summary>Ends the stream: returns held-back bytes that never completed a character, one U+FFFD each.</summary>
    public string Flush()
    {
        _chunk.Clear();
        _state.Finish(_chunk);
        return _chunk.ToString();
    }

    /// <summary>Discards any held-back bytes and starts a new stream.</summary>
    public void Reset() => _state = new GemmaTokenizer.DecodeState(_tokenizer, _skipSpecialTokens);
}
