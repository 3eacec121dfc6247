using LlavaInterp.Hub;
using LlavaInterp.Samples;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Cli;

/// <summary><c>--device</c> on every model-loading command, and progress on stderr only.</summary>
public sealed class DeviceAndProgressTests
{
    public static TheoryData<string> ModelCommands => ["demo", "features", "generate", "cache", "train-sae"];

    // A command line of each command that is valid but for the option under test.
    private static string[] Valid(string command, TempDir dir, params string[] extra) => command switch
    {
        "demo" => ["demo", "--out", dir.Path, .. extra],
        "features" => ["features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--image", Fixture.Image("gray_l"), .. extra],
        "generate" => ["generate", "--model", Fixture.ModelDir, "--prompt", "hi", .. extra],
        "cache" => ["cache", "--model", Fixture.ModelDir, "--prompt", "hi", "--out", dir.File("out.safetensors"), .. extra],
        _ => ["train-sae", "--model", Fixture.ModelDir, "--images", Path.GetDirectoryName(Fixture.Image("gray_l"))!, "--prompt", "hi", "--hook", "blocks.1.hook_resid_post", "--out", dir.File("sae"), .. extra],
    };

    [Theory]
    [MemberData(nameof(ModelCommands))]
    public async Task UnavailableCudaIsAUsageErrorNamingTheOption(string command)
    {
        // This test machine has a CPU-only libtorch: cuda is unavailable, and that must be caught before any loading.
        Assert.False(torch.cuda.is_available());
        using var dir = new TempDir();
        var run = await CliRun.Llava(Valid(command, dir, "--device", "cuda"));
        Assert.Equal(ErrorReporting.UsageError, run.Code);
        var line = Assert.Single(run.ErrorLines);
        Assert.Contains("--device", line, StringComparison.Ordinal);
        Assert.Contains("CUDA is not available", line, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(ModelCommands))]
    public async Task EveryModelCommandTakesDtype(string command)
    {
        using var dir = new TempDir();
        var run = await CliRun.Llava(Valid(command, dir, "--dtype", "float64"));
        Assert.Equal(ErrorReporting.UsageError, run.Code);
        Assert.Contains("--dtype must be", Assert.Single(run.ErrorLines), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, ScalarType.Float32, null, false)]
    [InlineData("float32", ScalarType.Float32, null, false)]
    [InlineData("bf16", ScalarType.BFloat16, null, false)]
    [InlineData("float16", ScalarType.Float16, null, false)]
    [InlineData("bfloat16-float32", ScalarType.BFloat16, ScalarType.Float32, false)]
    [InlineData("bf16-fp32", ScalarType.BFloat16, ScalarType.Float32, false)]
    [InlineData("float16-float32", ScalarType.Float16, ScalarType.Float32, false)]
    [InlineData("auto", ScalarType.BFloat16, null, true)]
    public void DTypeValuesMapToStorageComputeAndAuto(string? value, ScalarType storage, ScalarType? compute, bool auto) =>
        Assert.Equal(new ModelDType(storage, compute, auto), Sources.ParseDType(value));

