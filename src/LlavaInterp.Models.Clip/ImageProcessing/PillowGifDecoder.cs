namespace LlavaInterp.Models.Clip;

/// <summary>
/// The first frame of a GIF as Pillow 11 reads it (GifImagePlugin's frame-0 parsing and libImaging's GifDecode.c LZW
/// decoder, reimplemented): the canvas filled with the transparent index (else 0), the frame's indices decoded into its
/// rectangle, then the palette looked up (indices past its end are black, as Pillow converts them). Skia agrees on valid files but not on damaged LZW data, where Pillow's decoder keeps going by its own rules,
/// nor under transparent or undrawn pixels, where Skia gives black.
/// </summary>
internal static class PillowGifDecoder
{
    private const int GifBits = 12;
    private const int GifTable = 1 << GifBits;
    private const int GifBuffer = 1 << GifBits;

    // ImageFile.load feeds the decoder the file in reads of this many bytes (MAXBLOCK); where the decoder stops to wait
    // for more (an end code, a sub-block not yet complete) decides whether Pillow goes on or reports a truncated file.
    private const int PillowReadSize = 65536;

    /// <summary>Decodes <paramref name="gif"/>; pixels with the transparent index get alpha 0 (RGBA), else RGB.</summary>
    /// <exception cref="ClipImageException">Pillow would refuse the file (truncated, no image, broken LZW data).</exception>
    public static DecodedImage Decode(byte[] gif, string? name)
    {
        var r = new Reader(gif);
        byte[] header = r.Read(13);
        if (header.Length < 13)
        {
            throw Fail(name, "cannot identify image file (the GIF header is cut)");
        }

        int width = header[6] | (header[7] << 8), height = header[8] | (header[9] << 8);
        PilImageDecoder.CheckSize(width, height, name);
        byte[]? globalPalette = null;
        if ((header[10] & 0x80) != 0)
        {
            globalPalette = PaletteOrNull(r.Read(3 << ((header[10] & 7) + 1)));
        }

        // Frame 0: extensions (the graphic control extension's transparency), unknown bytes skipped, the image descriptor.
        int? transparency = null;
        int x0 = 0, y0 = 0, x1 = 0, y1 = 0, lzwBits = 0;
        bool interlace = false, found = false;
        byte[]? framePalette = null;
        bool localTable = false;
        int s = r.Byte();
        if (s is -1 or ';')
        {
            throw Fail(name, "no more images in GIF file");
        }

        while (true)
        {
            if (s == -2)
            {
                s = r.Byte();
            }

            if (s is -1 or ';')
            {
                break;
            }

            if (s == '!')
            {
                int label = r.Byte();
                if (label < 0)
                {
                    throw Fail(name, "cannot read a GIF extension (the file is cut)");
                }

                byte[]? block = r.SubBlock();
                if (label == 249 && block is not null)
                {
                    // Pillow reads the delay (bytes 1-2) always and the index (byte 3) when the flag is set.
                    if (block.Length < 3 || ((block[0] & 1) != 0 && block.Length < 4))
                    {
                        throw Fail(name, "broken graphic control extension");
                    }

                    transparency = (block[0] & 1) != 0 ? block[3] : transparency;
                }

                while (r.SubBlock() is not null)
                {
                }
            }
            else if (s == ',')
            {
                byte[] d = r.Read(9);
                if (d.Length < 9)
                {
                    throw Fail(name, "the GIF image descriptor is cut");
                }

                x0 = d[0] | (d[1] << 8);
                y0 = d[2] | (d[3] << 8);
                x1 = x0 + (d[4] | (d[5] << 8));
                y1 = y0 + (d[6] | (d[7] << 8));
                if (x1 > width || y1 > height)
                {
                    // Pillow grows the canvas to hold a frame that reaches past the logical screen.
                    width = Math.Max(x1, width);
                    height = Math.Max(y1, height);
                    PilImageDecoder.CheckSize(width, height, name);
                }

                interlace = (d[8] & 64) != 0;
                if ((d[8] & 0x80) != 0)
                {
                    localTable = true;
                    framePalette = PaletteOrNull(r.Read(3 << ((d[8] & 7) + 1)));
                }

                lzwBits = r.Byte();
                if (lzwBits < 0)
                {
                    throw Fail(name, "the GIF image data are missing");
                }

                found = true;
                break;
            }

            s = -2;
        }

        if (!found)
        {
            throw Fail(name, "image not found in GIF frame");
        }

        // A local table replaces the global one, even when it is an identity grey ramp: Pillow then reads "no palette"
        // (mode L) and does not fall back to the global table.
        byte[]? palette = localTable ? framePalette : globalPalette;
        var indices = new byte[(long)width * height];
        if (transparency is { } t)
        {
            Array.Fill(indices, (byte)t);
        }

        // Pillow's setimage: a tile of x0 = x1 = 0 means the whole image; an empty or outside tile is an error.
        if (x0 == 0 && x1 == 0)
        {
            (x1, y0, y1) = (width, 0, height);
        }

        if (x1 - x0 <= 0 || y1 - y0 <= 0)
        {
            throw Fail(name, "tile cannot extend outside image");
        }

        string? error = Lzw(gif.AsSpan(r.Position), lzwBits, interlace, indices, width, x0, y0, x1 - x0, y1 - y0);
        if (error is not null)
        {
            throw Fail(name, error);
        }

        return ToImage(indices, width, height, palette, transparency);
    }

