using System.Globalization;
using LlavaInterp.Analysis;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using SaeSteering = LlavaInterp.Sae.Steering;

namespace LlavaInterp.Samples.Steering;

/// <summary>
/// Generates for one image and prompt, plainly and then with <c>alpha·W_dec[feature]</c> added to the SAE's hook point
/// at every position (prompt and generated tokens) for each alpha, and prints the outputs side by side.
/// </summary>
public static class SteeringSample
{
    /// <summary>The sample's options.</summary>
    public const string Help = """
        usage: Steering [--model PATH|REPO] [--sae PATH|RELEASE/ID] [--image FILE] [--prompt TEXT] [--raw]
                        [--feature F] [--alphas A,B,...] [--max-new-tokens N] [--positions all|image|generated]
        Defaults: the tiny test model shipped with the repo and its gradient image, "Describe the image.", the top
        feature at the last prompt token (where the answer starts), alphas -2,-3,-4,-5,-6,-7, 40 new tokens, greedy, all positions.
        """;

    /// <summary>Runs the sample; returns the exit code.</summary>
    public static Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct) =>
        ErrorReporting.RunAsync("Steering", stderr, ct, async () =>
        {
            if (args.Contains("--help"))
            {
                stdout.Write(Help);
                return 0;
            }

            var a = CliArgs.Parse(args, new HashSet<string> { "raw" }, new HashSet<string>(), new HashSet<string> { "model", "sae", "image", "prompt", "feature", "alphas", "max-new-tokens", "positions" });
            var (modelPath, saePath) = TinyModel.Choose(a.Optional("model"), a.Optional("sae"));
            string image = a.Optional("image") ?? TinyModel.Image("gradient_rgb");
            string prompt = a.Optional("prompt") ?? "Describe the image.";
            bool raw = a.Flag("raw");
            int? feature = a.Int("feature");
            var alphas = ParseAlphas(a.Optional("alphas") ?? "-2,-3,-4,-5,-6,-7");
            int maxNew = a.Int("max-new-tokens") ?? 40;
            string positionsArg = a.Optional("positions") ?? "all";
            if (!File.Exists(image))
            {
                throw new CliUsageException($"image '{image}' not found.");
            }

            if (TinyModel.IsTiny(modelPath))
            {
                stdout.WriteLine(TinyModel.Notice);
            }

            using var model = await Sources.LoadModelAsync(modelPath, ModelDType.Float32, stderr, ct);
            using var sae = await Sources.LoadSaeAsync(saePath, null, stderr, ct);
            var explanations = await Sources.LoadExplanationsAsync(TinyModel.IsTiny(saePath) ? TinyModel.ExplanationsFile : null, sae, stderr, ct);
            using var prompted = Sources.ProcessorOf(model).Prepare(prompt, [image], raw);

            // The feature to remove: given, or the strongest one at the last prompt token, where the answer starts.
            int f = feature ?? CliArgs.Usage(() => new FeatureAnalyzer(model, sae.Sae, explanations)).TopFeature(prompted, PromptPositions.Last, cancellationToken: ct).Index;
            var positions = positionsArg switch
            {
                "all" => PositionSelector.All,
                "image" => PositionSelector.At(prompted.ImageTokenPositions.Select(p => (long)p)),
                "generated" => PositionSelector.From(prompted.Ids.Count),
                _ => throw new CliUsageException($"--positions must be all, image or generated, got '{positionsArg}'."),
            };
            string about = explanations?.Describe(f) is { } d ? $" ({d})" : string.Empty;
            stdout.WriteLine($"Steering {Path.GetFileName(image)} with feature {f}{about} of {sae.Sae.HookName}, greedy, {maxNew} new tokens, {positions.Description}:");

            // Plain generation, then one per strength with the steering hook active for the whole generation.
            var options = new GenerationOptions { MaxNewTokens = maxNew };
            var rows = new List<IReadOnlyList<string>> { Row("0 (plain)", model.Generate(prompted, options, ct)) };
            foreach (double alpha in alphas)
            {
                using (model.Hooks(SaeSteering.AddFeature(sae.Sae, f, alpha, positions)))
                {
                    rows.Add(Row(alpha.ToString(CultureInfo.InvariantCulture), model.Generate(prompted, options, ct)));
                }
            }

            ConsoleTable.Write(stdout, ["ALPHA", "OUTPUT"], rows);
            return 0;
        });

    /// <summary>Parses a comma-separated list of strengths.</summary>
    /// <exception cref="CliUsageException">An entry is not a number.</exception>
    public static IReadOnlyList<double> ParseAlphas(string text) =>
        text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
                ? v
                : throw new CliUsageException($"--alphas expects numbers separated by commas, got '{s}'."))
            .ToArray() is { Length: > 0 } list ? list : throw new CliUsageException("--alphas needs at least one number.");

    private static IReadOnlyList<string> Row(string alpha, GenerationResult result) => [alpha, FeatureReport.Visible(result.Text)];
}
