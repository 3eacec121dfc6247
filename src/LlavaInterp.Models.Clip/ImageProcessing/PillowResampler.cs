namespace LlavaInterp.Models.Clip;

/// <summary>
/// Bit-exact reimplementation of Pillow's <c>Image.resize(size, filter)</c> for 8-bit images (libImaging
/// <c>Resample.c</c>, Pillow 11; no <c>box</c>, <c>reducing_gap=None</c> so no pre-reduction): a separable
/// convolution whose per-output-pixel coefficient windows are computed in double precision, normalised to sum 1,
/// converted to 22-bit fixed point, and applied horizontally first (each row rounded and clamped to a byte) and then
/// vertically. A pass whose dimension is unchanged is skipped. <see cref="PilResampling.Nearest"/> (an affine
/// transform in Pillow, not a convolution) is not supported.
/// </summary>
public static class PillowResampler
{
    // Pillow: 32 bits minus 8 for the pixel value minus 2 for overshoot of the filter's negative lobes.
    private const int PrecisionBits = 32 - 8 - 2;

    /// <summary>Resizes an RGB image to <paramref name="width"/>×<paramref name="height"/> as Pillow does.</summary>
    /// <param name="image">The source image.</param>
    /// <param name="width">Output width (≥ 1).</param>
    /// <param name="height">Output height (≥ 1).</param>
    /// <param name="filter">The resampling filter.</param>
    /// <returns>A new image (a copy when the size is unchanged).</returns>
    /// <exception cref="NotSupportedException"><paramref name="filter"/> is <see cref="PilResampling.Nearest"/> or unknown.</exception>
    public static RgbImage Resize(RgbImage image, int width, int height, PilResampling filter)
    {
        ArgumentNullException.ThrowIfNull(image);
        byte[] pixels = Resize(image.Pixels, image.Width, image.Height, 3, width, height, filter);
        return new RgbImage(width, height, pixels);
    }

    /// <summary>
    /// Resizes interleaved 8-bit pixels with <paramref name="channels"/> bands per pixel, each band independently
    /// (Pillow's L, RGB and RGBA code paths; for RGBA Pillow itself premultiplies alpha first, which this does not do).
    /// </summary>
    /// <param name="pixels">Row-major interleaved bytes, width·height·channels of them.</param>
    /// <param name="width">Source width.</param>
    /// <param name="height">Source height.</param>
    /// <param name="channels">Bands per pixel (1..4).</param>
    /// <param name="outWidth">Output width (≥ 1).</param>
    /// <param name="outHeight">Output height (≥ 1).</param>
    /// <param name="filter">The resampling filter.</param>
    /// <returns>The resized bytes, outWidth·outHeight·channels of them.</returns>
    /// <exception cref="NotSupportedException"><paramref name="filter"/> is <see cref="PilResampling.Nearest"/> or unknown.</exception>
    public static byte[] Resize(byte[] pixels, int width, int height, int channels, int outWidth, int outHeight, PilResampling filter)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(channels, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(channels, 4);
        ArgumentOutOfRangeException.ThrowIfLessThan(outWidth, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(outHeight, 1);
        if ((long)width * height * channels != pixels.LongLength)
        {
            throw new ArgumentException($"expected {(long)width * height * channels} bytes, got {pixels.LongLength}", nameof(pixels));
        }

        (Func<double, double> kernel, double support) = GetFilter(filter);

        byte[] current = pixels;
        int currentWidth = width;
        if (outWidth != width)
        {
            Coefficients h = Precompute(width, outWidth, kernel, support);
            current = ResampleHorizontal(current, currentWidth, height, channels, outWidth, h);
            currentWidth = outWidth;
        }

        if (outHeight != height)
        {
            Coefficients v = Precompute(height, outHeight, kernel, support);
            current = ResampleVertical(current, currentWidth, channels, outHeight, v);
        }

        return ReferenceEquals(current, pixels) ? (byte[])pixels.Clone() : current;
    }

    private static (Func<double, double> Kernel, double Support) GetFilter(PilResampling filter) => filter switch
    {
        PilResampling.Box => (BoxKernel, 0.5),
        PilResampling.Bilinear => (BilinearKernel, 1.0),
        PilResampling.Hamming => (HammingKernel, 1.0),
        PilResampling.Bicubic => (BicubicKernel, 2.0),
        PilResampling.Lanczos => (LanczosKernel, 3.0),
        PilResampling.Nearest => throw new NotSupportedException("resample 0 (NEAREST) is not supported: only Pillow's convolution filters (1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING) are implemented"),
        _ => throw new NotSupportedException($"unknown resample filter {(int)filter}: expected 1..5 (Pillow LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING)"),
    };

    // The kernels keep Pillow's exact expression order so the doubles round identically.
    private static double BoxKernel(double x) => x > -0.5 && x <= 0.5 ? 1.0 : 0.0;

    private static double BilinearKernel(double x)
    {
        if (x < 0.0)
        {
            x = -x;
        }

        return x < 1.0 ? 1.0 - x : 0.0;
    }

    private static double HammingKernel(double x)
    {
        if (x < 0.0)
        {
            x = -x;
        }

        if (x == 0.0)
        {
            return 1.0;
        }

        if (x >= 1.0)
        {
            return 0.0;
        }

        x *= Math.PI;

        // Pillow writes the window constants as C floats (0.54f, 0.46f) that are promoted to double.
        return Math.Sin(x) / x * ((double)0.54f + ((double)0.46f * Math.Cos(x)));
    }

    private static double BicubicKernel(double x)
    {
        const double a = -0.5;
        if (x < 0.0)
        {
            x = -x;
        }

        if (x < 1.0)
        {
            return ((((a + 2.0) * x) - (a + 3.0)) * x * x) + 1;
        }

        if (x < 2.0)
        {
            return ((((((x - 5) * x) + 8) * x) - 4) * a);
        }

        return 0.0;
    }

    private static double Sinc(double x)
    {
        if (x == 0.0)
        {
            return 1.0;
        }

        x *= Math.PI;
        return Math.Sin(x) / x;
    }

    private static double LanczosKernel(double x) => -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0;

    /// <summary>Per output pixel: first source index, number of taps and fixed-point weights (ksize per pixel).</summary>
    private sealed record Coefficients(int KSize, int[] Start, int[] Count, int[] Weights);

    private static Coefficients Precompute(int inSize, int outSize, Func<double, double> kernel, double filterSupport)
    {
        // Pillow passes the box edges as C floats: scale = (double)(in1 - in0) / outSize with in0 = 0, in1 = inSize.
        double scale = (double)(float)inSize / outSize;
        double filterScale = scale < 1.0 ? 1.0 : scale;

        // When shrinking, the kernel is stretched by the scale factor so every source pixel contributes.
        double support = filterSupport * filterScale;
        int ksize = ((int)Math.Ceiling(support) * 2) + 1;
        if ((long)outSize * ksize > int.MaxValue / sizeof(double))
        {
            throw new ArgumentOutOfRangeException(nameof(outSize), $"resize to {outSize} from {inSize} needs too many filter coefficients");
        }

        var start = new int[outSize];
        var count = new int[outSize];
        var weights = new int[outSize * ksize];
        var k = new double[ksize];
        double ss = 1.0 / filterScale;
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;

            // C (int) casts truncate toward zero, as do C# casts; the results are then clamped to the image.
            int xmin = (int)(center - support + 0.5);
            if (xmin < 0)
            {
                xmin = 0;
            }

            int xmax = (int)(center + support + 0.5);
            if (xmax > inSize)
            {
                xmax = inSize;
            }

            xmax -= xmin;
            double ww = 0.0;
            for (int x = 0; x < xmax; x++)
            {
                double w = kernel(((x + xmin) - center + 0.5) * ss);
                k[x] = w;
                ww += w;
            }

            int row = xx * ksize;
            for (int x = 0; x < xmax; x++)
            {
                double normalised = ww != 0.0 ? k[x] / ww : k[x];

                // Round half away from zero to fixed point, as normalize_coeffs_8bpc does.
                weights[row + x] = normalised < 0
                    ? (int)(-0.5 + (normalised * (1 << PrecisionBits)))
                    : (int)(0.5 + (normalised * (1 << PrecisionBits)));
            }

            start[xx] = xmin;
            count[xx] = xmax;
        }

        return new Coefficients(ksize, start, count, weights);
    }

