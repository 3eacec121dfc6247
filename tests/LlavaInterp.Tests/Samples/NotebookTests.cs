using System.Text.Json;
using LlavaInterp.Analysis;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;
using Microsoft.CodeAnalysis.CSharp.Scripting;
using Microsoft.CodeAnalysis.Scripting;

namespace LlavaInterp.Tests.Samples;

/// <summary>
/// Runs the code cells of <c>samples/notebooks/llava-interp-tour.ipynb</c> one after another in one script state, as a
/// notebook kernel does (the <c>#r "nuget: …"</c> lines are replaced by references to the built assemblies).
/// </summary>
public sealed class NotebookTests
{
    [Fact]
    public async Task TheTourNotebookRunsOnTheTinyModel()
    {
        var cells = CodeCells(Path.Combine(Repo.Root(), "samples", "notebooks", "llava-interp-tour.ipynb"));
        Assert.True(cells.Count >= 6, "the notebook lost its code cells");
        Assert.Contains(cells[0].Split('\n'), l => l.Trim() == "#r \"nuget: LlavaInterp\"");

        var options = ScriptOptions.Default
            .AddReferences(typeof(HookedLlava).Assembly, typeof(SparseAutoencoder).Assembly, typeof(FeatureAnalyzer).Assembly,
                typeof(LlavaInterp.Hooks.HookPoint).Assembly, typeof(TorchSharp.torch).Assembly, typeof(LlavaInterp.Models.Gemma.HookedGemma).Assembly,
                typeof(LlavaInterp.Models.Clip.HookedClipVisionModel).Assembly, typeof(LlavaInterp.TensorFiles.SafetensorsFile).Assembly)
            .AddImports("System", "System.IO", "System.Linq", "System.Collections.Generic", "System.Threading.Tasks");

        ScriptState<object>? state = null;
        foreach (var cell in cells)
        {
            string code = string.Join('\n', cell.Split('\n').Where(l => !l.TrimStart().StartsWith("#r ", StringComparison.Ordinal)));
            state = state is null ? await CSharpScript.RunAsync(code, options) : await state.ContinueWithAsync(code, options);
        }

        // What the cells computed: a ranked table, a heatmap PNG on disk, plain and steered generations that differ.
        var table = (IReadOnlyList<RankedFeature>)state!.GetVariable("table").Value;
        Assert.Equal(5, table.Count);
        var top = (IReadOnlyList<FeatureValue>)state.GetVariable("top").Value;
        Assert.Equal(top.Select(f => f.Index), table.Select(f => f.Index));
        string heatmap = (string)state.GetVariable("heatmapPath").Value;
        try
        {
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(heatmap).Take(4));
        }
        finally
        {
            File.Delete(heatmap);
        }

        Assert.NotEqual((string)state.GetVariable("plain").Value, (string)state.GetVariable("steered").Value);
    }

    private static List<string> CodeCells(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.GetProperty("cells").EnumerateArray()
            .Where(c => c.GetProperty("cell_type").GetString() == "code")
            .Select(c => string.Concat(c.GetProperty("source").EnumerateArray().Select(l => l.GetString())))
            .ToList();
    }
}
