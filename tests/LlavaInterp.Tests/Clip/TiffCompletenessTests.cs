using System.Buffers.Binary;
using LlavaInterp.Models.Clip;

namespace LlavaInterp.Tests.Clip;

/// <summary>
/// <see cref="TiffCompleteness"/> on hand-made headers in both byte orders and both entry layouts (the corpus TIFF,
/// checked against Pillow in <see cref="PillowCorpusTests"/>, is little-endian with one inline strip).
/// </summary>
public sealed class TiffCompletenessTests
{
    // A TIFF of `length` bytes whose first IFD holds StripOffsets/StripByteCounts (LONG; inline when one strip, else
    // arrays placed after the IFD).
    private static byte[] Tiff(bool little, long length, (uint Offset, uint Count)[] strips, ushort type = 4)
    {
        var b = new byte[length];
        void U16(int at, ushort v)
        {
            if (little)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(at), v);
            }
            else
            {
                BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(at), v);
            }
        }

        void U32(int at, uint v)
        {
            if (little)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at), v);
            }
            else
            {
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(at), v);
            }
        }

        b[0] = b[1] = (byte)(little ? 'I' : 'M');
        U16(2, 42);
        U32(4, 8);
        U16(8, 2);
        int arrays = 8 + 2 + (2 * 12) + 4;
        int size = type == 3 ? 2 : 4;
        for (int e = 0; e < 2; e++)
        {
            int entry = 10 + (e * 12);
            U16(entry, (ushort)(e == 0 ? 273 : 279));
            U16(entry + 2, type);
            U32(entry + 4, (uint)strips.Length);
            int at = strips.Length * size <= 4 ? entry + 8 : arrays + (e * strips.Length * size);
            if (at != entry + 8)
            {
                U32(entry + 8, (uint)at);
            }

            for (int i = 0; i < strips.Length; i++)
            {
                uint v = e == 0 ? strips[i].Offset : strips[i].Count;
                if (size == 2)
                {
                    U16(at + (i * 2), (ushort)v);
                }
                else
                {
                    U32(at + (i * 4), v);
                }
            }
        }

        return b;
    }

    [Theory]
    [InlineData(true, (ushort)4)]
    [InlineData(false, (ushort)4)]
    [InlineData(true, (ushort)3)]
    [InlineData(false, (ushort)3)]
    public void AStripPastTheEndIsTruncatedAndStripsInsideAreNot(bool little, ushort type)
    {
        Assert.Null(TiffCompleteness.Check(Tiff(little, 400, [(100, 100), (200, 200)], type)));
        Assert.Null(TiffCompleteness.Check(Tiff(little, 400, [(100, 300)], type)));
        string? error = TiffCompleteness.Check(Tiff(little, 400, [(100, 100), (200, 201)], type));
        Assert.Equal("image file is truncated (strip 1 ends at byte 401 of 400)", error);
        Assert.NotNull(TiffCompleteness.Check(Tiff(little, 400, [(100, 301)], type)));
    }

    [Fact]
    public void FilesItCannotReadAreLeftToTheDecoder()
    {
        Assert.Null(TiffCompleteness.Check([]));
        Assert.Null(TiffCompleteness.Check("GIF89a\0\0\0\0"u8));
        byte[] badIfd = Tiff(true, 400, [(100, 100)]);
        BinaryPrimitives.WriteUInt32LittleEndian(badIfd.AsSpan(4), 10_000);
        Assert.Null(TiffCompleteness.Check(badIfd));
        Assert.Null(TiffCompleteness.Check(Tiff(true, 400, [(100, 500)], type: 5))); // RATIONAL offsets: not a strip table
    }
}
