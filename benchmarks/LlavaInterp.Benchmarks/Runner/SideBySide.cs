using System.Diagnostics;
using System.Text.Json;
using LlavaInterp.Llava;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Native;
using LlavaInterp.Nn;
using LlavaInterp.Sae;
using LlavaInterp.TensorFiles;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;

namespace LlavaInterp.Benchmarks.Runner;

/// <summary>
/// The speed table of docs/performance.md on a checkpoint folder, as plain timings (medians of <c>--runs</c> after a
/// warm-up) printed as JSON, so the same paths can be timed next to Hugging Face's on any machine:
/// <c>make-bench-checkpoint OUT --config bench-config.json</c> writes a random-weight checkpoint of that config (real
/// shapes, no tokenizer needed), <c>side-by-side --model OUT [--runs 3]</c> times load, vision + projector, prefill
/// (last and all logits), a forward stopped after block 4, generation (time to first token, decode step), an SAE
/// encode at Gemma-2b width, and per dtype mode (bf16; bf16 weights computed in fp32; the mode <c>AutoComputeDType</c>
/// picks, and what its probe measured) a prefill, a KV-cached decode step and the parameter bytes.
/// </summary>
public static class SideBySide
{
    private const string Prompt = "Describe the image.";

    /// <summary>Writes the random-weight checkpoint: <c>make-bench-checkpoint OUT --config CONFIG.json</c>.</summary>
    public static int MakeCheckpoint(string[] args)
    {
        string output = args.FirstOrDefault() ?? throw new ArgumentException("usage: make-bench-checkpoint OUT --config CONFIG.json");
        string configPath = Option(args, "--config") ?? throw new ArgumentException("--config CONFIG.json is required");
        Directory.CreateDirectory(output);
        File.Copy(configPath, Path.Combine(output, "config.json"), overwrite: true);
        var config = LlavaConfig.Load(Path.Combine(output, "config.json"));
        var clock = Stopwatch.StartNew();
        using var model = new HookedLlava(config);
        MidSizeLlava.InitializeRandom(model, 1234);

        var tensors = model.state_dict().Select(kv => new KeyValuePair<string, torch.Tensor>(kv.Key, kv.Value)).ToList();
        SafetensorsWriter.Save(Path.Combine(output, "model.safetensors"), tensors);
        Console.Error.WriteLine($"wrote {tensors.Count} tensors ({tensors.Sum(t => t.Value.NumberOfElements) / 1e9:F2} G parameters) to {output} in {clock.Elapsed.TotalSeconds:F0} s");
        return 0;
    }

