namespace LlavaInterp.Models.Gemma;

/// <summary>One turn of a conversation, as passed to a Hugging Face chat template (<c>{"role": ..., "content": ...}</c>).</summary>
/// <param name="Role">The speaker: <c>user</c>, <c>assistant</c> (rendered as <c>model</c> by Gemma) or another role name.</param>
/// <param name="Content">The message text; for LLaVA prompts it contains the <c>&lt;image&gt;</c> placeholder where the image goes.</param>
public sealed record ChatMessage(string Role, string Content);
