using System.Diagnostics;
using LlavaInterp.Samples;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Cli;

/// <summary>Ctrl+C and SIGTERM end a run with exit code 130 and one line, at any moment of the run.</summary>
public sealed class CancelSignalsTests
{
    [Fact]
    public void ASignalTheRunDidNotNoticeStillEndsItAsCancelled()
    {
        using var signals = CancelSignals.Unregistered();
        Assert.True(signals.OnSignal(null));
        Assert.True(signals.Token.IsCancellationRequested);
        using var stderr = new StringWriter();
        Assert.Equal(ErrorReporting.Cancelled, signals.Finish(0, stderr, "llava-interp"));
        Assert.Equal("llava-interp: cancelled.", stderr.ToString().Trim());
    }

    [Fact]
    public void ARunThatReportedItsCancellationIsNotReportedTwice()
    {
        using var signals = CancelSignals.Unregistered();
        signals.OnSignal(null);
        using var stderr = new StringWriter();
        Assert.Equal(ErrorReporting.Cancelled, signals.Finish(ErrorReporting.Cancelled, stderr, "llava-interp"));
        Assert.Equal(string.Empty, stderr.ToString());
    }

    [Fact]
    public void WithoutASignalTheRunsCodeStands()
    {
        using var signals = CancelSignals.Unregistered();
        using var stderr = new StringWriter();
        Assert.Equal(0, signals.Finish(0, stderr, "llava-interp"));
        Assert.Equal(2, CancelSignals.Unregistered().Finish(2, stderr, "llava-interp"));
        Assert.Equal(string.Empty, stderr.ToString());
    }

    [Fact]
    public void ASignalAfterTheEndOrASecondOneTakesTheDefaultActionWithoutThrowing()
    {
        // The race that printed an ObjectDisposedException: a signal as the program ends.
        var signals = CancelSignals.Unregistered();
        using var stderr = new StringWriter();
        Assert.Equal(0, signals.Finish(0, stderr, "x"));
        signals.Dispose();
        Assert.False(signals.OnSignal(null));
        Assert.False(signals.Token.IsCancellationRequested);

        using var twice = CancelSignals.Unregistered();
        Assert.True(twice.OnSignal(null));
        Assert.False(twice.OnSignal(null));
    }

    [Fact]
    public async Task SigtermDuringGenerationExitsWith130AndOneLine()
    {
        // The real program in its own process: the signal arrives while it streams tokens.
        string host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
        var start = new ProcessStartInfo(host)
        {
            WorkingDirectory = AppContext.BaseDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // As many tokens as the tiny model's context allows after the short prompt (about a second of generation; a
        // longer run is refused up front as beyond max_position_embeddings).
        int maxNew = LlavaInterp.Llava.LlavaConfig.Load(Fixture.Path("model", "config.json")).TextConfig.MaxPositionEmbeddings - 32;
        foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "llava-interp.dll"), "generate", "--model", Fixture.ModelDir, "--prompt", "hi", "--max-new-tokens", maxNew.ToString(System.Globalization.CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stderrTask = process.StandardError.ReadToEndAsync();
        var buffer = new char[16];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        try
        {
            // Text on stdout means the handlers are registered and the run is under way.
            Assert.True(await process.StandardOutput.ReadAsync(buffer, timeout.Token) > 0, "no output before the signal");

            // The program loaded the MKL shim before libtorch exactly where the library's rule says it should.
            bool shimMapped = File.ReadAllText($"/proc/{process.Id}/maps").Contains(LlavaInterp.Native.NativeRuntime.MklShimFileName, StringComparison.Ordinal);
            bool shimExpected = LlavaInterp.Native.NativeRuntime.WhyNotApplyMklShim(true, LlavaInterp.Native.NativeRuntime.CpuVendor(), Environment.GetEnvironmentVariable(LlavaInterp.Native.NativeRuntime.MklShimVariable)) is null;
            Assert.Equal(shimExpected, shimMapped);
            using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
            {
                await kill.WaitForExitAsync(timeout.Token);
            }

            _ = process.StandardOutput.ReadToEndAsync(timeout.Token);
            await process.WaitForExitAsync(timeout.Token);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill();
            }
        }

        string stderr = await stderrTask;
        Assert.True(process.ExitCode == ErrorReporting.Cancelled, $"exit code {process.ExitCode}, stderr:\n{stderr}");
        // stderr is a pipe here: the model load's plain progress lines come first, then the one cancellation line.
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal("llava-interp: cancelled.", Assert.Single(lines, l => !CliRun.IsProgressLine(l)));
        Assert.Equal("llava-interp: cancelled.", lines[^1]);
    }
}
