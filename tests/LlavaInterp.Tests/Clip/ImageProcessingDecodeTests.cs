using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using LlavaInterp.Models.Clip;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tga;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Formats.Webp;
using SixLabors.ImageSharp.PixelFormats;

namespace LlavaInterp.Tests.Clip;

/// <summary>
/// Decoding semantics of <see cref="PilImageDecoder"/>: hand-built PNGs whose expected pixels follow what
/// Pillow 11.1.0 returns for <c>Image.open(f)</c> and <c>.convert("RGB")</c>, plus smoke tests for other formats.
/// </summary>
public sealed class ImageProcessingDecodeTests
{
    // 16-bit samples around the byte boundaries: PIL keeps the high byte, or for I;16 clips at 255.
    private static readonly int[] Samples16 = [0, 1, 127, 128, 255, 256, 0x7fff, 0x8000, 0xff00, 0xff7f, 0xff80, 0xffff];

    [Fact]
    public void Rgb16KeepsHighByte()
    {
        int n = Samples16.Length;
        var samples = new int[n * 3];
        for (int i = 0; i < n; i++)
        {
            samples[i * 3] = Samples16[i];
            samples[(i * 3) + 1] = Samples16[n - 1 - i];
            samples[(i * 3) + 2] = Samples16[i] ^ 0x00ff;
        }

        DecodedImage d = DecodePng(Png.Build(n, 1, colorType: 2, bitDepth: 16, samples));
        Assert.Equal(PilImageMode.Rgb, d.Mode);
        RgbImage rgb = d.ToRgb();
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(Samples16[i] >> 8, rgb[i, 0, 0]);
            Assert.Equal(Samples16[n - 1 - i] >> 8, rgb[i, 0, 1]);
            Assert.Equal((Samples16[i] ^ 0x00ff) >> 8, rgb[i, 0, 2]);
        }
    }

    [Fact]
    public void Rgba16KeepsHighByteAndDropsAlpha()
    {
        int n = Samples16.Length;
        var samples = new int[n * 4];
        for (int i = 0; i < n; i++)
        {
            samples[i * 4] = Samples16[i];
            samples[(i * 4) + 1] = Samples16[n - 1 - i];
            samples[(i * 4) + 2] = Samples16[i];
            samples[(i * 4) + 3] = Samples16[i];
        }

        DecodedImage d = DecodePng(Png.Build(n, 1, colorType: 6, bitDepth: 16, samples));
        Assert.Equal(PilImageMode.Rgba, d.Mode);
        RgbImage rgb = d.ToRgb();
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(Samples16[i] >> 8, d.GetSample(i, 0, 3));
            Assert.Equal(Samples16[i] >> 8, rgb[i, 0, 0]);
            Assert.Equal(Samples16[n - 1 - i] >> 8, rgb[i, 0, 1]);
        }
    }

    [Fact]
    public void GrayAlpha16BecomesRgbaWithHighBytes()
    {
        int n = Samples16.Length;
        var samples = new int[n * 2];
        for (int i = 0; i < n; i++)
        {
            samples[i * 2] = Samples16[i];
            samples[(i * 2) + 1] = Samples16[n - 1 - i];
        }

        DecodedImage d = DecodePng(Png.Build(n, 1, colorType: 4, bitDepth: 16, samples));

        // PIL opens 16-bit LA PNGs as RGBA (raw mode "LA;16B").
        Assert.Equal(PilImageMode.Rgba, d.Mode);
        for (int i = 0; i < n; i++)
        {
            for (int c = 0; c < 3; c++)
            {
                Assert.Equal(Samples16[i] >> 8, d.GetSample(i, 0, c));
            }

            Assert.Equal(Samples16[n - 1 - i] >> 8, d.GetSample(i, 0, 3));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Gray16IsI16AndClipsToRgb(bool withTransparentColour)
    {
        int n = Samples16.Length;
        byte[]? trns = withTransparentColour ? [0x01, 0x01] : null;
        DecodedImage d = DecodePng(Png.Build(n, 1, colorType: 0, bitDepth: 16, Samples16, trns: trns));
        Assert.Equal(PilImageMode.I16, d.Mode);
        RgbImage rgb = d.ToRgb();
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(Samples16[i], d.GetSample(i, 0, 0));
            int expected = Math.Min(Samples16[i], 255);
            Assert.Equal(expected, rgb[i, 0, 0]);
            Assert.Equal(expected, rgb[i, 0, 1]);
            Assert.Equal(expected, rgb[i, 0, 2]);
        }
    }

    [Fact]
    public void Rgb16WithTransparentColourStaysRgb()
    {
        int[] samples = [0, 1, 2, 257, 3, 4];
        DecodedImage d = DecodePng(Png.Build(2, 1, colorType: 2, bitDepth: 16, samples, trns: [0x01, 0x01, 0x00, 0x03, 0x00, 0x04]));
        Assert.Equal(PilImageMode.Rgb, d.Mode);
        Assert.Equal(new byte[] { 0, 0, 0, 1, 0, 0 }, d.ToRgb().Pixels);
    }

    [Theory]
    [InlineData(1, 255)]
    [InlineData(2, 85)]
    [InlineData(4, 17)]
    public void LowBitDepthGrayIsScaled(int bitDepth, int step)
    {
        int levels = 1 << bitDepth;
        int[] samples = Enumerable.Range(0, 16).Select(i => i % levels).ToArray();
        RgbImage rgb = DecodePng(Png.Build(16, 1, colorType: 0, bitDepth: bitDepth, samples)).ToRgb();
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(samples[i] * step, rgb[i, 0, 0]);
            Assert.Equal(samples[i] * step, rgb[i, 0, 2]);
        }
    }

    [Fact]
    public void EightBitTransparentColourKeepsValues()
    {
        DecodedImage gray = DecodePng(Png.Build(2, 1, colorType: 0, bitDepth: 8, [5, 7], trns: [0x00, 0x05]));
        Assert.Equal(PilImageMode.L, gray.Mode);
        Assert.Equal(new byte[] { 5, 5, 5, 7, 7, 7 }, gray.ToRgb().Pixels);

        DecodedImage rgb = DecodePng(Png.Build(2, 1, colorType: 2, bitDepth: 8, [5, 6, 7, 7, 8, 9], trns: [0, 5, 0, 6, 0, 7]));
        Assert.Equal(PilImageMode.Rgb, rgb.Mode);
        Assert.Equal(new byte[] { 5, 6, 7, 7, 8, 9 }, rgb.ToRgb().Pixels);
    }

    [Fact]
    public void PaletteIsExpandedAndTransparencyIgnoredForRgb()
    {
        byte[] palette = [10, 20, 30, 40, 50, 60, 70, 80, 90];
        RgbImage plain = DecodePng(Png.Build(3, 1, colorType: 3, bitDepth: 8, [0, 1, 2], palette: palette)).ToRgb();
        Assert.Equal(palette, plain.Pixels);

        // Index 0 fully transparent: PIL's convert("RGB") still yields the palette colour.
        RgbImage transparent = DecodePng(Png.Build(3, 1, colorType: 3, bitDepth: 8, [0, 1, 2], palette: palette, trns: [0])).ToRgb();
        Assert.Equal(palette, transparent.Pixels);

        // 2-bit palette indices.
        RgbImage packed = DecodePng(Png.Build(5, 1, colorType: 3, bitDepth: 2, [2, 1, 0, 1, 2], palette: palette)).ToRgb();
        Assert.Equal(new byte[] { 70, 80, 90, 40, 50, 60, 10, 20, 30, 40, 50, 60, 70, 80, 90 }, packed.Pixels);
    }

    [Theory]
    [InlineData(8)]
    [InlineData(2)]
    public void PaletteIndexPastThePaletteIsBlack(int bitDepth)
    {
        // PIL pads short palettes with black (ImageSharp alone would repeat the last entry).
        byte[] palette = [10, 20, 30, 40, 50, 60];
        int[] indices = bitDepth == 8 ? [0, 1, 2, 200, 255] : [0, 1, 2, 3, 1];
        byte[] png = Png.Build(indices.Length, 1, colorType: 3, bitDepth: bitDepth, indices, palette: palette, trns: [0]);
        RgbImage rgb = DecodePng(png).ToRgb();
        for (int i = 0; i < indices.Length; i++)
        {
            for (int c = 0; c < 3; c++)
            {
                Assert.Equal(indices[i] < 2 ? palette[(indices[i] * 3) + c] : 0, rgb[i, 0, c]);
            }
        }
    }

    [Fact]
    public void DecompressionBombIsRefusedFromTheHeader()
    {
        // Header claims 20000 x 20000 (4e8 pixels > PIL's 2 x MAX_IMAGE_PIXELS); no pixel data is needed to refuse it.
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, 20000);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), 20000);
        header[8] = 8;
        header[9] = 2;
        byte[] png = Png.Raw(("IHDR", header), ("IDAT", [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]), ("IEND", []));
        using var stream = new MemoryStream(png);
        var ex = Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(stream, "bomb.png"));
        Assert.Equal("bomb.png", ex.FilePath);
        Assert.Contains("exceeds", ex.Message);
    }

    [Fact]
    public void GrayAlpha8DropsAlpha()
    {
        DecodedImage d = DecodePng(Png.Build(2, 1, colorType: 4, bitDepth: 8, [9, 0, 200, 128]));
        Assert.Equal(PilImageMode.La, d.Mode);
        Assert.Equal(0, d.GetSample(0, 0, 1));
        Assert.Equal(new byte[] { 9, 9, 9, 200, 200, 200 }, d.ToRgb().Pixels);
    }

    [Fact]
    public void GammaAndSrgbChunksDoNotChangeSamples()
    {
        int[] samples = [0, 64, 128, 192, 255, 33];
        var gama = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(gama, 45455);
        byte[] png = Png.Build(2, 1, colorType: 2, bitDepth: 8, samples, extraChunks: [("gAMA", gama), ("sRGB", [0])]);
        Assert.Equal(samples.Select(s => (byte)s).ToArray(), DecodePng(png).ToRgb().Pixels);

        // A gAMA far from 1/2.2 would visibly change values if any correction were applied.
        BinaryPrimitives.WriteUInt32BigEndian(gama, 100000);
        byte[] strong = Png.Build(2, 1, colorType: 2, bitDepth: 8, samples, extraChunks: [("gAMA", gama)]);
        Assert.Equal(samples.Select(s => (byte)s).ToArray(), DecodePng(strong).ToRgb().Pixels);
    }

    [Theory]
    [InlineData("bmp")]
    [InlineData("tga")]
    [InlineData("tiff")]
    [InlineData("webp-lossless")]
    [InlineData("png")]
    public void LosslessFormatsRoundTripExactly(string format)
    {
        using Image<Rgb24> source = Pattern(23, 17);
        using var stream = new MemoryStream();
        switch (format)
        {
            case "bmp":
                source.Save(stream, new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel24 });
                break;
            case "tga":
                source.Save(stream, new TgaEncoder { BitsPerPixel = TgaBitsPerPixel.Pixel24, Compression = TgaCompression.None });
                break;
            case "tiff":
                source.Save(stream, new TiffEncoder { Compression = SixLabors.ImageSharp.Formats.Tiff.Constants.TiffCompression.Lzw });
                break;
            case "webp-lossless":
                source.Save(stream, new WebpEncoder { FileFormat = WebpFileFormatType.Lossless });
                break;
            default:
                source.Save(stream, new PngEncoder());
                break;
        }

        stream.Position = 0;
        RgbImage rgb = PilImageDecoder.Decode(stream, format).ToRgb();
        Assert.Equal(PixelsOf(source), rgb.Pixels);
    }

    [Fact]
    public void GifFirstFrameDecodesPaletteColours()
    {
        // Four exact colours survive GIF's palette quantisation unchanged.
        using var source = new Image<Rgba32>(8, 6);
        Rgba32[] colours = [new(255, 0, 0, 255), new(0, 128, 0, 255), new(0, 0, 255, 255), new(250, 250, 250, 255)];
        for (int y = 0; y < 6; y++)
        {
            for (int x = 0; x < 8; x++)
            {
                source[x, y] = colours[((x / 2) + y) % 4];
            }
        }

        using var second = new Image<Rgba32>(8, 6, new Rgba32(1, 2, 3, 255));
        source.Frames.AddFrame(second.Frames.RootFrame);
        using var stream = new MemoryStream();
        source.Save(stream, new GifEncoder());
        stream.Position = 0;

        RgbImage rgb = PilImageDecoder.Decode(stream, "anim.gif").ToRgb();
        for (int y = 0; y < 6; y++)
        {
            for (int x = 0; x < 8; x++)
            {
                Rgba32 expected = colours[((x / 2) + y) % 4];
                Assert.Equal(expected.R, rgb[x, y, 0]);
                Assert.Equal(expected.G, rgb[x, y, 1]);
                Assert.Equal(expected.B, rgb[x, y, 2]);
            }
        }
    }

    [Theory]
    [InlineData("jpeg-color")]
    [InlineData("jpeg-gray")]
    [InlineData("webp-lossy")]
    public void LossyFormatsDecodeCloseToSource(string format)
    {
        // Lossy codecs (and ImageSharp's decoders vs libjpeg-turbo/libwebp) are not byte-exact: check the
        // image decodes with the right size and stays near the source on a smooth pattern.
        using Image<Rgb24> source = Smooth(40, 30, gray: format == "jpeg-gray");
        using var stream = new MemoryStream();
        switch (format)
        {
            case "jpeg-color":
                source.Save(stream, new JpegEncoder { Quality = 95 });
                break;
            case "jpeg-gray":
                source.Save(stream, new JpegEncoder { Quality = 95, ColorType = JpegColorType.Luminance });
                break;
            default:
                source.Save(stream, new WebpEncoder { FileFormat = WebpFileFormatType.Lossy, Quality = 95 });
                break;
        }

        stream.Position = 0;
        DecodedImage decoded = PilImageDecoder.Decode(stream, format);
        RgbImage rgb = decoded.ToRgb();
        Assert.Equal(40, rgb.Width);
        Assert.Equal(30, rgb.Height);
        byte[] expected = PixelsOf(source);
        double meanAbs = expected.Zip(rgb.Pixels, (a, b) => Math.Abs(a - b)).Average();
        Assert.True(meanAbs < 4, $"{format}: mean |diff| {meanAbs:F2} levels");

        // The processor runs end to end on it.
        var processor = new ClipImageProcessor(ClipImageProcessorConfig.FromJson("""{"size": 16, "crop_size": 16}"""));
        Assert.Equal(3 * 16 * 16, processor.Process(rgb).PixelValues.Length);
    }

    private static DecodedImage DecodePng(byte[] png)
    {
        using var stream = new MemoryStream(png);
        return PilImageDecoder.Decode(stream, "test.png");
    }

    private static Image<Rgb24> Pattern(int width, int height)
    {
        var image = new Image<Rgb24>(width, height);
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                image[x, y] = new Rgb24((byte)(x * 11), (byte)((y * 13) + x), (byte)((x * y * 7) + 3));
            }
        }

        return image;
    }

    private static Image<Rgb24> Smooth(int width, int height, bool gray)
    {
        var image = new Image<Rgb24>(width, height);
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                byte r = (byte)(40 + (x * 4));
                byte g = gray ? r : (byte)(60 + (y * 5));
                byte b = gray ? r : (byte)(100 + (x * 2) + y);
                image[x, y] = new Rgb24(r, g, b);
            }
        }

        return image;
    }

    private static byte[] PixelsOf(Image<Rgb24> image)
    {
        var bytes = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(bytes);
        return bytes;
    }

    /// <summary>A minimal PNG writer for exact control of colour type, bit depth and chunks.</summary>
    private static class Png
    {
        private static readonly uint[] CrcTable = BuildCrcTable();

        public static byte[] Build(int width, int height, byte colorType, int bitDepth, int[] samples, byte[]? palette = null, byte[]? trns = null, (string Type, byte[] Data)[]? extraChunks = null)
        {
            int channels = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, 6 => 4, _ => throw new ArgumentOutOfRangeException(nameof(colorType)) };
            int rowBits = width * channels * bitDepth;
            int rowBytes = (rowBits + 7) / 8;
            using var raw = new MemoryStream();
            for (int y = 0; y < height; y++)
            {
                var row = new byte[rowBytes];
                for (int i = 0; i < width * channels; i++)
                {
                    int v = samples[(y * width * channels) + i];
                    if (bitDepth == 16)
                    {
                        row[i * 2] = (byte)(v >> 8);
                        row[(i * 2) + 1] = (byte)v;
                    }
                    else if (bitDepth == 8)
                    {
                        row[i] = (byte)v;
                    }
                    else
                    {
                        int bit = i * bitDepth;
                        row[bit / 8] |= (byte)(v << (8 - bitDepth - (bit % 8)));
                    }
                }

                raw.WriteByte(0);
                raw.Write(row);
            }

            using var compressed = new MemoryStream();
            using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
            {
                z.Write(raw.ToArray());
            }

            var header = new byte[13];
            BinaryPrimitives.WriteInt32BigEndian(header, width);
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
            header[8] = (byte)bitDepth;
            header[9] = colorType;

            using var png = new MemoryStream();
            png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
            WriteChunk(png, "IHDR", header);
            foreach ((string type, byte[] data) in extraChunks ?? [])
            {
                WriteChunk(png, type, data);
            }

            if (palette is not null)
            {
                WriteChunk(png, "PLTE", palette);
            }

            if (trns is not null)
            {
                WriteChunk(png, "tRNS", trns);
            }

            WriteChunk(png, "IDAT", compressed.ToArray());
            WriteChunk(png, "IEND", []);
            return png.ToArray();
        }

        public static byte[] Raw(params (string Type, byte[] Data)[] chunks)
        {
            using var png = new MemoryStream();
            png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
            foreach ((string type, byte[] data) in chunks)
            {
                WriteChunk(png, type, data);
            }

            return png.ToArray();
        }

        private static void WriteChunk(Stream stream, string type, byte[] data)
        {
            var length = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(length, data.Length);
            stream.Write(length);
            byte[] typeAndData = [.. Encoding.ASCII.GetBytes(type), .. data];
            stream.Write(typeAndData);
            var crc = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32(typeAndData));
            stream.Write(crc);
        }

        private static uint Crc32(byte[] data)
        {
            uint c = 0xFFFFFFFF;
            foreach (byte b in data)
            {
                c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
            }

            return c ^ 0xFFFFFFFF;
        }

        private static uint[] BuildCrcTable()
        {
            var table = new uint[256];
            for (uint n = 0; n < 256; n++)
            {
                uint c = n;
                for (int k = 0; k < 8; k++)
                {
                    c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
                }

                table[n] = c;
            }

            return table;
        }
    }
}
