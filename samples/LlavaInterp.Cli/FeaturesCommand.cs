using System.Globalization;
using LlavaInterp.Analysis;
using LlavaInterp.Samples;

namespace LlavaInterp.Cli;

/// <summary><c>llava-interp features</c>: the top SAE features of images (or classes of images) for a prompt.</summary>
public static class FeaturesCommand
{
    /// <summary>The prompt of the research being reproduced.</summary>
    public const string DefaultPrompt = "Describe the image.";

    /// <summary>The command's help.</summary>
    public const string Help = """
        usage: llava-interp features --model PATH|REPO --sae PATH|RELEASE/ID [--explanations FILE|URL]
                                     (--image FILE ... | --image-dir DIR [--per-class N]) [--prompt TEXT] [--raw]
                                     [--top-k K] [--positions image|last|all|INDEX] [--aggregate sum|mean|max]
                                     [--exclude-dense FRACTION] [--heatmap OUT.png --feature F] [--json]
                                     [--batch-size N] [--dtype float32|bfloat16|float16|bfloat16-float32|auto] [--device cpu|cuda|cuda:N]

        Runs the model up to the SAE's layer for each image with the prompt (default "Describe the image."), encodes the
        activation at the SAE's hook point and ranks features by their activation aggregated over --positions
        (default: the image tokens, summed). Prints a table, or with --json one JSON object per line per image (or class):
        {"image": …, "features": [{"index": i, "activation": a, "description": "…"}, …]}.
        --image-dir DIR     every image in DIR; if DIR has class sub-folders (ImageNet layout), one result per class: the
                            mean of its images' aggregates over the first N images (--per-class N, default all)
        --batch-size N      images per forward (default 1); the same prompt gives rows of equal length, so the
                            features equal one image per run, faster at the cost of N times the activation memory
        --exclude-dense F   drop features active on more than a fraction F of the selected positions of all images of the run
        --explanations      a Neuronpedia export (file or URL); default: explanations_{model}_{source}.json next to the SAE,
                            or Neuronpedia's export for a release SAE
        --heatmap OUT.png --feature F   draw feature F's activation over the image's patches (one image only)
        [--colormap jet|viridis|hot|gray] [--range MIN:MAX]   the heatmap's colour scale (default jet) and the values
                            drawn as its ends (default: the map's own minimum and maximum; either side may be empty)
        """;

    /// <summary>Runs the command.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        if (Cli.WantsHelp(args))
        {
            stdout.Write(Help);
            return 0;
        }

        var a = CliArgs.Parse(args, new HashSet<string> { "raw", "json" }, new HashSet<string> { "image" }, new HashSet<string>(["model", "sae", "explanations", "image-dir", "per-class", "prompt", "top-k", "positions", "aggregate", "exclude-dense", "heatmap", "feature", "dtype", "device", "batch-size", .. CommandInputs.HeatmapOptions]));
        string modelPath = a.Required("model");
        string saePath = a.Required("sae");
        string? explanationsSpec = a.Optional("explanations");
        var images = a.All("image");
        string? imageDir = a.Optional("image-dir");
        int? perClass = a.Int("per-class");
        string prompt = a.Optional("prompt") ?? DefaultPrompt;
        bool raw = a.Flag("raw");
        int topK = CommandInputs.AtLeast(a.Int("top-k"), 10, 1, "--top-k");
        int batchSize = CommandInputs.AtLeast(a.Int("batch-size"), 1, 1, "--batch-size");
        var positions = CliArgs.Usage(() => PromptPositions.Parse(a.Optional("positions")));
        var aggregation = CliArgs.Usage(() => Aggregations.Parse(a.Optional("aggregate")));
        double? excludeDense = a.Double("exclude-dense");
        string? heatmap = a.Optional("heatmap");
        int? heatmapFeature = a.Int("feature");
        bool json = a.Flag("json");
        var dtype = Sources.ParseDType(a.Optional("dtype"));
        var device = Sources.ParseDevice(a.Optional("device"));
        var style = CommandInputs.HeatmapStyle(a);

        if ((images.Count > 0) == (imageDir is not null))
        {
            throw new CliUsageException("give either --image FILE ... or --image-dir DIR.");
        }

        if (perClass is not null && imageDir is null)
        {
            throw new CliUsageException("--per-class needs --image-dir.");
        }

