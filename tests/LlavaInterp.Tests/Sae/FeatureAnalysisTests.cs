using LlavaInterp.Analysis;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

public sealed class FeatureAnalysisTests
{
    [Fact]
    public void AggregationsMatchTensorOps()
    {
        using var scope = torch.NewDisposeScope();
        var acts = Fixture.Load("sae.standard.feature_acts");
        var positions = SaeFixture.ImagePositions;
        var rows = acts[0].index_select(0, torch.tensor(positions));
        TensorAssert.Close(rows.mean([0L]), FeatureActivations.Aggregate(acts, PositionSelector.At(positions), FeatureAggregation.Mean), atol: 0, rtol: 0, what: "mean");
        TensorAssert.Close(rows.max(0).values, FeatureActivations.Aggregate(acts, PositionSelector.At(positions), FeatureAggregation.Max), atol: 0, rtol: 0, what: "max");

        var top = FeatureActivations.TopK(acts[0], PositionSelector.At(positions), FeatureAggregation.Max, 5);
        var (values, indices) = rows.max(0).values.topk(5);
        Assert.Equal(indices.data<long>().ToArray().Select(i => (int)i), top.Select(f => f.Index));
        Assert.Equal(values.data<float>().ToArray().Select(v => (double)v), top.Select(f => f.Value));

        var one = FeatureActivations.TopK(acts, PositionSelector.At(3), FeatureAggregation.Sum, 3);
        var (v3, i3) = acts[0, 3].topk(3);
        Assert.Equal(i3.data<long>().ToArray().Select(i => (int)i), one.Select(f => f.Index));

        Assert.Throws<ArgumentException>(() => FeatureActivations.TopK(torch.zeros(2, 3, 4), PositionSelector.All));
        Assert.Throws<ArgumentException>(() => FeatureActivations.TopK(acts, PositionSelector.At(99)));
        Assert.Throws<ArgumentOutOfRangeException>(() => FeatureActivations.TopK(acts, PositionSelector.All, k: 257));
        Assert.Throws<ArgumentOutOfRangeException>(() => FeatureActivations.TopK(acts, PositionSelector.All, k: 0));
    }

