namespace LlavaInterp.Models.Clip;

/// <summary>
/// An 8-bit RGB image stored row-major as interleaved bytes (HWC: <c>Pixels[(y * Width + x) * 3 + c]</c>),
/// the layout of <c>np.array(pil_image)</c> for a mode "RGB" image.
/// </summary>
public sealed class RgbImage
{
    /// <summary>Creates an image over <paramref name="pixels"/> (not copied).</summary>
    /// <param name="width">Width in pixels (≥ 1).</param>
    /// <param name="height">Height in pixels (≥ 1).</param>
    /// <param name="pixels">HWC bytes, exactly width·height·3 of them.</param>
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        if ((long)width * height * 3 != pixels.LongLength)
        {
            throw new ArgumentException($"expected {(long)width * height * 3} bytes for {width}x{height} RGB, got {pixels.LongLength}", nameof(pixels));
        }

        Width = width;
        Height = height;
        Pixels = pixels;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>HWC interleaved RGB bytes.</summary>
    public byte[] Pixels { get; }

    /// <summary>The byte of channel <paramref name="channel"/> (0 = R, 1 = G, 2 = B) at (<paramref name="x"/>, <paramref name="y"/>).</summary>
    /// <param name="x">Column.</param>
    /// <param name="y">Row.</param>
    /// <param name="channel">Channel index 0..2.</param>
    public byte this[int x, int y, int channel] => Pixels[(((long)y * Width) + x) * 3 + channel];

    /// <summary>A deep copy.</summary>
    public RgbImage Clone() => new(Width, Height, (byte[])Pixels.Clone());
}