    // Pillow's clip8: the accumulator already holds the +0.5 rounding term; an arithmetic shift then a clamp.
    private static byte Clip8(int accumulator)
    {
        int v = accumulator >> PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    private static byte[] ResampleHorizontal(byte[] src, int width, int height, int channels, int outWidth, Coefficients c)
    {
        var dst = new byte[(long)outWidth * height * channels];
        Span<int> acc = stackalloc int[4];
        for (int y = 0; y < height; y++)
        {
            long srcRow = (long)y * width * channels;
            long dstRow = (long)y * outWidth * channels;
            for (int xx = 0; xx < outWidth; xx++)
            {
                int xmin = c.Start[xx];
                int n = c.Count[xx];
                int kOffset = xx * c.KSize;
                acc.Fill(1 << (PrecisionBits - 1));
                for (int x = 0; x < n; x++)
                {
                    int w = c.Weights[kOffset + x];
                    long p = srcRow + ((long)(x + xmin) * channels);
                    for (int ch = 0; ch < channels; ch++)
                    {
                        // Unchecked int arithmetic like Pillow's INT32 accumulator.
                        acc[ch] += src[p + ch] * w;
                    }
                }

                long o = dstRow + ((long)xx * channels);
                for (int ch = 0; ch < channels; ch++)
                {
                    dst[o + ch] = Clip8(acc[ch]);
                }
            }
        }

        return dst;
    }

    private static byte[] ResampleVertical(byte[] src, int width, int channels, int outHeight, Coefficients c)
    {
        int rowLength = width * channels;
        var dst = new byte[(long)rowLength * outHeight];
        var acc = new int[rowLength];
        for (int yy = 0; yy < outHeight; yy++)
        {
            int ymin = c.Start[yy];
            int n = c.Count[yy];
            int kOffset = yy * c.KSize;
            Array.Fill(acc, 1 << (PrecisionBits - 1));

            // Row-at-a-time accumulation: the same integer sums as Pillow's per-pixel loop, in the same order of y.
            for (int y = 0; y < n; y++)
            {
                int w = c.Weights[kOffset + y];
                long srcRow = (long)(y + ymin) * rowLength;
                for (int i = 0; i < rowLength; i++)
                {
                    acc[i] += src[srcRow + i] * w;
                }
            }

            long dstRow = (long)yy * rowLength;
            for (int i = 0; i < rowLength; i++)
            {
                dst[dstRow + i] = Clip8(acc[i]);
            }
        }

        return dst;
    }
}