    [Theory]
    [InlineData("float32-bfloat16")]
    [InlineData("bfloat16-float16")]
    [InlineData("Auto")]
    [InlineData("int8")]
    public async Task BadDTypeValuesAreUsageErrors(string value)
    {
        using var dir = new TempDir();
        var run = await CliRun.Llava(Valid("generate", dir, "--dtype", value));
        Assert.Equal(ErrorReporting.UsageError, run.Code);
        var line = Assert.Single(run.ErrorLines);
        Assert.Contains("--dtype must be float32, bfloat16, float16, bfloat16-float32, float16-float32 or auto", line, StringComparison.Ordinal);
        Assert.Contains(value, line, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("CPU")]
    public void MalformedDevicesAreRejected(string value)
    {
        var ex = Assert.Throws<CliUsageException>(() => Sources.ParseDevice(value, cudaDevices: 2));
        Assert.Contains("--device must be cpu, cuda or cuda:N", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DevicesMapToTorchDevices()
    {
        Assert.Equal(DeviceType.CPU, Sources.ParseDevice(null).type);
        Assert.Equal(DeviceType.CPU, Sources.ParseDevice("cpu").type);
        var cuda = Sources.ParseDevice("cuda", cudaDevices: 1);
        Assert.Equal((DeviceType.CUDA, 0), (cuda.type, cuda.index));
        var second = Sources.ParseDevice("cuda:1", cudaDevices: 2);
        Assert.Equal((DeviceType.CUDA, 1), (second.type, second.index));
        var ex = Assert.Throws<CliUsageException>(() => Sources.ParseDevice("cuda:2", cudaDevices: 2));
        Assert.Contains("2 CUDA devices", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void PlainProgressPrintsEachQuarterOnce()
    {
        using var stderr = new StringWriter();
        var progress = new CliProgress(stderr, live: false);
        Assert.False(progress.IsLive);
        using (var phase = progress.Begin("loading weights"))
        {
            for (int i = 1; i <= 160; i++)
            {
                phase.Report(i, 160);
            }
        }

        Assert.Equal(
            ["loading weights: 25% (40/160)", "loading weights: 50% (80/160)", "loading weights: 75% (120/160)", "loading weights: 100% (160/160)"],
            stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public void PlainProgressPrintsOnlyTheHighestQuarterOfAJumpAndOneLineForAnUnknownTotal()
    {
        using var stderr = new StringWriter();
        var progress = new CliProgress(stderr, live: false);
        using (var phase = progress.Begin("x"))
        {
            phase.Report(1, 0);
            phase.Report(2, 0);
            phase.Report(1, 10);
            phase.Report(10, 10, "loss 0.5");
            phase.Report(10, 10);
        }

        Assert.Equal(["x ...", "x: 100% (10/10)  loss 0.5"], stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public void DownloadsArePhasesPerFileAndAnUnknownSizeIsOneLine()
    {
        using var stderr = new StringWriter();
        var progress = new CliProgress(stderr, live: false);
        using (var downloads = progress.Downloads())
        {
            downloads.Report(new HubDownloadProgress("model.safetensors", 0, 4_000_000));
            downloads.Report(new HubDownloadProgress("config.json", 10, null));
            downloads.Report(new HubDownloadProgress("model.safetensors", 2_000_000, 4_000_000));
            downloads.Report(new HubDownloadProgress("config.json", 20, null));
            downloads.Report(new HubDownloadProgress("model.safetensors", 4_000_000, 4_000_000));

            // A completed file's phase is over: a repeated last report prints nothing.
            downloads.Report(new HubDownloadProgress("model.safetensors", 4_000_000, 4_000_000));
        }

        Assert.Equal(
            [
                "downloading config.json ...",
                "downloading model.safetensors (4.0 MB): 50% (2000000/4000000)",
                "downloading model.safetensors (4.0 MB): 100% (4000000/4000000)",
            ],
            stderr.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    [Fact]
    public void LivePhasesShareOneDisplayAndEndIt()
    {
        // Nested phases (a download during "loading weights") must not start a second Spectre live display, which
        // Spectre refuses; and once all are over, a new phase starts a new display.
        using var stderr = new StringWriter();
        var progress = new CliProgress(stderr, live: true);
        Assert.True(progress.IsLive);
        using (var outer = progress.Begin("loading weights"))
        {
            using (var inner = progress.Begin("downloading x"))
            {
                inner.Report(1, 2);
                inner.Report(2, 2);
            }

            outer.Report(3, 3, "done");
        }

        using (var again = progress.Begin("encoding images"))
        {
            again.Report(1, 1);
        }

        Assert.Contains("loading weights", stderr.ToString(), StringComparison.Ordinal);
        Assert.Contains("encoding images", stderr.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task FeaturesShowsLoadingAndImageProgressOnStderrOnly()
    {
        var run = (await CliRun.Llava(
            "features", "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--explanations", CliRun.ExplanationsFile,
            "--image-dir", Path.GetDirectoryName(Fixture.Image("gray_l"))!, "--top-k", "3", "--device", "cpu")).Succeeded();

        Assert.Contains(run.ProgressLines, l => l.StartsWith("loading weights: 100% (", StringComparison.Ordinal));
        Assert.Contains(run.ProgressLines, l => l.StartsWith("encoding images: 100% (", StringComparison.Ordinal));

        // At most one line per quarter per phase, and none of it in the table on stdout.
        Assert.InRange(run.ProgressLines.Count(l => l.StartsWith("loading weights", StringComparison.Ordinal)), 1, 4);
        Assert.InRange(run.ProgressLines.Count(l => l.StartsWith("encoding images", StringComparison.Ordinal)), 1, 4);
        Assert.Empty(run.MessageLines);
        Assert.DoesNotContain("loading weights", run.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("encoding images", run.Stdout, StringComparison.Ordinal);
        Assert.Contains("gray_l", run.Stdout, StringComparison.Ordinal);
    }
}
