using BenchmarkDotNet.Attributes;
using LlavaInterp.Hooks;
using LlavaInterp.Llava;
using TorchSharp;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// End-to-end LLaVA at the mid-size config of <see cref="MidSizeLlava"/> (random weights, float32, CPU) on one
/// chat prompt with one 640×480 image (576 image tokens + the chat text, 590 positions in all): the vision path alone,
/// the multimodal prefill (all logits, and last logits only as generation does), and greedy generation of 16 tokens
/// with the KV cache, without and with a steering hook on the residual stream. The hook sees one new position per
/// decode step (printed at cleanup), i.e. hooks keep the cache in use.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 3)]
public class LlavaBenchmarks
{
    private const string SteeredHook = "blocks.4.hook_resid_post";
    private HookedLlava _model = null!;
    private LlavaPrompt _prompt = null!;
    private string _dir = null!;
    private torch.Tensor _steer = null!;
    private GenerationOptions _options = null!;
    private long _hookPositions;
    private long _hookCalls;

    [GlobalSetup]
    public void Setup()
    {
        (_model, var processor) = MidSizeLlava.Create();
        _dir = MidSizeLlava.NewTempDir();
        string image = MidSizeLlava.WriteImage(_dir, 0, jpeg: false);
        _prompt = processor.Prepare("Describe this image in detail.", [image]);
        _steer = (torch.randn(_model.Config.TextConfig.HiddenSize, generator: new torch.Generator(7)) * 0.5).DetachFromDisposeScope();
        // No stop tokens: every run makes exactly 16 tokens.
        _options = new GenerationOptions { MaxNewTokens = 16, StopTokenIds = [] };
        Console.WriteLine($"// prompt positions: {_prompt.Ids.Count} ({_prompt.ImageTokenPositions.Count} image tokens)");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_hookCalls > 0)
        {
            Console.WriteLine($"// steering hook: {_hookCalls} calls, {_hookPositions} positions, {(double)_hookPositions / _hookCalls:F1} positions per call");
        }

        _steer.Dispose();
        _prompt.Dispose();
        _model.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>CLIP tower to layer -2, CLS dropped, projector: [1, 576, 1024].</summary>
    [Benchmark]
    public long VisionFeatures()
    {
        using var _ = torch.inference_mode();
        using var features = _model.GetImageFeatures(_prompt.PixelValues!);
        return features.shape[1];
    }

    /// <summary>Full multimodal forward with logits for every position (what a plain call or RunWithCache does).</summary>
    [Benchmark(Baseline = true)]
    public long Prefill()
    {
        using var _ = torch.inference_mode();
        using var output = _model.call(LlavaInput.From(_prompt));
        return output.Logits!.shape[1];
    }

    /// <summary>Full multimodal forward, logits for the last position only (generation's prefill, without a cache).</summary>
    [Benchmark]
    public long PrefillLastLogits()
    {
        using var _ = torch.inference_mode();
        using var output = _model.call(LlavaInput.From(_prompt) with { LogitsToKeep = 1 });
        return output.Logits!.shape[1];
    }

    /// <summary>Greedy generation of 16 tokens: prefill into the KV cache, then 15 one-token decode steps.</summary>
    [Benchmark]
    public int Generate16() => _model.Generate(_prompt, _options).Tokens.Count;

    /// <summary>As <see cref="Generate16"/> with a steering hook adding a vector to the residual stream after block 4.</summary>
    [Benchmark]
    public int Generate16WithHook()
    {
        using (_model.Hooks(HookSpec.ForName(SteeredHook, Steer)))
        {
            return _model.Generate(_prompt, _options).Tokens.Count;
        }
    }

    private torch.Tensor Steer(torch.Tensor activation, HookContext context)
    {
        _hookCalls++;
        _hookPositions += activation.shape[1];
        return activation + _steer;
    }
}
