using LlavaInterp.Analysis;
using BenchmarkDotNet.Attributes;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using TorchSharp;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// An SAE feature sweep over 8 images at the mid-size config of <see cref="MidSizeLlava"/>: for each 640×480 PNG,
/// prepare the chat prompt (decode and preprocess the image), run the model to the SAE's hook point, encode with a
/// random SAE (d_in 1024, d_sae 16384, <c>blocks.3.hook_resid_post</c>) and take the top 10 features summed over the
/// image tokens. The run stops after block 3 (<c>stopAtLayer: 4</c>); compare one image's share with
/// <see cref="LlavaBenchmarks.Prefill"/> (all 8 blocks and the unembedding) for what stopping early saves.
/// Three iterations: one operation is 8 images; images/s = 8 / mean. <see cref="BatchSize"/> images share a forward
/// (<see cref="LlavaProcessor.PrepareBatch"/>, as <c>FeatureAnalyzer.BatchSize</c> does).
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 3)]
public class SaeSweepBenchmarks
{
    private const int Images = 8;
    private const string HookName = "blocks.3.hook_resid_post";
    private HookedLlava _model = null!;
    private LlavaProcessor _processor = null!;
    private SparseAutoencoder _sae = null!;
    private string _dir = null!;
    private string[] _paths = null!;

    /// <summary>Images per forward.</summary>
    [Params(1, 4)]
    public int BatchSize { get; set; } = 1;

    [GlobalSetup]
    public void Setup()
    {
        (_model, _processor) = MidSizeLlava.Create();
        _dir = MidSizeLlava.NewTempDir();
        _paths = Enumerable.Range(0, Images).Select(i => MidSizeLlava.WriteImage(_dir, i, jpeg: false)).ToArray();
        _sae = MidSizeLlava.RandomSae(_model.Config.TextConfig.HiddenSize, 16384, HookName, 3);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _sae.Dispose();
        _model.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>8 images, each run to the SAE's layer only.</summary>
    [Benchmark]
    public double SweepStopAtLayer() => Sweep(_sae.HookLayer + 1);

    private double Sweep(int? stopAtLayer)
    {
        using var _ = torch.inference_mode();
        double total = 0;
        foreach (var chunk in _paths.Chunk(BatchSize))
        {
            using var scope = torch.NewDisposeScope();
            using var batch = _processor.PrepareBatch(chunk.Select(path => ("What is in this image?", (IReadOnlyList<string>)[path])).ToArray());
            var (output, cache) = _model.RunWithCache(LlavaInput.From(batch), n => n == HookName, stopAtLayer: stopAtLayer);
            using (output)
            using (cache)
            {
                var acts = _sae.Encode(cache[HookName]);
                for (int row = 0; row < chunk.Length; row++)
                {
                    var top = FeatureActivations.TopK(acts[row], PositionSelector.At(batch.ImageTokenPositions[row].Select(p => (long)p)), FeatureAggregation.Sum, k: 10);
                    total += top[0].Value;
                }
            }
        }

        return total;
    }
}
