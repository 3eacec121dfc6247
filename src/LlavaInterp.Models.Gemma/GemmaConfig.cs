using System.Text.Json;
using System.Text.Json.Serialization;
using LlavaInterp.Configuration;
using LlavaInterp.Nn;
using LlavaInterp.TensorFiles;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Gemma (v1) decoder configuration bound from a Hugging Face <c>config.json</c>: a standalone
/// <c>GemmaForCausalLM</c> file, or a text configuration nested in a multimodal one (see <see cref="Bind"/>).
/// Keys absent from the file take the defaults of transformers 4.46 <c>GemmaConfig</c> (the gemma-7b shape);
/// keys the record does not model are kept in <see cref="HfConfig.ExtraKeys"/>.
/// </summary>
public sealed record GemmaConfig : HfConfig
{
    /// <summary>The <c>model_type</c> of a Gemma decoder configuration.</summary>
    public const string GemmaModelType = "gemma";

    /// <summary><c>vocab_size</c>: rows of the token embedding (HF default 256000).</summary>
    [JsonPropertyName("vocab_size")]
    public int VocabSize { get; init; } = 256000;

    /// <summary><c>hidden_size</c>: width of the residual stream (HF default 3072).</summary>
    [JsonPropertyName("hidden_size")]
    public int HiddenSize { get; init; } = 3072;

    /// <summary><c>intermediate_size</c>: width of the gated MLP (HF default 24576).</summary>
    [JsonPropertyName("intermediate_size")]
    public int IntermediateSize { get; init; } = 24576;

    /// <summary><c>num_hidden_layers</c>: number of decoder layers (HF default 28).</summary>
    [JsonPropertyName("num_hidden_layers")]
    public int NumHiddenLayers { get; init; } = 28;

    /// <summary><c>num_attention_heads</c>: query heads (HF default 16).</summary>
    [JsonPropertyName("num_attention_heads")]
    public int NumAttentionHeads { get; init; } = 16;

    /// <summary>
    /// <c>num_key_value_heads</c>: key/value heads (1 = multi-query attention). HF's default is 16 (the gemma-7b
    /// value), not <see cref="NumAttentionHeads"/>; every published Gemma config states it.
    /// </summary>
    [JsonPropertyName("num_key_value_heads")]
    public int NumKeyValueHeads { get; init; } = 16;

    /// <summary><c>head_dim</c>: width of one head, independent of <c>hidden_size / heads</c> (HF default 256).</summary>
    [JsonPropertyName("head_dim")]
    public int HeadDim { get; init; } = 256;

    /// <summary><c>hidden_act</c>: ignored by Gemma v1 in favour of <see cref="HiddenActivation"/> (kept for reference).</summary>
    [JsonPropertyName("hidden_act")]
    public string? HiddenAct { get; init; } = "gelu_pytorch_tanh";

    /// <summary><c>hidden_activation</c>: the MLP activation; <see langword="null"/> means <c>gelu_pytorch_tanh</c>.</summary>
    [JsonPropertyName("hidden_activation")]
    public string? HiddenActivation { get; init; }

    /// <summary><c>max_position_embeddings</c> (HF default 8192). A run needing more positions is refused (<see cref="ContextLengthException"/>).</summary>
    [JsonPropertyName("max_position_embeddings")]
    public int MaxPositionEmbeddings { get; init; } = 8192;

    /// <summary><c>initializer_range</c>: standard deviation of the random initialisation (HF default 0.02).</summary>
    [JsonPropertyName("initializer_range")]
    public double InitializerRange { get; init; } = 0.02;

    /// <summary><c>rms_norm_eps</c> (HF default 1e-6).</summary>
    [JsonPropertyName("rms_norm_eps")]
    public double RmsNormEps { get; init; } = 1e-6;

    /// <summary><c>use_cache</c> (HF default true). Informational.</summary>
    [JsonPropertyName("use_cache")]
    public bool UseCache { get; init; } = true;

    /// <summary><c>pad_token_id</c> (HF default 0).</summary>
    [JsonPropertyName("pad_token_id")]
    public int? PadTokenId { get; init; } = 0;

    /// <summary><c>eos_token_id</c>: one id or a list in the file; always a list here (HF default [1]).</summary>
    [JsonPropertyName("eos_token_id")]
    [JsonConverter(typeof(IntOrIntArrayConverter))]
    public int[]? EosTokenId { get; init; } = [1];

    /// <summary><c>bos_token_id</c> (HF default 2).</summary>
    [JsonPropertyName("bos_token_id")]
    public int? BosTokenId { get; init; } = 2;

