using System.Buffers.Binary;
using System.IO.Hashing;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// PIL maps palette indices past the end of a short PNG palette to black; ImageSharp clamps them to the last
/// entry. Padding the PLTE chunk with black entries up to 2^bit_depth before decoding gives PIL's result.
/// </summary>
internal static class PngPalettePadding
{
    private static readonly byte[] Signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>
    /// Returns a copy of <paramref name="png"/> with its PLTE chunk padded, or null when the file is not a
    /// palette PNG with a short palette (or is too malformed to tell; the decoder then reports it).
    /// </summary>
    public static byte[]? PadIfShort(byte[] png)
    {
        if (png.Length < Signature.Length || !png.AsSpan(0, Signature.Length).SequenceEqual(Signature))
        {
            return null;
        }

        int bitDepth = -1;
        int pos = Signature.Length;
        while (pos + 12 <= png.Length)
        {
            uint length = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos));
            if (length > int.MaxValue || pos + 12L + length > png.Length)
            {
                return null;
            }

            ReadOnlySpan<byte> type = png.AsSpan(pos + 4, 4);
            if (type.SequenceEqual("IHDR"u8) && length >= 13)
            {
                byte colorType = png[pos + 8 + 9];
                if (colorType != 3)
                {
                    return null;
                }

                bitDepth = png[pos + 8 + 8];
            }
            else if (type.SequenceEqual("PLTE"u8))
            {
                if (bitDepth is not (1 or 2 or 4 or 8) || length % 3 != 0)
                {
                    return null;
                }

                int wanted = (1 << bitDepth) * 3;
                return length >= wanted ? null : Rebuild(png, pos, (int)length, wanted);
            }
            else if (type.SequenceEqual("IDAT"u8) || type.SequenceEqual("IEND"u8))
            {
                return null;
            }

            pos += 12 + (int)length;
        }

        return null;
    }

    private static byte[] Rebuild(byte[] png, int chunkStart, int length, int paddedLength)
    {
        int oldChunkEnd = chunkStart + 12 + length;
        var result = new byte[png.Length + (paddedLength - length)];
        png.AsSpan(0, chunkStart).CopyTo(result);
        BinaryPrimitives.WriteUInt32BigEndian(result.AsSpan(chunkStart), (uint)paddedLength);

        // Type and the original entries; the added entries stay zero (black).
        png.AsSpan(chunkStart + 4, 4 + length).CopyTo(result.AsSpan(chunkStart + 4));
        int crcAt = chunkStart + 8 + paddedLength;
        BinaryPrimitives.WriteUInt32BigEndian(result.AsSpan(crcAt), Crc32.HashToUInt32(result.AsSpan(chunkStart + 4, 4 + paddedLength)));
        png.AsSpan(oldChunkEnd).CopyTo(result.AsSpan(crcAt + 4));
        return result;
    }
}
