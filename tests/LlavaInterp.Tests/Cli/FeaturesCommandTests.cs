using LlavaInterp.Analysis;
using System.Globalization;
using System.Text.Json;
using LlavaInterp.Sae;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using SixLabors.ImageSharp;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Cli;

public sealed class FeaturesCommandTests(ITestOutputHelper output)
{
    private sealed record Feature(int Index, double Activation, string? Description);

    private sealed record Result(string? Image, string? Class, string[] Images, Feature[] Features);

    private static string[] GoldenPromptArgs(params string[] extra) =>
    [
        "features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--explanations", CliRun.ExplanationsFile,
        "--image", Fixture.Image("gradient_rgb"), "--prompt", CliRun.RenderedImagePrompt, "--raw", .. extra,
    ];

    private static List<Result> ParseJsonLines(string stdout) =>
        stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line =>
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            return new Result(
                r.TryGetProperty("image", out var i) ? i.GetString() : null,
                r.TryGetProperty("class", out var c) ? c.GetString() : null,
                r.TryGetProperty("images", out var imgs) ? imgs.EnumerateArray().Select(e => e.GetString()!).ToArray() : [],
                r.GetProperty("features").EnumerateArray().Select(f => new Feature(
                    f.GetProperty("index").GetInt32(),
                    f.GetProperty("activation").GetDouble(),
                    f.GetProperty("description").GetString())).ToArray());
        }).ToList();

    private static double CheckAgainstGolden(Feature[] features, string goldenPrefix)
    {
        Assert.Equal(CliRun.GoldenInts(goldenPrefix + ".indices"), features.Select(f => f.Index));
        var values = CliRun.GoldenDoubles(goldenPrefix + ".values");
        double maxDiff = 0;
        for (int i = 0; i < values.Length; i++)
        {
            double d = Math.Abs(values[i] - features[i].Activation);
            Assert.True(d <= TensorAssert.ActivationAtol + (TensorAssert.ActivationRtol * Math.Abs(values[i])), $"feature {features[i].Index}: {features[i].Activation} vs golden {values[i]}");
            maxDiff = Math.Max(maxDiff, d);
        }

        var explanations = FeatureExplanations.Load(CliRun.ExplanationsFile);
        Assert.All(features, f => Assert.Equal(explanations.Describe(f.Index), f.Description));
        return maxDiff;
    }

    [Fact]
    public async Task ImageTokenSumRankingEqualsGolden()
    {
        var run = (await CliRun.Llava(GoldenPromptArgs("--positions", "image", "--aggregate", "sum", "--top-k", "10", "--json"))).Succeeded();
        var result = Assert.Single(ParseJsonLines(run.Stdout));
        Assert.Equal(Fixture.Image("gradient_rgb"), result.Image);
        double d = CheckAgainstGolden(result.Features, "sae.standard.top10_image_sum");
        Assert.Contains(result.Features, f => f.Description is not null);
        output.WriteLine($"top-10 image-sum activations: max |diff| vs golden {d:E2}");
    }

    [Fact]
    public async Task LastPositionRankingEqualsGolden()
    {
        var run = (await CliRun.Llava(GoldenPromptArgs("--positions", "last", "--json"))).Succeeded();
        double d = CheckAgainstGolden(Assert.Single(ParseJsonLines(run.Stdout)).Features, "sae.standard.top10_last_position");

        // The last position by index (-1) is the same thing.
        var byIndex = (await CliRun.Llava(GoldenPromptArgs("--positions", "-1", "--json"))).Succeeded();
        CheckAgainstGolden(Assert.Single(ParseJsonLines(byIndex.Stdout)).Features, "sae.standard.top10_last_position");
        output.WriteLine($"top-10 last-position activations: max |diff| vs golden {d:E2}");
    }

    [Fact]
    public async Task TableListsTheTopFeaturesWithDescriptions()
    {
        var run = (await CliRun.Llava(GoldenPromptArgs("--top-k", "3"))).Succeeded();
        var lines = run.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int header = Array.FindIndex(lines, l => l.StartsWith("IMAGE", StringComparison.Ordinal));
        Assert.True(header >= 0, run.Stdout);
        Assert.Contains("FEATURE", lines[header], StringComparison.Ordinal);
        Assert.Contains("DESCRIPTION", lines[header], StringComparison.Ordinal);
        var rows = lines.Skip(header + 2).ToArray();
        Assert.Equal(3, rows.Length);
        Assert.StartsWith("gradient_rgb.png", rows[0], StringComparison.Ordinal);
        var expected = CliRun.GoldenInts("sae.standard.top10_image_sum.indices").Take(3).ToArray();
        var explanations = FeatureExplanations.Load(CliRun.ExplanationsFile);
        for (int i = 0; i < 3; i++)
        {
            var cells = rows[i].Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.Equal(expected[i].ToString(CultureInfo.InvariantCulture), cells[i == 0 ? 1 : 0]);
            Assert.EndsWith(explanations.Describe(expected[i]) ?? "(no description)", rows[i], StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task HeatmapIsAReadableFigureOfTheCrop()
    {
        using var dir = new TempDir();
        string png = dir.File("map.png");
        int feature = CliRun.GoldenInts("sae.standard.top10_image_sum.indices")[0];
        var run = (await CliRun.Llava(GoldenPromptArgs("--heatmap", png, "--feature", feature.ToString(CultureInfo.InvariantCulture)))).Succeeded();
        Assert.Contains(png, run.Stdout, StringComparison.Ordinal);
        // The 32×32 crop enlarged to a readable size, plus its title and colour bar.
        var info = Image.Identify(png);
        int side = HeatmapFigure.ScaleFactor(32, 32, new HeatmapStyle().MinSide) * 32;
        Assert.True(info.Width > side && info.Height > side, $"{info.Width}×{info.Height}");
        Assert.Equal(["map.png"], CliRun.FilesUnder(dir.Path));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]   // each class's two images share one forward: the results are those of one image per run
    public async Task ClassFolderAveragesImagesAndExcludesDenseFeatures(int batchSize)
    {
        using var dir = new TempDir();
        string root = Path.Combine(dir.Path, "classes");
        var layout = new Dictionary<string, string[]> { ["alpha"] = ["gradient_rgb", "gray_l"], ["beta"] = ["rgba_alpha", "tiny_5x7"] };
        foreach (var (cls, images) in layout)
        {
            Directory.CreateDirectory(Path.Combine(root, cls));
            foreach (var image in images)
            {
                File.Copy(Fixture.Image(image), Path.Combine(root, cls, image + ".png"));
            }
        }

        const double maxDensity = 0.3;
        var run = (await CliRun.Llava(
            "features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--image-dir", root, "--per-class", "2",
            "--top-k", "4", "--exclude-dense", "0.3", "--json", "--batch-size", batchSize.ToString(CultureInfo.InvariantCulture))).Succeeded();
        var results = ParseJsonLines(run.Stdout);
        Assert.Equal(["alpha", "beta"], results.Select(r => r.Class));

        // Independent computation: cache the SAE's hook point per image, encode, sum over the image tokens.
        using var scope = torch.NewDisposeScope();
        using var sae = SparseAutoencoder.Load(CliRun.SaeDir);
        var sums = new Dictionary<string, Tensor>();
        var active = torch.zeros(sae.DSae, ScalarType.Int64);
        long positions = 0;
        foreach (var image in layout.Values.SelectMany(i => i))
        {
            string file = dir.File(image + ".safetensors");
            (await CliRun.Llava("cache", "--model", Fixture.ModelDir, "--image", Fixture.Image(image), "--prompt", "Describe the image.", "--hooks", sae.HookName, "--stop-at-layer", "3", "--out", file)).Succeeded();
            using var cache = SafetensorsFile.Open(file);
            var ids = cache.Load("input_ids");
            var imagePositions = ids.eq(6).nonzero().squeeze(1);
            var acts = sae.Encode(cache.Load(sae.HookName)).index_select(0, imagePositions);
            sums[image] = acts.sum(dim: 0);
            active += acts.gt(0).sum(dim: 0);
            positions += imagePositions.shape[0];
        }

        var dense = (active.to(ScalarType.Float64) / positions).gt(maxDensity);
        Assert.True(dense.any().item<bool>(), "the test should exclude at least one feature");
        foreach (var result in results)
        {
            var images = layout[result.Class!];
            Assert.Equal(images.Select(i => Path.Combine(root, result.Class!, i + ".png")), result.Images);
            var mean = (sums[images[0]] + sums[images[1]]) / 2;
            var masked = torch.where(dense, torch.tensor(double.NegativeInfinity), mean.to(ScalarType.Float64));
            var (values, indices) = masked.topk(4);
            Assert.Equal(indices.data<long>().ToArray().Select(i => (int)i), result.Features.Select(f => f.Index));
            for (int i = 0; i < 4; i++)
            {
                TensorAssert.Close(values[i].item<double>(), result.Features[i].Activation, what: $"feature #{i + 1}");
            }

            Assert.All(result.Features, f => Assert.False(dense[f.Index].item<bool>()));
        }
    }
}
