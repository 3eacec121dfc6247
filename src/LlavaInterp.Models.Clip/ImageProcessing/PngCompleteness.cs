using System.Buffers.Binary;
using System.IO.Compression;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// Reads a PNG's chunks by Pillow's rules before ImageSharp sees the file, because the two differ on damaged files.
/// Pillow verifies the type and CRC of every chunk before the image data ("broken PNG file"), never the CRCs of the
/// IDAT chunks, and inflates the image data only until it has the bytes the header's size, colour type, bit depth and
/// interlacing need: what the zlib stream holds after that (a bad Adler-32, garbage) and the chunks after the image
/// data are never read. Fewer bytes: complete only if the zlib stream itself ended (its Adler-32 checksum matches) —
/// Pillow accepts such a short image and leaves the missing rows black — else truncated (ImageSharp 2.1 would fill
/// zeros, also for a cut between two IDAT chunks). Where ImageSharp would judge the file otherwise (a cut, an IDAT CRC,
/// trouble after the needed bytes), the file is rebuilt with exactly the image data Pillow uses.
/// </summary>
internal static class PngCompleteness
{
    private static readonly byte[] Signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>
    /// Checks the file. Error: why Pillow would refuse it (null when it would not, or when the file is too malformed to
    /// tell: the decoder reports that). Repaired: the same PNG rebuilt from the chunks before the image data, one IDAT
    /// holding the image data Pillow inflates, and IEND, when ImageSharp would judge the original otherwise (see the
    /// type); null when nothing needs repair.
    /// </summary>
    public static (string? Error, byte[]? Repaired) Check(byte[] png)
    {
        ArgumentNullException.ThrowIfNull(png);
        if (png.Length < Signature.Length || !png.AsSpan(0, Signature.Length).SequenceEqual(Signature))
        {
            return (null, null);
        }

        long width = 0, height = 0;
        int bitDepth = 0, colorType = -1, interlace = 0;
        using var idat = new MemoryStream();
        int pos = Signature.Length;
        int idatStart = -1;
        bool sawIdat = false, cut = false, idatCrcBad = false;
        while (pos + 8 <= png.Length)
        {
            uint length = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos));
            var type = png.AsSpan(pos + 4, 4);
            long end = pos + 12L + length;
            bool isIdat = type.SequenceEqual("IDAT"u8);
            if (sawIdat && !isIdat)
            {
                break; // the image data is over; Pillow reads no further for the pixels
            }

            if (!sawIdat && !isIdat && !IsChunkType(type))
            {
                return ($"broken PNG file (chunk type {Convert.ToHexString(type)} at byte {pos + 4})", null);
            }

            if (length > int.MaxValue || end > png.Length)
            {
                if (!isIdat)
                {
                    return ("image file is truncated (a chunk ends past the end of the file)", null);
                }

                // The last chunk is cut: its data so far still counts (Pillow feeds what it has to the decoder).
                idatStart = idatStart < 0 ? pos : idatStart;
                idat.Write(png.AsSpan(pos + 8, (int)Math.Min(length, png.Length - pos - 8L)));
                sawIdat = true;
                cut = true;
                break;
            }

