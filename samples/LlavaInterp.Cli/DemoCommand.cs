using System.Globalization;
using LlavaInterp.Analysis;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Samples;

namespace LlavaInterp.Cli;

/// <summary>
/// <c>llava-interp demo</c>: the research in one command — top SAE features of images for "Describe the image.", a
/// heatmap of the top feature over the first image, and a greedy generation next to the same generation with that
/// feature subtracted. Runs offline on the tiny model shipped with the repo unless <c>--model</c>/<c>--sae</c> say otherwise.
/// </summary>
public static class DemoCommand
{
    /// <summary>The command's help.</summary>
    public const string Help = """
        usage: llava-interp demo [--model PATH|REPO] [--sae PATH|RELEASE/ID] [--out DIR] [--image FILE ...]
                                 [--feature F] [--alpha A] [--max-new-tokens N] [--explanations FILE|URL]
                                 [--dtype float32|bfloat16|float16|bfloat16-float32|auto] [--device cpu|cuda|cuda:N]
                                 [--colormap jet|viridis|hot|gray] [--range MIN:MAX]

        Without options it runs offline on tiny-llava-gemma, a tiny random-weight test model shipped with the repo
        (its outputs are not meaningful text). --model Intel/llava-gemma-2b --sae gemma-2b-res-jb/blocks.12.hook_resid_post
        runs the real checkpoints (downloaded into the Hugging Face cache); giving only one of them picks the other.
        --out DIR       where the heatmap PNG goes (default out/demo)
        --image FILE    images to analyse (default: the shipped demo images)
        --feature F     the feature to draw and to steer with (default: the first image's top feature for the heatmap,
                        the top feature at the last prompt token for steering)
        --colormap      the heatmap's colour scale (default jet)
        --range MIN:MAX the values drawn as the scale's ends (default: the map's own; either side may be empty)
        --alpha A       steering strength (default -4: subtract 4 × the feature's decoder direction at every position)
        """;

    /// <summary>Runs the command.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        if (Cli.WantsHelp(args))
        {
            stdout.Write(Help);
            return 0;
        }

        var a = CliArgs.Parse(args, new HashSet<string>(), new HashSet<string> { "image" }, new HashSet<string>(["model", "sae", "out", "feature", "alpha", "max-new-tokens", "explanations", "dtype", "device", .. CommandInputs.HeatmapOptions]));
        string? modelArg = a.Optional("model");
        string? saeArg = a.Optional("sae");
        string outDir = a.Optional("out") ?? Path.Combine("out", "demo");
        var images = a.All("image");
        int? feature = a.Int("feature");
        double alpha = a.Double("alpha") ?? -4.0;
        int maxNew = CommandInputs.AtLeast(a.Int("max-new-tokens"), 12, 1, "--max-new-tokens");
        string? explanationsSpec = a.Optional("explanations");
        var dtype = Sources.ParseDType(a.Optional("dtype"));
        var device = Sources.ParseDevice(a.Optional("device"));
        var style = CommandInputs.HeatmapStyle(a);

        // Only one of --model/--sae given for a real checkpoint: the other is the research's counterpart.
        var (modelPath, saePath) = TinyModel.Choose(modelArg, saeArg);
        bool tiny = TinyModel.IsTiny(modelPath);

        var imageList = images.Count > 0 ? CommandInputs.ExistingImages(images) : TinyModel.Images;
        if (File.Exists(outDir))
        {
            throw new CliUsageException($"--out '{outDir}' is a file; give a folder.");
        }

        stdout.WriteLine("llava-interp demo: which SAE features does an image light up, where, and what happens when one is removed?");
        if (tiny)
        {
            stdout.WriteLine(TinyModel.Notice);
        }

