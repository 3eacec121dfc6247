using System.Globalization;
using LlavaInterp.Llava;
using LlavaInterp.Samples;
using LlavaInterp.TensorFiles;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Cli;

/// <summary><c>llava-interp cache</c>: run one prompt and save activations by hook name.</summary>
public static class CacheCommand
{
    /// <summary>The command's help.</summary>
    public const string Help = """
        usage: llava-interp cache --model PATH|REPO [--image FILE ...] --prompt TEXT [--raw] [--hooks GLOB ...]
                                  [--stop-at-layer N] [--dtype float32|bfloat16|float16|bfloat16-float32|auto]
                                  [--device cpu|cuda|cuda:N] --out FILE.safetensors

        Runs the prompt once and writes a safetensors file with
          input_ids   int64 [pos]           the prompt's token ids (images expanded to their image tokens)
          logits      float32 [pos, vocab]  (absent with --stop-at-layer)
          <hook>      float32               every activation whose hook name matches a --hooks pattern, batch dimension removed
        --hooks     patterns with * (e.g. 'blocks.*.hook_resid_post' hook_image_features); several allowed; default: every hook point
        --raw       tokenize --prompt exactly as given (<bos> prepended, each <image> expanded); default: one user turn of
                    the chat format with a generation prompt, the images first
        --stop-at-layer N   run decoder blocks 0..N-1 only (TransformerLens stop_at_layer)
        """;

    /// <summary>Runs the command.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        if (Cli.WantsHelp(args))
        {
            stdout.Write(Help);
            return 0;
        }

        var a = CliArgs.Parse(args, new HashSet<string> { "raw" }, new HashSet<string> { "image", "hooks" }, new HashSet<string> { "model", "prompt", "out", "stop-at-layer", "dtype", "device" });
        string modelPath = a.Required("model");
        string prompt = a.Required("prompt");
        string outPath = a.Required("out");
        var images = a.All("image");
        bool raw = a.Flag("raw");
        var hookPatterns = a.All("hooks");
        int? stopAtLayer = a.Int("stop-at-layer");
        var dtype = Sources.ParseDType(a.Optional("dtype"));
        var device = Sources.ParseDevice(a.Optional("device"));

        CommandInputs.ExistingImages(images);
        CommandInputs.OutputFile(outPath, "--out");
        if (stopAtLayer is < 0)
        {
            throw new CliUsageException($"--stop-at-layer must be 0 or more, got {stopAtLayer}.");
        }

        // Checked before the model loads: an empty pattern is wrong whatever the model.
        _ = HookGlob.Patterns(hookPatterns);
        using var model = await Sources.LoadModelAsync(modelPath, dtype, stderr, ct, device: device, progress: CliProgress.For(stderr)).ConfigureAwait(false);
        int layers = model.Config.TextConfig.NumHiddenLayers;
        if (stopAtLayer > layers)
        {
            throw new CliUsageException($"--stop-at-layer {stopAtLayer} is outside [0, {layers}]: the model has {layers} decoder blocks (N runs blocks 0..N-1).");
        }

        var globs = HookGlob.ParseAll(hookPatterns.Count == 0 ? ["*"] : hookPatterns, model.HookNames);
        ct.ThrowIfCancellationRequested();

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.inference_mode();
        using var prepared = Sources.ProcessorOf(model).Prepare(prompt, images, raw);
        var input = LlavaInput.From(prepared) with { ComputeLogits = stopAtLayer is null };
        var (output, cache) = model.RunWithCache(input, name => globs.Any(g => g.IsMatch(name)), device: torch.CPU, stopAtLayer: stopAtLayer);
        using (output)
        using (cache)
        {
            var tensors = new List<KeyValuePair<string, Tensor>>
            {
                new("input_ids", prepared.InputIds[0].to(ScalarType.Int64).cpu().contiguous()),
            };
            if (stopAtLayer is null && output.Logits is { } logits)
            {
                tensors.Add(new("logits", Float32(RemoveBatch(logits))));
            }

            foreach (var name in cache.Names)
            {
                tensors.Add(new(name, Float32(RemoveBatch(cache[name]))));
            }

            var metadata = new Dictionary<string, string>
            {
                ["format"] = "llava-interp activation cache",
                ["model"] = modelPath,
                ["prompt"] = prompt,
                ["raw"] = raw ? "true" : "false",
                ["images"] = string.Join("\n", images),
            };
            if (stopAtLayer is int stop)
            {
                metadata["stop_at_layer"] = stop.ToString(CultureInfo.InvariantCulture);
            }

            SafetensorsWriter.Save(outPath, tensors, metadata, cancellationToken: ct);
            stdout.WriteLine($"wrote {tensors.Count} tensors to {outPath}:");
            ConsoleTable.Write(stdout, ["NAME", "SHAPE"], tensors.Select(t => (IReadOnlyList<string>)[t.Key, "[" + string.Join(", ", t.Value.shape) + "]"]));
        }

        return 0;
    }

    // Activations come as [batch, ...] with batch 1 (decoder) or [images, ...] (vision tower); only a batch of one is dropped.
    private static Tensor RemoveBatch(Tensor t) => t.dim() > 0 && t.shape[0] == 1 ? t[0] : t;

    private static Tensor Float32(Tensor t) => t.to(ScalarType.Float32).cpu().contiguous();
}
