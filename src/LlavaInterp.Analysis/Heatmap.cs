using LlavaInterp.IO;
using LlavaInterp.Sae;
using LlavaInterp.Models.Clip;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Analysis;

/// <summary>Colour scales for heatmaps (value 0 → first colour, 1 → last).</summary>
public enum Colormap
{
    /// <summary>Blue → cyan → yellow → red (matplotlib "jet").</summary>
    Jet,

    /// <summary>Dark purple → teal → yellow (matplotlib "viridis", piecewise linear).</summary>
    Viridis,

    /// <summary>Black → red → yellow → white (matplotlib "hot").</summary>
    Hot,

    /// <summary>Black → white.</summary>
    Gray,
}

/// <summary>
/// Renders spatial feature maps (<see cref="SpatialMap"/>) over the processed image as PNG files: the map is upsampled
/// bilinearly (half-pixel centres, like <c>F.interpolate(align_corners=False)</c>) to the image size, scaled to 0..1
/// between its minimum and maximum (or the given range), coloured, and blended with constant
/// <c>alpha</c>: <c>out = (1 - alpha)·image + alpha·colour</c>. Files are written to a temporary file in the same folder
/// and then moved into place, so a failed render never leaves a partial PNG.
/// </summary>
public static class Heatmap
{
    private static readonly (double T, byte R, byte G, byte B)[] ViridisStops =
    [
        (0.000, 68, 1, 84), (0.125, 71, 44, 122), (0.250, 59, 81, 139), (0.375, 44, 113, 142), (0.500, 33, 144, 141),
        (0.625, 39, 173, 129), (0.750, 92, 200, 99), (0.875, 170, 220, 50), (1.000, 253, 231, 37),
    ];

    /// <summary>Renders <paramref name="map"/> [gridH, gridW] over an RGB image and writes a PNG of the image's size.</summary>
    /// <param name="image">The processed image (e.g. the 336×336 centre crop CLIP saw).</param>
    /// <param name="map">The feature map [gridH, gridW].</param>
    /// <param name="outputPath">The PNG to write (replaced if it exists).</param>
    /// <param name="colormap">Colour scale.</param>
    /// <param name="alpha">Weight of the colour, 0..1.</param>
    /// <param name="min">Value shown as 0; null is the map's minimum.</param>
    /// <param name="max">Value shown as 1; null is the map's maximum.</param>
    /// <exception cref="ArgumentException">The map is not 2-D or alpha is outside 0..1.</exception>
    public static void Render(Image<Rgb24> image, Tensor map, string outputPath, Colormap colormap = Colormap.Jet, double alpha = 0.5, double? min = null, double? max = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        var rgb = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(rgb);
        Render(image.Width, image.Height, rgb, map, outputPath, colormap, alpha, min, max);
    }

    /// <summary>Renders over the processor's RGB image (e.g. the centre crop CLIP saw) and writes a PNG of its size.</summary>
    /// <exception cref="ArgumentException">The map is not 2-D or alpha is outside 0..1.</exception>
    public static void Render(RgbImage image, Tensor map, string outputPath, Colormap colormap = Colormap.Jet, double alpha = 0.5, double? min = null, double? max = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        Render(image.Width, image.Height, image.Pixels, map, outputPath, colormap, alpha, min, max);
    }

    /// <summary>Renders over raw RGB bytes (row-major, 3 bytes per pixel).</summary>
    /// <exception cref="ArgumentException">Wrong byte count, a map that is not 2-D, or alpha outside 0..1.</exception>
    public static void Render(int width, int height, ReadOnlySpan<byte> rgb, Tensor map, string outputPath, Colormap colormap = Colormap.Jet, double alpha = 0.5, double? min = null, double? max = null)
    {
        ArgumentNullException.ThrowIfNull(map);
        ArgumentNullException.ThrowIfNull(outputPath);
        var pixels = Blend(width, height, rgb, map, colormap, alpha, min, max);
        WritePng(width, height, pixels, outputPath);
    }

    /// <summary>Renders over an image tensor [H, W, 3] with values 0..255 (e.g. the processor's centre crop).</summary>
    /// <exception cref="ArgumentException">The image is not [H, W, 3], the map is not 2-D, or alpha is outside 0..1.</exception>
    public static void Render(Tensor imageHwc, Tensor map, string outputPath, Colormap colormap = Colormap.Jet, double alpha = 0.5, double? min = null, double? max = null)
    {
        var (w, h, rgb) = Bytes(imageHwc);
        Render(w, h, rgb, map, outputPath, colormap, alpha, min, max);
    }

