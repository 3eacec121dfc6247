namespace LlavaInterp.Models.Gemma;

/// <summary>Python's <c>str.strip</c> family: whitespace is what <c>str.isspace</c> accepts, which differs from <see cref="char.IsWhiteSpace(char)"/> (U+001C..U+001F).</summary>
internal static class PythonString
{
    public static bool IsSpace(char c) => c switch
    {
        >= '\t' and <= '\r' => true,
        >= '\u001C' and <= ' ' => true,
        '\u0085' or '\u00A0' or '\u1680' => true,
        >= '\u2000' and <= '\u200A' => true,
        '\u2028' or '\u2029' or '\u202F' or '\u205F' or '\u3000' => true,
        _ => false,
    };

    public static string Strip(string s) => RStrip(LStrip(s));

    public static string LStrip(string s)
    {
        int i = 0;
        while (i < s.Length && IsSpace(s[i]))
        {
            i++;
        }

        return i == 0 ? s : s[i..];
    }

    public static string RStrip(string s)
    {
        int end = s.Length;
        while (end > 0 && IsSpace(s[end - 1]))
        {
            end--;
        }

        return end == s.Length ? s : s[..end];
    }
}
