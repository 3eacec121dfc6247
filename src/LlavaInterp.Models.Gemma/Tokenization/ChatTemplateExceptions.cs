namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Thrown when a chat template is not one this library can render (only Gemma's is implemented). Render the prompt
/// yourself and tokenize it with <see cref="GemmaTokenizer.Encode"/>, or use <see cref="GemmaChatFormat"/> directly
/// if the model was trained with Gemma's turn format.
/// </summary>
public sealed class UnsupportedChatTemplateException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is unsupported.</param>
    public UnsupportedChatTemplateException(string message)
        : base(message)
    {
    }
}

/// <summary>
/// Thrown when a conversation is rejected by the chat template, mirroring the template's own
/// <c>raise_exception</c> calls (for Gemma: "System role not supported", "Conversation roles must alternate ...").
/// </summary>
public sealed class ChatTemplateException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The template's message.</param>
    public ChatTemplateException(string message)
        : base(message, "messages")
    {
    }
}
