using System.Buffers.Binary;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// Pillow refuses a TIFF whose image data end before the strips (or tiles) of its first image do ("image file is
/// truncated"); ImageSharp 2.1 fills what is missing with zeros. This reads the first IFD's offsets and byte counts
/// and checks that every strip lies inside the file. Classic TIFF only (BigTIFF and files too malformed to tell are left
/// to the decoder, which reports them).
/// </summary>
internal static class TiffCompleteness
{
    private const ushort StripOffsets = 273;
    private const ushort StripByteCounts = 279;
    private const ushort TileOffsets = 324;
    private const ushort TileByteCounts = 325;

    /// <summary>Why the image data are incomplete, or null.</summary>
    public static string? Check(ReadOnlySpan<byte> tiff)
    {
        if (tiff.Length < 8)
        {
            return null;
        }

        bool little;
        if (tiff[0] == 'I' && tiff[1] == 'I' && tiff[2] == 42 && tiff[3] == 0)
        {
            little = true;
        }
        else if (tiff[0] == 'M' && tiff[1] == 'M' && tiff[2] == 0 && tiff[3] == 42)
        {
            little = false;
        }
        else
        {
            return null;
        }

        long ifd = U32(tiff, 4, little);
        if (ifd + 2 > tiff.Length)
        {
            return null;
        }

        int entries = U16(tiff, (int)ifd, little);
        if (ifd + 2 + (entries * 12L) > tiff.Length)
        {
            return null;
        }

        long[]? offsets = null, counts = null;
        for (int i = 0; i < entries; i++)
        {
            int entry = (int)ifd + 2 + (i * 12);
            ushort tag = U16(tiff, entry, little);
            if (tag is StripOffsets or TileOffsets)
            {
                offsets = Values(tiff, entry, little);
            }
            else if (tag is StripByteCounts or TileByteCounts)
            {
                counts = Values(tiff, entry, little);
            }
        }

        if (offsets is null || counts is null || offsets.Length != counts.Length)
        {
            return null;
        }

        for (int i = 0; i < offsets.Length; i++)
        {
            long end = offsets[i] + counts[i];
            if (end > tiff.Length)
            {
                return $"image file is truncated (strip {i} ends at byte {end} of {tiff.Length})";
            }
        }

        return null;
    }

    // A SHORT or LONG array entry: inline when it fits in 4 bytes, else at the offset the entry holds; null otherwise.
    private static long[]? Values(ReadOnlySpan<byte> tiff, int entry, bool little)
    {
        ushort type = U16(tiff, entry + 2, little);
        long count = U32(tiff, entry + 4, little);
        int size = type switch { 3 => 2, 4 => 4, _ => 0 };
        if (size == 0 || count is < 1 or > 1 << 20)
        {
            return null;
        }

        long at = count * size <= 4 ? entry + 8 : U32(tiff, entry + 8, little);
        if (at + (count * size) > tiff.Length)
        {
            return null;
        }

        var values = new long[count];
        for (int i = 0; i < count; i++)
        {
            int p = (int)at + (i * size);
            values[i] = size == 2 ? U16(tiff, p, little) : U32(tiff, p, little);
        }

        return values;
    }

    private static ushort U16(ReadOnlySpan<byte> b, int at, bool little) =>
        little ? BinaryPrimitives.ReadUInt16LittleEndian(b[at..]) : BinaryPrimitives.ReadUInt16BigEndian(b[at..]);

    private static uint U32(ReadOnlySpan<byte> b, int at, bool little) =>
        little ? BinaryPrimitives.ReadUInt32LittleEndian(b[at..]) : BinaryPrimitives.ReadUInt32BigEndian(b[at..]);
}
