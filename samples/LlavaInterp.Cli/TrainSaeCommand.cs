using System.Globalization;
using LlavaInterp.Analysis;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Sae.Training;
using LlavaInterp.Samples;

namespace LlavaInterp.Cli;

/// <summary><c>llava-interp train-sae</c>: collect a hook point's activations over images and prompts, train an SAE, evaluate it.</summary>
public static class TrainSaeCommand
{
    /// <summary>The command's help.</summary>
    public const string Help = """
        usage: llava-interp train-sae --hook NAME --out FOLDER
                                      (--model PATH|REPO --images FOLDER --prompt TEXT [--prompt TEXT ...] | --from-shards FOLDER)
                                      [--architecture standard|topk|jumprelu] [--expansion 8] [--k 32] [--l1 5] [--l0 1]
                                      [--lr 1e-4] [--lr-warm-up N] [--l1-warm-up N] [--batch 4096] [--epochs 1]
                                      [--tokens image|text|both] [--image-share X] [--buffer ROWS] [--shards FOLDER]
                                      [--compute-dtype float32|bfloat16] [--seed N] [--checkpoint-every N] [--resume]
                                      [--resample-every N] [--dtype float32|bfloat16|float16|bfloat16-float32|auto] [--device cpu|cuda|cuda:N]

        Runs every prompt on every image of --images (one image per prompt, the image placed first), keeps the
        activations of --hook at the chosen positions (stopping after the hook's block), writes them as safetensors
        shards (--shards, default FOLDER/activations), then trains for --epochs passes through a shuffle buffer.
        --from-shards trains on shards written before, without the model. The SAE goes to FOLDER in SAELens's format
        (cfg.json, sae_weights.safetensors, sparsity.safetensors); checkpoints go to FOLDER/checkpoint (--resume
        continues from it). Progress is printed to stderr; the final metrics (MSE, explained variance, L0, dead
        features) to stdout. Defaults follow the research run: ReLU, Adam lr 1e-4, 8x expansion, gradient clipping at 1.
        --resample-every N re-initializes dead features every N steps from badly reconstructed inputs (off by default).
        --dtype is the model's parameter dtype while collecting (--compute-dtype is the SAE's); --device holds the model,
        the SAE being trained and its evaluation.
        """;

    private static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"];

    /// <summary>Runs the command.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        if (Cli.WantsHelp(args))
        {
            stdout.Write(Help);
            return 0;
        }

        var a = CliArgs.Parse(args, new HashSet<string> { "resume" }, new HashSet<string> { "prompt" }, new HashSet<string>
        {
            "hook", "out", "from-shards", "model", "images", "architecture", "expansion", "k", "l1", "l0", "lr", "lr-warm-up", "l1-warm-up",
            "batch", "epochs", "buffer", "checkpoint-every", "tokens", "image-share", "compute-dtype", "seed", "shards", "resample-every", "dtype", "device",
        });
        string hook = a.Required("hook");
        string outDir = a.Required("out");
        string? fromShards = a.Optional("from-shards");
        string? modelPath = a.Optional("model");
        string? imageDir = a.Optional("images");
        var prompts = a.All("prompt");
        var arch = a.Optional("architecture") switch
        {
            null or "standard" => SaeTrainingArchitecture.Standard,
            "topk" => SaeTrainingArchitecture.TopK,
            "jumprelu" => SaeTrainingArchitecture.JumpRelu,
            var other => throw new CliUsageException($"--architecture must be standard, topk or jumprelu, got '{other}'."),
        };
        int expansion = CommandInputs.AtLeast(a.Int("expansion"), 8, 1, "--expansion");
        int k = CommandInputs.AtLeast(a.Int("k"), 32, 1, "--k");
        double l1 = a.Double("l1") ?? 5.0;
        double l0 = a.Double("l0") ?? 1.0;
        double lr = a.Double("lr") ?? 1e-4;
        int lrWarmUp = CommandInputs.AtLeast(a.Int("lr-warm-up"), 0, 0, "--lr-warm-up");
        int l1WarmUp = CommandInputs.AtLeast(a.Int("l1-warm-up"), 0, 0, "--l1-warm-up");
        int batch = CommandInputs.AtLeast(a.Int("batch"), 4096, 1, "--batch");
        int epochs = CommandInputs.AtLeast(a.Int("epochs"), 1, 1, "--epochs");
        int buffer = CommandInputs.AtLeast(a.Int("buffer"), 8 * batch, 2 * batch, "--buffer");
        int checkpointEvery = CommandInputs.AtLeast(a.Int("checkpoint-every"), 1000, 1, "--checkpoint-every");
        int resampleEvery = CommandInputs.AtLeast(a.Int("resample-every"), 0, 0, "--resample-every");
        var tokens = a.Optional("tokens") switch
        {
            null or "both" => ActivationTokens.Both,
            "image" => ActivationTokens.Image,
            "text" => ActivationTokens.Text,
            var other => throw new CliUsageException($"--tokens must be image, text or both, got '{other}'."),
        };
        double? imageShare = a.Double("image-share");
        string computeDType = a.Optional("compute-dtype") ?? "float32";
        long seed = a.Int("seed") ?? 42;
        bool resume = a.Flag("resume");
        string shards = a.Optional("shards") ?? Path.Combine(outDir, "activations");
        var dtype = Sources.ParseDType(a.Optional("dtype"));
        var device = Sources.ParseDevice(a.Optional("device"));
        var progress = CliProgress.For(stderr);

