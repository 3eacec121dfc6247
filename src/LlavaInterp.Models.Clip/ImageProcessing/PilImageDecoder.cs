using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Metadata;
using SixLabors.ImageSharp.PixelFormats;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// Decodes image files (JPEG, PNG, WebP, GIF, BMP, TIFF, TGA, PBM) into what PIL's <c>Image.open</c> would hold.
/// No colour management, gamma correction, EXIF rotation or alpha compositing is applied (PIL applies none of them
/// either); only the first frame of an animation is read.
/// </summary>
/// <remarks>
/// Each format goes to the decoder that reproduces Pillow 11 exactly on the parity corpus (tests/fixtures/pillow-corpus,
/// docs/formats.md): JPEG on x86-64 Linux through the package's libjpeg-turbo shim (Pillow's own calls, so damaged
/// files too give Pillow's pixels or Pillow's error), elsewhere through Skia; GIF through a reimplementation of
/// Pillow's own GIF reader (damaged LZW data and transparency as Pillow has them); WebP and BMP through Skia (libwebp
/// with Pillow's defaults, which also rejects truncated files where ImageSharp zero-fills them); PNG, TIFF, TGA and PBM
/// through ImageSharp.
/// PNG is reproduced sample for sample, including PIL's handling of 16-bit files: 16-bit grayscale becomes
/// "I;16" (later clipped to 255 by <c>convert("RGB")</c>), 16-bit RGB/RGBA/LA keep the high byte of each
/// sample (PIL unpacks them with its "…;16B" raw modes; 16-bit LA becomes RGBA as in PIL), and short palettes are
/// padded with black as PIL does.
/// Images of more than <see cref="MaxPixels"/> pixels are refused from their header, before pixels are allocated;
/// truncated or corrupt data is an error, never zero-filled pixels.
/// </remarks>
public static class PilImageDecoder
{
    /// <summary>
    /// Images with more pixels than this are refused, as PIL raises <c>DecompressionBombError</c> above
    /// 2 × <c>Image.MAX_IMAGE_PIXELS</c> (2 × 89,478,485).
    /// </summary>
    public const long MaxPixels = 2L * 89_478_485;

    private static readonly SixLabors.ImageSharp.Configuration DecoderConfiguration = CreateConfiguration();

    /// <summary>Decodes the image file at <paramref name="path"/>.</summary>
    /// <param name="path">The image file.</param>
    /// <returns>The decoded image.</returns>
    /// <exception cref="ClipImageException">The file is missing or unreadable, or its bytes are not a supported, valid image.</exception>
    public static DecodedImage Decode(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ClipImageException(path, $"cannot open image file: {ex.Message}", ex);
        }

