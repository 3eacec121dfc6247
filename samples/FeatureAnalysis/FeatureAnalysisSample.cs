using LlavaInterp.Analysis;
namespace LlavaInterp.Samples.FeatureAnalysis;

/// <summary>
/// For each image: run LLaVA on the image and the prompt up to the SAE's layer, encode the residual stream with the
/// SAE, sum each feature over the image tokens and print the top features with their Neuronpedia descriptions — the
/// research's "feature per ImageNet class" table. <c>--heatmap DIR</c> also draws each image's top feature.
/// </summary>
public static class FeatureAnalysisSample
{
    /// <summary>The sample's options.</summary>
    public const string Help = """
        usage: FeatureAnalysis [--model PATH|REPO] [--sae PATH|RELEASE/ID] [--explanations FILE|URL] [--image FILE ...]
                               [--prompt TEXT] [--raw] [--top-k K] [--positions image|last|all|INDEX]
                               [--aggregate sum|mean|max] [--heatmap DIR]
        Defaults: the tiny test model shipped with the repo, its demo images, "Describe the image.", top 5 features
        summed over the image tokens.
        """;

    /// <summary>Runs the sample; returns the exit code.</summary>
    public static Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct) =>
        ErrorReporting.RunAsync("FeatureAnalysis", stderr, ct, async () =>
        {
            if (args.Contains("--help"))
            {
                stdout.Write(Help);
                return 0;
            }

            var a = CliArgs.Parse(args, new HashSet<string> { "raw" }, new HashSet<string> { "image" }, new HashSet<string> { "model", "sae", "explanations", "prompt", "top-k", "positions", "aggregate", "heatmap" });
            var (modelPath, saePath) = TinyModel.Choose(a.Optional("model"), a.Optional("sae"));
            string? explanationsArg = a.Optional("explanations");
            var images = a.All("image") is { Count: > 0 } given ? given : TinyModel.Images;
            string prompt = a.Optional("prompt") ?? "Describe the image.";
            bool raw = a.Flag("raw");
            int topK = a.Int("top-k") ?? 5;
            var positions = CliArgs.Usage(() => PromptPositions.Parse(a.Optional("positions")));
            var aggregation = CliArgs.Usage(() => Aggregations.Parse(a.Optional("aggregate")));
            string? heatmapDir = a.Optional("heatmap");
            if (TinyModel.IsTiny(modelPath))
            {
                stdout.WriteLine(TinyModel.Notice);
            }

            // 1. The model, the SAE and its feature descriptions.
            using var model = await Sources.LoadModelAsync(modelPath, ModelDType.Float32, stderr, ct);
            using var sae = await Sources.LoadSaeAsync(saePath, null, stderr, ct);
            var explanations = await Sources.LoadExplanationsAsync(explanationsArg ?? (TinyModel.IsTiny(saePath) ? TinyModel.ExplanationsFile : null), sae, stderr, ct);
            var analyzer = CliArgs.Usage(() => new FeatureAnalyzer(model, sae.Sae, explanations));
            stdout.WriteLine($"SAE {sae.Sae.HookName}: {sae.Sae.DSae} features; prompt \"{prompt}\"; {positions}, {Aggregations.Name(aggregation)}");

            // 2. Per image: feature activations [tokens, d_sae] → one value per feature → the top k.
            var results = new List<FeatureResult>();
            foreach (var image in images)
            {
                using var features = analyzer.Encode(prompt, [image], raw, ct);
                var top = CliArgs.Usage(() => analyzer.Top(features, topK, positions, aggregation));
                results.Add(new FeatureResult(image, [image], false, top));

                // 3. Optionally: where on the image the top feature fires.
                if (heatmapDir is not null)
                {
                    string png = Path.Combine(heatmapDir, $"{Path.GetFileNameWithoutExtension(image)}_feature_{top[0].Index}.png");
                    Directory.CreateDirectory(heatmapDir);
                    features.RenderHeatmap(top[0].Index, png, title: analyzer.HeatmapTitle(top[0].Index));
                    stderr.WriteLine($"heatmap: {png}");
                }
            }

            FeatureReport.WriteTable(stdout, results);
            return 0;
        });
}
