using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using LlavaInterp.Configuration;
using TorchSharp;

namespace LlavaInterp.Sae;

/// <summary>
/// The configuration of a sparse autoencoder as SAELens 4.x writes it to <c>cfg.json</c> (<c>SAEConfig.to_dict</c>).
/// <see cref="Parse(string, string)"/> applies SAELens's loader upgrades first: the old keys <c>hook_point</c>, <c>hook_point_layer</c>,
/// <c>hook_point_head_index</c> and <c>activation_fn</c> are renamed, a boolean <c>normalize_activations</c> becomes
/// <c>"expected_average_only_in"</c> (true) or <c>"none"</c> (false), and missing keys get SAELens's defaults
/// (<c>handle_config_defaulting</c>). Keys this record does not model are kept in <see cref="ExtraKeys"/>.
/// </summary>
public sealed record SaeConfig
{
    /// <summary>Known values of <see cref="Architecture"/>.</summary>
    public static IReadOnlyList<string> Architectures { get; } = ["standard", "gated", "jumprelu", "topk", "batchtopk", "matryoshka_batchtopk"];

    /// <summary>Known values of <see cref="ActivationFn"/>.</summary>
    public static IReadOnlyList<string> ActivationFns { get; } = ["relu", "tanh-relu", "topk"];

    /// <summary>Known values of <see cref="NormalizeActivations"/>.</summary>
    public static IReadOnlyList<string> Normalizations { get; } = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"];

    private static readonly Dictionary<string, torch.ScalarType> DTypes = new(StringComparer.Ordinal)
    {
        ["float32"] = torch.ScalarType.Float32,
        ["float64"] = torch.ScalarType.Float64,
        ["float16"] = torch.ScalarType.Float16,
        ["bfloat16"] = torch.ScalarType.BFloat16,
        ["torch.float32"] = torch.ScalarType.Float32,
        ["torch.float64"] = torch.ScalarType.Float64,
        ["torch.float16"] = torch.ScalarType.Float16,
        ["torch.bfloat16"] = torch.ScalarType.BFloat16,
    };

    // SAELens SAEConfig.from_dict: old name -> new name.
    private static readonly (string Old, string New)[] Renames =
    [
        ("hook_point", "hook_name"),
        ("hook_point_head_index", "hook_head_index"),
        ("hook_point_layer", "hook_layer"),
        ("activation_fn", "activation_fn_str"),
    ];

    /// <summary><c>architecture</c>: <c>standard</c>, <c>gated</c>, <c>jumprelu</c> or <c>topk</c>.</summary>
    [JsonPropertyName("architecture")]
    public string Architecture { get; init; } = "standard";

    /// <summary><c>d_in</c>: width of the activation the SAE reads.</summary>
    [JsonPropertyName("d_in")]
    public int DIn { get; init; }

    /// <summary><c>d_sae</c>: number of features.</summary>
    [JsonPropertyName("d_sae")]
    public int DSae { get; init; }

    /// <summary><c>dtype</c>: the dtype the SAE computes in (<c>float32</c>, <c>torch.float32</c>, ...).</summary>
    [JsonPropertyName("dtype")]
    public string DType { get; init; } = "float32";

    /// <summary><c>device</c> the SAE was saved from (informational; the load options choose the device).</summary>
    [JsonPropertyName("device")]
    public string Device { get; init; } = "cpu";

    /// <summary><c>model_name</c>: the model the SAE was trained on.</summary>
    [JsonPropertyName("model_name")]
    public string? ModelName { get; init; }

    /// <summary><c>hook_name</c>: the TransformerLens hook point the SAE reads, e.g. <c>blocks.12.hook_resid_post</c>.</summary>
    [JsonPropertyName("hook_name")]
    public string HookName { get; init; } = string.Empty;

    /// <summary><c>hook_layer</c>: the block of the hook point.</summary>
    [JsonPropertyName("hook_layer")]
    public int HookLayer { get; init; }

    /// <summary><c>hook_head_index</c>: the attention head, for per-head hook points; usually null.</summary>
    [JsonPropertyName("hook_head_index")]
    public int? HookHeadIndex { get; init; }

