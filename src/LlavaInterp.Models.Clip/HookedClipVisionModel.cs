using LlavaInterp.Hooks;
using LlavaInterp.Loading;
using LlavaInterp.Nn;
using LlavaInterp.TensorFiles;
using TorchSharp;
using TorchSharp.Utils;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// HF transformers 4.46.3 <c>CLIPVisionModel</c> with TransformerLens-style hook points. Its state-dict keys are HF's
/// (<c>vision_model.embeddings.patch_embedding.weight</c>, …), so under LLaVA, which holds it as
/// <c>vision_tower</c>, they read <c>vision_tower.vision_model.…</c> as in the checkpoint.
/// </summary>
/// <remarks>
/// Parameters are created with <c>torch.empty</c> (uninitialised) on the given device: build on the meta device to
/// inspect names and shapes for free, or on a real device and call <see cref="LoadWeights"/>.
/// Hook points (prefix <see cref="HookPrefix"/>, shapes in docs/hook-points.md): <c>hook_patch_embed</c>,
/// <c>hook_embed</c>, <c>ln_pre.hook_normalized</c>, per block <c>blocks.{i}.hook_resid_pre</c>,
/// <c>ln1.hook_normalized</c>, <c>attn.hook_q|k|v|attn_scores|pattern|z</c>, <c>hook_attn_out</c>,
/// <c>hook_resid_mid</c>, <c>ln2.hook_normalized</c>, <c>mlp.hook_pre|post</c>, <c>hook_mlp_out</c>,
/// <c>hook_resid_post</c>, and <c>ln_post.hook_normalized</c>.
/// </remarks>
public sealed class HookedClipVisionModel : HookedRootModule<ClipVisionInput, ClipVisionOutput>
{
    /// <summary>The default hook-name prefix, which keeps vision hooks apart from the language model's.</summary>
    public const string DefaultHookPrefix = "vision.";

    private const string VisionModelKey = "vision_model.";

    [ComponentName(Name = "vision_model")]
    private readonly ClipVisionTransformer _visionModel;

    /// <summary>Builds the model with uninitialised parameters.</summary>
    /// <param name="config">The vision configuration (validated here).</param>
    /// <param name="hookPrefix">Prepended to every hook name; empty or ending in <c>.</c>.</param>
    /// <param name="device">Where to create the parameters (CPU when null; <c>meta</c> for shapes only).</param>
    /// <param name="dtype">Parameter (storage) dtype: float32, bfloat16 or float16.</param>
    /// <param name="computeDType">Activation dtype; <see langword="null"/> = <paramref name="dtype"/>. Float32 with
    /// bfloat16 or float16 storage casts each weight to float32 at its use (see <see cref="ComputeDTypes"/>).</param>
    /// <exception cref="Configuration.ConfigException">The configuration is invalid.</exception>
    /// <exception cref="ArgumentException">The hook prefix or a dtype is unusable.</exception>
    public HookedClipVisionModel(ClipVisionConfig config, string hookPrefix = DefaultHookPrefix, torch.Device? device = null, torch.ScalarType dtype = torch.ScalarType.Float32, torch.ScalarType? computeDType = null)
        : base(nameof(HookedClipVisionModel))
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(hookPrefix);
        config.Validate();
        if (hookPrefix.Length > 0 && !hookPrefix.EndsWith('.'))
        {
            throw new ArgumentException($"The hook prefix must be empty or end with '.', got '{hookPrefix}'.", nameof(hookPrefix));
        }