    private static ClipImageException Fail(string? name, string why) => new(name, $"cannot decode GIF image: {why}");

    // Pillow's _is_palette_needed: a table that maps every index to its own grey needs no palette.
    private static byte[]? PaletteOrNull(byte[] table)
    {
        for (int i = 0; i + 2 < table.Length; i += 3)
        {
            if (!(table[i] == i / 3 && table[i + 1] == i / 3 && table[i + 2] == i / 3))
            {
                return table;
            }
        }

        return null;
    }

    private static DecodedImage ToImage(byte[] indices, int width, int height, byte[]? palette, int? transparency)
    {
        // Mode P: the file's palette, black past its end (as Pillow converts); mode L (no palette): the index is the grey.
        var lut = new byte[256 * 3];
        if (palette is not null)
        {
            Array.Copy(palette, lut, Math.Min(palette.Length / 3 * 3, lut.Length));
        }
        else
        {
            for (int i = 0; i < 256; i++)
            {
                lut[i * 3] = lut[(i * 3) + 1] = lut[(i * 3) + 2] = (byte)i;
            }
        }

        long pixels = (long)width * height;
        int bands = transparency is null ? 3 : 4;
        var data = new byte[pixels * bands];
        for (long i = 0; i < pixels; i++)
        {
            int index = indices[i];
            data[i * bands] = lut[index * 3];
            data[(i * bands) + 1] = lut[(index * 3) + 1];
            data[(i * bands) + 2] = lut[(index * 3) + 2];
            if (bands == 4)
            {
                data[(i * bands) + 3] = index == transparency ? (byte)0 : (byte)255;
            }
        }

        return new DecodedImage(width, height, bands == 4 ? PilImageMode.Rgba : PilImageMode.Rgb, data, "GIF");
    }