        if (imageShare is double s && !(s > 0 && s < 1))
        {
            throw new CliUsageException($"--image-share must be strictly between 0 and 1, got {s.ToString(CultureInfo.InvariantCulture)}.");
        }

        Directory.CreateDirectory(outDir);
        if (fromShards is not null)
        {
            shards = fromShards;
        }
        else
        {
            if (modelPath is null || imageDir is null || prompts.Count == 0)
            {
                throw new CliUsageException("give --model, --images and --prompt to collect activations, or --from-shards.");
            }

            if (!Directory.Exists(imageDir))
            {
                throw new CliUsageException($"--images folder '{imageDir}' does not exist.");
            }

            var images = Directory.GetFiles(imageDir).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal).ToList();
            if (images.Count == 0)
            {
                throw new CliUsageException($"--images folder '{imageDir}' holds no images.");
            }

            using var model = await Sources.LoadModelAsync(modelPath, dtype, stderr, ct, device: device, progress: progress).ConfigureAwait(false);
            if (!model.HookNames.Contains(hook))
            {
                throw new CliUsageException($"--hook '{hook}' is not a hook point of the model.");
            }

            var processor = Sources.ProcessorOf(model);
            int runs = images.Count * prompts.Count;
            using var collecting = progress.Begin("collecting activations");
            IEnumerable<LlavaPrompt> Prepared()
            {
                int done = 0;
                foreach (var image in images)
                {
                    foreach (var p in prompts)
                    {
                        using var prepared = processor.Prepare(p, [image]);
                        yield return prepared;

                        // Back here, the consumer has run this prompt through the model.
                        collecting.Report(++done, runs);
                    }
                }
            }

            var source = new LlavaActivationSource(model, hook) { Tokens = tokens, ImageShare = imageShare, Seed = seed };
            long rows = ActivationStore.WriteShards(source.Activations(Prepared(), ct), shards, rowsPerShard: Math.Max(batch, 65536), hookName: hook, cancellationToken: ct);