    /// <summary>
    /// Times the table's paths: <c>side-by-side --model DIR [--runs N] [--dtype-modes-only]</c>; the last flag keeps
    /// only the float32 last-position prefill and decode step as the baseline of the dtype modes.
    /// </summary>
    public static int Run(string[] args)
    {
        string folder = Option(args, "--model") ?? throw new ArgumentException("usage: side-by-side --model DIR [--runs N] [--dtype-modes-only]");
        int runs = int.Parse(Option(args, "--runs") ?? "3", System.Globalization.CultureInfo.InvariantCulture);
        bool modesOnly = args.Contains("--dtype-modes-only");
        // The fixture tokenizer's <image> id stands in for the config's (costs do not depend on which row it is).
        var stored = LlavaConfig.Load(Path.Combine(folder, "config.json"));
        var tokenizer = GemmaTokenizer.FromPretrained(MidSizeLlava.FixtureModelDir);
        var config = stored with { ImageTokenIndex = tokenizer.TokenToId("<image>") ?? throw new InvalidOperationException("the fixture tokenizer has no <image> token") };
        var results = new Dictionary<string, double[]>();
        var libtorch = LibTorchVersion.Check();

        // Library load (mapped): build the modules and map the checkpoint's tensors into them.
        HookedLlava? model = null;
        results["load_mapped_s"] = Time(runs, () =>
        {
            model?.Dispose();
            model = Load(folder, config, torch.ScalarType.Float32);
        });

        using var prompt = MakePrompt(config, tokenizer);
        using var inference = torch.inference_mode();
        var input = LlavaInput.From(prompt);
        results["prefill_last_logits_s"] = Time(runs, () => model!.call(input with { LogitsToKeep = 1 }).Dispose());
        if (!modesOnly)
        {
            TimeFloat32Paths(runs, model!, prompt, input, config, results);
        }

        results["decode_step_direct_s"] = DecodeSteps(runs, model!, input);
        var bytes = new Dictionary<string, long> { ["fp32"] = ParameterBytes(model!) };
        model!.Dispose();
        foreach (var (name, compute) in new[] { ("bf16", (torch.ScalarType?)null), ("bf16_fp32", torch.ScalarType.Float32) })
        {
            using var mode = Load(folder, config, torch.ScalarType.BFloat16, compute);
            results[$"{name}_prefill_last_logits_s"] = Time(runs, () => mode.call(input with { LogitsToKeep = 1 }).Dispose());
            results[$"{name}_decode_step_direct_s"] = DecodeSteps(runs, mode, input);
            bytes[name] = ParameterBytes(mode);
        }

        // Auto as a load runs it: the probe at the language model's MLP shape, then the chosen mode.
        var probeClock = Stopwatch.StartNew();
        var chosen = ComputeDTypes.Choose(torch.ScalarType.BFloat16, null, auto: true, config.TextConfig.HiddenSize, config.TextConfig.IntermediateSize, torch.CPU, NullLogger.Instance, out var probe);
        double probeSeconds = probeClock.Elapsed.TotalSeconds;
        using (var auto = Load(folder, config, torch.ScalarType.BFloat16, chosen))
        {
            results["auto_prefill_last_logits_s"] = Time(runs, () => auto.call(input with { LogitsToKeep = 1 }).Dispose());
        }

        var report = new Dictionary<string, object>
        {
            ["model"] = Path.GetFullPath(folder),
            ["text_layers"] = stored.TextConfig.NumHiddenLayers,
            ["prompt_positions"] = prompt.Ids.Count,
            ["image_tokens"] = prompt.ImageTokenPositions.Count,
            ["threads"] = torch.get_num_threads(),
            ["cpu_vendor"] = NativeRuntime.CpuVendor(),
            ["mkl_shim"] = NativeRuntime.Initialize().MklShimApplied,
            ["libtorch"] = libtorch.LoadedVersion ?? "?",
            ["cpu_capability"] = libtorch.CpuCapability ?? "?",
            ["parameter_bytes"] = bytes,
            ["auto"] = new Dictionary<string, object>
            {
                ["chose_compute_dtype"] = chosen.ToString(),
                ["probe_shape"] = $"[{probe!.Tokens} x {probe.InFeatures}] x [{probe.InFeatures} x {probe.OutFeatures}]",
                ["probe_fp32_ms"] = Math.Round(probe.Float32Time.TotalMilliseconds, 2),
                ["probe_bf16_ms"] = Math.Round(probe.StorageTime.TotalMilliseconds, 2),
                ["probe_speedup"] = Math.Round(probe.Speedup, 3),
                ["probe_wall_s"] = Math.Round(probeSeconds, 3),
            },
            ["runs"] = results.ToDictionary(kv => kv.Key, kv => kv.Value.Select(v => Math.Round(v, 4)).ToArray()),
            ["medians"] = results.ToDictionary(kv => kv.Key, kv => Math.Round(Median(kv.Value), 4)),
        };
        Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    // The float32 rows of the table beyond the last-position prefill (skipped by --dtype-modes-only).
    private static void TimeFloat32Paths(int runs, HookedLlava model, LlavaPrompt prompt, LlavaInput input, LlavaConfig config, Dictionary<string, double[]> results)
    {
        results["vision_projector_s"] = Time(runs, () => model.GetImageFeatures(prompt.PixelValues!).Dispose());
        results["prefill_all_logits_s"] = Time(runs, () => model.call(input).Dispose());
        results["forward_stop_after_block_4_s"] = Time(runs, () =>
        {
            var (output, cache) = model.RunWithCache(input with { ComputeLogits = false }, n => n == "blocks.4.hook_resid_post", stopAtLayer: 5);
            output.Dispose();
            cache.Dispose();
        });

        // Generation without stop tokens (exactly N tokens; the model has no processor, so nothing is decoded): time to
        // first token = a 1-token generation (prefill + one sampling step); decode step = the other 31 tokens' share.
        var one = Time(runs, () => model.Generate(prompt, new GenerationOptions { MaxNewTokens = 1, StopTokenIds = [] }));
        var thirtyTwo = Time(runs, () => model.Generate(prompt, new GenerationOptions { MaxNewTokens = 32, StopTokenIds = [] }));
        results["generate32_s"] = thirtyTwo;
        results["generate32_time_to_first_token_s"] = one;
        results["decode_step_s"] = [.. thirtyTwo.Select(t => (t - Median(one)) / 31)];

        using (var sae = MidSizeLlava.RandomSae(config.TextConfig.HiddenSize, 16384, "blocks.4.hook_resid_post", 4))
        using (var x = torch.randn([prompt.Ids.Count, config.TextConfig.HiddenSize], generator: new torch.Generator(5)))
        {
            results["sae_encode_fp32_s"] = Time(runs, () => sae.Encode(x).Dispose());
        }
    }

    private static HookedLlava Load(string folder, LlavaConfig config, torch.ScalarType dtype, torch.ScalarType? computeDType = null)
    {
        var model = new HookedLlava(config, processor: null, dtype, computeDType: computeDType);
        using var source = Checkpoint.Open(folder);
        model.LoadWeights(source);
        return model;
    }

    // `<bos>` + chat turn with one 640×480 image (576 image tokens), through the fixture tokenizer: no tokenizer of
    // the checkpoint's size is needed.
    private static LlavaPrompt MakePrompt(LlavaConfig config, GemmaTokenizer tokenizer)
    {
        var processor = new LlavaProcessor(tokenizer, new ClipImageProcessor(MidSizeLlava.ImageProcessorConfig), config);
        string dir = MidSizeLlava.NewTempDir();
        try
        {
            return processor.Prepare(Prompt, [MidSizeLlava.WriteImage(dir, 0, jpeg: false)]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    // One KV-cached decode step after the prompt, timed alone: the prompt runs once into a cache, then each timed step
    // appends one token and the cache is cut back to the prompt. Memory-bound, so it shows what casting weights at their
    // use costs (a bf16 weight read, an fp32 copy written and read again) where a prefill hides it behind the GEMMs.
    private static double[] DecodeSteps(int runs, HookedLlava model, LlavaInput input)
    {
        using var cache = model.LanguageModel.CreateCache();
        model.call(input with { Cache = cache, LogitsToKeep = 1 }).Dispose();
        long promptLength = cache.Length;
        using var next = torch.tensor(new long[] { 2 }).view(1, 1);
        var step = new LlavaInput { InputIds = next, Cache = cache, LogitsToKeep = 1 };
        return Time(runs, () =>
        {
            model.call(step).Dispose();
            cache.Truncate(promptLength);
        });
    }

    private static long ParameterBytes(HookedLlava model) => model.parameters().Sum(p => p.numel() * p.element_size());

    // One warm-up, then `runs` timed calls, each in its own dispose scope.
    private static double[] Time(int runs, Action action)
    {
        var times = new double[runs + 1];
        for (int i = 0; i <= runs; i++)
        {
            using var scope = torch.NewDisposeScope();
            var clock = Stopwatch.StartNew();
            action();
            times[i] = clock.Elapsed.TotalSeconds;
        }

        return times[1..];
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }
}
