using LlavaInterp.Analysis;
using LlavaInterp.Sae;
using LlavaInterp.Samples.ClassSweep;
using LlavaInterp.Tests.Cli;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Samples;

public sealed class ClassSweepTests
{
    private static readonly Dictionary<string, string[]> Layout = new()
    {
        ["cat"] = ["gradient_rgb", "tiny_5x7"],
        ["dog"] = ["gray_l", "rgba_alpha"],
    };

    private static string MakeImageNetFolder(TempDir dir)
    {
        string root = Path.Combine(dir.Path, "images");
        foreach (var (cls, images) in Layout)
        {
            Directory.CreateDirectory(Path.Combine(root, cls));
            foreach (var image in images)
            {
                File.Copy(Fixture.Image(image), Path.Combine(root, cls, image + ".png"));
            }
        }

        // A third image the per-class limit leaves out.
        File.Copy(Fixture.Image("gray_l"), Path.Combine(root, "cat", "zz_extra.png"));
        return root;
    }

    private static Task<CliResult> Sweep(string images, string output, params string[] extra) =>
        CliRun.Capture((o, e) => ClassSweepSample.RunAsync(
            ["--image-dir", images, "--out", output, "--model", Fixture.ModelDir, "--sae", CliRun.SaeDir, "--per-class", "2", "--top-k", "3", "--exclude-dense", "0.3", .. extra],
            o, e, CancellationToken.None));

    [Fact]
    public async Task SweepWritesCsvAndMarkdownAndResumes()
    {
        using var dir = new TempDir();
        string images = MakeImageNetFolder(dir);
        string output = Path.Combine(dir.Path, "out");

        var first = (await Sweep(images, output)).Succeeded();
        Assert.Contains("2 analysed, 0 already done", first.Stdout, StringComparison.Ordinal);
        Assert.Equal(["classes: 50% (1/2)  cat", "classes: 100% (2/2)  dog"], first.ProgressLines);
        Assert.Equal(["classes/cat.safetensors", "classes/dog.safetensors", "features.csv", "features.md"], CliRun.FilesUnder(output));
        string csv = await File.ReadAllTextAsync(Path.Combine(output, "features.csv"));
        string md = await File.ReadAllTextAsync(Path.Combine(output, "features.md"));
        var rows = csv.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("class,rank,feature,activation,description", rows[0]);
        Assert.Equal(7, rows.Length);

        // Independent check: mean over each class's 2 images of the image-token sums, dense features dropped.
        var expected = Expected(images, maxDensity: 0.3, topK: 3);
        foreach (var (cls, features) in expected)
        {
            var mine = rows.Skip(1).Where(r => r.StartsWith(cls + ",", StringComparison.Ordinal)).Select(r => r.Split(',')).ToArray();
            Assert.Equal(["1", "2", "3"], mine.Select(c => c[1]));
            Assert.Equal(features.Select(f => f.Index.ToString(System.Globalization.CultureInfo.InvariantCulture)), mine.Select(c => c[2]));
            for (int i = 0; i < 3; i++)
            {
                TensorAssert.Close(features[i].Value, double.Parse(mine[i][3], System.Globalization.CultureInfo.InvariantCulture), printedDecimals: DecimalsOf(mine[i][3]), what: $"{cls} #{i + 1}");
            }
        }

        Assert.Contains("| **CLASS** | **Descriptions with Index** |", md, StringComparison.Ordinal);
        Assert.Contains($"| cat | {expected["cat"][0].Index}", md, StringComparison.Ordinal);

        // Rerun: nothing is recomputed and the tables are the same.
        var stamps = Directory.GetFiles(Path.Combine(output, ClassSweepSample.StateFolder)).ToDictionary(f => f, File.GetLastWriteTimeUtc);
        var second = (await Sweep(images, output)).Succeeded();
        Assert.Contains("0 analysed, 2 already done", second.Stdout, StringComparison.Ordinal);
        Assert.All(stamps, s => Assert.Equal(s.Value, File.GetLastWriteTimeUtc(s.Key)));
        Assert.Equal(csv, await File.ReadAllTextAsync(Path.Combine(output, "features.csv")));

        // An interrupted sweep (one class saved, one missing) finishes the missing class only.
        File.Delete(Path.Combine(output, ClassSweepSample.StateFolder, "dog.safetensors"));
        var third = (await Sweep(images, output)).Succeeded();
        Assert.Contains("1 analysed, 1 already done", third.Stdout, StringComparison.Ordinal);
        Assert.Equal(csv, await File.ReadAllTextAsync(Path.Combine(output, "features.csv")));
        Assert.Equal(md, await File.ReadAllTextAsync(Path.Combine(output, "features.md")));
    }

