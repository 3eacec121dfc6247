namespace LlavaInterp.Models.Gemma;

/// <summary>
/// A token that Hugging Face handles outside sentencepiece (<c>tokenizers.AddedToken</c>): it is cut out of the raw
/// text before sentencepiece runs, encodes to <see cref="Id"/>, and decodes to <see cref="Content"/> verbatim.
/// </summary>
/// <param name="Id">The token id; may lie beyond the sentencepiece vocabulary.</param>
/// <param name="Content">The token text.</param>
/// <param name="Special">Whether the token is marked special in <c>added_tokens_decoder</c>.</param>
/// <param name="LStrip">Whether whitespace on its left is removed when encoding.</param>
/// <param name="RStrip">Whether whitespace on its right is removed when encoding.</param>
/// <param name="SingleWord">Whether it only matches as a whole word.</param>
/// <param name="Normalized">The <c>normalized</c> flag (kept for completeness; the slow tokenizer ignores it).</param>
public sealed record GemmaAddedToken(int Id, string Content, bool Special, bool LStrip = false, bool RStrip = false, bool SingleWord = false, bool Normalized = false);