    /// <summary><c>tie_word_embeddings</c>: the unembedding is the token embedding matrix (HF default true).</summary>
    [JsonPropertyName("tie_word_embeddings")]
    public bool TieWordEmbeddings { get; init; } = true;

    /// <summary><c>rope_theta</c>: RoPE base (HF default 10000).</summary>
    [JsonPropertyName("rope_theta")]
    public double RopeTheta { get; init; } = 10000.0;

    /// <summary><c>attention_bias</c>: q/k/v/o projections carry biases (HF default false).</summary>
    [JsonPropertyName("attention_bias")]
    public bool AttentionBias { get; init; }

    /// <summary><c>attention_dropout</c> (HF default 0). Unused at inference.</summary>
    [JsonPropertyName("attention_dropout")]
    public double AttentionDropout { get; init; }

    /// <summary><c>torch_dtype</c>: the dtype the checkpoint was saved in (e.g. <c>bfloat16</c>), if stated.</summary>
    [JsonPropertyName("torch_dtype")]
    public string? TorchDType { get; init; }

    /// <summary><c>architectures</c>, if stated.</summary>
    [JsonPropertyName("architectures")]
    public string[]? Architectures { get; init; }

    /// <summary>Query heads per key/value head.</summary>
    [JsonIgnore]
    public int KeyValueGroups => NumKeyValueHeads > 0 ? NumAttentionHeads / NumKeyValueHeads : 0;

    /// <summary>
    /// The MLP activation Gemma v1 uses: <see cref="HiddenActivation"/>, or <c>gelu_pytorch_tanh</c> when it is null
    /// (<c>hidden_act</c> is ignored, as in HF).
    /// </summary>
    /// <exception cref="ConfigException">The activation name is not supported.</exception>
    public Activation ResolveActivation() => Activation.Get(HiddenActivation ?? "gelu_pytorch_tanh", "GemmaConfig", "hidden_activation");

