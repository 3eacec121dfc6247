using System.Globalization;
using LlavaInterp.Analysis;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Samples;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Cli;

/// <summary><c>--colormap</c> and <c>--range</c> on <c>features --heatmap</c> and <c>demo</c>.</summary>
public sealed class HeatmapOptionTests
{
    private const int Feature = 219;

    private static string[] Features(string png, params string[] extra) =>
    [
        "features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--explanations", CliRun.ExplanationsFile,
        "--image", Fixture.Image("gradient_rgb"), "--heatmap", png, "--feature", Feature.ToString(CultureInfo.InvariantCulture), .. extra,
    ];

    [Fact]
    public async Task ColormapAndRangeReachTheFigure()
    {
        using var dir = new TempDir();
        string styled = dir.File("styled.png");
        string plain = dir.File("plain.png");
        string grayOnly = dir.File("gray.png");
        (await CliRun.Llava(Features(styled, "--colormap", "gray", "--range", "-2:50"))).Succeeded();
        (await CliRun.Llava(Features(plain))).Succeeded();
        (await CliRun.Llava(Features(grayOnly, "--colormap", "gray"))).Succeeded();

        // The same figure drawn by the library with the style the options name: byte for byte.
        string expected = dir.File("expected.png");
        using (var model = await HookedLlava.FromPretrainedAsync(Fixture.ModelDir))
        using (var sae = SparseAutoencoder.Load(CliRun.SaeDir))
        {
            var explanations = await NeuronpediaExplanations.LoadAsync(CliRun.ExplanationsFile);
            var analyzer = new FeatureAnalyzer(model, sae, explanations);
            using var features = analyzer.Encode(LlavaInterp.Cli.FeaturesCommand.DefaultPrompt, [Fixture.Image("gradient_rgb")], raw: false, CancellationToken.None);
            features.RenderHeatmap(Feature, expected, title: analyzer.HeatmapTitle(Feature), style: new HeatmapStyle { Colormap = Colormap.Gray, Min = -2, Max = 50 });
        }

        Assert.Equal(await File.ReadAllBytesAsync(expected), await File.ReadAllBytesAsync(styled));
        // Each option changes the figure on its own: the colormap (vs the default jet) and the range (vs the map's own).
        Assert.NotEqual(await File.ReadAllBytesAsync(plain), await File.ReadAllBytesAsync(grayOnly));
        Assert.NotEqual(await File.ReadAllBytesAsync(grayOnly), await File.ReadAllBytesAsync(styled));
    }

    [Theory]
    [InlineData("--colormap", "plasma", "--colormap must be jet, viridis, hot or gray")]
    [InlineData("--range", "5:1", "--range needs MIN below MAX")]
    [InlineData("--range", "1", "--range expects MIN:MAX")]
    [InlineData("--range", "a:b", "--range expects MIN:MAX with finite numbers")]
    [InlineData("--range", "0:inf", "--range expects MIN:MAX with finite numbers")]
    public async Task BadValuesAreUsageErrorsNamingTheOption(string option, string value, string message)
    {
        using var dir = new TempDir();
        foreach (var args in new[] { Features(dir.File("x.png"), option, value), ["demo", "--out", dir.Path, option, value] })
        {
            var run = await CliRun.Llava(args);
            Assert.Equal(ErrorReporting.UsageError, run.Code);
            Assert.Contains(message, Assert.Single(run.ErrorLines), StringComparison.Ordinal);
        }

        Assert.Empty(CliRun.FilesUnder(dir.Path));
    }

    [Fact]
    public async Task StyleOptionsNeedAHeatmapInFeatures()
    {
        var run = await CliRun.Llava("features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--image", Fixture.Image("gray_l"), "--colormap", "hot");
        Assert.Equal(ErrorReporting.UsageError, run.Code);
        Assert.Contains("--colormap styles the heatmap", Assert.Single(run.ErrorLines), StringComparison.Ordinal);
    }

    [Fact]
    public async Task DemoDrawsWithTheChosenColormapAndAnOpenRange()
    {
        using var plainDir = new TempDir();
        using var hotDir = new TempDir();
        string[] common = ["demo", "--image", Fixture.Image("gradient_rgb"), "--feature", "219", "--max-new-tokens", "1"];
        (await CliRun.Llava([.. common, "--out", plainDir.Path])).Succeeded();
        (await CliRun.Llava([.. common, "--out", hotDir.Path, "--colormap", "hot", "--range=0:"])).Succeeded();
        var plain = Assert.Single(Directory.GetFiles(plainDir.Path, "*.png"));
        var hot = Assert.Single(Directory.GetFiles(hotDir.Path, "*.png"));
        Assert.NotEqual(await File.ReadAllBytesAsync(plain), await File.ReadAllBytesAsync(hot));
    }
}
