using System.Text.Json;
using LlavaInterp.Analysis;
using LlavaInterp.Hooks;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Samples;

namespace LlavaInterp.Cli;

/// <summary><c>llava-interp generate</c>: text for an image and a prompt, optionally steered through SAE features.</summary>
public static class GenerateCommand
{
    /// <summary>The command's help.</summary>
    public const string Help = """
        usage: llava-interp generate --model PATH|REPO [--image FILE ...] --prompt TEXT [--raw] [--max-new-tokens N]
                                     [--greedy | --temperature T [--top-p P] [--top-k K] [--seed S]] [--json]
                                     [--sae PATH|RELEASE/ID (--steer F=ALPHA | --clamp F=VALUE | --ablate F) ...
                                      [--positions all|image|generated]] [--dtype float32|bfloat16|float16|bfloat16-float32|auto]
                                     [--device cpu|cuda|cuda:N]

        Prints the generated text (new tokens only), or with --json {"prompt_tokens":[…],"tokens":[…],"text":"…"}.
        Greedy by default; --temperature/--top-p/--top-k sample (--seed makes it reproducible). Stops at <eos>/<end_of_turn>.
        --raw       tokenize --prompt exactly as given (<bos> prepended, each <image> expanded); default: chat format
        --steer F=ALPHA   add ALPHA × the SAE decoder row of feature F at the SAE's hook point (e.g. --steer 4501=-4)
        --clamp F=VALUE   set feature F to VALUE through the SAE (other features and the SAE error unchanged)
        --ablate F        set feature F to 0
        --positions       where edits apply: all (default; prompt and every generated token), image tokens, generated tokens
        """;

    /// <summary>Runs the command.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        if (Cli.WantsHelp(args))
        {
            stdout.Write(Help);
            return 0;
        }

        var a = CliArgs.Parse(args, new HashSet<string> { "raw", "greedy", "json" }, new HashSet<string> { "image", "steer", "clamp", "ablate" }, new HashSet<string> { "model", "prompt", "sae", "positions", "dtype", "device", "max-new-tokens", "temperature", "top-p", "top-k", "seed" });
        string modelPath = a.Required("model");
        string prompt = a.Required("prompt");
        var images = a.All("image");
        bool raw = a.Flag("raw");
        bool json = a.Flag("json");
        var options = Options(a);
        string? saePath = a.Optional("sae");
        var edits = SteeringEdits.Parse(a.All("steer"), a.All("clamp"), a.All("ablate"));
        string? positions = a.Optional("positions");
        var dtype = Sources.ParseDType(a.Optional("dtype"));
        var device = Sources.ParseDevice(a.Optional("device"));

        if (saePath is null && (!edits.IsEmpty || positions is not null))
        {
            throw new CliUsageException("--steer, --clamp, --ablate and --positions need --sae.");
        }

        if (saePath is not null && edits.IsEmpty)
        {
            throw new CliUsageException("--sae needs at least one --steer F=ALPHA, --clamp F=VALUE or --ablate F.");
        }

        if (positions is not null and not ("all" or "image" or "generated"))
        {
            throw new CliUsageException($"--positions must be all, image or generated, got '{positions}'.");
        }

        CommandInputs.ExistingImages(images);
        var progress = CliProgress.For(stderr);
        using var model = await Sources.LoadModelAsync(modelPath, dtype, stderr, ct, device: device, progress: progress).ConfigureAwait(false);
        using var sae = saePath is null ? null : await Sources.LoadSaeAsync(saePath, null, stderr, ct, device: device, progress: progress).ConfigureAwait(false);
        using var prepared = Sources.ProcessorOf(model).Prepare(prompt, images, raw);

        var hooks = new List<HookSpec>();
        if (sae is not null)
        {
            if (!model.HookDict.ContainsKey(sae.Sae.HookName))
            {
                throw new CliUsageException($"the SAE reads '{sae.Sae.HookName}', which is not a hook point of this model.");
            }

            var selector = positions switch
            {
                "image" when prepared.ImageTokenPositions.Count == 0 => throw new CliUsageException("--positions image needs an image in the prompt."),
                "image" => PositionSelector.At(prepared.ImageTokenPositions.Select(p => (long)p)),
                "generated" => PositionSelector.From(prepared.Ids.Count),
                _ => PositionSelector.All,
            };
            hooks.AddRange(edits.ToHooks(sae.Sae, selector));
        }

        using (model.Hooks(hooks))
        {
            if (json)
            {
                var result = model.Generate(prepared, options, ct);
                stdout.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
                {
                    ["prompt_tokens"] = result.PromptTokens,
                    ["tokens"] = result.Tokens,
                    ["text"] = result.Text,
                }, FeatureReport.Json));
            }
            else
            {
                // Text appears as it is generated; the hooks above stay active for every step (each runs in this async flow).
                await foreach (string piece in model.GenerateStreamAsync(prepared, options, ct).ConfigureAwait(false))
                {
                    stdout.Write(piece);
                    await stdout.FlushAsync(ct).ConfigureAwait(false);
                }

                stdout.WriteLine();
            }
        }

        return 0;
    }

    /// <summary>Reads the decoding options; greedy unless a sampling option is given.</summary>
    internal static GenerationOptions Options(CliArgs a)
    {
        bool greedy = a.Flag("greedy");
        int maxNew = CommandInputs.AtLeast(a.Int("max-new-tokens"), 64, 0, "--max-new-tokens");
        double? temperature = a.Double("temperature");
        double? topP = a.Double("top-p");
        int? topK = a.Int("top-k");
        long? seed = a.Optional("seed") is { } s
            ? long.TryParse(s, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out long v) ? v : throw new CliUsageException($"--seed expects an integer, got '{s}'.")
            : null;
        bool sample = temperature is not null || topP is not null || topK is not null;
        if (greedy && (sample || seed is not null))
        {
            throw new CliUsageException("--greedy cannot be combined with --temperature, --top-p, --top-k or --seed.");
        }

        if (!sample && seed is not null)
        {
            throw new CliUsageException("--seed only applies when sampling (give --temperature, --top-p or --top-k).");
        }

        if (temperature is { } t && !(t > 0 && double.IsFinite(t)))
        {
            throw new CliUsageException($"--temperature must be a positive number, got {t}.");
        }

        if (topP is { } p && !(p > 0 && p <= 1))
        {
            throw new CliUsageException($"--top-p must be in (0, 1], got {p}.");
        }

        if (topK is < 0)
        {
            throw new CliUsageException($"--top-k must be 0 or more, got {topK}.");
        }

        return new GenerationOptions
        {
            MaxNewTokens = maxNew,
            DoSample = sample,
            Temperature = temperature ?? 1.0,
            TopP = topP ?? 1.0,
            TopK = topK ?? 0,
            Seed = seed,
        };
    }
}
