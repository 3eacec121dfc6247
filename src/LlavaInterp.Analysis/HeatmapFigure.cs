using System.Globalization;
using LlavaInterp.IO;
using LlavaInterp.Models.Clip;
using SkiaSharp;
using TorchSharp;

namespace LlavaInterp.Analysis;

/// <summary>How a heatmap figure looks.</summary>
public sealed record HeatmapStyle
{
    /// <summary>Colour scale.</summary>
    public Colormap Colormap { get; init; } = Colormap.Jet;

    /// <summary>Weight of the colour over the image, 0..1.</summary>
    public double Alpha { get; init; } = 0.5;

    /// <summary>Value drawn as the scale's first colour; null: the smallest value shown.</summary>
    public double? Min { get; init; }

    /// <summary>Value drawn as the scale's last colour; null: the largest value shown.</summary>
    public double? Max { get; init; }

    /// <summary>
    /// The image is enlarged by a whole factor (pixels kept sharp) until its shorter side is at least this many pixels,
    /// so a 24×24 patch grid or a small test image stays readable; 0 keeps the image's size.
    /// </summary>
    public int MinSide { get; init; } = 336;

    /// <summary>Draw a colour bar with the value range next to the image (one bar for a whole grid).</summary>
    public bool ColorBar { get; init; } = true;
}

/// <summary>One tile of <see cref="HeatmapFigure.RenderGrid"/>: an image, its feature map [gridH, gridW] and a title.</summary>
public sealed record HeatmapTile(RgbImage Image, torch.Tensor Map, string? Title = null);

/// <summary>
/// Heatmaps people can read: the processed image enlarged to a readable size with the feature map blended over it
/// (as <see cref="Heatmap"/>: bilinear upsampling, constant alpha), a title (feature id and description), and a colour
/// bar labelled with its value range. Text uses the DejaVu Sans Mono font shipped inside this assembly, so figures look
/// the same on every machine. Files are written to a temporary name and moved into place.
/// </summary>
public static class HeatmapFigure
{
    private const int Margin = 8;
    private const float TitleSize = 14;
    private const float LabelSize = 11;
    private const int BarWidth = 14;
    private static readonly Lazy<SKTypeface> Font = new(LoadFont);

    /// <summary>Renders one map over one image with a title and a colour bar.</summary>
    /// <exception cref="ArgumentException">The map is not 2-D, alpha is outside 0..1, or a bad range.</exception>
    public static void Render(RgbImage image, torch.Tensor map, string outputPath, string? title = null, HeatmapStyle? style = null) =>
        RenderGrid([new HeatmapTile(image, map, title)], outputPath, style, columns: 1);

