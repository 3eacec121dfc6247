using System.Text;
using System.Text.Json;

namespace LlavaInterp.TensorFiles;

/// <summary>
/// JSON of tensor-file headers and indexes, read as text must be: strict UTF-8, no unpaired surrogate escapes, no NUL
/// in a name. System.Text.Json checks neither UTF-8 inside strings nor surrogate pairs until a string is read, and then
/// throws <see cref="InvalidOperationException"/>; here every such fault is a <see cref="TensorFileException"/>.
/// </summary>
internal static class HeaderJson
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    /// <summary>Parses <paramref name="bytes"/> as strict UTF-8 JSON.</summary>
    /// <exception cref="TensorFileException">Invalid UTF-8 or invalid JSON.</exception>
    public static JsonDocument Parse(ReadOnlyMemory<byte> bytes, string path, string what)
    {
        try
        {
            // The decoder throws on invalid bytes instead of substituting U+FFFD.
            _ = StrictUtf8.GetCharCount(bytes.Span);
            return JsonDocument.Parse(bytes);
        }
        catch (Exception ex) when (ex is JsonException or DecoderFallbackException or ArgumentException)
        {
            throw new TensorFileException(path, null, $"{what} is not valid JSON in strict UTF-8: {ex.Message}", ex);
        }
    }

    /// <summary>Runs <paramref name="read"/>, turning a string that is not valid Unicode into a <see cref="TensorFileException"/>.</summary>
    public static T Read<T>(string path, string what, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (InvalidOperationException ex)
        {
            throw new TensorFileException(path, null, $"{what} holds a string that is not valid Unicode text (an unpaired surrogate escape such as \\ud800?): {ex.Message}", ex);
        }
    }

    /// <summary>Rejects a name holding NUL: no file system or C API can take it, and no writer produces one.</summary>
    public static string Name(string path, string name, string what) =>
        name.Contains('\0', StringComparison.Ordinal)
            ? throw new TensorFileException(path, null, $"{what} '{name.Replace("\0", "\\u0000", StringComparison.Ordinal)}' holds a NUL character.")
            : name;
}
