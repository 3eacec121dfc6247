namespace LlavaInterp.Models.Clip;

/// <summary>The PIL image mode a decoded image corresponds to.</summary>
public enum PilImageMode
{
    /// <summary>8-bit grayscale ("L"), 1 band.</summary>
    L,

    /// <summary>8-bit grayscale with alpha ("LA"), 2 bands.</summary>
    La,

    /// <summary>8-bit RGB ("RGB"), 3 bands.</summary>
    Rgb,

    /// <summary>8-bit RGB with alpha ("RGBA"), 4 bands.</summary>
    Rgba,

    /// <summary>16-bit unsigned grayscale ("I;16"), 1 band stored as 2 little-endian bytes per pixel.</summary>
    I16,
}

/// <summary>
/// An image as PIL's <c>Image.open</c> holds it, before <c>convert("RGB")</c>: row-major interleaved bands
/// (<c>np.array(img)</c> layout). Palette images are already expanded through their palette (to RGBA when the file
/// carries transparency, else RGB); PIL would report mode "P" but yields the same RGB after conversion.
/// </summary>
public sealed class DecodedImage
{
    /// <summary>Creates a decoded image over <paramref name="data"/> (not copied).</summary>
    /// <param name="width">Width in pixels (≥ 1).</param>
    /// <param name="height">Height in pixels (≥ 1).</param>
    /// <param name="mode">The PIL mode, which fixes the number of bands and bytes per sample.</param>
    /// <param name="data">Interleaved samples: width·height·bands bytes (two per sample for <see cref="PilImageMode.I16"/>).</param>
    /// <param name="format">The container format (for example "PNG"), or null when unknown.</param>
    public DecodedImage(int width, int height, PilImageMode mode, byte[] data, string? format = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        long expected = (long)width * height * BandsOf(mode) * (mode == PilImageMode.I16 ? 2 : 1);
        if (expected != data.LongLength)
        {
            throw new ArgumentException($"expected {expected} bytes for a {width}x{height} {mode} image, got {data.LongLength}", nameof(data));
        }

        Width = width;
        Height = height;
        Mode = mode;
        Data = data;
        Format = format;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The PIL mode.</summary>
    public PilImageMode Mode { get; }

    /// <summary>Bands per pixel (1 for L and I;16, 2 for LA, 3 for RGB, 4 for RGBA).</summary>
    public int Bands => BandsOf(Mode);

    /// <summary>Interleaved sample bytes (little-endian 16-bit samples for <see cref="PilImageMode.I16"/>).</summary>
    public byte[] Data { get; }

    /// <summary>The container format name reported by the decoder (for example "PNG"), or null.</summary>
    public string? Format { get; }

    /// <summary>The sample of band <paramref name="band"/> at (<paramref name="x"/>, <paramref name="y"/>).</summary>
    /// <param name="x">Column.</param>
    /// <param name="y">Row.</param>
    /// <param name="band">Band index, 0-based.</param>
    public int GetSample(int x, int y, int band)
    {
        long index = ((((long)y * Width) + x) * Bands) + band;
        return Mode == PilImageMode.I16 ? Data[index * 2] | (Data[(index * 2) + 1] << 8) : Data[index];
    }

    /// <summary>
    /// PIL's <c>convert("RGB")</c>: alpha is dropped without compositing (the colour under transparent pixels is
    /// kept), grayscale is replicated to R = G = B, and 16-bit grayscale ("I;16") is clipped to 255 (not scaled),
    /// as Pillow's I;16 → RGB conversion does.
    /// </summary>
    public RgbImage ToRgb()
    {
        long pixels = (long)Width * Height;
        var rgb = new byte[pixels * 3];
        switch (Mode)
        {
            case PilImageMode.Rgb:
                Buffer.BlockCopy(Data, 0, rgb, 0, rgb.Length);
                break;
            case PilImageMode.Rgba:
                for (long i = 0; i < pixels; i++)
                {
                    rgb[i * 3] = Data[i * 4];
                    rgb[(i * 3) + 1] = Data[(i * 4) + 1];
                    rgb[(i * 3) + 2] = Data[(i * 4) + 2];
                }

                break;
            case PilImageMode.L:
            case PilImageMode.La:
                int stride = Bands;
                for (long i = 0; i < pixels; i++)
                {
                    byte v = Data[i * stride];
                    rgb[i * 3] = v;
                    rgb[(i * 3) + 1] = v;
                    rgb[(i * 3) + 2] = v;
                }

                break;
            case PilImageMode.I16:
                for (long i = 0; i < pixels; i++)
                {
                    // Pillow's I16_RGB: any value with a non-zero high byte saturates to 255.
                    byte v = Data[(i * 2) + 1] == 0 ? Data[i * 2] : (byte)255;
                    rgb[i * 3] = v;
                    rgb[(i * 3) + 1] = v;
                    rgb[(i * 3) + 2] = v;
                }

                break;
            default:
                throw new NotSupportedException($"mode {Mode}");
        }

        return new RgbImage(Width, Height, rgb);
    }

    private static int BandsOf(PilImageMode mode) => mode switch
    {
        PilImageMode.L => 1,
        PilImageMode.La => 2,
        PilImageMode.Rgb => 3,
        PilImageMode.Rgba => 4,
        PilImageMode.I16 => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown mode"),
    };
}
