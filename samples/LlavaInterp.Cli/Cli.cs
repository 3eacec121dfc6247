using LlavaInterp.Samples;

namespace LlavaInterp.Cli;

/// <summary>
/// The <c>llava-interp</c> command line: <c>cache</c>, <c>generate</c>, <c>features</c>, <c>demo</c> and <c>train-sae</c>. Every error is
/// printed as one line on stderr with a non-zero exit code (2 for a bad command line, 1 for a failure, 130 when
/// cancelled); output files are written to a temporary name and moved into place, so a failed run leaves none.
/// </summary>
public static class Cli
{
    /// <summary>The command's name.</summary>
    public const string Name = "llava-interp";

    /// <summary>The overview printed by <c>llava-interp --help</c>.</summary>
    public const string Usage = """
        llava-interp: mechanistic interpretability of LLaVA-Gemma (CLIP + projector + Gemma) with hooks and SAEs.

        usage: llava-interp <command> [options]      (llava-interp <command> --help for details)

        commands:
          demo       feature analysis, heatmap and steering on the tiny model shipped with the repo (offline)
          features   top SAE features of images (or classes of images) for a prompt, with Neuronpedia descriptions
          generate   generate text for an image and a prompt, optionally steered through SAE features
          cache      run a prompt and save activations of chosen hook points to a .safetensors file
          train-sae  collect a hook point's activations over an image folder and prompts, train an SAE (SAELens format)

        --model and --sae take a local folder or a Hugging Face name: Intel/llava-gemma-2b,
        gemma-2b-res-jb/blocks.12.hook_resid_post (SAELens release/id). Downloads go to the Hugging Face cache
        (HF_HOME, HF_HUB_OFFLINE and HF_TOKEN are honoured). Every command that loads a model takes
        --device cpu|cuda|cuda:N and --dtype float32|bfloat16|float16|bfloat16-float32|auto. Progress goes to stderr, results to stdout.
        """;

    /// <summary>
    /// Runs one command line. Output goes to <paramref name="stdout"/>, progress and errors to <paramref name="stderr"/>.
    /// </summary>
    /// <returns>0 on success, 2 for a bad command line, 1 for a failure, 130 when cancelled.</returns>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(stdout);
        ArgumentNullException.ThrowIfNull(stderr);
        if (args.Length == 0)
        {
            stderr.Write(Usage);
            return ErrorReporting.UsageError;
        }

        if (args[0] is "-h" or "--help" or "help")
        {
            stdout.Write(Usage);
            return 0;
        }

        string[] rest = args[1..];
        return await ErrorReporting.RunAsync(Name, stderr, ct, () => args[0] switch
        {
            "cache" => CacheCommand.RunAsync(rest, stdout, stderr, ct),
            "generate" => GenerateCommand.RunAsync(rest, stdout, stderr, ct),
            "features" => FeaturesCommand.RunAsync(rest, stdout, stderr, ct),
            "demo" => DemoCommand.RunAsync(rest, stdout, stderr, ct),
            "train-sae" => TrainSaeCommand.RunAsync(rest, stdout, stderr, ct),
            _ => throw new CliUsageException($"unknown command '{args[0]}'; the commands are demo, features, generate, cache and train-sae (see --help)."),
        }).ConfigureAwait(false);
    }

    /// <summary>Whether the arguments ask for a command's help.</summary>
    internal static bool WantsHelp(string[] args) => args.Any(a => a is "-h" or "--help");
}
