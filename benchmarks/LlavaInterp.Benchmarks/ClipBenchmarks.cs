using BenchmarkDotNet.Attributes;
using LlavaInterp.Models.Clip;
using TorchSharp;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// Forward of the CLIP vision tower at a mid-size config with random weights: ViT-B width (768, 12 heads, MLP 3072)
/// at LLaVA's token count (336 px, patch 14 → 577 tokens), 4 layers. Plain forward, LLaVA's feature layer -2 (skips
/// the last layer) and a full activation cache.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class ClipBenchmarks
{
    private HookedClipVisionModel _model = null!;
    private torch.Tensor _pixels = null!;

    /// <summary>Parameter dtype.</summary>
    [Params(torch.ScalarType.Float32, torch.ScalarType.BFloat16)]
    public torch.ScalarType DType { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var config = new ClipVisionConfig
        {
            HiddenSize = 768,
            IntermediateSize = 3072,
            NumAttentionHeads = 12,
            NumHiddenLayers = 4,
            ImageSize = 336,
            PatchSize = 14,
        };
        _model = new HookedClipVisionModel(config, dtype: DType);
        torch.manual_seed(0);
        using (torch.no_grad())
        {
            // The model is built uninitialised; give it HF-like random weights (norms at identity).
            foreach (var (name, p) in _model.named_parameters())
            {
                if (name.Contains("layer_norm", StringComparison.Ordinal) || name.Contains("layrnorm", StringComparison.Ordinal) || name.Contains("layernorm", StringComparison.Ordinal))
                {
                    // In-place ops hand back the parameter itself: nothing to dispose.
                    _ = name.EndsWith(".weight", StringComparison.Ordinal) ? p.fill_(1) : p.zero_();
                }
                else
                {
                    _ = torch.nn.init.normal_(p, 0, 0.02);
                }
            }
        }

        _pixels = torch.randn(1, 3, 336, 336);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _pixels.Dispose();
        _model.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void Forward()
    {
        using var _ = torch.inference_mode();
        _model.call(new ClipVisionInput(_pixels)).Dispose();
    }

    [Benchmark]
    public void FeatureLayerMinus2()
    {
        using var _ = torch.inference_mode();
        _model.GetFeatureLayer(_pixels, -2).Dispose();
    }

    [Benchmark]
    public void FullCache()
    {
        using var _ = torch.inference_mode();
        var (output, cache) = _model.RunWithCache(new ClipVisionInput(_pixels));
        output.Dispose();
        cache.Dispose();
    }
}