    /// <summary>GifDecode.c over all the data after the LZW code size; null when every pixel of the frame was written.</summary>
    private static string? Lzw(ReadOnlySpan<byte> input, int bits, bool interlaced, byte[] image, int stride, int xoff, int yoff, int xsize, int ysize)
    {
        if (bits is < 0 or > 12)
        {
            return "decoder error (LZW code size out of range)";
        }

        int clear = 1 << bits, end = clear + 1;
        int interlace = interlaced ? 1 : 0;
        int step = interlaced ? 8 : 1;
        int x = 0, y = 0;
        var data = new byte[GifTable];
        var link = new ushort[GifTable];
        var buffer = new byte[GifBuffer];
        int next = 0, codesize = 0, codemask = 0, bufferindex = GifBuffer;
        int bitbuffer = 0, bitcount = 0, blocksize = 0;
        int lastdata = 0, lastcode = 0;
        int state = 1;
        int ptr = 0;
        int limit = Math.Min(PillowReadSize, input.Length);
        long outAt = ((long)(y + yoff) * stride) + xoff;

        // Pillow's next read after the decoder returned for more data: false at the end of the file.
        bool More(ReadOnlySpan<byte> all)
        {
            if (limit >= all.Length)
            {
                return false;
            }

            limit = (int)Math.Min((long)limit + PillowReadSize, all.Length);
            return true;
        }

        // Advances to the next row (Adam-style GIF interlacing passes); false when the frame is complete.
        bool NewLine()
        {
            x = 0;
            y += step;
            while (y >= ysize)
            {
                switch (interlace)
                {
                    case 1:
                        y = 4;
                        interlace = 2;
                        break;
                    case 2:
                        step = 4;
                        y = 2;
                        interlace = 3;
                        break;
                    case 3:
                        step = 2;
                        y = 1;
                        interlace = 0;
                        break;
                    default:
                        return false;
                }
            }

            outAt = ((long)(y + yoff) * stride) + xoff;
            return true;
        }

        while (true)
        {
            if (state == 1)
            {
                next = clear + 2;
                codesize = bits + 1;
                codemask = (1 << codesize) - 1;
                bufferindex = GifBuffer;
                state = 2;
            }

            int count;
            int from; // start in `buffer`, or -1 for the single byte `lastdata`
            if (bufferindex < GifBuffer)
            {
                count = GifBuffer - bufferindex;
                from = bufferindex;
                bufferindex = GifBuffer;
            }
            else
            {
                while (bitcount < codesize)
                {
                    if (blocksize > 0)
                    {
                        bitbuffer |= input[ptr++] << bitcount;
                        bitcount += 8;
                        blocksize--;
                    }
                    else
                    {
                        // A new sub-block is only started when all of it has been read: else Pillow waits for more data.
                        while (ptr >= limit || limit - ptr < input[ptr] + 1)
                        {
                            if (!More(input))
                            {
                                return "image file is truncated";
                            }
                        }

                        blocksize = input[ptr++];
                    }
                }

                int c = bitbuffer & codemask;
                bitbuffer >>>= codesize;
                bitcount -= codesize;
                if (c == clear)
                {
                    if (state != 2)
                    {
                        state = 1;
                    }

                    continue;
                }

                if (c == end)
                {
                    // Pillow's decoder returns here; fed the next read, it takes the following bytes as more codes.
                    if (!More(input))
                    {
                        return "image file is truncated";
                    }

                    continue;
                }

                count = 1;
                from = -1;
                if (state == 2)
                {
                    if (c > clear)
                    {
                        return "broken data stream when reading image file";
                    }

                    lastdata = lastcode = c;
                    state = 3;
                }
                else
                {
                    int thiscode = c;
                    if (c > next)
                    {
                        return "broken data stream when reading image file";
                    }

                    if (c == next)
                    {
                        if (bufferindex <= 0)
                        {
                            return "broken data stream when reading image file";
                        }

                        buffer[--bufferindex] = (byte)lastdata;
                        c = lastcode;
                    }

                    while (c >= clear)
                    {
                        if (bufferindex <= 0 || c >= GifTable)
                        {
                            return "broken data stream when reading image file";
                        }

                        buffer[--bufferindex] = data[c];
                        c = link[c];
                    }

                    lastdata = c;
                    if (next < GifTable)
                    {
                        data[next] = (byte)c;
                        link[next] = (ushort)lastcode;
                        if (next == codemask && codesize < GifBits)
                        {
                            codesize++;
                            codemask = (1 << codesize) - 1;
                        }

                        next++;
                    }

                    lastcode = thiscode;
                }
            }

            if (y >= ysize)
            {
                return "buffer overrun when reading image file";
            }

            for (int i = 0; i < count; i++)
            {
                image[outAt++] = from < 0 ? (byte)lastdata : buffer[from + i];
                if (++x >= xsize && !NewLine())
                {
                    return null;
                }
            }
        }
    }

    private sealed class Reader(byte[] bytes)
    {
        public int Position { get; private set; }

        public int Byte() => Position < bytes.Length ? bytes[Position++] : -1;

        // Python's read(n): at most n bytes.
        public byte[] Read(int n)
        {
            int take = Math.Min(n, bytes.Length - Position);
            byte[] result = bytes.AsSpan(Position, take).ToArray();
            Position += take;
            return result;
        }

        // GifImagePlugin.data(): one sub-block's bytes (possibly cut short), or null at a terminator or the end.
        public byte[]? SubBlock()
        {
            int size = Byte();
            return size > 0 ? Read(size) : null;
        }
    }
}