    /// <summary>
    /// One PNG per feature: <c>{outputDirectory}/{prefix}{feature}.png</c> from maps [features, gridH, gridW]
    /// (<see cref="SpatialMap.FromActivations(Tensor, IEnumerable{long}, IReadOnlyList{int}, int, int)"/>).
    /// Each map is scaled by its own range unless <paramref name="min"/>/<paramref name="max"/> are given.
    /// </summary>
    /// <returns>The files written, in feature order.</returns>
    /// <exception cref="ArgumentException">Map count and feature count differ, or a bad image/map.</exception>
    public static IReadOnlyList<string> RenderEach(Tensor imageHwc, Tensor maps, IReadOnlyList<int> features, string outputDirectory, string prefix = "feature_", Colormap colormap = Colormap.Jet, double alpha = 0.5, double? min = null, double? max = null)
    {
        ArgumentNullException.ThrowIfNull(maps);
        ArgumentNullException.ThrowIfNull(features);
        ArgumentNullException.ThrowIfNull(outputDirectory);
        if (maps.dim() != 3 || maps.shape[0] != features.Count)
        {
            throw new ArgumentException($"Expected maps [{features.Count}, gridH, gridW] for {features.Count} features, got [{string.Join(", ", maps.shape)}].", nameof(maps));
        }

        var (w, h, rgb) = Bytes(imageHwc);
        Directory.CreateDirectory(outputDirectory);
        var paths = new List<string>();
        for (int i = 0; i < features.Count; i++)
        {
            using var map = maps[i];
            string path = Path.Combine(outputDirectory, $"{prefix}{features[i]}.png");
            Render(w, h, rgb, map, path, colormap, alpha, min, max);
            paths.Add(path);
        }

        return paths;
    }

    /// <summary>
    /// One PNG with a tile per map (row-major, <paramref name="columns"/> per row; 0 picks ⌈√n⌉), tiles separated by
    /// <paramref name="gap"/> white pixels. Each map is scaled by its own range unless <paramref name="min"/>/<paramref name="max"/> are given.
    /// </summary>
    /// <exception cref="ArgumentException">Maps are not [n, gridH, gridW], or a bad image.</exception>
    public static void RenderGrid(Tensor imageHwc, Tensor maps, string outputPath, int columns = 0, int gap = 2, Colormap colormap = Colormap.Jet, double alpha = 0.5, double? min = null, double? max = null)
    {
        ArgumentNullException.ThrowIfNull(maps);
        ArgumentNullException.ThrowIfNull(outputPath);
        ArgumentOutOfRangeException.ThrowIfNegative(columns);
        ArgumentOutOfRangeException.ThrowIfNegative(gap);
        if (maps.dim() != 3 || maps.shape[0] == 0)
        {
            throw new ArgumentException($"Expected maps [n, gridH, gridW], got [{string.Join(", ", maps.shape)}].", nameof(maps));
        }

        var (w, h, rgb) = Bytes(imageHwc);
        int n = (int)maps.shape[0];
        int cols = columns > 0 ? Math.Min(columns, n) : (int)Math.Ceiling(Math.Sqrt(n));
        int rows = (n + cols - 1) / cols;
        int outW = (cols * w) + ((cols - 1) * gap);
        int outH = (rows * h) + ((rows - 1) * gap);
        var canvas = new byte[outW * outH * 3];
        Array.Fill(canvas, (byte)255);
        for (int i = 0; i < n; i++)
        {
            using var map = maps[i];
            var tile = Blend(w, h, rgb, map, colormap, alpha, min, max);
            int x0 = (i % cols) * (w + gap);
            int y0 = (i / cols) * (h + gap);
            for (int y = 0; y < h; y++)
            {
                Array.Copy(tile, y * w * 3, canvas, (((y0 + y) * outW) + x0) * 3, w * 3);
            }
        }

        WritePng(outW, outH, canvas, outputPath);
    }

