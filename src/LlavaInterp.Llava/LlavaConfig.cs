using System.Text.Json;
using System.Text.Json.Serialization;
using LlavaInterp.Configuration;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.TensorFiles;

namespace LlavaInterp.Llava;

/// <summary>
/// <c>config.json</c> of a <c>LlavaForConditionalGeneration</c> checkpoint (transformers 4.46 names and defaults),
/// with its nested <c>text_config</c> (Gemma) and <c>vision_config</c> (CLIP) bound to their own records.
/// </summary>
public sealed record LlavaConfig : HfConfig
{
    /// <summary>The accepted <c>model_type</c>.</summary>
    public const string ModelTypeName = "llava";

    /// <summary>Token id of the <c>&lt;image&gt;</c> placeholder. HF default 32000.</summary>
    [JsonPropertyName("image_token_index")]
    public int ImageTokenIndex { get; init; } = 32000;

    /// <summary>Index into the vision tower's hidden states (negative counts from the end). HF default -2.</summary>
    [JsonPropertyName("vision_feature_layer")]
    public int VisionFeatureLayer { get; init; } = -2;

    /// <summary><c>default</c> drops the CLS token, <c>full</c> keeps it. HF default <c>default</c>.</summary>
    [JsonPropertyName("vision_feature_select_strategy")]
    public string VisionFeatureSelectStrategy { get; init; } = "default";

    /// <summary>Activation between the projector's two linear layers. HF default <c>gelu</c> (exact erf).</summary>
    [JsonPropertyName("projector_hidden_act")]
    public string ProjectorHiddenAct { get; init; } = "gelu";

    /// <summary>Whether the projector's linear layers have biases (newer transformers). Default true.</summary>
    [JsonPropertyName("multimodal_projector_bias")]
    public bool MultimodalProjectorBias { get; init; } = true;

    /// <summary>Number of image tokens per image as recorded by HF (informational). HF default 576.</summary>
    [JsonPropertyName("image_seq_length")]
    public int ImageSeqLength { get; init; } = 576;

    /// <summary>Padding token id, if set at the top level.</summary>
    [JsonPropertyName("pad_token_id")]
    public int? PadTokenId { get; init; }

    /// <summary>Label index ignored by the loss (kept for completeness). HF default -100.</summary>
    [JsonPropertyName("ignore_index")]
    public int IgnoreIndex { get; init; } = -100;

    /// <summary>The raw <c>text_config</c> object.</summary>
    [JsonPropertyName("text_config")]
    public JsonElement? TextConfigJson { get; init; }

    /// <summary>The raw <c>vision_config</c> object.</summary>
    [JsonPropertyName("vision_config")]
    public JsonElement? VisionConfigJson { get; init; }

    /// <summary>The language model's configuration (bound from <c>text_config</c>).</summary>
    [JsonIgnore]
    public GemmaConfig TextConfig { get; init; } = null!;

    /// <summary>The vision tower's configuration (bound from <c>vision_config</c>).</summary>
    [JsonIgnore]
    public ClipVisionConfig VisionConfig { get; init; } = null!;

    /// <summary>Whether the CLS token is dropped from the image features.</summary>
    [JsonIgnore]
    public bool DropsClsToken => VisionFeatureSelectStrategy == "default";

    /// <summary>Loads <c>config.json</c> and binds the nested configurations.</summary>
    /// <exception cref="ConfigException">Missing file, bad JSON, wrong model types or unsupported settings.</exception>
    public static LlavaConfig Load(string path) => Bind(HfConfigLoader.Load<LlavaConfig>(path, ModelTypeName), path);

    /// <summary>Parses <c>config.json</c> text and binds the nested configurations.</summary>
    /// <exception cref="ConfigException">Bad JSON, wrong model types or unsupported settings.</exception>
    public static LlavaConfig Parse(string json, string source = "config.json") => Bind(HfConfigLoader.Parse<LlavaConfig>(json, source, ModelTypeName), source);

    /// <summary>
    /// Checks this configuration against a checkpoint's tensor headers before anything is allocated: the vision tower,
    /// the projector and the language model, each under the prefix <paramref name="layout"/> gives it.
    /// </summary>
    /// <param name="checkpoint">The checkpoint (only headers are read).</param>
    /// <param name="layout">The checkpoint's layout.</param>
    /// <param name="source">The <c>config.json</c> path, for errors (nested keys are reported under <c>#text_config</c> / <c>#vision_config</c>).</param>
    /// <param name="strict">Whether the load will be strict (layer counts must then equal the checkpoint's).</param>
    /// <exception cref="ConfigException">A configured size does not match the checkpoint; names the key.</exception>
    public void CheckAgainst(ITensorSource checkpoint, LlavaCheckpointLayout layout, string source, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(layout);
        VisionConfig.CheckAgainst(checkpoint, layout.VisionPrefix, source + "#vision_config", strict);
        TextConfig.CheckAgainst(checkpoint, layout.Text, source + "#text_config", strict);

        // The projector maps the vision width onto the text width: both were just checked against their own towers.
        var vision = ConfigDim.Of("vision_config.hidden_size", VisionConfig.HiddenSize);
        var text = ConfigDim.Of("text_config.hidden_size", TextConfig.HiddenSize);
        var projector = new List<ConfigTensor>
        {
            new(layout.ProjectorPrefix + "linear_1.weight", [text, vision]),
            new(layout.ProjectorPrefix + "linear_2.weight", [text, text]),
        };
        if (MultimodalProjectorBias)
        {
            projector.Add(new(layout.ProjectorPrefix + "linear_1.bias", [text]));
            projector.Add(new(layout.ProjectorPrefix + "linear_2.bias", [text]));
        }

        CheckpointShapes.Check(checkpoint, projector, source);
    }

    private static LlavaConfig Bind(LlavaConfig config, string source)
    {
        if (config.TextConfigJson is not JsonElement text || text.ValueKind != JsonValueKind.Object)
        {
            throw new ConfigException(source, "text_config", "missing: LlavaInterp supports Gemma language models, which must be described by text_config.");
        }

        if (config.VisionFeatureSelectStrategy is not ("default" or "full"))
        {
            throw new ConfigException(source, "vision_feature_select_strategy", $"'{config.VisionFeatureSelectStrategy}' is not 'default' or 'full'.");
        }

        // Validates the name now so a bad value is reported against this file, not when the projector is built.
        _ = LlavaInterp.Nn.Activation.Get(config.ProjectorHiddenAct, source, "projector_hidden_act");
        var textConfig = GemmaConfig.Bind(text, source + "#text_config");
        var visionConfig = config.VisionConfigJson is JsonElement vision && vision.ValueKind == JsonValueKind.Object
            ? ClipVisionConfig.FromJson(vision, source + "#vision_config")
            : ClipVisionConfig.Parse("{}", source + "#vision_config");
        int layers = visionConfig.NumHiddenLayers;
        if (config.VisionFeatureLayer < -(layers + 1) || config.VisionFeatureLayer > layers)
        {
            throw new ConfigException(source, "vision_feature_layer", $"{config.VisionFeatureLayer} is outside the {layers + 1} hidden states of the vision tower.");
        }

        return config with { TextConfig = textConfig, VisionConfig = visionConfig };
    }
}