    /// <summary>
    /// Loads a Gemma <c>config.json</c> (<c>model_type</c> "gemma" or absent). A multimodal model binds its nested
    /// text configuration with <see cref="Bind"/>.
    /// </summary>
    /// <exception cref="ConfigException">Missing file, invalid JSON, wrong value types, another model type, or invalid values.</exception>
    public static GemmaConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new ConfigException(path, null, "file not found.");
        }

        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses Gemma configuration JSON (as <see cref="Load"/>).</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="source">Where it came from, for error messages.</param>
    /// <exception cref="ConfigException">Invalid JSON, wrong value types, another model type, or invalid values.</exception>
    public static GemmaConfig Parse(string json, string source)
    {
        using (var doc = HfConfigLoader.ParseDocument(json, source))
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ConfigException(source, null, $"expected a JSON object, found {root.ValueKind}.");
            }

            return Bind(root, source);
        }
    }

    /// <summary>Binds a Gemma configuration object (a file's root, or a multimodal model's nested text configuration) and validates it.</summary>
    /// <param name="element">The JSON object.</param>
    /// <param name="source">Where it came from, for error messages (e.g. <c>config.json#text_config</c> for a nested object).</param>
    /// <exception cref="ConfigException">Wrong value types, another model type, or invalid values.</exception>
    public static GemmaConfig Bind(JsonElement element, string source)
    {
        var config = HfConfigLoader.Bind<GemmaConfig>(element, source, GemmaModelType);
        config.Validate(source);
        return config;
    }

    /// <summary>Checks that the values describe a model that can be built.</summary>
    /// <param name="source">Where the configuration came from, for error messages.</param>
    /// <exception cref="ConfigException">A value is out of range or inconsistent.</exception>
    public void Validate(string source = "GemmaConfig")
    {
        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads");
        Positive(HeadDim, "head_dim");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
        {
            throw new ConfigException(source, "num_key_value_heads", $"num_attention_heads ({NumAttentionHeads}) must be a multiple of num_key_value_heads ({NumKeyValueHeads}).");
        }

        if (HeadDim % 2 != 0)
        {
            throw new ConfigException(source, "head_dim", $"RoPE rotates half of each head, so head_dim must be even (got {HeadDim}).");
        }

        // Both are used in float32 (HF adds eps to a float32 variance and raises a float32 theta to a power): a value
        // float32 cannot hold becomes infinity or zero there, so the range is float32's.
        Float32Positive(RmsNormEps, "rms_norm_eps");
        Float32Positive(RopeTheta, "rope_theta");
        if ((long)NumAttentionHeads * HeadDim > int.MaxValue || (long)NumKeyValueHeads * HeadDim > int.MaxValue)
        {
            throw new ConfigException(source, "head_dim", $"num_attention_heads × head_dim ({(long)NumAttentionHeads * HeadDim}) is larger than a tensor dimension can be here ({int.MaxValue}).");
        }

        if (!(InitializerRange >= 0) || double.IsInfinity(InitializerRange))
        {
            throw new ConfigException(source, "initializer_range", $"must be a non-negative finite number (got {InitializerRange}).");
        }

        if (!(AttentionDropout >= 0 && AttentionDropout <= 1))
        {
            throw new ConfigException(source, "attention_dropout", $"must lie in [0, 1] (got {AttentionDropout}).");
        }

        if (PadTokenId is int pad && (pad < 0 || pad >= VocabSize))
        {
            throw new ConfigException(source, "pad_token_id", $"{pad} is outside the vocabulary [0, {VocabSize}).");
        }

        _ = Activation.Get(HiddenActivation ?? "gelu_pytorch_tanh", source, "hidden_activation");

        void Positive(int value, string key)
        {
            if (value <= 0)
            {
                throw new ConfigException(source, key, $"must be positive (got {value}).");
            }
        }

        void Float32Positive(double value, string key)
        {
            if (!(value > 0) || !float.IsFinite((float)value) || (float)value == 0)
            {
                throw new ConfigException(source, key, $"must be a positive number that float32 holds, in [{float.Epsilon}, {float.MaxValue}] (got {value}).");
            }
        }
    }

    /// <summary>
    /// Checks this configuration against a checkpoint's tensor headers, before anything is allocated: the layer count
    /// against the stored layers, and every dimension of every stored decoder tensor against the sizes configured.
    /// </summary>
    /// <param name="checkpoint">The checkpoint (only headers are read).</param>
    /// <param name="layout">Where the decoder's tensors are.</param>
    /// <param name="source">The configuration file (e.g. <c>…/config.json</c> or <c>…/config.json#text_config</c>), for errors.</param>
    /// <param name="strict">Whether the load will be strict: then the layer count must equal the checkpoint's.</param>
    /// <exception cref="ConfigException">A configured size does not match the checkpoint; names the key.</exception>
    public void CheckAgainst(ITensorSource checkpoint, GemmaWeightLayout layout, string source, bool strict = true)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        ArgumentNullException.ThrowIfNull(layout);
        CheckpointShapes.CheckLayered(checkpoint, layout.KeyFor("model.layers."), NumHiddenLayers, "num_hidden_layers", layers => ExpectedTensors(layout, layers), source, strict);
    }

    /// <summary>The tensors this configuration implies, under <paramref name="layout"/>'s names, for the given layers.</summary>
    /// <param name="layout">Where the decoder's tensors are.</param>
    /// <param name="layers">Which layers to list (e.g. the ones a checkpoint stores).</param>
    public IEnumerable<ConfigTensor> ExpectedTensors(GemmaWeightLayout layout, IEnumerable<int> layers)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(layers);
        var hidden = ConfigDim.Of("hidden_size", HiddenSize);
        var vocab = ConfigDim.Of("vocab_size", VocabSize);
        var intermediate = ConfigDim.Of("intermediate_size", IntermediateSize);
        var q = ConfigDim.Product(("num_attention_heads", NumAttentionHeads), ("head_dim", HeadDim));
        var kv = ConfigDim.Product(("num_key_value_heads", NumKeyValueHeads), ("head_dim", HeadDim));
        ConfigTensor T(string name, params ConfigDim[] shape) => new(layout.KeyFor("model." + name), shape);

        yield return T("embed_tokens.weight", vocab, hidden);
        foreach (int i in layers.Where(i => i < NumHiddenLayers))
        {
            string p = $"layers.{i}.";
            yield return T(p + "input_layernorm.weight", hidden);
            yield return T(p + "post_attention_layernorm.weight", hidden);
            yield return T(p + "self_attn.q_proj.weight", q, hidden);
            yield return T(p + "self_attn.k_proj.weight", kv, hidden);
            yield return T(p + "self_attn.v_proj.weight", kv, hidden);
            yield return T(p + "self_attn.o_proj.weight", hidden, q);
            if (AttentionBias)
            {
                yield return T(p + "self_attn.q_proj.bias", q);
                yield return T(p + "self_attn.k_proj.bias", kv);
                yield return T(p + "self_attn.v_proj.bias", kv);
                yield return T(p + "self_attn.o_proj.bias", hidden);
            }

            yield return T(p + "mlp.gate_proj.weight", intermediate, hidden);
            yield return T(p + "mlp.up_proj.weight", intermediate, hidden);
            yield return T(p + "mlp.down_proj.weight", hidden, intermediate);
        }

        yield return T("norm.weight", hidden);
        if (!TieWordEmbeddings)
        {
            yield return new ConfigTensor(layout.LmHeadKey, [vocab, hidden]);
        }
    }
}
