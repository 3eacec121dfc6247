using BenchmarkDotNet.Attributes;
using LlavaInterp.Models.Gemma;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// Gemma decoder speed with random weights: hidden 1024, 8 layers, 8 query heads sharing one key/value head (MQA),
/// head_dim 128, intermediate 4096, vocab 32000, float32 on the CPU. Measures a full forward over a prompt and one
/// KV-cached decode step after that prompt.
/// </summary>
[MemoryDiagnoser]
public class GemmaBenchmarks
{
    private HookedGemma _model = null!;
    private Tensor _prompt = null!;
    private Tensor _next = null!;
    private GemmaKvCache _cache = null!;

    /// <summary>Prompt length.</summary>
    [Params(128)]
    public int PromptLength { get; set; }

    /// <summary>Builds the model and a cache holding the prompt.</summary>
    [GlobalSetup]
    public void Setup()
    {
        var config = new GemmaConfig
        {
            VocabSize = 32000,
            HiddenSize = 1024,
            IntermediateSize = 4096,
            NumHiddenLayers = 8,
            NumAttentionHeads = 8,
            NumKeyValueHeads = 1,
            HeadDim = 128,
        };
        _model = new HookedGemma(config);
        _model.InitializeWeights(seed: 1234);
        using var generator = new Generator(99);
        _prompt = randint(3, config.VocabSize, [1, PromptLength], generator: generator).DetachFromDisposeScope();
        _next = randint(3, config.VocabSize, [1, 1], generator: generator).DetachFromDisposeScope();
        _cache = _model.CreateCache(initialCapacity: PromptLength + 16);
        using var _ = _model.call(GemmaInput.FromIds(_prompt, cache: _cache));
    }

    /// <summary>One forward pass over the whole prompt, logits for every position.</summary>
    [Benchmark]
    public float Forward()
    {
        using var scope = NewDisposeScope();
        using var output = _model.call(GemmaInput.FromIds(_prompt));
        return output.Logits![0, -1, 0].item<float>();
    }

    /// <summary>One decode step after the cached prompt (last-position logits), then the cache is cut back.</summary>
    [Benchmark]
    public float DecodeStep()
    {
        using var scope = NewDisposeScope();
        using var output = _model.call(new GemmaInput { InputIds = _next, Cache = _cache, LogitsToKeep = 1 });
        _cache.Truncate(PromptLength);
        return output.Logits![0, -1, 0].item<float>();
    }

    /// <summary>
    /// Reference for <see cref="DecodeStep"/>: only the step's matrix products (q/k/v/o and MLP projections of every
    /// layer and the unembedding) on one token, no norms, attention, cache or hooks. The ratio is the model's overhead.
    /// </summary>
    [Benchmark]
    public float DecodeStepLinearsOnly()
    {
        using var scope = NewDisposeScope();
        var x = _model.Model.EmbedTokens.call(_next);
        foreach (var layer in _model.Model.Layers)
        {
            var attn = layer.SelfAttn;
            var q = attn.QProj.call(x);
            _ = attn.KProj.call(x);
            _ = attn.VProj.call(x);
            var mlp = layer.Mlp;
            x = x + attn.OProj.call(q) + mlp.DownProj.call(mlp.GateProj.call(x) * mlp.UpProj.call(x));
        }

        return nn.functional.linear(x, _model.UnembedWeight)[0, -1, 0].item<float>();
    }

    /// <summary>Frees the model.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _cache.Dispose();
        _prompt.Dispose();
        _next.Dispose();
        _model.Dispose();
    }
}
