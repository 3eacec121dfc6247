using BenchmarkDotNet.Attributes;
using LlavaInterp.Hooks;
using LlavaInterp.Tests.Hooks;
using TorchSharp;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// Cost of the hooks core on a small residual MLP stack: no hook anywhere, a pass-through hook on every hook point,
/// and a full activation cache.
/// </summary>
[MemoryDiagnoser]
public class HookBenchmarks
{
    private TinyResidualModel _model = null!;
    private torch.Tensor _x = null!;
    private HookSpec[] _noOp = null!;

    /// <summary>Residual width.</summary>
    [Params(256)]
    public int DModel { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(1);
        _model = new TinyResidualModel(DModel, nLayers: 4);
        _x = torch.randn(1, 32, DModel);
        _noOp = [HookSpec.ForFilter(_ => true, (a, _) => a)];
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _x.Dispose();
        _model.Dispose();
    }

    [Benchmark(Baseline = true)]
    public void NoHooks()
    {
        using var _ = torch.inference_mode();
        _model.call(new TinyInput(_x)).Dispose();
    }

    [Benchmark]
    public void NoOpHookEverywhere()
    {
        using var _ = torch.inference_mode();
        _model.RunWithHooks(new TinyInput(_x), _noOp).Dispose();
    }

    [Benchmark]
    public void FullCache()
    {
        using var _ = torch.inference_mode();
        var (output, cache) = _model.RunWithCache(new TinyInput(_x));
        output.Dispose();
        cache.Dispose();
    }
}