            // The live bar ends before the summary line, which would otherwise be drawn over.
            collecting.Dispose();
            stderr.WriteLine($"collected {rows} activations of {hook} from {images.Count} images x {prompts.Count} prompts into {shards}");
        }

        int dIn;
        using (var first = ActivationStore.ReadShards(shards).First())
        {
            dIn = checked((int)first.shape[1]);
        }

        var match = System.Text.RegularExpressions.Regex.Match(hook, @"^blocks\.(\d+)\.");
        var options = new SaeTrainingOptions
        {
            Architecture = arch,
            DIn = dIn,
            DSae = dIn * expansion,
            K = k,
            HookName = hook,
            HookLayer = match.Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0,
            ModelName = modelPath,
            DatasetPath = imageDir ?? fromShards,
            L1Coefficient = l1,
            L1WarmUpSteps = l1WarmUp,
            L0Coefficient = l0,
            L0WarmUpSteps = l1WarmUp,
            LearningRate = lr,
            LrWarmUpSteps = lrWarmUp,
            ResampleDeadFeaturesEvery = resampleEvery,
            ComputeDType = computeDType,
            Seed = seed,
        };
        string checkpoint = Path.Combine(outDir, "checkpoint");
        using var trainer = resume && File.Exists(Path.Combine(checkpoint, SaeTrainer.StateFileName)) ? SaeTrainer.Resume(checkpoint, device) : new SaeTrainer(options, device);
        long skip = trainer.Tokens;
        IEnumerable<TorchSharp.torch.Tensor> Batches()
        {
            for (int epoch = 0; epoch < epochs; epoch++)
            {
                foreach (var b in ActivationStore.Shuffle(ActivationStore.ReadShards(shards), batch, buffer, seed + epoch, ct))
                {
                    // A resumed run skips the activations it has already trained on.
                    if (skip > 0)
                    {
                        skip -= b.shape[0];
                        b.Dispose();
                        continue;
                    }

                    yield return b;
                }
            }
        }

        // Progress in activations trained on: every shard row once per epoch (the shuffle's last batch may be short, none is dropped).
        long totalTokens = ShardRows(shards) * epochs;
        TrainingProgress? last;
        using (var training = progress.Begin("training SAE"))
        {
            last = trainer.Train(Batches(), checkpointFolder: checkpoint, checkpointEverySteps: checkpointEvery, progress: new TrainingLine(training, totalTokens), cancellationToken: ct);
        }

        trainer.Save(outDir);
        trainer.SaveCheckpoint(checkpoint);

        using var sae = SparseAutoencoder.Load(outDir, new SaeLoadOptions { Device = device });
        var eval = SaeEvaluator.Evaluate(sae, DisposingEach(ActivationStore.ReadShards(shards)), ct);
        stdout.WriteLine($"trained {arch} SAE d_in {dIn} d_sae {options.DSae} on {hook}: {trainer.StepCount} steps, {trainer.Tokens} activations -> {outDir}");
        stdout.WriteLine(string.Create(CultureInfo.InvariantCulture, $"mse {eval.Mse:G4}  explained variance {eval.ExplainedVariance:F4}  L0 {eval.L0:F2}  dead {eval.DeadFeatures}/{options.DSae}  final loss {last?.Loss ?? double.NaN:G4}"));
        return 0;
    }

    private static IEnumerable<TorchSharp.torch.Tensor> DisposingEach(IEnumerable<TorchSharp.torch.Tensor> tensors)
    {
        foreach (var t in tensors)
        {
            using (t)
            {
                yield return t;
            }
        }
    }

    // The rows of every shard, read from the safetensors headers (no tensor data is loaded).
    private static long ShardRows(string folder) =>
        Directory.GetFiles(folder, ActivationStore.ShardPattern).Sum(path =>
        {
            using var file = TensorFiles.SafetensorsFile.Open(path);
            return file.Contains(ActivationStore.ShardTensorName) ? file.GetEntry(ActivationStore.ShardTensorName).Shape[0] : 0;
        });

    /// <summary>
    /// Training progress in activations, with the step's main metrics next to the bar (and on each plain line), short
    /// enough for an 80-column terminal; the full metrics of the result go to stdout at the end.
    /// </summary>
    private sealed class TrainingLine(ProgressPhase phase, long totalTokens) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress p) =>
            phase.Report(p.Tokens, totalTokens, string.Create(CultureInfo.InvariantCulture, $"step {p.Step}  loss {p.Loss:G4}  L0 {p.L0:F1}  EV {p.ExplainedVariance:F3}  dead {p.DeadFraction:P0}"));
    }
}
