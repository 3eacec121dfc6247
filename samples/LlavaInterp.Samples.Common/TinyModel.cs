using LlavaInterp.Analysis;

namespace LlavaInterp.Samples;

/// <summary>
/// The tiny LLaVA-Gemma test model shipped with the samples (<c>samples/data/tiny-llava-gemma</c>, copied next to each
/// program as <c>data/tiny-llava-gemma</c>): random weights, a 256-feature SAE on <c>blocks.2.hook_resid_post</c>,
/// made-up explanations and four small images. It lets every sample run offline in seconds; its outputs mean nothing.
/// </summary>
public static class TinyModel
{
    /// <summary>The real checkpoint the samples switch to with <c>--model</c>.</summary>
    public const string RealModel = "Intel/llava-gemma-2b";

    /// <summary>The SAE of the research being reproduced (layer 12 residual stream, 16384 features).</summary>
    public const string RealSae = "gemma-2b-res-jb/blocks.12.hook_resid_post";

    /// <summary>What every program prints when it runs on the tiny model.</summary>
    public const string Notice =
        "NOTE: running on tiny-llava-gemma, a tiny RANDOM-WEIGHT test model shipped with the repo so this works offline "
        + "in seconds. Its features, descriptions and generated text are NOT meaningful. For real results pass "
        + "--model " + RealModel + " --sae " + RealSae + ".";

    /// <summary>The asset folder next to the running program.</summary>
    public static string Root => Path.Combine(AppContext.BaseDirectory, "data", "tiny-llava-gemma");

    /// <summary>The model folder (Hugging Face layout).</summary>
    public static string ModelDir => Path.Combine(Root, "model");

    /// <summary>The SAELens-layout SAE folder.</summary>
    public static string SaeDir => Path.Combine(Root, "sae", "standard-L2");

    /// <summary>The Neuronpedia-style explanations of the SAE's features.</summary>
    public static string ExplanationsFile => Path.Combine(Root, "sae", "explanations_tiny-llava-gemma_2-res-tiny256.json");

    /// <summary>The folder of demo images.</summary>
    public static string ImagesDir => Path.Combine(Root, "images");

    /// <summary>The demo images, sorted by name.</summary>
    /// <exception cref="CliUsageException">The assets are not next to the program.</exception>
    public static IReadOnlyList<string> Images
    {
        get
        {
            EnsurePresent();
            return ImageFolder.ImagesIn(ImagesDir);
        }
    }

    /// <summary>A demo image by file name without extension, e.g. <c>gradient_rgb</c>.</summary>
    public static string Image(string name) => Path.Combine(ImagesDir, name + ".png");

    /// <summary>Whether <paramref name="path"/> is the shipped model or SAE folder (or a file in it).</summary>
    public static bool IsTiny(string path)
    {
        if (string.IsNullOrEmpty(path))
        {
            return false;
        }

        string full = Path.GetFullPath(path);
        string root = Path.GetFullPath(Root) + Path.DirectorySeparatorChar;
        return full.StartsWith(root, StringComparison.Ordinal) || full + Path.DirectorySeparatorChar == root;
    }

    /// <summary>
    /// The model and SAE to use: the tiny ones when neither is given; when only one is given and it is not the tiny
    /// one, the other is the research's counterpart (<see cref="RealModel"/> / <see cref="RealSae"/>).
    /// </summary>
    public static (string Model, string Sae) Choose(string? model, string? sae)
    {
        string m = model ?? (sae is not null && !IsTiny(sae) ? RealModel : ModelDir);
        string s = sae ?? (model is not null && !IsTiny(model) ? RealSae : SaeDir);
        if (IsTiny(m) || IsTiny(s))
        {
            EnsurePresent();
        }

        return (m, s);
    }

    /// <summary>Fails with one clear line when the assets were not copied next to the program.</summary>
    /// <exception cref="CliUsageException">The assets are missing.</exception>
    public static void EnsurePresent()
    {
        if (!File.Exists(Path.Combine(ModelDir, "config.json")) || !File.Exists(Path.Combine(SaeDir, "cfg.json")))
        {
            throw new CliUsageException($"the tiny demo model is missing from {Root}; rebuild the program (it copies samples/data) or pass --model and --sae.");
        }
    }
}