            bool crcMatches = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan((int)end - 4)) == Crc(png.AsSpan(pos + 4, 4 + (int)length));
            if (!isIdat && !crcMatches)
            {
                return ($"broken PNG file (bad header checksum in {System.Text.Encoding.ASCII.GetString(type)})", null);
            }

            if (type.SequenceEqual("IHDR"u8) && length >= 13)
            {
                var data = png.AsSpan(pos + 8, 13);
                width = BinaryPrimitives.ReadUInt32BigEndian(data);
                height = BinaryPrimitives.ReadUInt32BigEndian(data[4..]);
                bitDepth = data[8];
                colorType = data[9];
                interlace = data[12];
            }
            else if (isIdat)
            {
                idatStart = idatStart < 0 ? pos : idatStart;
                idat.Write(png.AsSpan(pos + 8, (int)length));
                sawIdat = true;
                idatCrcBad |= !crcMatches;
            }

            pos = (int)end;
        }

        cut |= sawIdat && pos + 8 > png.Length;
        if (!sawIdat)
        {
            return (width > 0 ? "image file is truncated (no image data)" : null, null);
        }

        long? expected = ExpectedBytes(width, height, bitDepth, colorType, interlace);
        if (expected is null)
        {
            return (null, null);
        }

        var (got, adler, cleanEnd) = Inflate(idat, expected.Value, null);
        if (got < expected)
        {
            // Short: a zlib stream that really ended carries the Adler-32 of everything it inflated as its last 4 bytes.
            uint stored = idat.Length >= 4 ? BinaryPrimitives.ReadUInt32BigEndian(idat.GetBuffer().AsSpan((int)idat.Length - 4, 4)) : ~adler;
            if (stored != adler)
            {
                return ($"image file is truncated (the image data ends after {got} of {expected} bytes)", null);
            }
        }

        return (null, cut || idatCrcBad || !cleanEnd ? Rebuild(png, idatStart, idat, got) : null);
    }

    // Pillow's is_cid: four word characters.
    private static bool IsChunkType(ReadOnlySpan<byte> type)
    {
        foreach (byte c in type)
        {
            if (!(char.IsAsciiLetterOrDigit((char)c) || c == (byte)'_'))
            {
                return false;
            }
        }

        return true;
    }

    private static uint Crc(ReadOnlySpan<byte> typeAndData)
    {
        var crc = new System.IO.Hashing.Crc32();
        crc.Append(typeAndData);
        return crc.GetCurrentHashAsUInt32();
    }

    // The chunks before the image data as they were, one IDAT with the `bytes` inflated bytes Pillow uses, IEND.
    private static byte[] Rebuild(byte[] png, int idatStart, MemoryStream idat, long bytes)
    {
        using var inflated = new MemoryStream();
        using (var deflate = new ZLibStream(inflated, CompressionLevel.Fastest, leaveOpen: true))
        {
            Inflate(idat, bytes, deflate);
        }

        using var output = new MemoryStream();
        output.Write(png, 0, idatStart);
        WriteChunk(output, "IDAT"u8, inflated.GetBuffer().AsSpan(0, (int)inflated.Length));
        WriteChunk(output, "IEND"u8, []);
        return output.ToArray();
    }

    private static void WriteChunk(Stream output, ReadOnlySpan<byte> type, ReadOnlySpan<byte> data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(word, (uint)data.Length);
        output.Write(word);
        output.Write(type);
        output.Write(data);
        var crc = new System.IO.Hashing.Crc32();
        crc.Append(type);
        crc.Append(data);
        BinaryPrimitives.WriteUInt32BigEndian(word, crc.GetCurrentHashAsUInt32());
        output.Write(word);
    }

    // Filtered scanlines: one filter byte plus ceil(width·bits/8) per row, per Adam7 pass when interlaced.
    private static long? ExpectedBytes(long width, long height, int bitDepth, int colorType, int interlace)
    {
        int channels = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, 6 => 4, _ => 0 };
        if (channels == 0 || bitDepth is not (1 or 2 or 4 or 8 or 16) || width <= 0 || height <= 0 || interlace > 1)
        {
            return null;
        }

        long bits = (long)channels * bitDepth;
        static long Rows(long w, long h, long bitsPerPixel) => w == 0 || h == 0 ? 0 : h * (1 + (((w * bitsPerPixel) + 7) / 8));
        if (interlace == 0)
        {
            return Rows(width, height, bits);
        }

        // Adam7: (x0, y0, dx, dy) of each pass.
        (int X, int Y, int Dx, int Dy)[] passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)];
        long total = 0;
        foreach (var (x, y, dx, dy) in passes)
        {
            long w = width > x ? ((width - x) + dx - 1) / dx : 0;
            long h = height > y ? ((height - y) + dy - 1) / dy : 0;
            total += Rows(w, h, bits);
        }

        return total;
    }

    // Bytes the zlib stream inflates to, reading at most `limit` (never decoding past it, as Pillow stops there), their
    // Adler-32, and whether the stream then ends cleanly (its checksum verified, nothing after it). The bytes go to
    // `sink` when given, else nowhere.
    private static (long Length, uint Adler, bool CleanEnd) Inflate(MemoryStream idat, long limit, Stream? sink)
    {
        idat.Position = 0;
        var buffer = new byte[1 << 16];
        long total = 0;
        uint a = 1, b = 0;
        using var inflate = new ZLibStream(idat, CompressionMode.Decompress, leaveOpen: true);
        try
        {
            int n;
            while (total < limit && (n = inflate.Read(buffer, 0, (int)Math.Min(buffer.Length, limit - total))) > 0)
            {
                sink?.Write(buffer, 0, n);
                total += n;
                for (int i = 0; i < n; i++)
                {
                    a = (a + buffer[i]) % 65521;
                    b = (b + a) % 65521;
                }
            }
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException)
        {
            // Corrupt data (zlib reports some kinds as an IOException, ZLibException): counted up to where it broke (the checksum then
            // cannot match).
            return (total, ~((b << 16) | a), false);
        }

        bool clean;
        try
        {
            clean = inflate.Read(buffer, 0, 1) == 0;
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException)
        {
            clean = false;
        }

        return (total, (b << 16) | a, clean);
    }
}