    /// <summary>
    /// Renders several maps (several features of one image, or one feature over several images) as one figure, row by
    /// row with <paramref name="columns"/> tiles per row (0 picks ⌈√n⌉). All tiles share one value range (the style's,
    /// else the smallest and largest value over every map), so their colours compare, and one colour bar shows it.
    /// </summary>
    /// <exception cref="ArgumentException">No tiles, a map that is not 2-D, alpha outside 0..1, or min ≥ max.</exception>
    public static void RenderGrid(IReadOnlyList<HeatmapTile> tiles, string outputPath, HeatmapStyle? style = null, int columns = 0)
    {
        ArgumentNullException.ThrowIfNull(tiles);
        ArgumentNullException.ThrowIfNull(outputPath);
        ArgumentOutOfRangeException.ThrowIfNegative(columns);
        style ??= new HeatmapStyle();
        if (tiles.Count == 0)
        {
            throw new ArgumentException("A heatmap figure needs at least one tile.", nameof(tiles));
        }

        if (style.MinSide < 0)
        {
            throw new ArgumentException($"MinSide must be ≥ 0, got {style.MinSide}.", nameof(style));
        }

        var (lo, hi) = Range(tiles, style);
        var font = Font.Value;
        using var titleFont = new SKPaint { Typeface = font, TextSize = TitleSize, IsAntialias = true, Color = SKColors.Black };
        using var labelFont = new SKPaint { Typeface = font, TextSize = LabelSize, IsAntialias = true, Color = SKColors.Black };

        // Tiles share a size: each image is enlarged to the first tile's size class (same processor, same crop).
        var scaled = tiles.Select(t => Enlarge(t.Image, style.MinSide)).ToArray();
        int tileW = scaled.Max(s => s.Width);
        int tileH = scaled.Max(s => s.Height);
        bool anyTitle = tiles.Any(t => !string.IsNullOrEmpty(t.Title));
        int titleH = anyTitle ? (int)Math.Ceiling(TitleSize * 1.6) : 0;
        int n = tiles.Count;
        int cols = columns > 0 ? Math.Min(columns, n) : (int)Math.Ceiling(Math.Sqrt(n));
        int rows = (n + cols - 1) / cols;
        string[] labels = [Format(hi), Format((lo + hi) / 2), Format(lo)];
        int labelW = (int)Math.Ceiling(labels.Max(l => labelFont.MeasureText(l)));
        int barBlock = style.ColorBar ? Margin + BarWidth + 4 + labelW : 0;
        int width = Margin + (cols * tileW) + ((cols - 1) * Margin) + barBlock + Margin;
        int height = Margin + (rows * (titleH + tileH)) + ((rows - 1) * Margin) + Margin;

        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        using (var canvas = new SKCanvas(bitmap))
        {
            canvas.Clear(SKColors.White);
            for (int i = 0; i < n; i++)
            {
                int x0 = Margin + ((i % cols) * (tileW + Margin));
                int y0 = Margin + ((i / cols) * (titleH + tileH + Margin));
                var img = scaled[i];
                var blended = Heatmap.Blend(img.Width, img.Height, img.Pixels, tiles[i].Map, style.Colormap, style.Alpha, lo, hi);
                using var tile = ToBitmap(img.Width, img.Height, blended);
                canvas.DrawBitmap(tile, x0, y0 + titleH);
                if (!string.IsNullOrEmpty(tiles[i].Title))
                {
                    canvas.DrawText(Fit(tiles[i].Title!, titleFont, tileW + (cols == 1 ? barBlock : 0)), x0, y0 + (TitleSize * 1.15f), titleFont);
                }
            }

            if (style.ColorBar)
            {
                DrawColorBar(canvas, style.Colormap, Margin + (cols * tileW) + ((cols - 1) * Margin) + Margin, Margin + titleH, tileH, labels, labelFont);
            }
        }

        string full = Path.GetFullPath(outputPath);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        using var encoded = SKImage.FromBitmap(bitmap);
        using var png = encoded.Encode(SKEncodedImageFormat.Png, 100);
        AtomicFile.Write(full, stream => png.SaveTo(stream));
    }

    /// <summary>The enlargement factor for an image of this size (a whole number ≥ 1).</summary>
    public static int ScaleFactor(int width, int height, int minSide) =>
        minSide <= 0 ? 1 : Math.Max(1, (int)Math.Ceiling(minSide / (double)Math.Min(width, height)));

    private static (double Lo, double Hi) Range(IReadOnlyList<HeatmapTile> tiles, HeatmapStyle style)
    {
        double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
        foreach (var t in tiles)
        {
            ArgumentNullException.ThrowIfNull(t.Image);
            ArgumentNullException.ThrowIfNull(t.Map);
            if (t.Map.dim() != 2)
            {
                throw new ArgumentException($"Expected a map [gridH, gridW], got [{string.Join(", ", t.Map.shape)}].", nameof(tiles));
            }

            if (style.Min is null || style.Max is null)
            {
                using var scope = torch.NewDisposeScope();
                var m = t.Map.detach().to(torch.ScalarType.Float64).cpu();
                lo = Math.Min(lo, m.min().item<double>());
                hi = Math.Max(hi, m.max().item<double>());
            }
        }

        lo = style.Min ?? lo;
        hi = style.Max ?? hi;
        if (!double.IsFinite(lo) || !double.IsFinite(hi) || lo > hi || (style.Min is not null && style.Max is not null && lo >= hi))
        {
            throw new ArgumentException($"The value range [{lo}, {hi}] is not a finite, increasing range.", nameof(style));
        }

        return (lo, hi);
    }