        ComputeDType = ComputeDTypes.Resolve(dtype, computeDType, nameof(dtype), nameof(computeDType));
        Config = config;
        HookPrefix = hookPrefix;
        DType = dtype;
        _visionModel = new ClipVisionTransformer(config, hookPrefix, device ?? torch.CPU, dtype, ComputeDType);
        RegisterComponents();
        SetupHooks();
    }

    /// <summary>The vision configuration.</summary>
    public ClipVisionConfig Config { get; }

    /// <summary>Parameter (storage) dtype.</summary>
    public torch.ScalarType DType { get; }

    /// <summary>Activation dtype: pixels are cast to it, and every hook point sees it.</summary>
    public torch.ScalarType ComputeDType { get; }

    /// <summary>Prefix of every hook name (default <c>vision.</c>).</summary>
    public string HookPrefix { get; }

    /// <summary>HF <c>vision_model</c>: embeddings, <c>pre_layrnorm</c>, encoder, <c>post_layernorm</c>.</summary>
    internal ClipVisionTransformer VisionModel => _visionModel;

    /// <summary>Runs the vision tower.</summary>
    public override ClipVisionOutput forward(ClipVisionInput input)
    {
        ThrowIfDisposed();
        // Vision tokens are not sequence positions of the language model: hooks see offset 0 even inside a decode step.
        using var offset = HookRun.EnterPositionOffset(0);
        return _visionModel.call(input);
    }

    /// <summary>
    /// HF <c>hidden_states[featureLayer]</c> [batch, tokens, d_model] (CLS included), running only the layers it needs.
    /// Index 0 is <c>pre_layrnorm(embeddings)</c>, index i the output of layer i-1; negative indices count from the end
    /// of the <c>L + 1</c> entries, so LLaVA's <c>vision_feature_layer = -2</c> runs layers 0 .. L-2 and skips the last.
    /// </summary>
    /// <param name="pixelValues">Images [batch, channels, image_size, image_size].</param>
    /// <param name="featureLayer">Index into HF's hidden states, in [-(L+1), L].</param>
    /// <returns>A tensor the caller owns.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The index is outside [-(L+1), L].</exception>
    public torch.Tensor GetFeatureLayer(torch.Tensor pixelValues, int featureLayer)
    {
        using var output = call(new ClipVisionInput(pixelValues) { StopAtLayer = LayersForFeatureLayer(featureLayer) });

        // The output owns its tensors; an alias shares the storage and outlives the output's disposal.
        return output.LastHiddenState.alias();
    }

    /// <summary>How many layers must run to produce HF <c>hidden_states[featureLayer]</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The index is outside [-(L+1), L].</exception>
    public int LayersForFeatureLayer(int featureLayer)
    {
        int entries = Config.NumHiddenLayers + 1;
        int index = featureLayer < 0 ? entries + featureLayer : featureLayer;
        if (index < 0 || index >= entries)
        {
            throw new ArgumentOutOfRangeException(nameof(featureLayer), featureLayer, $"a vision tower of {Config.NumHiddenLayers} layers has {entries} hidden states: the feature layer must lie in [{-entries}, {entries - 1}].");
        }

        return index;
    }

    /// <summary>
    /// Loads the weights from a checkpoint through <see cref="WeightLoader"/>: module key <c>vision_model.X</c> is read from
    /// <c>prefix + "vision_model.X"</c>. Tensors stored in the model's dtype (model on the CPU) are mapped, not copied;
    /// models loaded from one open <paramref name="source"/> share those pages (see <see cref="WeightLoader"/>).
    /// Tensors outside <c>prefix + "vision_model."</c> (a full CLIP checkpoint's text model, the other parts of a
    /// multimodal checkpoint) are not this model's and are ignored.
    /// </summary>
    /// <param name="source">The checkpoint.</param>
    /// <param name="prefix">Where the vision tower sits in the checkpoint: <c>""</c> for a CLIP checkpoint; a
    /// multimodal model passes the prefix its own layout gives.</param>
    /// <param name="strict">When true (default), missing and unused vision tensors are an error.</param>
    /// <param name="progress">Reports each loaded tensor.</param>
    /// <param name="cancellationToken">Checked between tensors.</param>
    /// <returns>What was loaded (and, when not strict, what was missing or unused).</returns>
    /// <exception cref="WeightLoadException">Missing or unexpected tensors (strict), or a shape mismatch; lists them by name.</exception>
    /// <exception cref="InvalidOperationException">The model was built on the meta device.</exception>
    /// <param name="loading">Map the file (default) or copy every weight into memory (see <see cref="WeightLoading"/>).</param>
    public WeightLoadReport LoadWeights(ITensorSource source, string prefix = "", bool strict = true, IProgress<WeightLoadProgress>? progress = null, CancellationToken cancellationToken = default, WeightLoading loading = WeightLoading.Mapped)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(prefix);
        ThrowIfDisposed();
        return WeightLoader.Load(this, source, prefix, strict, name => name.StartsWith(VisionModelKey, StringComparison.Ordinal), progress: progress, cancellationToken: cancellationToken, loading: loading);
    }

    /// <inheritdoc/>
    protected override ClipVisionInput WithStopAtLayer(ClipVisionInput input, int stopAtLayer) => input with { StopAtLayer = stopAtLayer };
}