        if (excludeDense is { } fraction && !(fraction >= 0 && fraction <= 1))
        {
            throw new CliUsageException($"--exclude-dense must be a fraction between 0 and 1, got {fraction}.");
        }

        if ((heatmap is null) != (heatmapFeature is null))
        {
            throw new CliUsageException("--heatmap OUT.png and --feature F go together.");
        }

        if (heatmap is null && CommandInputs.HeatmapOptions.FirstOrDefault(o => a.Optional(o) is not null) is { } styleOption)
        {
            throw new CliUsageException($"--{styleOption} styles the heatmap: it needs --heatmap OUT.png --feature F.");
        }

        // One entry per image, or per class of an ImageNet-style folder.
        IReadOnlyList<ImageClass> entries;
        bool byClass = imageDir is not null && ImageFolder.HasClassFolders(imageDir);
        if (byClass)
        {
            entries = CliArgs.Usage(() => ImageFolder.Classes(imageDir!, perClass));
        }
        else if (imageDir is not null)
        {
            if (perClass is not null)
            {
                throw new CliUsageException($"--per-class needs class sub-folders in '{imageDir}' (DIR/<class>/<image>).");
            }

            var found = CliArgs.Usage(() => ImageFolder.ImagesIn(imageDir));
            if (found.Count == 0)
            {
                throw new CliUsageException($"'{imageDir}' holds no image.");
            }

            entries = found.Select(f => new ImageClass(f, [f])).ToArray();
        }
        else
        {
            entries = CommandInputs.ExistingImages(images).Select(f => new ImageClass(f, [f])).ToArray();
        }

        if (heatmap is not null)
        {
            if (entries.Count != 1 || entries[0].Images.Count != 1)
            {
                throw new CliUsageException("--heatmap draws one image: give a single --image.");
            }

            CommandInputs.OutputFile(heatmap, "--heatmap");
        }

        var progress = CliProgress.For(stderr);
        using var model = await Sources.LoadModelAsync(modelPath, dtype, stderr, ct, device: device, progress: progress).ConfigureAwait(false);
        using var sae = await Sources.LoadSaeAsync(saePath, null, stderr, ct, device: device, progress: progress).ConfigureAwait(false);
        var explanations = await Sources.LoadExplanationsAsync(explanationsSpec, sae, stderr, ct).ConfigureAwait(false);
        var analyzer = CliArgs.Usage(() => new FeatureAnalyzer(model, sae.Sae, explanations));
        analyzer.BatchSize = batchSize;
        if (heatmapFeature is int hf && (hf < 0 || hf >= sae.Sae.DSae))
        {
            throw new CliUsageException($"--feature {hf} is out of range: the SAE has {sae.Sae.DSae} features.");
        }

        // Every image once: the tallies and rankings in the library, the heatmap drawn from the one image's activations.
        // The library reports per entry (a class's images); the phase counts every image of the run.
        int totalImages = entries.Sum(e => e.Images.Count);
        int encoded = 0;
        FeatureRanking ranking;
        using (var phase = progress.Begin("encoding images"))
        {
            ranking = analyzer.RankEntries(entries, byClass, prompt, positions, aggregation, topK, excludeDense, raw,
                progress: phase.As<FeatureSweepProgress>(_ => (Interlocked.Increment(ref encoded), totalImages)), cancellationToken: ct,
                onEncoded: heatmap is null ? null : (_, features) => features.RenderHeatmap(heatmapFeature!.Value, heatmap, title: analyzer.HeatmapTitle(heatmapFeature!.Value), style: style));
        }

        var results = ranking.Results;
        var dense = ranking.Dense;
        if (json)
        {
            FeatureReport.WriteJsonLines(stdout, results);
        }
        else
        {
            stdout.WriteLine($"prompt \"{prompt}\"{(raw ? " (raw)" : string.Empty)}; SAE {sae.Sae.HookName} ({sae.Sae.DSae} features); "
                + $"{positions}, {Aggregations.Name(aggregation)}{(byClass ? ", mean over each class's images" : string.Empty)}"
                + (dense is null ? string.Empty : $"; {dense.Count} dense features (> {excludeDense!.Value.ToString(CultureInfo.InvariantCulture)}) excluded")
                + (explanations is null ? "; no descriptions found" : string.Empty));
            FeatureReport.WriteTable(stdout, results);
            if (heatmap is not null)
            {
                stdout.WriteLine($"heatmap of feature {heatmapFeature} written to {heatmap}");
            }
        }

        return 0;
    }
}
