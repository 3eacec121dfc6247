namespace LlavaInterp.Models.Clip;

/// <summary>
/// The colour Pillow shows where the first frame of a GIF is transparent or not drawn. Pillow opens a GIF as mode "P"
/// and <c>convert("RGB")</c> looks every index up in the palette, so a transparent pixel shows the palette colour of the
/// transparent index, and a pixel outside the first frame's rectangle the colour of the index Pillow filled the canvas
/// with (the transparent index, else 0). Skia gives all of those pixels alpha 0 and no colour.
/// </summary>
internal static class GifFirstFrame
{
    /// <summary>
    /// The RGB of the palette entry Pillow shows under pixels Skia leaves transparent, or null when the header cannot be
    /// read this far (the decoder reports such files) or the entry lies past the palette (Pillow's missing entries are black).
    /// </summary>
    public static (byte R, byte G, byte B)? HiddenColour(ReadOnlySpan<byte> gif)
    {
        const int ScreenEnd = 13; // "GIF89a", width, height, flags, background, aspect
        if (gif.Length < ScreenEnd)
        {
            return null;
        }

        int globalTable = (gif[10] & 0x80) != 0 ? 3 << ((gif[10] & 7) + 1) : 0;
        int p = ScreenEnd + globalTable;
        int? transparent = null;
        while (p < gif.Length)
        {
            byte block = gif[p];
            if (block == 0x21)
            {
                // Extension: a graphic control extension before the image carries its transparency flag and index.
                if (p + 1 >= gif.Length)
                {
                    return null;
                }

                if (gif[p + 1] == 0xF9 && p + 6 < gif.Length && gif[p + 2] >= 4)
                {
                    transparent = (gif[p + 3] & 1) != 0 ? gif[p + 6] : null;
                }

                p += 2;
                while (p < gif.Length && gif[p] != 0)
                {
                    p += gif[p] + 1;
                }

                p++;
            }
            else if (block == 0x2C)
            {
                if (p + 9 >= gif.Length)
                {
                    return null;
                }

                byte flags = gif[p + 9];
                int index = transparent ?? 0;
                int tableStart, entries;
                if ((flags & 0x80) != 0)
                {
                    tableStart = p + 10;
                    entries = 1 << ((flags & 7) + 1);
                }
                else
                {
                    tableStart = ScreenEnd;
                    entries = globalTable / 3;
                }

                int at = tableStart + (index * 3);
                return index < entries && at + 2 < gif.Length ? (gif[at], gif[at + 1], gif[at + 2]) : null;
            }
            else
            {
                return null;
            }
        }

        return null;
    }

    /// <summary>Gives every pixel with alpha 0 of an RGBA first frame the colour Pillow shows there (see the type).</summary>
    public static void FillHidden(byte[] rgba, ReadOnlySpan<byte> gif)
    {
        if (HiddenColour(gif) is not { } colour)
        {
            return;
        }

        for (long i = 0; i < rgba.LongLength; i += 4)
        {
            if (rgba[i + 3] == 0)
            {
                rgba[i] = colour.R;
                rgba[i + 1] = colour.G;
                rgba[i + 2] = colour.B;
            }
        }
    }
}
