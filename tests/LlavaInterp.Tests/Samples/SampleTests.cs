using System.Globalization;
using System.Text.RegularExpressions;
using LlavaInterp.Samples.FeatureAnalysis;
using LlavaInterp.Samples.Steering;
using LlavaInterp.Tests.Cli;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Samples;

public sealed class SampleTests
{
    // Data rows of the feature table: optional label, then feature index and activation.
    private static readonly Regex FeatureRow = new(@"^(?<label>\S+)?\s+(?<feature>\d+)\s+(?<activation>-?\d+\.\d{4})(\s|$)", RegexOptions.Multiline);

    [Fact]
    public async Task FeatureAnalysisPrintsTheGoldenRankingWithDescriptions()
    {
        using var dir = new TempDir();
        var run = (await CliRun.Capture((o, e) => FeatureAnalysisSample.RunAsync(
            ["--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--image", Fixture.Image("gradient_rgb"), "--prompt", CliRun.RenderedImagePrompt, "--raw", "--top-k", "10", "--heatmap", dir.Path],
            o, e, CancellationToken.None))).Succeeded();
        var rows = FeatureRow.Matches(run.Stdout).ToList();
        Assert.Equal(CliRun.GoldenInts("sae.standard.top10_image_sum.indices"), rows.Select(m => int.Parse(m.Groups["feature"].Value, CultureInfo.InvariantCulture)));
        var golden = CliRun.GoldenDoubles("sae.standard.top10_image_sum.values");
        Assert.All(rows.Select((m, i) => (double.Parse(m.Groups["activation"].Value, CultureInfo.InvariantCulture), golden[i])), p => TensorAssert.Close(p.Item2, p.Item1, printedDecimals: 4, what: "table activation"));
        Assert.Equal("gradient_rgb.png", rows[0].Groups["label"].Value);
        Assert.DoesNotContain("RANDOM-WEIGHT", run.Stdout, StringComparison.Ordinal);

        // The heatmap of the top feature.
        Assert.Equal([$"gradient_rgb_feature_{rows[0].Groups["feature"].Value}.png"], CliRun.FilesUnder(dir.Path));
    }

    [Fact]
    public async Task FeatureAnalysisDefaultsToTheShippedTinyModel()
    {
        var run = (await CliRun.Capture((o, e) => FeatureAnalysisSample.RunAsync(["--top-k", "2"], o, e, CancellationToken.None))).Succeeded();
        Assert.Contains("RANDOM-WEIGHT", run.Stdout, StringComparison.Ordinal);
        var labels = FeatureRow.Matches(run.Stdout).Select(m => m.Groups["label"].Value).Where(l => l.Length > 0).ToArray();
        Assert.Equal(["gradient_rgb.png", "gray_l.png", "rgba_alpha.png", "tiny_5x7.png"], labels);
        Assert.Equal(8, FeatureRow.Matches(run.Stdout).Count);
    }

    [Fact]
    public async Task SteeringSampleMatchesHfPlainAndSteeredGenerations()
    {
        var run = (await CliRun.Capture((o, e) => SteeringSample.RunAsync(
            ["--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--image", Fixture.Image("gradient_rgb"), "--prompt", CliRun.RenderedImagePrompt, "--raw",
             "--feature", "219", "--alphas", "-4,-7", "--max-new-tokens", "12"],
            o, e, CancellationToken.None))).Succeeded();
        var lines = run.Stdout.Split('\n', StringSplitOptions.TrimEntries);
        string Output(string alpha) => lines.Single(l => l.StartsWith(alpha + "  ", StringComparison.Ordinal))[alpha.Length..].Trim();
        Assert.Equal(CliRun.ManifestString("generation", "image_chat", "new_text"), Output("0 (plain)"));
        Assert.Equal(CliRun.ManifestString("generation", "steered_image_chat", "new_text"), Output("-4"));
        Assert.NotEqual(Output("0 (plain)"), Output("-7"));
        Assert.Contains("feature 219", run.Stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SteeringSampleRejectsBadStrengths()
    {
        var run = await CliRun.Capture((o, e) => SteeringSample.RunAsync(["--alphas", "-2,big"], o, e, CancellationToken.None));
        Assert.Equal(2, run.Code);
        Assert.Contains("'big'", Assert.Single(run.ErrorLines), StringComparison.Ordinal);
    }
}
