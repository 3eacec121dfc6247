using System.Text.Json.Serialization;
using LlavaInterp.Configuration;
using LlavaInterp.Models.Gemma;

namespace LlavaInterp.Llava;

/// <summary><c>processor_config.json</c> of a LLaVA checkpoint (LlavaProcessor settings).</summary>
public sealed record LlavaProcessorConfig : HfConfig
{
    /// <summary>Vision patch size; with the strategy it fixes how many tokens each <c>&lt;image&gt;</c> expands to.</summary>
    [JsonPropertyName("patch_size")]
    public int? PatchSize { get; init; }

    /// <summary><c>default</c> or <c>full</c>.</summary>
    [JsonPropertyName("vision_feature_select_strategy")]
    public string? VisionFeatureSelectStrategy { get; init; }

    /// <summary>The placeholder text. Default <c>&lt;image&gt;</c>.</summary>
    [JsonPropertyName("image_token")]
    public string ImageToken { get; init; } = "<image>";

    /// <summary>Tokens the vision tower adds besides the patches (CLS). Default 1.</summary>
    [JsonPropertyName("num_additional_image_tokens")]
    public int NumAdditionalImageTokens { get; init; } = 1;

    /// <summary>Loads the file, or returns the defaults when it does not exist.</summary>
    public static LlavaProcessorConfig LoadOrDefault(string path) =>
        File.Exists(path) ? HfConfigLoader.Load<LlavaProcessorConfig>(path) : new LlavaProcessorConfig();

    /// <summary>
    /// Checks these settings against the model they will feed, at load rather than in the first forward: the image
    /// token must be the tokenizer's token for <c>image_token_index</c>, and an image of the vision tower's size must
    /// expand to exactly as many placeholders as the tower and projector give feature rows.
    /// </summary>
    /// <param name="source">The file these settings came from (named in errors).</param>
    /// <param name="config">The model's configuration.</param>
    /// <param name="tokenizer">The model's tokenizer.</param>
    /// <exception cref="ConfigException">A setting that cannot work with this model, naming <paramref name="source"/> and the key.</exception>
    public void Validate(string source, LlavaConfig config, GemmaTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (string.IsNullOrEmpty(ImageToken))
        {
            throw new ConfigException(source, "image_token", "must be the image placeholder's text (e.g. \"<image>\").");
        }

        if (tokenizer.TokenToId(ImageToken) is not int id || id != config.ImageTokenIndex)
        {
            throw new ConfigException(source, "image_token", $"'{ImageToken}' is {(tokenizer.TokenToId(ImageToken) is int other ? $"token {other}" : "not a single token")} in the tokenizer, but config.json's image_token_index is {config.ImageTokenIndex}: prompts would hold no image placeholders.");
        }

        if (PatchSize is int patch && patch != config.VisionConfig.PatchSize)
        {
            throw new ConfigException(source, "patch_size", $"{patch} differs from the vision tower's patch_size {config.VisionConfig.PatchSize}: images would expand to the wrong number of placeholders.");
        }

        if (VisionFeatureSelectStrategy is { } strategy && strategy != config.VisionFeatureSelectStrategy)
        {
            throw new ConfigException(source, "vision_feature_select_strategy", $"'{strategy}' differs from config.json's '{config.VisionFeatureSelectStrategy}'.");
        }

        if (NumAdditionalImageTokens != 1)
        {
            // The CLIP tower adds exactly one token (CLS) to the patches.
            throw new ConfigException(source, "num_additional_image_tokens", $"{NumAdditionalImageTokens}: a CLIP vision tower adds exactly 1 (the CLS token).");
        }
    }
}
