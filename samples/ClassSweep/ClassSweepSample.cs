using System.Globalization;
using System.Text;
using LlavaInterp.Analysis;
using LlavaInterp.IO;
using LlavaInterp.TensorFiles;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Samples.ClassSweep;

/// <summary>
/// The research's table at scale: for every class of an ImageNet-style folder, the mean over its first N images of
/// each SAE feature's activation summed over the image tokens; features active on more than a fraction of all image
/// positions (dense, uninformative) are excluded; the top features per class go to <c>features.csv</c> and
/// <c>features.md</c>. Each class's tally is saved under <c>OUT/classes/</c> when it is done, so an interrupted sweep
/// resumes where it stopped and the final tables always cover every class.
/// </summary>
public static class ClassSweepSample
{
    /// <summary>The sample's options.</summary>
    public const string Help = """
        usage: ClassSweep --image-dir DIR --out DIR [--per-class N] [--top-k K] [--exclude-dense FRACTION]
                          [--model PATH|REPO] [--sae PATH|RELEASE/ID] [--explanations FILE|URL]
                          [--prompt TEXT] [--positions image|last|all|INDEX] [--aggregate sum|mean|max]
                          [--batch-size N]
        Defaults: 5 images per class, top 5 features, features active on more than 25% of the selected positions
        excluded, "Describe the image.", image tokens summed, 1 image per forward (a larger batch gives the same
        numbers and saves per-forward overhead), the tiny test model shipped with the repo.
        """;

    /// <summary>Folder under --out that holds one finished tally per class.</summary>
    public const string StateFolder = "classes";