        stdout.WriteLine();
        var progress = CliProgress.For(stderr);
        using var model = await Sources.LoadModelAsync(modelPath, dtype, stderr, ct, device: device, progress: progress).ConfigureAwait(false);
        using var sae = await Sources.LoadSaeAsync(saePath, null, stderr, ct, device: device, progress: progress).ConfigureAwait(false);
        var explanations = await Sources.LoadExplanationsAsync(explanationsSpec ?? (TinyModel.IsTiny(saePath) ? TinyModel.ExplanationsFile : null), sae, stderr, ct).ConfigureAwait(false);
        var analyzer = CliArgs.Usage(() => new FeatureAnalyzer(model, sae.Sae, explanations));
        stdout.WriteLine($"model: {modelPath}");
        stdout.WriteLine($"SAE:   {saePath} ({sae.Sae.Architecture.ToString().ToLowerInvariant()}, {sae.Sae.DSae} features at {sae.Sae.HookName}; the model runs only up to block {sae.Sae.HookLayer})");
        stdout.WriteLine();

        // 1. Feature analysis: the research's table.
        const string prompt = FeaturesCommand.DefaultPrompt;
        stdout.WriteLine($"1. Top features for \"{prompt}\" (activations summed over the image tokens)");
        var results = new List<FeatureResult>();

        // The first image is prepared once: its activations give the heatmap and the steering feature, and the same
        // prepared prompt is generated from, so it is decoded once.
        using var prepared = Sources.ProcessorOf(model).Prepare(prompt, [imageList[0]], raw: false);
        using var first = analyzer.Encode(prepared, ct);
        results.Add(new FeatureResult(imageList[0], [imageList[0]], false, analyzer.Top(first, 5, PromptPositions.Image)));
        foreach (var image in imageList.Skip(1))
        {
            using var features = analyzer.Encode(prompt, [image], raw: false, ct);
            results.Add(new FeatureResult(image, [image], false, analyzer.Top(features, 5, PromptPositions.Image)));
        }

        FeatureReport.WriteTable(stdout, results);
        stdout.WriteLine();

        // 2. Heatmap of the chosen feature over the first image.
        int f = feature ?? results[0].Features[0].Index;
        if (f < 0 || f >= sae.Sae.DSae)
        {
            throw new CliUsageException($"--feature {f} is out of range: the SAE has {sae.Sae.DSae} features.");
        }

        Directory.CreateDirectory(outDir);
        string heatmap = Path.Combine(outDir, $"heatmap_{Path.GetFileNameWithoutExtension(imageList[0])}_feature_{f}.png");
        first.RenderHeatmap(f, heatmap, title: analyzer.HeatmapTitle(f), style: style);
        string description = analyzer.Describe(f) is { } d ? $" ({d})" : string.Empty;
        stdout.WriteLine($"2. Where feature {f}{description} fires on {Path.GetFileName(imageList[0])}: {heatmap}");
        stdout.WriteLine();

        // 3. Steering: the same greedy generation with and without alpha × a feature's decoder direction. The feature is
        // the strongest one at the last prompt token, where the answer starts (the image-token top feature is often
        // dense, e.g. "colors", and barely moves the next token).
        int steerFeature = feature ?? analyzer.TopFeature(first, PromptPositions.Last).Index;
        string steerAbout = analyzer.Describe(steerFeature) is { } sd ? $" ({sd})" : string.Empty;
        stdout.WriteLine($"3. Generation for {Path.GetFileName(imageList[0])}, plain and with {alpha.ToString(CultureInfo.InvariantCulture)} × the decoder direction of feature {steerFeature}{steerAbout}"
            + $"{(feature is null ? ", the top feature at the last prompt token," : string.Empty)} added at every position (greedy, {maxNew} tokens)");
        var options = new GenerationOptions { MaxNewTokens = maxNew };
        var plain = model.Generate(prepared, options, ct);
        GenerationResult steered;
        using (model.Hooks(Steering.AddFeature(sae.Sae, steerFeature, alpha)))
        {
            steered = model.Generate(prepared, options, ct);
        }

        ConsoleTable.Write(stdout, ["", "PLAIN", $"STEERED (feature {steerFeature} × {alpha.ToString(CultureInfo.InvariantCulture)})"],
        [
            ["text", FeatureReport.Visible(plain.Text), FeatureReport.Visible(steered.Text)],
            ["tokens", string.Join(" ", plain.Tokens), string.Join(" ", steered.Tokens)],
        ]);
        if (tiny)
        {
            stdout.WriteLine();
            stdout.WriteLine("(Random weights: the text above is noise by design; what the demo shows is that the pipeline runs end to end and that the edit changes the output.)");
        }

        return 0;
    }
}