        using (stream)
        {
            return DecodeCore(stream, path);
        }
    }

    /// <summary>Decodes an image from <paramref name="stream"/> (read from its current position).</summary>
    /// <param name="stream">The encoded image bytes.</param>
    /// <param name="sourceName">A name for error messages (for example the original file name), or null.</param>
    /// <returns>The decoded image.</returns>
    /// <exception cref="ClipImageException">The bytes are not a supported, valid image.</exception>
    public static DecodedImage Decode(Stream stream, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return DecodeCore(stream, sourceName);
    }

    private static SixLabors.ImageSharp.Configuration CreateConfiguration()
    {
        SixLabors.ImageSharp.Configuration config = SixLabors.ImageSharp.Configuration.Default.Clone();
        config.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
        config.ImageFormatsManager.SetDecoder(TiffFormat.Instance, new TiffDecoder { DecodingMode = FrameDecodingMode.First });
        return config;
    }

    /// <summary>Throws when a <paramref name="width"/> × <paramref name="height"/> image is empty or too large for PIL.</summary>
    internal static void CheckSize(long width, long height, string? name)
    {
        if (width < 1 || height < 1)
        {
            throw new ClipImageException(name, $"image has an empty size {width}x{height}");
        }

        if (width * height > MaxPixels)
        {
            throw new ClipImageException(name, $"image size {width}x{height} exceeds the limit of {MaxPixels} pixels (PIL raises DecompressionBombError)");
        }
    }

    private static DecodedImage DecodeCore(Stream stream, string? name)
    {
        byte[] bytes;
        try
        {
            var copy = new MemoryStream();
            stream.CopyTo(copy);
            bytes = copy.ToArray();
        }
        catch (IOException ex)
        {
            throw new ClipImageException(name, $"cannot read image: {ex.Message}", ex);
        }

        string? skiaFormat = SkiaFormatOf(bytes);
        if (skiaFormat is not null)
        {
            try
            {
                // Skia's JPEG decoder equals Pillow's on valid files only; the libjpeg-turbo shim on damaged ones too.
                return skiaFormat switch
                {
                    "JPEG" when LibJpegTurboDecoder.IsAvailable => LibJpegTurboDecoder.Decode(bytes, name),
                    "GIF" => PillowGifDecoder.Decode(bytes, name),
                    _ => SkiaImageDecoder.Decode(bytes, name, skiaFormat),
                };
            }
            catch (Exception ex) when (ex is not ClipImageException and not OperationCanceledException and not OutOfMemoryException)
            {
                throw new ClipImageException(name, $"cannot decode {skiaFormat} image: {ex.Message}", ex);
            }
        }

        return DecodeWithImageSharp(bytes, name);
    }

    /// <summary>The Pillow format name of files that Skia decodes exactly as Pillow does, from their signature; else null.</summary>
    private static string? SkiaFormatOf(ReadOnlySpan<byte> b)
    {
        if (b.Length >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        {
            return "JPEG";
        }

        if (b.Length >= 12 && b[..4].SequenceEqual("RIFF"u8) && b[8..12].SequenceEqual("WEBP"u8))
        {
            return "WEBP";
        }

        if (b.Length >= 6 && (b[..6].SequenceEqual("GIF87a"u8) || b[..6].SequenceEqual("GIF89a"u8)))
        {
            return "GIF";
        }

        return b.Length >= 2 && b[0] == (byte)'B' && b[1] == (byte)'M' ? "BMP" : null;
    }

    private static DecodedImage DecodeWithImageSharp(byte[] bytes, string? name)
    {
        // Before ImageSharp reads anything (its Identify already checks chunk CRCs): PNG chunks by Pillow's rules (a file
        // ImageSharp would judge otherwise is rebuilt with the image data Pillow uses), and truncated PNG or TIFF image
        // data is an error, as in Pillow, where ImageSharp would fill zeros.
        var (truncated, repaired) = PngCompleteness.Check(bytes);
        truncated ??= TiffCompleteness.Check(bytes);
        if (truncated is not null)
        {
            throw new ClipImageException(name, truncated);
        }

        bytes = repaired ?? bytes;
        try
        {
            IImageInfo? info = Image.Identify(DecoderConfiguration, bytes, out IImageFormat? identified);
            // A JPEG that does not start with FF D8 FF is not one to Pillow (its signature check), though ImageSharp would read it.
            if (info is null || identified is null || identified.Name == SixLabors.ImageSharp.Formats.Jpeg.JpegFormat.Instance.Name)
            {
                throw new ClipImageException(name, "unrecognised image format (supported: JPEG, PNG, WebP, GIF, BMP, TIFF, TGA, PBM)");
            }

            CheckSize(info.Width, info.Height, name);
            if (identified.Name == PngFormat.Instance.Name && info.Metadata.GetPngMetadata().ColorType == PngColorType.Palette)
            {
                bytes = PngPalettePadding.PadIfShort(bytes) ?? bytes;
            }

            using Image image = Image.Load(DecoderConfiguration, bytes, out IImageFormat format);
            return Convert(image, format.Name);
        }
        catch (ClipImageException)
        {
            throw;
        }
        catch (OperationCanceledException)
        {
            throw;
        }
        catch (Exception ex)
        {
            // ImageSharp reports corrupt data through several exception types (and malformed files can surface as
            // plain argument/index errors): all of them mean this file cannot be used.
            throw new ClipImageException(name, $"cannot decode image: {ex.Message}", ex);
        }
    }

    private static DecodedImage Convert(Image image, string format)
    {
        int w = image.Width;
        int h = image.Height;
        PngColorType? pngColor = image.Metadata.GetPngMetadata().ColorType;
        bool isPng = format == PngFormat.Instance.Name;
        switch (image)
        {
            case Image<L8> l8:
                return new DecodedImage(w, h, PilImageMode.L, Copy(l8, 1), format);
            case Image<La16> la16:
                {
                    byte[] la = Copy(la16, 2);

                    // Grayscale PNG with a tRNS colour: PIL keeps mode L and only records the transparent value.
                    return isPng && pngColor == PngColorType.Grayscale
                        ? new DecodedImage(w, h, PilImageMode.L, Strided(la, 2, 0), format)
                        : new DecodedImage(w, h, PilImageMode.La, la, format);
                }

            case Image<L16> l16:
                return new DecodedImage(w, h, PilImageMode.I16, Copy16(l16), format);
            case Image<La32> la32:
                return ConvertLa32(la32, isPng && pngColor == PngColorType.Grayscale, format);
            case Image<Rgb24> rgb24:
                return new DecodedImage(w, h, PilImageMode.Rgb, Copy(rgb24, 3), format);
            case Image<Rgba32> rgba32:
                {
                    byte[] rgba = Copy(rgba32, 4);

                    // RGB PNG with a tRNS colour stays mode RGB in PIL.
                    return isPng && pngColor == PngColorType.Rgb
                        ? new DecodedImage(w, h, PilImageMode.Rgb, DropAlpha(rgba), format)
                        : new DecodedImage(w, h, PilImageMode.Rgba, rgba, format);
                }

            case Image<Rgb48> rgb48:
                return new DecodedImage(w, h, PilImageMode.Rgb, HighBytes(rgb48), format);
            case Image<Rgba64> rgba64:
                {
                    byte[] rgba = HighBytes(rgba64);
                    return isPng && pngColor == PngColorType.Rgb
                        ? new DecodedImage(w, h, PilImageMode.Rgb, DropAlpha(rgba), format)
                        : new DecodedImage(w, h, PilImageMode.Rgba, rgba, format);
                }

            default:
                {
                    // Other layouts (BGR BMPs, float TIFFs, ...): let ImageSharp convert to 8-bit RGBA.
                    bool hasAlpha = image.PixelType.AlphaRepresentation is { } alpha && alpha != PixelAlphaRepresentation.None;
                    using Image<Rgba32> converted = image.CloneAs<Rgba32>();
                    byte[] rgba = Copy(converted, 4);
                    return hasAlpha
                        ? new DecodedImage(w, h, PilImageMode.Rgba, rgba, format)
                        : new DecodedImage(w, h, PilImageMode.Rgb, DropAlpha(rgba), format);
                }
        }
    }

    private static byte[] Copy<TPixel>(Image<TPixel> image, int bytesPerPixel)
        where TPixel : unmanaged, IPixel<TPixel>
    {
        var bytes = new byte[(long)image.Width * image.Height * bytesPerPixel];
        image.Frames.RootFrame.CopyPixelDataTo(bytes);
        return bytes;
    }

    private static TPixel[] CopyPixels<TPixel>(Image<TPixel> image)
        where TPixel : unmanaged, IPixel<TPixel>
    {
        var pixels = new TPixel[(long)image.Width * image.Height];
        image.Frames.RootFrame.CopyPixelDataTo(pixels);
        return pixels;
    }

    private static byte[] Copy16(Image<L16> image)
    {
        L16[] pixels = CopyPixels(image);
        var bytes = new byte[pixels.LongLength * 2];
        for (long i = 0; i < pixels.LongLength; i++)
        {
            ushort v = pixels[i].PackedValue;
            bytes[i * 2] = (byte)v;
            bytes[(i * 2) + 1] = (byte)(v >> 8);
        }

        return bytes;
    }

    private static DecodedImage ConvertLa32(Image<La32> image, bool grayscaleWithTransparentColour, string format)
    {
        La32[] pixels = CopyPixels(image);
        if (grayscaleWithTransparentColour)
        {
            // 16-bit grayscale PNG with tRNS: PIL keeps "I;16".
            var bytes = new byte[pixels.LongLength * 2];
            for (long i = 0; i < pixels.LongLength; i++)
            {
                bytes[i * 2] = (byte)pixels[i].L;
                bytes[(i * 2) + 1] = (byte)(pixels[i].L >> 8);
            }

            return new DecodedImage(image.Width, image.Height, PilImageMode.I16, bytes, format);
        }

        // 16-bit gray + alpha: PIL's PNG plugin opens it as RGBA with raw mode "LA;16B" (high bytes, L replicated).
        var rgba = new byte[pixels.LongLength * 4];
        for (long i = 0; i < pixels.LongLength; i++)
        {
            byte l = (byte)(pixels[i].L >> 8);
            rgba[i * 4] = l;
            rgba[(i * 4) + 1] = l;
            rgba[(i * 4) + 2] = l;
            rgba[(i * 4) + 3] = (byte)(pixels[i].A >> 8);
        }

        return new DecodedImage(image.Width, image.Height, PilImageMode.Rgba, rgba, format);
    }

    private static byte[] HighBytes(Image<Rgb48> image)
    {
        Rgb48[] pixels = CopyPixels(image);
        var bytes = new byte[pixels.LongLength * 3];
        for (long i = 0; i < pixels.LongLength; i++)
        {
            bytes[i * 3] = (byte)(pixels[i].R >> 8);
            bytes[(i * 3) + 1] = (byte)(pixels[i].G >> 8);
            bytes[(i * 3) + 2] = (byte)(pixels[i].B >> 8);
        }

        return bytes;
    }

    private static byte[] HighBytes(Image<Rgba64> image)
    {
        Rgba64[] pixels = CopyPixels(image);
        var bytes = new byte[pixels.LongLength * 4];
        for (long i = 0; i < pixels.LongLength; i++)
        {
            bytes[i * 4] = (byte)(pixels[i].R >> 8);
            bytes[(i * 4) + 1] = (byte)(pixels[i].G >> 8);
            bytes[(i * 4) + 2] = (byte)(pixels[i].B >> 8);
            bytes[(i * 4) + 3] = (byte)(pixels[i].A >> 8);
        }

        return bytes;
    }

    private static byte[] Strided(byte[] data, int stride, int offset)
    {
        var result = new byte[data.LongLength / stride];
        for (long i = 0; i < result.LongLength; i++)
        {
            result[i] = data[(i * stride) + offset];
        }

        return result;
    }

    private static byte[] DropAlpha(byte[] rgba)
    {
        var rgb = new byte[rgba.LongLength / 4 * 3];
        for (long i = 0; i < rgba.LongLength / 4; i++)
        {
            rgb[i * 3] = rgba[i * 4];
            rgb[(i * 3) + 1] = rgba[(i * 4) + 1];
            rgb[(i * 3) + 2] = rgba[(i * 4) + 2];
        }

        return rgb;
    }
}
