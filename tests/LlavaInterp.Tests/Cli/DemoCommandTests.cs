using LlavaInterp.Analysis;
using LlavaInterp.Samples;
using LlavaInterp.Tests.Support;
using SixLabors.ImageSharp;

namespace LlavaInterp.Tests.Cli;

public sealed class DemoCommandTests
{
    [Fact]
    public async Task DemoRunsOfflineOnTheShippedTinyModelAndSaysSo()
    {
        // The shipped assets are a copy of the fixture's model: same weights, same tokenizer.
        Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(Fixture.ModelDir, "model.safetensors")), await File.ReadAllBytesAsync(Path.Combine(TinyModel.ModelDir, "model.safetensors")));

        using var dir = new TempDir();
        var run = (await CliRun.Llava("demo", "--out", dir.Path)).Succeeded();
        Assert.Contains("RANDOM-WEIGHT test model", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("NOT meaningful", run.Stdout, StringComparison.Ordinal);

        // 1. the feature table covers every shipped image
        foreach (var image in TinyModel.Images)
        {
            Assert.Contains(Path.GetFileName(image), run.Stdout, StringComparison.Ordinal);
        }

        // 2. one heatmap figure of the crop, enlarged to a readable size
        var png = Assert.Single(Directory.GetFiles(dir.Path, "*.png"));
        Assert.Contains(Path.GetFileName(png), run.Stdout, StringComparison.Ordinal);
        Assert.True(Image.Identify(png).Width > HeatmapFigure.ScaleFactor(32, 32, new HeatmapStyle().MinSide) * 32);

        // 3. plain and steered generations side by side, and steering changed the tokens
        var tokens = run.Stdout.Split('\n').Single(l => l.StartsWith("tokens", StringComparison.Ordinal));
        Assert.Contains("PLAIN", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("STEERED", run.Stdout, StringComparison.Ordinal);
        var cells = tokens["tokens".Length..].Split("  ", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(2, cells.Length);
        Assert.NotEqual(cells[0], cells[1]);
    }

    [Fact]
    public async Task DemoTakesAFeatureAndStrength()
    {
        using var dir = new TempDir();
        var run = (await CliRun.Llava("demo", "--out", dir.Path, "--image", Fixture.Image("gradient_rgb"), "--feature", "219", "--alpha", "-4", "--max-new-tokens", "4")).Succeeded();
        Assert.Contains("feature 219", run.Stdout, StringComparison.Ordinal);
        Assert.EndsWith("_feature_219.png", Assert.Single(Directory.GetFiles(dir.Path)), StringComparison.Ordinal);
    }
}