    /// <summary>Runs the sample; returns the exit code.</summary>
    public static Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct) =>
        ErrorReporting.RunAsync("ClassSweep", stderr, ct, async () =>
        {
            if (args.Contains("--help"))
            {
                stdout.Write(Help);
                return 0;
            }

            var a = CliArgs.Parse(args, new HashSet<string>(), new HashSet<string>(), new HashSet<string> { "image-dir", "out", "per-class", "top-k", "exclude-dense", "model", "sae", "explanations", "prompt", "positions", "aggregate", "batch-size" });
            string imageDir = a.Required("image-dir");
            string outDir = a.Required("out");
            int perClass = a.Int("per-class") ?? 5;
            int topK = a.Int("top-k") ?? 5;
            double maxDensity = a.Double("exclude-dense") ?? 0.25;
            var (modelPath, saePath) = TinyModel.Choose(a.Optional("model"), a.Optional("sae"));
            string? explanationsArg = a.Optional("explanations");
            string prompt = a.Optional("prompt") ?? "Describe the image.";
            var positions = CliArgs.Usage(() => PromptPositions.Parse(a.Optional("positions")));
            var aggregation = CliArgs.Usage(() => Aggregations.Parse(a.Optional("aggregate")));
            int batchSize = a.Int("batch-size") ?? 1;
            if (topK < 1 || batchSize < 1 || !(maxDensity >= 0 && maxDensity <= 1))
            {
                throw new CliUsageException("--top-k and --batch-size must be at least 1 and --exclude-dense a fraction between 0 and 1.");
            }

            var classes = CliArgs.Usage(() => ImageFolder.Classes(imageDir, perClass));
            if (TinyModel.IsTiny(modelPath))
            {
                stdout.WriteLine(TinyModel.Notice);
            }

            using var model = await Sources.LoadModelAsync(modelPath, ModelDType.Float32, stderr, ct);
            using var sae = await Sources.LoadSaeAsync(saePath, null, stderr, ct);
            var explanations = await Sources.LoadExplanationsAsync(explanationsArg ?? (TinyModel.IsTiny(saePath) ? TinyModel.ExplanationsFile : null), sae, stderr, ct);
            var analyzer = CliArgs.Usage(() => new FeatureAnalyzer(model, sae.Sae, explanations) { BatchSize = batchSize });

            // Everything that changes a class's numbers; a saved class made with other settings is not reused.
            string settings = $"model={modelPath}; sae={sae.Sae.HookName} d_sae={sae.Sae.DSae} ({saePath}); prompt={prompt}; positions={positions}; aggregate={Aggregations.Name(aggregation)}";
            string stateDir = Path.Combine(outDir, StateFolder);
            Directory.CreateDirectory(stateDir);

            // 1. One tally per class (skipped when already saved by an earlier run).
            using var progress = CliProgress.For(stderr).Begin("classes");
            int skipped = 0;
            for (int i = 0; i < classes.Count; i++)
            {
                var cls = classes[i];
                string state = StatePath(stateDir, cls.Name);
                if (File.Exists(state))
                {
                    CheckSaved(state, cls, settings);
                    skipped++;
                    progress.Report(i + 1, classes.Count, cls.Name + " (done before)");
                    continue;
                }

                progress.Report(i, classes.Count, cls.Name);
                using var tally = analyzer.Tally(cls.Images, prompt, positions, aggregation, cancellationToken: ct);

                Save(state, cls, settings, tally);
                progress.Report(i + 1, classes.Count, cls.Name);
            }

            progress.Dispose();

            stdout.WriteLine($"{classes.Count} classes: {classes.Count - skipped} analysed, {skipped} already done in {stateDir}.");

            // 2. Dense features over every class's positions, then each class's ranking without them.
            var saved = classes.Select(c => Load(StatePath(stateDir, c.Name))).ToList();
            try
            {
                var dense = FeatureTally.DenseFeatures(saved.Select(s => (s.Counts, s.Positions)), maxDensity);
                var results = classes.Select((c, i) => new FeatureResult(c.Name, c.Images, true, analyzer.Rank(saved[i].Mean, topK, dense))).ToList();

                // 3. Tables: CSV for tools, Markdown like the research's, and the console.
                string header = $"prompt \"{prompt}\"; SAE {sae.Sae.HookName}; {positions}, {Aggregations.Name(aggregation)}, mean over up to {perClass} images per class; "
                    + $"{dense.Count} dense features (active on > {maxDensity.ToString(CultureInfo.InvariantCulture)} of positions) excluded";
                AtomicFile.WriteAllText(Path.Combine(outDir, "features.csv"), Csv(results));
                AtomicFile.WriteAllText(Path.Combine(outDir, "features.md"), Markdown(header, results));
                stdout.WriteLine(header);
                FeatureReport.WriteTable(stdout, results);
                stdout.WriteLine($"wrote {Path.Combine(outDir, "features.csv")} and {Path.Combine(outDir, "features.md")}");
            }
            finally
            {
                foreach (var s in saved)
                {
                    s.Mean.Dispose();
                }
            }

            return 0;
        });

    /// <summary>The CSV: <c>class,rank,feature,activation,description</c>, one row per (class, feature).</summary>
    public static string Csv(IEnumerable<FeatureResult> results)
    {
        var sb = new StringBuilder("class,rank,feature,activation,description\n");
        foreach (var r in results)
        {
            for (int i = 0; i < r.Features.Count; i++)
            {
                var f = r.Features[i];
                sb.Append(CultureInfo.InvariantCulture, $"{FeatureReport.Csv(r.Label)},{i + 1},{f.Index},{f.Activation.ToString("R", CultureInfo.InvariantCulture)},{FeatureReport.Csv(f.Description ?? string.Empty)}\n");
            }
        }

        return sb.ToString();
    }

    /// <summary>The research's table: <c>| CLASS | Descriptions with Index |</c>, the class on its first row.</summary>
    public static string Markdown(string header, IEnumerable<FeatureResult> results)
    {
        var sb = new StringBuilder();
        sb.Append("# Top SAE features per class\n\n").Append(FeatureReport.MarkdownCell(header)).Append("\n\n");
        sb.Append("| **CLASS** | **Descriptions with Index** |\n|---|---|\n");
        foreach (var r in results)
        {
            for (int i = 0; i < r.Features.Count; i++)
            {
                var f = r.Features[i];
                string text = f.Description is null ? f.Index.ToString(CultureInfo.InvariantCulture) : $"{f.Index} {f.Description}";
                sb.Append(CultureInfo.InvariantCulture, $"| {(i == 0 ? FeatureReport.MarkdownCell(r.Label) : string.Empty)} | {FeatureReport.MarkdownCell(text)} |\n");
            }
        }

        return sb.ToString();
    }

    private static string StatePath(string stateDir, string className) => Path.Combine(stateDir, className + ".safetensors");

    private static void Save(string path, ImageClass cls, string settings, FeatureTally tally)
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["mean"] = tally.Mean(),
            ["active_counts"] = torch.tensor(tally.ActiveCounts()),
            ["positions"] = torch.tensor(new[] { tally.Density.Positions }),
        };
        var metadata = new Dictionary<string, string>
        {
            ["class"] = cls.Name,
            ["images"] = string.Join("\n", cls.Images.Select(Path.GetFileName)),
            ["settings"] = settings,
        };
        SafetensorsWriter.Save(path, tensors, metadata);
    }

    private static void CheckSaved(string path, ImageClass cls, string settings)
    {
        using var file = SafetensorsFile.Open(path);
        var meta = file.Metadata;
        string images = string.Join("\n", cls.Images.Select(Path.GetFileName));
        if (meta.GetValueOrDefault("settings") != settings || meta.GetValueOrDefault("images") != images)
        {
            throw new CliUsageException($"{path} was made with other settings or images; use another --out (or delete the file to redo class '{cls.Name}').");
        }
    }

    private static (Tensor Mean, long[] Counts, long Positions) Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        using var scope = torch.NewDisposeScope();
        var mean = file.Load("mean").clone();
        var counts = file.Load("active_counts").to(ScalarType.Int64).data<long>().ToArray();
        long positions = file.Load("positions").to(ScalarType.Int64).data<long>()[0];
        return (mean.MoveToOuterDisposeScope(), counts, positions);
    }
}
