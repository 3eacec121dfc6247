namespace LlavaInterp.Llava;

/// <summary>Thrown for inputs the LLaVA model or processor cannot use (e.g. images and placeholders that do not match).</summary>
public sealed class LlavaException(string message, Exception? inner = null) : Exception(message, inner);