    /// <summary>The colour of value <paramref name="t"/> (clamped to 0..1).</summary>
    public static (byte R, byte G, byte B) Color(Colormap colormap, double t)
    {
        t = double.IsNaN(t) ? 0 : Math.Clamp(t, 0, 1);
        switch (colormap)
        {
            case Colormap.Jet:
                return (Unit(1.5 - Math.Abs((4 * t) - 3)), Unit(1.5 - Math.Abs((4 * t) - 2)), Unit(1.5 - Math.Abs((4 * t) - 1)));
            case Colormap.Hot:
                return (Unit(3 * t), Unit((3 * t) - 1), Unit((3 * t) - 2));
            case Colormap.Gray:
                return (Unit(t), Unit(t), Unit(t));
            case Colormap.Viridis:
                for (int i = 1; i < ViridisStops.Length; i++)
                {
                    var (t1, r1, g1, b1) = ViridisStops[i];
                    if (t <= t1)
                    {
                        var (t0, r0, g0, b0) = ViridisStops[i - 1];
                        double u = (t - t0) / (t1 - t0);
                        return (Lerp(r0, r1, u), Lerp(g0, g1, u), Lerp(b0, b1, u));
                    }
                }

                return (253, 231, 37);
            default:
                throw new ArgumentOutOfRangeException(nameof(colormap), colormap, "Unknown colormap.");
        }
    }

    /// <summary>
    /// Upsamples a map [gridH, gridW] bilinearly to [height, width] (half-pixel centres, edges clamped) as float64.
    /// The caller owns the result.
    /// </summary>
    public static Tensor Upsample(Tensor map, int height, int width)
    {
        ArgumentNullException.ThrowIfNull(map);
        if (map.dim() != 2)
        {
            throw new ArgumentException($"Expected a map [gridH, gridW], got [{string.Join(", ", map.shape)}].", nameof(map));
        }

        using var scope = torch.NewDisposeScope();
        var m = map.detach().to(ScalarType.Float64).cpu().unsqueeze(0).unsqueeze(0);
        var up = torch.nn.functional.interpolate(m, size: [height, width], mode: InterpolationMode.Bilinear, align_corners: false);
        return up[0, 0].contiguous().MoveToOuterDisposeScope();
    }

    internal static byte[] Blend(int width, int height, ReadOnlySpan<byte> rgb, Tensor map, Colormap colormap, double alpha, double? min, double? max)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        if (rgb.Length != width * height * 3)
        {
            throw new ArgumentException($"Expected {width}×{height}×3 = {width * height * 3} RGB bytes, got {rgb.Length}.", nameof(rgb));
        }

        if (!(alpha >= 0 && alpha <= 1))
        {
            throw new ArgumentException($"alpha must be in 0..1, got {alpha}.", nameof(alpha));
        }

        double[] values;
        using (var up = Upsample(map, height, width))
        {
            values = up.data<double>().ToArray();
        }

        double lo = min ?? values.Min();
        double hi = max ?? values.Max();
        double range = hi - lo;
        var result = new byte[rgb.Length];
        for (int i = 0; i < values.Length; i++)
        {
            double t = range > 0 ? (values[i] - lo) / range : 0;
            var (r, g, b) = Color(colormap, t);
            result[(3 * i) + 0] = Mix(rgb[(3 * i) + 0], r, alpha);
            result[(3 * i) + 1] = Mix(rgb[(3 * i) + 1], g, alpha);
            result[(3 * i) + 2] = Mix(rgb[(3 * i) + 2], b, alpha);
        }

        return result;
    }

    private static void WritePng(int width, int height, byte[] rgb, string outputPath)
    {
        string full = Path.GetFullPath(outputPath);
        string directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        using var image = SixLabors.ImageSharp.Image.LoadPixelData<Rgb24>(rgb, width, height);
        AtomicFile.Write(full, stream => image.SaveAsPng(stream));
    }

    private static (int Width, int Height, byte[] Rgb) Bytes(Tensor imageHwc)
    {
        ArgumentNullException.ThrowIfNull(imageHwc);
        if (imageHwc.dim() != 3 || imageHwc.shape[2] != 3)
        {
            throw new ArgumentException($"Expected an image [H, W, 3], got [{string.Join(", ", imageHwc.shape)}].", nameof(imageHwc));
        }

        using var scope = torch.NewDisposeScope();
        var bytes = imageHwc.detach().cpu().to(ScalarType.Float64).round().clamp(0, 255).to(ScalarType.Byte).contiguous();
        return ((int)imageHwc.shape[1], (int)imageHwc.shape[0], bytes.data<byte>().ToArray());
    }

    private static byte Unit(double v) => (byte)Math.Round(Math.Clamp(v, 0, 1) * 255);

    private static byte Lerp(byte a, byte b, double u) => (byte)Math.Round(a + ((b - a) * u));

    private static byte Mix(byte image, byte color, double alpha) => (byte)Math.Round(((1 - alpha) * image) + (alpha * color));
}