    [Fact]
    public async Task BatchedSweepGivesTheSameTables()
    {
        // Two images per forward: the same tables as one per forward (the batching is not a setting of the numbers).
        using var dir = new TempDir();
        string images = MakeImageNetFolder(dir);
        (await Sweep(images, Path.Combine(dir.Path, "one"))).Succeeded();
        (await Sweep(images, Path.Combine(dir.Path, "two"), "--batch-size", "2")).Succeeded();
        string one = await File.ReadAllTextAsync(Path.Combine(dir.Path, "one", "features.csv"));
        string two = await File.ReadAllTextAsync(Path.Combine(dir.Path, "two", "features.csv"));
        Assert.Equal(one.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(r => r.Split(',')[..3]), two.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(r => r.Split(',')[..3]));
        Assert.Equal(2, (await Sweep(images, Path.Combine(dir.Path, "zero"), "--batch-size", "0")).Code);
    }

    [Fact]
    public async Task SavedClassesFromOtherSettingsAreNotReused()
    {
        using var dir = new TempDir();
        string images = MakeImageNetFolder(dir);
        string output = Path.Combine(dir.Path, "out");
        (await Sweep(images, output)).Succeeded();
        var run = await Sweep(images, output, "--prompt", "What is it?");
        Assert.Equal(2, run.Code);
        Assert.Contains("other settings", Assert.Single(run.ErrorLines), StringComparison.Ordinal);
    }

    [Fact]
    public async Task FolderWithoutClassesIsAnError()
    {
        using var dir = new TempDir();
        var run = await Sweep(dir.Path, Path.Combine(dir.Path, "out"));
        Assert.Equal(2, run.Code);
        Assert.Contains("class", Assert.Single(run.ErrorLines), StringComparison.Ordinal);
    }

    // Per class: mean over its images of Σ_image-tokens SAE(blocks.2.hook_resid_post), dense features (active on more
    // than maxDensity of all image positions of all classes) removed, top k. Computed with the library directly.
    private static Dictionary<string, FeatureValue[]> Expected(string root, double maxDensity, int topK)
    {
        using var scope = torch.NewDisposeScope();
        using var model = LlavaInterp.Llava.HookedLlava.FromPretrained(Fixture.ModelDir);
        using var sae = SparseAutoencoder.Load(CliRun.SaeDir);
        var means = new Dictionary<string, Tensor>();
        var active = torch.zeros(sae.DSae, ScalarType.Int64);
        long positions = 0;
        foreach (var (cls, images) in Layout)
        {
            var sum = torch.zeros(sae.DSae);
            foreach (var image in images)
            {
                using var prompt = model.Processor!.Prepare("Describe the image.", [Path.Combine(root, cls, image + ".png")]);
                var (output, cache) = model.RunWithCache(LlavaInterp.Llava.LlavaInput.From(prompt), n => n == sae.HookName);
                using (output)
                using (cache)
                {
                    var pos = torch.tensor(prompt.ImageTokenPositions.Select(p => (long)p).ToArray());
                    var acts = sae.Encode(cache[sae.HookName][0]).index_select(0, pos);
                    sum += acts.sum(dim: 0);
                    active += acts.gt(0).sum(dim: 0);
                    positions += pos.shape[0];
                }
            }

            means[cls] = sum / images.Length;
        }

        var dense = (active.to(ScalarType.Float64) / positions).gt(maxDensity);
        Assert.True(dense.any().item<bool>(), "the test should exclude at least one feature");
        return means.ToDictionary(kv => kv.Key, kv =>
        {
            var (values, indices) = torch.where(dense, torch.tensor(float.NegativeInfinity), kv.Value).topk(topK);
            return Enumerable.Range(0, topK).Select(i => new FeatureValue((int)indices[i].item<long>(), values[i].item<float>())).ToArray();
        });
    }

    private static int DecimalsOf(string printed) => printed.Contains('.', StringComparison.Ordinal) ? printed.Length - printed.IndexOf('.', StringComparison.Ordinal) - 1 : 0;
}
