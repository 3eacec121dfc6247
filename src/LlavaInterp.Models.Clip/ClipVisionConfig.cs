using System.Text.Json;
using System.Text.Json.Serialization;
using LlavaInterp.Configuration;
using LlavaInterp.Nn;
using LlavaInterp.TensorFiles;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// The vision half of a CLIP configuration, bound from a Hugging Face <c>config.json</c> (HF <c>CLIPVisionConfig</c>,
/// <c>model_type</c> <c>clip_vision_model</c>). Keys absent from the JSON take HF's <c>CLIPVisionConfig</c> defaults
/// (ViT-B/32 at 224 px), exactly as transformers does when it builds the config.
/// </summary>
public sealed record ClipVisionConfig : HfConfig
{
    /// <summary>The <c>model_type</c> of a CLIP vision configuration.</summary>
    public const string ModelTypeName = "clip_vision_model";

    /// <summary>Width of the residual stream (d_model). HF default 768.</summary>
    [JsonPropertyName("hidden_size")]
    public int HiddenSize { get; init; } = 768;

    /// <summary>Width of the MLP hidden layer (d_mlp). HF default 3072.</summary>
    [JsonPropertyName("intermediate_size")]
    public int IntermediateSize { get; init; } = 3072;

    /// <summary>Size of the CLIP projection head (not part of the vision tower; kept for completeness). HF default 512.</summary>
    [JsonPropertyName("projection_dim")]
    public int ProjectionDim { get; init; } = 512;

    /// <summary>Number of encoder layers. HF default 12.</summary>
    [JsonPropertyName("num_hidden_layers")]
    public int NumHiddenLayers { get; init; } = 12;

    /// <summary>Attention heads per layer. HF default 12.</summary>
    [JsonPropertyName("num_attention_heads")]
    public int NumAttentionHeads { get; init; } = 12;

    /// <summary>Input image channels. HF default 3.</summary>
    [JsonPropertyName("num_channels")]
    public int NumChannels { get; init; } = 3;

    /// <summary>Side of the (square) input image in pixels. HF default 224.</summary>
    [JsonPropertyName("image_size")]
    public int ImageSize { get; init; } = 224;

    /// <summary>Side of a square patch in pixels (kernel and stride of the patch convolution). HF default 32.</summary>
    [JsonPropertyName("patch_size")]
    public int PatchSize { get; init; } = 32;

    /// <summary>MLP activation: <c>quick_gelu</c> (HF default), <c>gelu</c>, <c>gelu_new</c>, <c>gelu_pytorch_tanh</c>, <c>relu</c>, <c>silu</c>.</summary>
    [JsonPropertyName("hidden_act")]
    public string HiddenAct { get; init; } = "quick_gelu";

    /// <summary>LayerNorm epsilon. HF default 1e-5.</summary>
    [JsonPropertyName("layer_norm_eps")]
    public double LayerNormEps { get; init; } = 1e-5;

    /// <summary>Attention dropout (training only; ignored at inference). HF default 0.</summary>
    [JsonPropertyName("attention_dropout")]
    public double AttentionDropout { get; init; }

    /// <summary>Initializer standard deviation used by HF when training from scratch. HF default 0.02.</summary>
    [JsonPropertyName("initializer_range")]
    public double InitializerRange { get; init; } = 0.02;

    /// <summary>Initializer scale factor used by HF when training from scratch. HF default 1.0.</summary>
    [JsonPropertyName("initializer_factor")]
    public double InitializerFactor { get; init; } = 1.0;

    /// <summary>Per-head width: <see cref="HiddenSize"/> / <see cref="NumAttentionHeads"/>.</summary>
    [JsonIgnore]
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Patches per image side: <see cref="ImageSize"/> / <see cref="PatchSize"/> (floor, as the strided convolution does).</summary>
    [JsonIgnore]
    public int GridSize => ImageSize / PatchSize;

    /// <summary>Patches per image: <see cref="GridSize"/>².</summary>
    [JsonIgnore]
    public int NumPatches => GridSize * GridSize;

