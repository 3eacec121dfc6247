using System.Text.Json.Serialization;
using LlavaInterp.Configuration;

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
}
