using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using LlavaInterp.Sae.Training;
using TorchSharp;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// SAE training throughput at Gemma-2b scale (d_in 2048, d_sae 16384, standard ReLU + L1): one
/// <see cref="SaeTrainer.Step"/> (forward, backward, clipping, Adam) on a batch of random activations, with the
/// matmuls in float32 or bfloat16 (float32 master weights either way). Tokens/s = batch / mean time.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 1, iterationCount: 3)]
public class SaeTrainingBenchmarks
{
    private SaeTrainer _trainer = null!;
    private torch.Tensor _batch = null!;

    /// <summary>Activations per step.</summary>
    [Params(512)]
    public int Batch { get; set; }

    /// <summary>The dtype of the forward and backward matmuls.</summary>
    [Params("float32", "bfloat16")]
    public string ComputeDType { get; set; } = "float32";

    [GlobalSetup]
    public void Setup()
    {
        _trainer = new SaeTrainer(new SaeTrainingOptions { DIn = 2048, DSae = 16384, ComputeDType = ComputeDType, L1Coefficient = 5, LearningRate = 1e-4 });
        _batch = torch.randn([Batch, 2048], generator: new torch.Generator(0)).DetachFromDisposeScope();
    }

    /// <summary>One optimization step.</summary>
    [Benchmark]
    public double Step() => _trainer.Step(_batch).Loss;

    [GlobalCleanup]
    public void Cleanup()
    {
        _trainer.Dispose();
        _batch.Dispose();
    }
}