    [Fact]
    public void DensityCountsActivePositionsAcrossInputs()
    {
        using var scope = torch.NewDisposeScope();
        var d = new FeatureDensity(4);
        // Feature 0 fires everywhere, 1 on half, 2 once, 3 never.
        d.Add(torch.tensor(new float[,] { { 1, 1, 0, 0 }, { 2, 0, 0, 0 } }));
        d.Add(torch.tensor(new float[,,] { { { 1, 2, 3, 0 }, { 1, 0, 0, -1 } } }));
        Assert.Equal(4, d.Positions);
        Assert.Equal([1.0, 0.5, 0.25, 0.0], d.Densities());
        Assert.Equal(2, d.ActiveCount(1));
        Assert.Equal([0, 1], d.DenseFeatures(0.3));
        var ranked = new[] { new FeatureValue(0, 9), new FeatureValue(2, 5), new FeatureValue(1, 4), new FeatureValue(3, 1) };
        Assert.Equal([2, 3], d.ExcludeDense(ranked, 0.3).Select(f => f.Index));

        var strict = new FeatureDensity(4, activeThreshold: 1.0);
        strict.Add(torch.tensor(new float[,] { { 1, 2, 1.5f, 0 } }));
        Assert.Equal([0.0, 1.0, 1.0, 0.0], strict.Densities());

        // Only the selected positions count.
        var image = new FeatureDensity(256);
        image.Add(Fixture.Load("sae.standard.feature_acts"), PositionSelector.At(SaeFixture.ImagePositions));
        Assert.Equal(16, image.Positions);

        Assert.Throws<ArgumentException>(() => d.Add(torch.zeros(2, 5)));
        Assert.Throws<ArgumentOutOfRangeException>(() => d.Density(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => d.ExcludeDense([new FeatureValue(7, 1)], 0.5));
    }

    [Fact]
    public void SpatialMapLaysImageTokensOutRowMajor()
    {
        using var scope = torch.NewDisposeScope();
        var acts = Fixture.Load("sae.standard.feature_acts");
        var positions = SaeFixture.ImagePositions;
        var (gh, gw) = SpatialMap.SquareGrid(positions.Length);
        Assert.Equal((4, 4), (gh, gw));
        var map = SpatialMap.FromActivations(acts, positions, 221, gh, gw);
        Assert.Equal([4L, 4L], map.shape);
        for (int i = 0; i < 16; i++)
        {
            Assert.Equal(acts[0, positions[i], 221].item<float>(), map[i / 4, i % 4].item<float>());
        }

        var maps = SpatialMap.FromActivations(acts, positions, [221, 187], 4, 4);
        TensorAssert.Close(map, maps[0], atol: 0, rtol: 0, what: "stacked map");
        TensorAssert.Close(SpatialMap.FromActivations(acts, positions, 187, 4, 4), maps[1], atol: 0, rtol: 0, what: "second map");

        // The image-sum ranking is the sum of the map.
        TensorAssert.Close(FeatureActivations.TopK(acts, PositionSelector.At(positions), k: 1)[0].Value, map.sum().item<float>(), what: "map sum");

        Assert.Throws<ArgumentException>(() => SpatialMap.FromActivations(acts, positions, 221, 4, 5));
        Assert.Throws<ArgumentException>(() => SpatialMap.FromActivations(acts, positions, 256, 4, 4));
        Assert.Throws<ArgumentException>(() => SpatialMap.FromActivations(acts, positions.Select(p => p + 30), 1, 4, 4));
        Assert.Throws<ArgumentException>(() => SpatialMap.SquareGrid(15));
    }

    [Fact]
    public void HeatmapIsAPngOfTheImageSizeHottestWhereActivationsAreLargest()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var image = Fixture.Load("image.gradient_rgb.cropped"); // [32, 32, 3] uint8 values: the processed image
        var acts = Fixture.Load("sae.standard.feature_acts");
        var map = SpatialMap.FromActivations(acts, SaeFixture.ImagePositions, 221, 4, 4);
        long hottest = map.flatten().argmax().item<long>();
        int cellR = (int)(hottest / 4), cellC = (int)(hottest % 4);

        string path = dir.File("out/feature_221.png");
        Heatmap.Render(image, map, path, Colormap.Gray, alpha: 1.0);
        using var png = SixLabors.ImageSharp.Image.Load<Rgb24>(path);
        Assert.Equal(32, png.Width);
        Assert.Equal(32, png.Height);
        var (x, y) = Brightest(png);
        Assert.Equal(cellR, y / 8);
        Assert.Equal(cellC, x / 8);
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(path)!));

        // A synthetic map: one hot cell; the blend keeps the image elsewhere.
        var synthetic = torch.zeros(4, 4);
        synthetic[2, 1] = torch.tensor(3f);
        string jet = dir.File("jet.png");
        Heatmap.Render(image, synthetic, jet, Colormap.Jet, alpha: 0.6);
        using var blended = SixLabors.ImageSharp.Image.Load<Rgb24>(jet);
        // The four centre pixels of the hot cell hold the upsampled maximum: the colormap's top colour (jet: dark red).
        var center = blended[8 + 4, 16 + 4];
        var hot = Heatmap.Color(Colormap.Jet, 1.0);
        Assert.Equal(((byte)128, (byte)0, (byte)0), hot);
        var under = image[16 + 4, 8 + 4];
        Assert.InRange(center.R, (0.4 * under[0].item<long>()) + (0.6 * hot.R) - 1, (0.4 * under[0].item<long>()) + (0.6 * hot.R) + 1);
        Assert.InRange(center.G, (0.4 * under[1].item<long>()) - 1, (0.4 * under[1].item<long>()) + 1);
        Assert.InRange(center.B, (0.4 * under[2].item<long>()) - 1, (0.4 * under[2].item<long>()) + 1);
        var corner = blended[0, 0];
        var src = image[0, 0];
        // Jet at 0 is (0, 0, 128): out = 0.4·image + 0.6·colour.
        Assert.InRange(corner.R, (0.4 * src[0].item<long>()) - 1, (0.4 * src[0].item<long>()) + 1);
        Assert.InRange(corner.B, (0.4 * src[2].item<long>()) + (0.6 * 128) - 1, (0.4 * src[2].item<long>()) + (0.6 * 128) + 1);
    }

    [Fact]
    public void HeatmapsForSeveralFeatures()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var image = Fixture.Load("image.gradient_rgb.cropped");
        var acts = Fixture.Load("sae.standard.feature_acts");
        int[] features = [221, 187, 103];
        var maps = SpatialMap.FromActivations(acts, SaeFixture.ImagePositions, features, 4, 4);
        var files = Heatmap.RenderEach(image, maps, features, dir.File("each"));
        Assert.Equal(features.Select(f => dir.File($"each/feature_{f}.png")), files);
        Assert.All(files, f => Assert.Equal(32, SixLabors.ImageSharp.Image.Identify(f).Width));

        string grid = dir.File("grid.png");
        Heatmap.RenderGrid(image, maps, grid, columns: 2, gap: 2);
        var info = SixLabors.ImageSharp.Image.Identify(grid);
        Assert.Equal((2 * 32) + 2, info.Width);
        Assert.Equal((2 * 32) + 2, info.Height);

        // Raw RGB bytes and an ImageSharp image give the same file as the tensor.
        var bytes = image.to(ScalarType.Byte).contiguous().data<byte>().ToArray();
        Heatmap.Render(32, 32, bytes, maps[0], dir.File("bytes.png"));
        using (var img = SixLabors.ImageSharp.Image.LoadPixelData<Rgb24>(bytes, 32, 32))
        {
            Heatmap.Render(img, maps[0], dir.File("imagesharp.png"));
        }

        Heatmap.Render(new LlavaInterp.Models.Clip.RgbImage(32, 32, bytes), maps[0], dir.File("rgbimage.png"));

        Assert.Equal(File.ReadAllBytes(dir.File("each/feature_221.png")), File.ReadAllBytes(dir.File("bytes.png")));
        Assert.Equal(File.ReadAllBytes(dir.File("bytes.png")), File.ReadAllBytes(dir.File("rgbimage.png")));
        Assert.Equal(File.ReadAllBytes(dir.File("bytes.png")), File.ReadAllBytes(dir.File("imagesharp.png")));
    }

    [Fact]
    public void HeatmapFigureEnlargesTheImageAndAddsATitleAndAColourBar()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var crop = Fixture.Load("image.gradient_rgb.cropped");
        var bytes = crop.to(ScalarType.Byte).contiguous().data<byte>().ToArray();
        var image = new LlavaInterp.Models.Clip.RgbImage(32, 32, bytes);
        var map = SpatialMap.FromActivations(Fixture.Load("sae.standard.feature_acts"), SaeFixture.ImagePositions, 221, 4, 4);
        int k = HeatmapFigure.ScaleFactor(32, 32, 336);
        Assert.Equal(11, k);

        // The overlay inside the figure is the bare heatmap of the image enlarged k times (sharp pixels, smooth map).
        var big = new byte[32 * k * 32 * k * 3];
        for (int y = 0; y < 32 * k; y++)
        {
            for (int x = 0; x < 32 * k; x++)
            {
                Array.Copy(bytes, (((y / k) * 32) + (x / k)) * 3, big, ((y * 32 * k) + x) * 3, 3);
            }
        }

        // (With the map's own range: the figure scales by the map's values, not by the upsampled ones.)
        Heatmap.Render(32 * k, 32 * k, big, map, dir.File("bare.png"), min: map.min().item<float>(), max: map.max().item<float>());
        string path = dir.File("figure.png");
        HeatmapFigure.Render(image, map, path, "feature 221: colours", new HeatmapStyle { Colormap = Colormap.Jet });
        using var figure = SixLabors.ImageSharp.Image.Load<Rgb24>(path);
        using var bare = SixLabors.ImageSharp.Image.Load<Rgb24>(dir.File("bare.png"));
        Assert.True(figure.Width > bare.Width + 20 && figure.Height > bare.Height + 16, $"figure {figure.Width}×{figure.Height} around a {bare.Width}×{bare.Height} image");

        // Find the tile: the first row and column (after the margin and title) where figure == bare at the origin.
        int top = Enumerable.Range(0, figure.Height - bare.Height).First(y => Enumerable.Range(0, bare.Width).All(x => figure[8 + x, y] == bare[x, 0]));
        for (int y = 0; y < bare.Height; y += 37)
        {
            for (int x = 0; x < bare.Width; x += 29)
            {
                Assert.Equal(bare[x, y], figure[8 + x, top + y]);
            }
        }

        // The title band holds dark text; the bar runs from the scale's top colour to its bottom colour.
        Assert.Contains(Enumerable.Range(0, top).SelectMany(y => Enumerable.Range(8, 100).Select(x => figure[x, y])), p => p.R < 100 && p.G < 100 && p.B < 100);
        int barX = 8 + bare.Width + 8 + 7;
        var (r1, g1, b1) = Heatmap.Color(Colormap.Jet, 1.0);
        var (r0, g0, b0) = Heatmap.Color(Colormap.Jet, 0.0);
        Assert.Equal(new Rgb24(r1, g1, b1), figure[barX, top]);
        Assert.Equal(new Rgb24(r0, g0, b0), figure[barX, top + bare.Height - 1]);
        Assert.Equal(["bare.png", "figure.png"], Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());

        // A grid of three features shares one range and one bar; bad ranges and empty grids are refused.
        var maps = Enumerable.Range(0, 3).Select(i => new HeatmapTile(image, map * (i + 1), $"feature {i}")).ToArray();
        HeatmapFigure.RenderGrid(maps, dir.File("grid.png"), columns: 3);
        Assert.True(SixLabors.ImageSharp.Image.Identify(dir.File("grid.png")).Width > 3 * bare.Width);
        Assert.Throws<ArgumentException>(() => HeatmapFigure.RenderGrid([], dir.File("none.png")));
        Assert.Throws<ArgumentException>(() => HeatmapFigure.Render(image, map, dir.File("bad.png"), style: new HeatmapStyle { Min = 2, Max = 1 }));
        Assert.Throws<ArgumentException>(() => HeatmapFigure.Render(image, torch.rand(16), dir.File("bad.png")));
        Assert.False(File.Exists(dir.File("bad.png")));
    }

    [Fact]
    public void BadHeatmapInputsWriteNothing()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var image = Fixture.Load("image.gradient_rgb.cropped");
        var map = torch.rand(4, 4);
        Assert.Throws<ArgumentException>(() => Heatmap.Render(image, map, dir.File("a.png"), alpha: 1.5));
        Assert.Throws<ArgumentException>(() => Heatmap.Render(image, torch.rand(16), dir.File("b.png")));
        Assert.Throws<ArgumentException>(() => Heatmap.Render(image.narrow(2, 0, 2), map, dir.File("c.png")));
        Assert.Throws<ArgumentException>(() => Heatmap.Render(32, 32, new byte[10], map, dir.File("d.png")));
        Assert.Throws<ArgumentException>(() => Heatmap.RenderEach(image, torch.rand(2, 4, 4), [1], dir.File("e")));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));

        // A constant map renders (as the colour of 0) instead of dividing by zero.
        Heatmap.Render(image, torch.ones(4, 4), dir.File("flat.png"), Colormap.Viridis);
        Assert.True(File.Exists(dir.File("flat.png")));
    }

    private static (int X, int Y) Brightest(Image<Rgb24> img)
    {
        int best = -1, bx = 0, by = 0;
        for (int y = 0; y < img.Height; y++)
        {
            for (int x = 0; x < img.Width; x++)
            {
                var p = img[x, y];
                int v = p.R + p.G + p.B;
                if (v > best)
                {
                    (best, bx, by) = (v, x, y);
                }
            }
        }

        return (bx, by);
    }
}
