using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using LlavaInterp.Sae;
using TorchSharp;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// SAE throughput at Gemma-2b scale (d_in 2048, d_sae 16384, random weights) on 600 positions (a LLaVA prompt with
/// 576 image tokens): encode, encode + decode, and the splice with the error term (clean path plus hook probes).
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class SaeBenchmarks
{
    private SparseAutoencoder _sae = null!;
    private SaeSplice _splice = null!;
    private torch.Tensor _x = null!;

    /// <summary>Positions per call.</summary>
    [Params(600)]
    public int Positions { get; set; }

    /// <summary>Intra-op threads given to libtorch.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        const int dIn = 2048, dSae = 16384;
        torch.set_num_threads(Threads);
        var g = new torch.Generator(0);
        var weights = new Dictionary<string, torch.Tensor>
        {
            ["W_enc"] = torch.randn(dIn, dSae, generator: g) * 0.02,
            ["W_dec"] = torch.randn(dSae, dIn, generator: g) * 0.02,
            ["b_enc"] = torch.randn(dSae, generator: g) * 0.01 - 0.02,
            ["b_dec"] = torch.randn(dIn, generator: g) * 0.01,
        };
        var config = SaeConfig.Parse($$"""{"d_in": {{dIn}}, "d_sae": {{dSae}}, "hook_name": "blocks.12.hook_resid_post", "hook_layer": 12}""", "benchmark");
        _sae = SparseAutoencoder.FromTensors(config, weights);
        foreach (var t in weights.Values)
        {
            t.Dispose();
        }

        _splice = _sae.Splice();
        _x = torch.randn(1, Positions, dIn, generator: g);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _x.Dispose();
        _splice.Dispose();
        _sae.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void Encode()
    {
        using var _ = torch.inference_mode();
        _sae.Encode(_x).Dispose();
    }

    [Benchmark]
    public void Forward()
    {
        using var _ = torch.inference_mode();
        _sae.Forward(_x).Dispose();
    }

    [Benchmark]
    public void SpliceWithErrorTerm()
    {
        using var _ = torch.inference_mode();
        _splice.call(_x).Dispose();
    }
}