    // Nearest-neighbour enlargement: each source pixel becomes a k×k block, so the patches stay visible.
    private static RgbImage Enlarge(RgbImage image, int minSide)
    {
        int k = ScaleFactor(image.Width, image.Height, minSide);
        if (k == 1)
        {
            return image;
        }

        int w = image.Width * k, h = image.Height * k;
        var src = image.Pixels;
        var dst = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
        {
            int sy = y / k;
            for (int x = 0; x < w; x++)
            {
                int s = ((sy * image.Width) + (x / k)) * 3;
                int d = ((y * w) + x) * 3;
                dst[d] = src[s];
                dst[d + 1] = src[s + 1];
                dst[d + 2] = src[s + 2];
            }
        }

        return new RgbImage(w, h, dst);
    }

    private static void DrawColorBar(SKCanvas canvas, Colormap colormap, int x, int y, int height, string[] labels, SKPaint labelFont)
    {
        using var paint = new SKPaint { IsAntialias = false };
        for (int row = 0; row < height; row++)
        {
            var (r, g, b) = Heatmap.Color(colormap, 1 - (row / (double)Math.Max(1, height - 1)));
            paint.Color = new SKColor(r, g, b);
            canvas.DrawRect(x, y + row, BarWidth, 1, paint);
        }

        using var frame = new SKPaint { Style = SKPaintStyle.Stroke, Color = SKColors.Black, StrokeWidth = 1 };
        canvas.DrawRect(x - 0.5f, y - 0.5f, BarWidth + 1, height + 1, frame);
        float tx = x + BarWidth + 4;
        canvas.DrawText(labels[0], tx, y + LabelSize, labelFont);
        canvas.DrawText(labels[1], tx, y + (height / 2f) + (LabelSize / 2f), labelFont);
        canvas.DrawText(labels[2], tx, y + height, labelFont);
    }

    private static SKBitmap ToBitmap(int width, int height, byte[] rgb)
    {
        var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Premul));
        var rgba = new byte[width * height * 4];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            rgba[j] = rgb[i];
            rgba[j + 1] = rgb[i + 1];
            rgba[j + 2] = rgb[i + 2];
            rgba[j + 3] = 255;
        }

        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        return bitmap;
    }

    // Shortens a title with "…" until it fits the width it may use.
    private static string Fit(string text, SKPaint paint, int maxWidth)
    {
        if (paint.MeasureText(text) <= maxWidth)
        {
            return text;
        }

        int keep = text.Length;
        while (keep > 0 && paint.MeasureText(text[..keep] + "…") > maxWidth)
        {
            keep--;
        }

        return text[..keep] + "…";
    }

    private static string Format(double v) => Math.Abs(v) >= 1000 || (v != 0 && Math.Abs(v) < 0.01)
        ? v.ToString("0.##E+0", CultureInfo.InvariantCulture)
        : v.ToString("0.###", CultureInfo.InvariantCulture);

    private static SKTypeface LoadFont()
    {
        using var stream = typeof(HeatmapFigure).Assembly.GetManifestResourceStream("LlavaInterp.Analysis.Fonts.DejaVuSansMono.ttf")
            ?? throw new InvalidOperationException("The embedded DejaVuSansMono.ttf is missing from LlavaInterp.Analysis.");
        return SKTypeface.FromStream(stream) ?? throw new InvalidOperationException("SkiaSharp could not read the embedded DejaVuSansMono.ttf.");
    }
}
