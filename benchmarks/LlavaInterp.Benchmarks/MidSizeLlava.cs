using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using TorchSharp;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// Shared setup for the end-to-end benchmarks: a mid-size LLaVA with random weights (CLIP 336 px / patch 14 → 576
/// image tokens, width 256, 4 layers; projector 256 → 1024; Gemma hidden 1024, 8 layers, 8 query heads sharing one
/// key/value head, head_dim 128, intermediate 4096, vocab 32000), the fixture's tiny tokenizer (its
/// <c>&lt;image&gt;</c> id is 6, so the config uses it), and synthetic 640×480 images written at setup.
/// </summary>
internal static class MidSizeLlava
{
    /// <summary>The LLaVA config.json text (parsed with <see cref="LlavaConfig.Parse"/>, as a checkpoint's would be).</summary>
    public const string ConfigJson = """
        {
          "model_type": "llava",
          "image_token_index": 6,
          "pad_token_id": 0,
          "projector_hidden_act": "gelu",
          "vision_feature_layer": -2,
          "vision_feature_select_strategy": "default",
          "image_seq_length": 576,
          "text_config": {
            "model_type": "gemma",
            "vocab_size": 32000,
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 1,
            "head_dim": 128,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-6,
            "rope_theta": 10000.0,
            "tie_word_embeddings": true,
            "pad_token_id": 0,
            "bos_token_id": 2,
            "eos_token_id": 1
          },
          "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 256,
            "intermediate_size": 1024,
            "num_attention_heads": 4,
            "num_hidden_layers": 4,
            "image_size": 336,
            "patch_size": 14,
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5
          }
        }
        """;

    /// <summary>The processor config used by llava-gemma-2b: shortest edge 336, centre crop 336×336, bicubic.</summary>
    public static ClipImageProcessorConfig ImageProcessorConfig { get; } = new()
    {
        Size = new ImageSizeSpec { ShortestEdge = 336 },
        CropSize = new ImageSizeSpec { Height = 336, Width = 336 },
    };

    /// <summary>Builds the model with random weights (seeded) and a processor around the fixture tokenizer.</summary>
    public static (HookedLlava Model, LlavaProcessor Processor) Create(long seed = 1234)
    {
        var config = LlavaConfig.Parse(ConfigJson, "benchmark-config.json");
        // The model gets no processor so that generation does not decode random ids with the 640-piece test tokenizer.
        var model = new HookedLlava(config);
        InitializeRandom(model, seed);

        var tokenizer = GemmaTokenizer.FromPretrained(FixtureModelDir);
        var processor = new LlavaProcessor(tokenizer, new ClipImageProcessor(ImageProcessorConfig), config);
        return (model, processor);
    }

    /// <summary>
    /// Seeded random weights for timing: Gemma by its HF initialisation, the vision tower and projector randn × 0.02
    /// with layer norms at identity and biases zero.
    /// </summary>
    public static void InitializeRandom(HookedLlava model, long seed)
    {
        model.LanguageModel.InitializeWeights(seed);
        torch.manual_seed(seed);
        using (torch.no_grad())
        {
            foreach (var (name, p) in model.VisionTower.named_parameters().Concat(model.Projector.named_parameters()))
            {
                bool norm = name.Contains("layer_norm", StringComparison.Ordinal) || name.Contains("layrnorm", StringComparison.Ordinal) || name.Contains("layernorm", StringComparison.Ordinal);
                if (norm && name.EndsWith(".weight", StringComparison.Ordinal))
                {
                    _ = p.fill_(1);
                }
                else if (norm || name.EndsWith(".bias", StringComparison.Ordinal))
                {
                    _ = p.zero_();
                }
                else
                {
                    // In-place: the result is the parameter itself.
                    _ = p.copy_(torch.randn_like(p).mul_(0.02));
                }
            }
        }
    }

    /// <summary>A seeded random SAE (standard ReLU) of the given width reading <paramref name="hookName"/>.</summary>
    public static SparseAutoencoder RandomSae(int dIn, int dSae, string hookName, int hookLayer)
    {
        var g = new torch.Generator(3);
        var weights = new Dictionary<string, torch.Tensor>
        {
            ["W_enc"] = torch.randn(dIn, dSae, generator: g) * 0.02,
            ["W_dec"] = torch.randn(dSae, dIn, generator: g) * 0.02,
            ["b_enc"] = torch.randn(dSae, generator: g) * 0.01,
            ["b_dec"] = torch.randn(dIn, generator: g) * 0.01,
        };
        try
        {
            var config = SaeConfig.Parse($$"""{"d_in": {{dIn}}, "d_sae": {{dSae}}, "hook_name": "{{hookName}}", "hook_layer": {{hookLayer}}}""", "benchmark");
            return SparseAutoencoder.FromTensors(config, weights);
        }
        finally
        {
            foreach (var t in weights.Values)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>The fixture model folder (tokenizer files), found by walking up from the working and base directories.</summary>
    public static string FixtureModelDir { get; } = FindFixtureModelDir();

    /// <summary>Writes a 640×480 test image (smooth gradients, a few shapes and mild noise, so it compresses like a photo).</summary>
    public static string WriteImage(string directory, int index, bool jpeg)
    {
        using var image = new Image<Rgb24>(640, 480);
        var random = new Random(index);
        for (int y = 0; y < image.Height; y++)
        {
            for (int x = 0; x < image.Width; x++)
            {
                int dx = x - 320 - (index * 17), dy = y - 240 + (index * 11);
                bool disc = (dx * dx) + (dy * dy) < 120 * 120;
                int r = (x * 255 / 639) ^ (disc ? 0x80 : 0);
                int g = (y * 255 / 479) + random.Next(-8, 9);
                int b = ((x + y + (index * 40)) / 5) % 256;
                image[x, y] = new Rgb24((byte)r, (byte)Math.Clamp(g, 0, 255), (byte)b);
            }
        }

        string path = Path.Combine(directory, $"bench_{index}.{(jpeg ? "jpg" : "png")}");
        if (jpeg)
        {
            image.SaveAsJpeg(path);
        }
        else
        {
            image.SaveAsPng(path);
        }

        return path;
    }

    /// <summary>A fresh temporary folder for generated images.</summary>
    public static string NewTempDir()
    {
        string dir = Path.Combine(Path.GetTempPath(), "llavainterp-bench-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static string FindFixtureModelDir()
    {
        foreach (string start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                string candidate = Path.Combine(dir.FullName, "tests", "fixtures", "tiny-llava-gemma", "model");
                if (File.Exists(Path.Combine(candidate, "tokenizer.model")))
                {
                    return candidate;
                }
            }
        }

        throw new DirectoryNotFoundException("tests/fixtures/tiny-llava-gemma/model not found above the working or base directory; run the benchmarks from the repository.");
    }
}
