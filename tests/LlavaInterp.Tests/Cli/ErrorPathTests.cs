using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Cli;

/// <summary>Every failure prints one line on stderr, exits non-zero and leaves no output file behind.</summary>
public sealed class ErrorPathTests
{
    private static async Task<string> FailsWithOneLine(int expectedCode, TempDir dir, params string[] args)
    {
        var run = await CliRun.Llava(args);
        Assert.True(run.Code == expectedCode, $"exit code {run.Code}, expected {expectedCode}\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        // Progress of the work done before the failure (model loading) may precede it; the error itself is one line.
        var line = Assert.Single(run.MessageLines);
        Assert.Equal(line, run.ErrorLines[^1]);
        Assert.StartsWith("llava-interp: ", line, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", run.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain(CliRun.FilesUnder(dir.Path), f => !f.StartsWith("input", StringComparison.Ordinal));
        return line;
    }

    private static string[] Cache(TempDir dir, params string[] extra) =>
        ["cache", "--model", Fixture.ModelDir, "--prompt", "Describe the image.", "--out", dir.File("out.safetensors"), .. extra];

    private static string[] CacheRaw(TempDir dir, string prompt, params string[] extra) =>
        ["cache", "--model", Fixture.ModelDir, "--raw", "--prompt", prompt, "--out", dir.File("out.safetensors"), .. extra];

    [Fact]
    public async Task MissingModelIsAUsageError()
    {
        using var dir = new TempDir();
        string line = await FailsWithOneLine(2, dir, "cache", "--prompt", "hi", "--out", dir.File("out.safetensors"));
        Assert.Contains("--model is required", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownOptionAndUnknownCommandAreUsageErrors()
    {
        using var dir = new TempDir();
        Assert.Contains("--colour", await FailsWithOneLine(2, dir, Cache(dir, "--colour", "red")), StringComparison.Ordinal);
        Assert.Contains("'frobnicate'", await FailsWithOneLine(2, dir, "frobnicate"), StringComparison.Ordinal);
        Assert.Contains("--top-k", await FailsWithOneLine(2, dir, "features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--image", Fixture.Image("gray_l"), "--top-k", "many"), StringComparison.Ordinal);
        Assert.Contains("--batch-size", await FailsWithOneLine(2, dir, "features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--image", Fixture.Image("gray_l"), "--batch-size", "0"), StringComparison.Ordinal);
        Assert.Contains("--steer", await FailsWithOneLine(2, dir, "generate", "--model", Fixture.ModelDir, "--prompt", "hi", "--sae", CliRun.SaeDir, "--steer", "219"), StringComparison.Ordinal);
        Assert.Contains("--dtype", await FailsWithOneLine(2, dir, Cache(dir, "--dtype", "int8")), StringComparison.Ordinal);
        Assert.Contains("--greedy", await FailsWithOneLine(2, dir, "generate", "--model", Fixture.ModelDir, "--prompt", "hi", "--greedy", "--temperature", "0.7"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MissingAndBrokenFilesAreReportedByName()
    {
        using var dir = new TempDir();
        string missing = dir.File("input-missing.png");
        Assert.Contains(missing, await FailsWithOneLine(2, dir, Cache(dir, "--image", missing)), StringComparison.Ordinal);

        // A file that is not an image: the image decoder's typed error, with the file name.
        string broken = dir.File("input-broken.png");
        await File.WriteAllTextAsync(broken, "this is not a PNG");
        Assert.Contains("input-broken.png", await FailsWithOneLine(1, dir, Cache(dir, "--image", broken)), StringComparison.Ordinal);

        string noModel = dir.File("input-no-model");
        Directory.CreateDirectory(noModel);
        Assert.Contains("input-no-model", await FailsWithOneLine(1, dir, "cache", "--model", noModel, "--prompt", "hi", "--out", dir.File("out.safetensors")), StringComparison.Ordinal);

        Assert.Contains("input-nowhere", await FailsWithOneLine(2, dir, "cache", "--model", dir.File("input-nowhere"), "--prompt", "hi", "--out", dir.File("out.safetensors")), StringComparison.Ordinal);
        Assert.Contains("input-none.json", await FailsWithOneLine(1, dir, "features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--image", Fixture.Image("gray_l"), "--explanations", dir.File("input-none.json")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ImageCountMismatchFailsWithoutOutput()
    {
        using var dir = new TempDir();

        // Two <image> placeholders in a raw prompt but one image file.
        string line = await FailsWithOneLine(1, dir, CacheRaw(dir, "<image><image> two?", "--image", Fixture.Image("gray_l")));
        Assert.Contains("image", line, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task HookPatternThatMatchesNothingFailsBeforeWriting()
    {
        using var dir = new TempDir();
        string line = await FailsWithOneLine(2, dir, Cache(dir, "--hooks", "blocks.*.hook_resid_psot"));
        Assert.Contains("blocks.*.hook_resid_psot", line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("--hooks", ",", "empty")]
    [InlineData("--hooks", " , ", "empty")]
    [InlineData("--hooks", "blocks.0.hook_resid_pre,,hook_image_features", "empty")]
    [InlineData("--hooks", "blocks.0.hook_resid_pre,", "empty")]
    [InlineData("--stop-at-layer", "5", "[0, 4]")]
    [InlineData("--stop-at-layer", "99", "[0, 4]")]
    public async Task OptionValuesNoRunCanUseAreUsageErrors(string option, string value, string mention)
    {
        using var dir = new TempDir();
        string line = await FailsWithOneLine(2, dir, Cache(dir, option, value));
        Assert.Contains(option, line, StringComparison.Ordinal);
        Assert.Contains(mention, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StopAtLayerAtTheModelsDepthRunsEveryBlock()
    {
        using var dir = new TempDir();
        (await CliRun.Llava(Cache(dir, "--stop-at-layer", "4", "--hooks", "blocks.3.hook_resid_post"))).Succeeded();
        Assert.Equal(["out.safetensors"], CliRun.FilesUnder(dir.Path));
    }

    [Fact]
    public async Task SteeringFeatureOutsideTheSaeIsRejected()
    {
        using var dir = new TempDir();
        string line = await FailsWithOneLine(2, dir, "generate", "--model", Fixture.ModelDir, "--prompt", "hi", "--sae", CliRun.SaeDir, "--steer", "256=-4");
        Assert.Contains("256", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExistingOutputIsKeptWhenARunFails()
    {
        using var dir = new TempDir();
        string outFile = dir.File("out.safetensors");
        await File.WriteAllTextAsync(outFile, "previous");
        var run = await CliRun.Llava(CacheRaw(dir, "<image> x", "--image", Fixture.Image("gray_l"), Fixture.Image("gray_l")));
        Assert.NotEqual(0, run.Code);
        Assert.Single(run.MessageLines);
        Assert.Equal("previous", await File.ReadAllTextAsync(outFile));
        Assert.Equal(["out.safetensors"], CliRun.FilesUnder(dir.Path));
    }

    [Fact]
    public async Task HelpGoesToStdout()
    {
        var run = (await CliRun.Llava("--help")).Succeeded();
        Assert.Contains("demo", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("usage: llava-interp cache", (await CliRun.Llava("cache", "--help")).Succeeded().Stdout, StringComparison.Ordinal);
        var none = await CliRun.Llava();
        Assert.Equal(2, none.Code);
    }
}
