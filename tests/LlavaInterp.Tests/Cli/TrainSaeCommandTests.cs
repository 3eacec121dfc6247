using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Cli;

public sealed class TrainSaeCommandTests
{
    [Fact]
    public async Task TrainsOnTheTinyModelWritesASaeLensFolderAndRetrainsFromShards()
    {
        using var dir = new TempDir();
        string outDir = dir.File("sae");
        var run = (await CliRun.Llava(
            "train-sae", "--model", Fixture.ModelDir, "--images", Path.GetDirectoryName(Fixture.Image("gray_l"))!, "--prompt", "Describe the image.",
            "--hook", "blocks.1.hook_resid_post", "--batch", "32", "--epochs", "3", "--lr", "5e-3", "--l1", "1", "--out", outDir)).Succeeded();
        Assert.Contains("explained variance", run.Stdout, StringComparison.Ordinal);
        // Redirected stderr: a few plain progress lines per phase, the last one with the final step's metrics.
        Assert.Contains(run.ProgressLines, l => l.StartsWith("collecting activations: 100% (", StringComparison.Ordinal));
        Assert.Contains(run.ProgressLines, l => l.StartsWith("training SAE: 100% (", StringComparison.Ordinal) && l.Contains("  step ", StringComparison.Ordinal) && l.Contains("loss ", StringComparison.Ordinal));
        Assert.InRange(run.ProgressLines.Count(l => l.StartsWith("training SAE", StringComparison.Ordinal)), 1, 4);
        Assert.DoesNotContain(run.Stdout.Split('\n'), l => CliRun.IsProgressLine(l.Trim()));
        using (var sae = SparseAutoencoder.Load(outDir))
        {
            Assert.Equal("blocks.1.hook_resid_post", sae.HookName);
            Assert.Equal(8 * sae.DIn, sae.DSae);
        }

        Assert.True(File.Exists(Path.Combine(outDir, SparseAutoencoder.SparsityFileName)));
        string again = dir.File("topk");
        (await CliRun.Llava(
            "train-sae", "--from-shards", Path.Combine(outDir, "activations"), "--hook", "blocks.1.hook_resid_post", "--architecture", "topk", "--k", "4",
            "--batch", "32", "--out", again)).Succeeded();
        using var topk = SparseAutoencoder.Load(again);
        Assert.Equal(4, topk.K);

        var bad = await CliRun.Llava("train-sae", "--out", dir.File("x"));
        Assert.Equal(2, bad.Code);
        Assert.Contains("--hook", bad.Stderr, StringComparison.Ordinal);
    }
}
