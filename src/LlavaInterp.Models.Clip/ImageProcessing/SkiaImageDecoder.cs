using System.Runtime.InteropServices;
using SkiaSharp;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// JPEG (where the libjpeg-turbo shim is missing), WebP and BMP through Skia's codecs, which wrap libjpeg-turbo and libwebp with their default settings
/// (integer ISLOW IDCT, "fancy" chroma upsampling, fixed-point YCbCr tables), as Pillow does: the result equals
/// Pillow's <c>Image.open(p).convert("RGB")</c> byte for byte on the parity corpus (tests/fixtures/pillow-corpus).
/// </summary>
/// <remarks>
/// Pixels are read as unpremultiplied RGBA with no destination colour space, so no ICC transform is applied, and
/// EXIF orientation is ignored (Pillow's <c>open</c> applies neither). One-channel JPEGs are read as Gray8 (mode L).
/// Skia reports missing or damaged data as a result code rather than filling pixels, and every code other than
/// success is turned into an error, as Pillow raises for truncated files.
/// </remarks>
internal static class SkiaImageDecoder
{
    /// <summary>Decodes <paramref name="bytes"/> (already identified as <paramref name="format"/>).</summary>
    public static DecodedImage Decode(byte[] bytes, string? name, string format)
    {
        using SKData data = SKData.CreateCopy(bytes);
        using SKCodec? codec = SKCodec.Create(data)
            ?? throw new ClipImageException(name, $"cannot decode image: not a valid {format} file");

        // The header alone gives the size: refuse bombs before any pixel memory is allocated.
        SKImageInfo info = codec.Info;
        PilImageDecoder.CheckSize(info.Width, info.Height, name);

        bool gray = info.ColorType == SKColorType.Gray8;
        int bands = gray ? 1 : 4;
        var target = new SKImageInfo(
            info.Width,
            info.Height,
            gray ? SKColorType.Gray8 : SKColorType.Rgba8888,
            gray ? SKAlphaType.Opaque : SKAlphaType.Unpremul);
        var pixels = new byte[(long)info.Width * info.Height * bands];
        SKCodecResult result;
        GCHandle pin = GCHandle.Alloc(pixels, GCHandleType.Pinned);
        try
        {
            // Frame 0 only: Pillow's open shows the first frame of an animation.
            result = codec.GetPixels(target, pin.AddrOfPinnedObject(), info.Width * bands, new SKCodecOptions(0));
        }
        finally
        {
            pin.Free();
        }

        if (result != SKCodecResult.Success)
        {
            string why = result switch
            {
                SKCodecResult.IncompleteInput => "the file is truncated",
                SKCodecResult.ErrorInInput or SKCodecResult.InvalidInput => "the image data are corrupt",
                _ => $"the decoder reported {result}",
            };
            throw new ClipImageException(name, $"cannot decode {format} image: {why}");
        }

        if (gray)
        {
            return new DecodedImage(info.Width, info.Height, PilImageMode.L, pixels, format);
        }

        return info.AlphaType == SKAlphaType.Opaque
            ? new DecodedImage(info.Width, info.Height, PilImageMode.Rgb, DropAlpha(pixels), format)
            : new DecodedImage(info.Width, info.Height, PilImageMode.Rgba, pixels, format);
    }

    private static byte[] DropAlpha(byte[] rgba)
    {
        var rgb = new byte[rgba.LongLength / 4 * 3];
        for (long i = 0, j = 0; i < rgba.LongLength; i += 4, j += 3)
        {
            rgb[j] = rgba[i];
            rgb[j + 1] = rgba[i + 1];
            rgb[j + 2] = rgba[i + 2];
        }

        return rgb;
    }
}