    /// <summary><c>activation_fn_str</c>: <c>relu</c>, <c>tanh-relu</c> or <c>topk</c>.</summary>
    [JsonPropertyName("activation_fn_str")]
    public string ActivationFn { get; init; } = "relu";

    /// <summary><c>activation_fn_kwargs</c>, e.g. <c>{"k": 32}</c> for TopK.</summary>
    [JsonPropertyName("activation_fn_kwargs")]
    public Dictionary<string, JsonElement>? ActivationFnKwargs { get; init; }

    /// <summary><c>k</c> at the top level (later SAELens TopK configs); <see cref="TopK"/> reads either place.</summary>
    [JsonPropertyName("k")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int? K { get; init; }

    /// <summary><c>apply_b_dec_to_input</c>: subtract <c>b_dec</c> from the input before encoding.</summary>
    [JsonPropertyName("apply_b_dec_to_input")]
    public bool ApplyBDecToInput { get; init; } = true;

    /// <summary><c>finetuning_scaling_factor</c>: feature activations are multiplied by a learnt per-feature scale before decoding.</summary>
    [JsonPropertyName("finetuning_scaling_factor")]
    public bool FinetuningScalingFactor { get; init; }

    /// <summary>
    /// <c>normalize_activations</c>: <c>none</c>, <c>expected_average_only_in</c> (a constant input scale that must be
    /// folded into the weights, see <see cref="SparseAutoencoder.FoldActivationNormScalingFactor"/>),
    /// <c>constant_norm_rescale</c> (inputs rescaled to norm √d_in at run time) or <c>layer_norm</c>.
    /// </summary>
    [JsonPropertyName("normalize_activations")]
    public string NormalizeActivations { get; init; } = "none";

    /// <summary><c>context_size</c>: training context length.</summary>
    [JsonPropertyName("context_size")]
    public int? ContextSize { get; init; }

    /// <summary><c>prepend_bos</c>: whether training prompts started with BOS.</summary>
    [JsonPropertyName("prepend_bos")]
    public bool PrependBos { get; init; } = true;

    /// <summary><c>dataset_path</c>: the training dataset.</summary>
    [JsonPropertyName("dataset_path")]
    public string? DatasetPath { get; init; }

    /// <summary><c>dataset_trust_remote_code</c>.</summary>
    [JsonPropertyName("dataset_trust_remote_code")]
    public bool DatasetTrustRemoteCode { get; init; } = true;

    /// <summary><c>sae_lens_training_version</c>.</summary>
    [JsonPropertyName("sae_lens_training_version")]
    public string? SaeLensTrainingVersion { get; init; }

    /// <summary><c>neuronpedia_id</c>, e.g. <c>gemma-2b/12-res-jb</c> (model id / source id).</summary>
    [JsonPropertyName("neuronpedia_id")]
    public string? NeuronpediaId { get; init; }

    /// <summary><c>model_from_pretrained_kwargs</c>.</summary>
    [JsonPropertyName("model_from_pretrained_kwargs")]
    public Dictionary<string, JsonElement>? ModelFromPretrainedKwargs { get; init; }

    /// <summary><c>seqpos_slice</c>: the training position slice (informational).</summary>
    [JsonPropertyName("seqpos_slice")]
    public List<int?>? SeqposSlice { get; init; }

    /// <summary>Every key no property binds, with its raw value.</summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? ExtraKeys { get; init; }

    /// <summary>The number of features TopK keeps (<c>activation_fn_kwargs.k</c> or top-level <c>k</c>), or null.</summary>
    [JsonIgnore]
    public int? TopK
    {
        get
        {
            if (ActivationFnKwargs is not null && ActivationFnKwargs.TryGetValue("k", out var k) && k.ValueKind == JsonValueKind.Number && k.TryGetInt32(out int value))
            {
                return value;
            }

            return K;
        }
    }

    /// <summary>Whether the activation is TopK (architecture <c>topk</c>, or a standard SAE with activation <c>topk</c>).</summary>
    [JsonIgnore]
    public bool IsTopK => Architecture == "topk" || ActivationFn == "topk";

    /// <summary>The Neuronpedia source id: the part of <see cref="NeuronpediaId"/> after the <c>/</c>.</summary>
    [JsonIgnore]
    public string? NeuronpediaSource => NeuronpediaId is { } id && id.IndexOf('/', StringComparison.Ordinal) is int slash and >= 0 ? id[(slash + 1)..] : null;

    /// <summary>The TorchSharp dtype of <see cref="DType"/>.</summary>
    [JsonIgnore]
    public torch.ScalarType ScalarType => DTypes.TryGetValue(DType, out var t) ? t : throw new SaeException(HookName, $"unknown dtype '{DType}'.");

    /// <summary>Loads and validates a SAELens <c>cfg.json</c>.</summary>
    /// <exception cref="ConfigException">Missing file, bad JSON, wrong value types, missing or invalid keys.</exception>
    public static SaeConfig Load(string path) => Load(path, null);

    internal static SaeConfig Load(string path, IReadOnlyDictionary<string, string>? overrides)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new ConfigException(path, null, "file not found.");
        }

