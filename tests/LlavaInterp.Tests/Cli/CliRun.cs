using System.Text.Json;
using LlavaInterp.Tests.Support;
using CliApp = LlavaInterp.Cli.Cli;

namespace LlavaInterp.Tests.Cli;

/// <summary>The result of one in-process run of a command line.</summary>
public sealed record CliResult(int Code, string Stdout, string Stderr)
{
    /// <summary>The non-empty stderr lines.</summary>
    public IReadOnlyList<string> ErrorLines => Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>The stderr lines that are not plain progress lines (<c>loading weights: 50% (3/6)</c>): the messages.</summary>
    public IReadOnlyList<string> MessageLines => ErrorLines.Where(l => !CliRun.IsProgressLine(l)).ToList();

    /// <summary>The plain progress lines on stderr.</summary>
    public IReadOnlyList<string> ProgressLines => ErrorLines.Where(CliRun.IsProgressLine).ToList();

    /// <summary>Fails with both streams when the run did not succeed.</summary>
    public CliResult Succeeded()
    {
        Assert.True(Code == 0, $"exit code {Code}\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
        return this;
    }
}

/// <summary>Runs <c>llava-interp</c> (or a sample) in-process with captured output, and the fixture's inputs.</summary>
public static class CliRun
{
    /// <summary>
    /// Whether a line is one of CliProgress's plain lines: <c>label: 25|50|75|100% (done/total)</c>, maybe with details,
    /// or <c>label ...</c> for work of unknown size.
    /// </summary>
    public static bool IsProgressLine(string line) =>
        System.Text.RegularExpressions.Regex.IsMatch(line, @"^([^:]+: (25|50|75|100)% \(\d+/\d+\)(  .*)?|[^:]+ \.\.\.)$");

    /// <summary>Runs <c>llava-interp</c> with these arguments.</summary>
    public static Task<CliResult> Llava(params string[] args) => Capture((o, e) => CliApp.RunAsync(args, o, e, CancellationToken.None));

    /// <summary>Runs an entry point with captured stdout/stderr.</summary>
    public static async Task<CliResult> Capture(Func<TextWriter, TextWriter, Task<int>> run)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        int code = await run(stdout, stderr);
        return new CliResult(code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>The chat template as HF renders it for the image prompt (starts with &lt;bos&gt;; tokenizing it adds another).</summary>
    public static string RenderedImagePrompt =>
        Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("rendered_chat_template").GetString()!;

    /// <summary>The standard SAE folder of the fixture.</summary>
    public static string SaeDir => Fixture.Path("sae", "standard-L2");

    /// <summary>The fixture's explanations export.</summary>
    public static string ExplanationsFile => Fixture.Path("sae", "explanations_tiny-llava-gemma_2-res-tiny256.json");

    /// <summary>An int list from the manifest, e.g. <c>Ints("generation", "image_chat", "new_ids")</c>.</summary>
    public static int[] ManifestInts(params string[] path) => Element(path).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>A string from the manifest.</summary>
    public static string ManifestString(params string[] path) => Element(path).GetString()!;

    /// <summary>The new tokens of a golden <c>*.sequences</c> tensor [1, prompt + new] after the prompt.</summary>
    public static int[] NewIds(string goldenKey, int promptLength)
    {
        using var seq = Fixture.Load(goldenKey);
        return seq[0].data<long>().ToArray().Skip(promptLength).Select(v => (int)v).ToArray();
    }

    /// <summary>An int64 golden tensor as ints.</summary>
    public static int[] GoldenInts(string key)
    {
        using var t = Fixture.Load(key);
        return t.flatten().data<long>().ToArray().Select(v => (int)v).ToArray();
    }

    /// <summary>A float golden tensor as doubles.</summary>
    public static double[] GoldenDoubles(string key)
    {
        using var t = Fixture.Load(key);
        return t.flatten().to(TorchSharp.torch.ScalarType.Float64).data<double>().ToArray();
    }

    /// <summary>Every file under a folder (recursively), relative names.</summary>
    public static string[] FilesUnder(string dir) =>
        Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(dir, f)).Order(StringComparer.Ordinal).ToArray();

    private static JsonElement Element(string[] path)
    {
        var e = Fixture.Manifest;
        foreach (var p in path)
        {
            e = e.GetProperty(p);
        }

        return e;
    }
}