    /// <summary>Tokens per image (CLS + patches), which is also the number of position embeddings.</summary>
    [JsonIgnore]
    public int NumPositions => NumPatches + 1;

    /// <summary>
    /// CLIP ViT-L/14 at 336 px, the vision tower of <c>openai/clip-vit-large-patch14-336</c> (hidden 1024, intermediate
    /// 4096, 24 layers, 16 heads, projection 768; other keys at their defaults).
    /// </summary>
    public static ClipVisionConfig VitLarge14At336 { get; } = new()
    {
        ModelType = ModelTypeName,
        HiddenSize = 1024,
        IntermediateSize = 4096,
        NumHiddenLayers = 24,
        NumAttentionHeads = 16,
        ImageSize = 336,
        PatchSize = 14,
        ProjectionDim = 768,
    };

    /// <summary>
    /// Loads the vision configuration from a <c>config.json</c>: a standalone <c>clip_vision_model</c> file, or any file
    /// with a nested <c>vision_config</c> object (a full <c>clip</c> model, a multimodal model), which is then what is bound.
    /// </summary>
    /// <param name="path">Path of the JSON file.</param>
    /// <exception cref="ConfigException">Missing file, bad JSON, another model type, or invalid values.</exception>
    public static ClipVisionConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new ConfigException(path, null, "file not found.");
        }

        using (var doc = HfConfigLoader.ParseDocument(File.ReadAllText(path), path))
        {
            var root = doc.RootElement;
            if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("vision_config", out var nested) && nested.ValueKind == JsonValueKind.Object)
            {
                return FromJson(nested, path + "#vision_config");
            }

            return FromJson(root, path);
        }
    }

    /// <summary>Binds and validates a vision configuration object (e.g. a nested <c>vision_config</c>).</summary>
    /// <param name="element">The JSON object.</param>
    /// <param name="source">Where it came from, for error messages (e.g. <c>config.json#vision_config</c>).</param>
    /// <exception cref="ConfigException">Bad values, another model type, or invalid values.</exception>
    public static ClipVisionConfig FromJson(JsonElement element, string source) =>
        HfConfigLoader.Bind<ClipVisionConfig>(element, source, ModelTypeName).Validate(source);

    /// <summary>Parses and validates a vision configuration from JSON text.</summary>
    /// <param name="json">The JSON text of the vision configuration object.</param>
    /// <param name="source">Where it came from, for error messages.</param>
    /// <exception cref="ConfigException">Bad JSON, another model type, or invalid values.</exception>
    public static ClipVisionConfig Parse(string json, string source = "vision_config") =>
        HfConfigLoader.Parse<ClipVisionConfig>(json, source, ModelTypeName).Validate(source);

    /// <summary>Checks that the values describe a buildable model and returns this config.</summary>
    /// <param name="source">Where the config came from, for error messages.</param>
    /// <exception cref="ConfigException">A size is not positive, the width does not split into the heads, the patch is
    /// larger than the image, or the activation is unknown.</exception>
    public ClipVisionConfig Validate(string source = nameof(ClipVisionConfig))
    {
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumChannels, "num_channels");
        Positive(ImageSize, "image_size");
        Positive(PatchSize, "patch_size");
        if (HiddenSize % NumAttentionHeads != 0)
        {
            throw new ConfigException(source, "num_attention_heads", $"hidden_size {HiddenSize} is not divisible by num_attention_heads {NumAttentionHeads}.");
        }

        if (PatchSize > ImageSize)
        {
            throw new ConfigException(source, "patch_size", $"patch_size {PatchSize} is larger than image_size {ImageSize}.");
        }

        // LayerNorm adds eps to a float32 variance: a value float32 cannot hold becomes zero or infinity there.
        if (!(LayerNormEps > 0) || !float.IsFinite((float)LayerNormEps) || (float)LayerNormEps == 0)
        {
            throw new ConfigException(source, "layer_norm_eps", $"must be a positive number that float32 holds, got {LayerNormEps}.");
        }

        // Positions (CLS + grid²) are an int here and a tensor dimension: check the square in long arithmetic.
        long grid = ImageSize / PatchSize;
        if (grid * grid + 1 > int.MaxValue)
        {
            throw new ConfigException(source, "image_size", $"image_size {ImageSize} with patch_size {PatchSize} gives {grid}² + 1 = {grid * grid + 1} positions, more than a tensor dimension can hold here ({int.MaxValue}).");
        }

        _ = Activation.Get(HiddenAct, source, "hidden_act");

        return this;

        void Positive(int value, string key)
        {
            if (value <= 0)
            {
                throw new ConfigException(source, key, $"must be positive, got {value}.");
            }
        }
    }

    /// <summary>
    /// Checks this configuration against a checkpoint's tensor headers, before anything is allocated: the layer count
    /// against the stored encoder layers, and every dimension of every stored vision tensor against the sizes configured.
    /// </summary>
    /// <param name="checkpoint">The checkpoint (only headers are read).</param>
    /// <param name="prefix">Where the vision tower sits (as for <see cref="HookedClipVisionModel.LoadWeights"/>).</param>
    /// <param name="source">The configuration file (e.g. <c>…/config.json#vision_config</c>), for errors.</param>
    /// <param name="strict">Whether the load will be strict: then the layer count must equal the checkpoint's.</param>
    /// <exception cref="ConfigException">A configured size does not match the checkpoint; names the key.</exception>
    public void CheckAgainst(ITensorSource checkpoint, string prefix, string source, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(prefix);
        CheckpointShapes.CheckLayered(checkpoint, prefix + "vision_model.encoder.layers.", NumHiddenLayers, "num_hidden_layers", layers => ExpectedTensors(prefix, layers), source, strict);
    }

    /// <summary>The tensors this configuration implies under <paramref name="prefix"/>, for the given encoder layers.</summary>
    /// <param name="prefix">Where the vision tower sits in the checkpoint.</param>
    /// <param name="layers">Which layers to list (e.g. the ones a checkpoint stores).</param>
    public IEnumerable<ConfigTensor> ExpectedTensors(string prefix, IEnumerable<int> layers)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ArgumentNullException.ThrowIfNull(layers);
        var hidden = ConfigDim.Of("hidden_size", HiddenSize);
        var intermediate = ConfigDim.Of("intermediate_size", IntermediateSize);
        var patch = ConfigDim.Of("patch_size", PatchSize);
        long grid = ImageSize / PatchSize;

        // CLS + one position per patch; image_size is blamed (patch_size is checked against the patch kernel first).
        var positions = ConfigDim.Derived("image_size", grid * grid + 1, $"(image_size {ImageSize} / patch_size {PatchSize})² + 1");
        ConfigTensor T(string name, params ConfigDim[] shape) => new(prefix + "vision_model." + name, shape);

        yield return T("embeddings.class_embedding", hidden);
        yield return T("embeddings.patch_embedding.weight", hidden, ConfigDim.Of("num_channels", NumChannels), patch, patch);
        yield return T("embeddings.position_embedding.weight", positions, hidden);
        yield return T("pre_layrnorm.weight", hidden);
        yield return T("pre_layrnorm.bias", hidden);
        foreach (int i in layers.Where(i => i < NumHiddenLayers))
        {
            string p = $"encoder.layers.{i}.";
            foreach (var norm in new[] { "layer_norm1", "layer_norm2" })
            {
                yield return T(p + norm + ".weight", hidden);
                yield return T(p + norm + ".bias", hidden);
            }

            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                yield return T(p + "self_attn." + proj + ".weight", hidden, hidden);
                yield return T(p + "self_attn." + proj + ".bias", hidden);
            }

            yield return T(p + "mlp.fc1.weight", intermediate, hidden);
            yield return T(p + "mlp.fc1.bias", intermediate);
            yield return T(p + "mlp.fc2.weight", hidden, intermediate);
            yield return T(p + "mlp.fc2.bias", hidden);
        }

        yield return T("post_layernorm.weight", hidden);
        yield return T("post_layernorm.bias", hidden);
    }
}