        return Parse(File.ReadAllText(path), path, overrides);
    }

    /// <summary>Parses, upgrades (old SAELens keys) and validates <c>cfg.json</c> text.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="source">Where it came from, for error messages.</param>
    /// <exception cref="ConfigException">Bad JSON, wrong value types, missing or invalid keys.</exception>
    public static SaeConfig Parse(string json, string source) => Parse(json, source, null);

    /// <summary>Parses with SAELens-style overrides (applied after the key upgrades, before binding).</summary>
    internal static SaeConfig Parse(string json, string source, IReadOnlyDictionary<string, string>? overrides)
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonNode? root;
        using (var doc = HfConfigLoader.ParseDocument(json, source))
        {
            root = JsonNode.Parse(doc.RootElement.GetRawText());
        }

        if (root is not JsonObject obj)
        {
            throw new ConfigException(source, null, $"expected a JSON object, found {root?.GetValueKind().ToString() ?? "null"}.");
        }

        Upgrade(obj, source);
        foreach (var (key, value) in overrides ?? new Dictionary<string, string>())
        {
            obj[key] = value;
        }

        SaeConfig? config;
        try
        {
            config = obj.Deserialize<SaeConfig>(HfConfigLoader.Options);
        }
        catch (JsonException ex)
        {
            throw new ConfigException(source, ex.Path, $"invalid value: {ex.Message}", ex);
        }

        return (config ?? throw new ConfigException(source, null, "configuration is null.")).Validate(source, obj);
    }

    /// <summary>Serializes the configuration in SAELens's <c>cfg.json</c> form (extra keys included).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, new JsonSerializerOptions(HfConfigLoader.Options) { WriteIndented = true });

    private static void Upgrade(JsonObject obj, string source)
    {
        // SAELens 6 writes the run's metadata (model_name, hook_name, neuronpedia_id, ...) nested under "meta"
        // (SAEConfig.to_dict; "metadata" in some writers); top-level keys keep precedence over nested ones.
        foreach (string nest in new[] { "meta", "metadata" })
        {
            if (obj[nest] is JsonObject meta)
            {
                obj.Remove(nest);
                foreach (var (key, value) in meta.ToList())
                {
                    // A null means "not recorded": SAELens's default (or the hook name, for the layer) applies.
                    if (value is not null && (!obj.ContainsKey(key) || obj[key] is null))
                    {
                        meta.Remove(key);
                        obj[key] = value;
                    }
                }
            }
        }

        // BatchTopK SAEs run as JumpReLU at inference (SAELens saves them so); their "k" is a float batch average,
        // a training setting, kept under another name so it is not read as a TopK k.
        if (obj["architecture"]?.GetValueKind() == JsonValueKind.String
            && obj["architecture"]!.GetValue<string>() is "batchtopk" or "matryoshka_batchtopk" && obj["k"] is { } batchK)
        {
            obj.Remove("k");
            obj["batchtopk_k"] = batchK;
        }

        if (obj["rescale_acts_by_decoder_norm"]?.GetValueKind() == JsonValueKind.True)
        {
            throw new ConfigException(source, "rescale_acts_by_decoder_norm", "is true; TopK SAEs that rescale activations by the decoder norm are not supported (fold the norm into W_enc first).");
        }

        if (obj["reshape_activations"]?.GetValueKind() == JsonValueKind.String && obj["reshape_activations"]!.GetValue<string>() != "none")
        {
            throw new ConfigException(source, "reshape_activations", $"'{obj["reshape_activations"]!.GetValue<string>()}' is not supported (only 'none').");
        }

        foreach (var (oldKey, newKey) in Renames)
        {
            if (obj.ContainsKey(oldKey))
            {
                var value = obj[oldKey];
                obj.Remove(oldKey);
                // A config that has both keys keeps the new one.
                if (!obj.ContainsKey(newKey))
                {
                    obj[newKey] = value;
                }
            }
        }

        if (obj.TryGetPropertyValue("normalize_activations", out var norm))
        {
            switch (norm?.GetValueKind())
            {
                case JsonValueKind.True:
                    obj["normalize_activations"] = "expected_average_only_in";
                    break;
                case JsonValueKind.False:
                case JsonValueKind.Null:
                case null:
                    obj["normalize_activations"] = "none";
                    break;
            }
        }

        // Nulls where SAELens's defaults apply would otherwise fail to bind to non-nullable properties.
        foreach (var key in new[] { "architecture", "activation_fn_str", "apply_b_dec_to_input", "finetuning_scaling_factor", "prepend_bos", "dataset_trust_remote_code", "dtype", "device" })
        {
            if (obj.TryGetPropertyValue(key, out var v) && v is null)
            {
                obj.Remove(key);
            }
        }
    }

    private SaeConfig Validate(string source, JsonObject obj)
    {
        foreach (var key in new[] { "d_in", "d_sae", "hook_name" })
        {
            if (!obj.ContainsKey(key) || obj[key] is null)
            {
                throw new ConfigException(source, key, "is required.");
            }
        }

        if (DIn <= 0)
        {
            throw new ConfigException(source, "d_in", $"must be positive, found {DIn}.");
        }

        if (DSae <= 0)
        {
            throw new ConfigException(source, "d_sae", $"must be positive, found {DSae}.");
        }

        if (string.IsNullOrWhiteSpace(HookName))
        {
            throw new ConfigException(source, "hook_name", "must be a hook point name.");
        }

        if (!Architectures.Contains(Architecture))
        {
            throw new ConfigException(source, "architecture", $"'{Architecture}' is not supported (expected {string.Join(", ", Architectures)}).");
        }

        if (!ActivationFns.Contains(ActivationFn))
        {
            throw new ConfigException(source, "activation_fn_str", $"'{ActivationFn}' is not supported (expected {string.Join(", ", ActivationFns)}).");
        }

        if (!Normalizations.Contains(NormalizeActivations))
        {
            throw new ConfigException(source, "normalize_activations", $"'{NormalizeActivations}' is not supported (expected {string.Join(", ", Normalizations)}).");
        }

        if (!DTypes.ContainsKey(DType))
        {
            throw new ConfigException(source, "dtype", $"'{DType}' is not supported (expected {string.Join(", ", DTypes.Keys)}).");
        }

        if (IsTopK && (TopK is not int k || k <= 0 || k > DSae))
        {
            throw new ConfigException(source, "activation_fn_kwargs.k", $"a TopK SAE needs 1 <= k <= d_sae ({DSae}); found {(TopK is int kk ? kk.ToString(System.Globalization.CultureInfo.InvariantCulture) : "none")}.");
        }

        var config = this;
        if (!obj.ContainsKey("hook_layer") || obj["hook_layer"] is null)
        {
            // Old configs without a layer: TransformerLens names carry it ("blocks.12.hook_resid_post").
            var match = Regex.Match(HookName, @"(?:^|\.)blocks\.(\d+)\.");
            if (!match.Success)
            {
                throw new ConfigException(source, "hook_layer", $"is required (it cannot be read from hook_name '{HookName}').");
            }

            config = config with { HookLayer = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) };
        }

        return config;
    }
}
