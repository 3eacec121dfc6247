using LlavaInterp.Hooks;
using LlavaInterp.Hub;
using LlavaInterp.Loading;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Nn;
using LlavaInterp.TensorFiles;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Llava;

/// <summary>
/// LLaVA (CLIP vision tower + MLP projector + Gemma) as one hooked model: every hook point of the vision tower
/// (<c>vision.…</c>), the projector (<c>hook_image_features</c>), the merge (<c>hook_inputs_embeds</c>) and the
/// language model (<c>blocks.N.…</c>) is reachable through <c>AddHook</c>, <c>Hooks(...)</c>, <c>RunWithHooks</c> and
/// <c>RunWithCache</c>. Parameter names equal transformers 4.46's <c>LlavaForConditionalGeneration</c>.
/// </summary>
public sealed partial class HookedLlava : HookedRootModule<LlavaInput, GemmaOutput>
{
    [ComponentName(Name = "vision_tower")]
    private readonly HookedClipVisionModel _visionTower;

    [ComponentName(Name = "multi_modal_projector")]
    private readonly LlavaMultiModalProjector _projector;

    // [n_images, image_tokens, d_model]: projector output, before it is written into the token embeddings.
    private readonly HookPoint hook_image_features;

    // [batch, pos, d_model]: token embeddings with image rows replaced, BEFORE Gemma's sqrt(d_model) scaling.
    private readonly HookPoint hook_inputs_embeds;

    [ComponentName(Name = "language_model")]
    private readonly HookedGemma _languageModel;

    /// <summary>Builds a model with uninitialised weights (load them with <see cref="LoadWeights"/>).</summary>
    /// <param name="config">The configuration.</param>
    /// <param name="processor">The processor (tokenizer and image processor), or null for a bare model.</param>
    /// <param name="dtype">Parameter (storage) dtype: float32, bfloat16 or float16.</param>
    /// <param name="device">Device; the meta device builds a shape-only model.</param>
    /// <param name="computeDType">Activation dtype; <see langword="null"/> = <paramref name="dtype"/>. Float32 with
    /// bfloat16 or float16 storage casts each weight to float32 at its use (see <see cref="ComputeDTypes"/>).</param>
    /// <exception cref="ArgumentException">Unsupported dtype or dtype pair.</exception>
    public HookedLlava(LlavaConfig config, LlavaProcessor? processor = null, ScalarType dtype = ScalarType.Float32, Device? device = null, ScalarType? computeDType = null)
        : base(nameof(HookedLlava))
    {
        Config = config ?? throw new ArgumentNullException(nameof(config));
        Processor = processor;
        DType = dtype;
        ComputeDType = ComputeDTypes.Resolve(dtype, computeDType, nameof(dtype), nameof(computeDType));
        Device = device ?? CPU;
        _visionTower = new HookedClipVisionModel(config.VisionConfig, HookedClipVisionModel.DefaultHookPrefix, Device, dtype, ComputeDType);
        _projector = new LlavaMultiModalProjector(config, dtype, Device);
        hook_image_features = new HookPoint("hook_image_features");
        hook_inputs_embeds = new HookPoint("hook_inputs_embeds");
        _languageModel = new HookedGemma(config.TextConfig, dtype, Device, ComputeDType);
        RegisterComponents();
        SetupHooks();
    }

    /// <summary>The configuration.</summary>
    public LlavaConfig Config { get; }

    /// <summary>The processor, when the model was loaded from a folder.</summary>
    public LlavaProcessor? Processor { get; }

    /// <summary>The tokenizer (from <see cref="Processor"/>).</summary>
    public GemmaTokenizer Tokenizer => (Processor ?? throw new InvalidOperationException("This model was built without a processor.")).Tokenizer;

    /// <summary>Parameter (storage) dtype.</summary>
    public ScalarType DType { get; }

    /// <summary>Activation dtype: pixels and embeddings are cast to it; hook points and the KV cache are in it.</summary>
    public ScalarType ComputeDType { get; }

    /// <summary>With <see cref="LlavaLoadOptions.AutoComputeDType"/>: what the start-up probe measured and chose; otherwise <see langword="null"/>.</summary>
    public ComputeDTypeProbeResult? ComputeDTypeProbe { get; init; }

    /// <summary>Parameter device.</summary>
    public Device Device { get; }

    /// <summary>The CLIP vision tower.</summary>
    public HookedClipVisionModel VisionTower => _visionTower;

    /// <summary>The projector.</summary>
    public LlavaMultiModalProjector Projector => _projector;

    /// <summary>The Gemma language model.</summary>
    public HookedGemma LanguageModel => _languageModel;

    /// <summary>Token ids that end generation when options name none (from <c>generation_config.json</c> / the config).</summary>
    public IReadOnlyList<int> DefaultStopTokenIds { get; init; } = [];

    /// <summary>Logger for loading and generation.</summary>
    public ILogger Logger { get; init; } = NullLogger.Instance;

    /// <summary>
    /// Image features as the language model receives them: vision hidden state at <c>vision_feature_layer</c>
    /// (CLS dropped for the <c>default</c> strategy) through the projector → [n_images, image_tokens, d_model].
    /// Fires the vision hooks and <c>hook_image_features</c>.
    /// </summary>
    public Tensor GetImageFeatures(Tensor pixelValues)
    {
        ArgumentNullException.ThrowIfNull(pixelValues);
        ThrowIfDisposed();
        using var scope = NewDisposeScope();
        var selected = _visionTower.GetFeatureLayer(pixelValues.to(ComputeDType, Device), Config.VisionFeatureLayer);
        if (Config.DropsClsToken)
        {
            selected = selected[.., 1..];
        }

        return HookResults.ReturnFrom(scope, hook_image_features.call(_projector.call(selected)));
    }

    /// <summary>
    /// Runs the model: embeddings, image features merged at the <c>&lt;image&gt;</c> positions (in order, image after
    /// image), then the language model. Hook contexts report the absolute position offset (the cache length).
    /// </summary>
    /// <exception cref="LlavaException">Image tokens and image features do not match.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token id (other than the image placeholder) outside the language model's vocabulary.</exception>
    public override GemmaOutput forward(LlavaInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        ThrowIfDisposed();
        long past = input.Cache?.Length ?? 0;
        Tensor embeds;
        using (var scope = NewDisposeScope())
        using (HookRun.EnterPositionOffset(past))
        {
            // The placeholder id may lie outside the text vocabulary; its rows are overwritten anyway. Every other id
            // goes through the language model's own check.
            var placeholders = input.InputIds.eq(Config.ImageTokenIndex);
            var ids = _languageModel.Model.CheckInputIds(input.InputIds.masked_fill(placeholders, 0));
            var imageMask = placeholders.to(Device);
            long imageTokens = imageMask.sum().item<long>();
            var merged = _languageModel.Model.EmbedTokens.call(ids);
            if (input.PixelValues is not null)
            {
                var features = GetImageFeatures(input.PixelValues);
                long featureRows = features.shape[0] * features.shape[1];
                if (featureRows != imageTokens)
                {
                    throw new LlavaException($"Image features and image tokens do not match: the input has {imageTokens} image tokens (id {Config.ImageTokenIndex}) but {features.shape[0]} image(s) give {featureRows} feature rows.");
                }

                var expandedMask = imageMask.unsqueeze(-1).expand_as(merged);
                merged = merged.masked_scatter(expandedMask, features.to(merged.dtype));
            }
            else if (imageTokens > 0 && past == 0)
            {
                throw new LlavaException($"The input has {imageTokens} image tokens (id {Config.ImageTokenIndex}) but no pixel values.");
            }

            embeds = HookResults.ReturnFrom(scope, hook_inputs_embeds.call(merged));
        }

        using (embeds)
        {
            return _languageModel.call(new GemmaInput
            {
                InputsEmbeds = embeds,
                AttentionMask = input.AttentionMask,
                PositionIds = input.PositionIds,
                Cache = input.Cache,
                StopAtLayer = input.StopAtLayer,
                ComputeLogits = input.ComputeLogits,
                LogitsToKeep = input.LogitsToKeep,
                CheckFinite = input.CheckFinite,
            });
        }
    }

    /// <inheritdoc/>
    protected override LlavaInput WithStopAtLayer(LlavaInput input, int stopAtLayer) => input with { StopAtLayer = stopAtLayer };

    /// <summary>
    /// Loads every parameter from a checkpoint in either LLaVA layout (transformers 4.46 <c>language_model.model.…</c> /
    /// <c>vision_tower.…</c> / <c>multi_modal_projector.…</c>, or the newer <c>model.…</c> + <c>lm_head.weight</c>).
    /// </summary>
    /// <exception cref="WeightLoadException">Missing, unexpected or mis-shaped tensors, listed by name.</exception>
    /// <param name="source">The checkpoint.</param>
    /// <param name="strict">Fail on missing or unexpected tensors.</param>
    /// <param name="cancellationToken">Checked between tensors.</param>
    /// <param name="progress">Reports each loaded tensor, counted over the vision tower, projector and language model together.</param>
    /// <param name="loading">Map the file (default) or copy every weight into memory (see <see cref="WeightLoading"/>).</param>
    public void LoadWeights(ITensorSource source, bool strict = true, CancellationToken cancellationToken = default, IProgress<WeightLoadProgress>? progress = null, WeightLoading loading = WeightLoading.Mapped)
    {
        ArgumentNullException.ThrowIfNull(source);
        ThrowIfDisposed();
        var layout = LlavaCheckpointLayout.Detect(source);
        if (strict)
        {
            var unknown = source.Names.Where(n => !layout.InScope(n)).ToList();
            if (unknown.Count > 0)
            {
                throw new WeightLoadException(WeightLoader.SourceName(source), string.Empty, [], unknown, []);
            }
        }

        // One count over the three parts: each part reports its own (loaded, total), shifted by what came before.
        int total = _visionTower.state_dict().Count + _projector.state_dict().Count + _languageModel.state_dict().Count;
        int done = 0;
        IProgress<WeightLoadProgress>? Part() => progress is null ? null : new SyncProgress(p => progress.Report(p with { Loaded = done + p.Loaded, Total = total }));
        done += _visionTower.LoadWeights(source, layout.VisionPrefix, strict, Part(), cancellationToken, loading).Loaded.Count;
        done += WeightLoader.Load(_projector, source, layout.ProjectorPrefix, strict, progress: Part(), cancellationToken: cancellationToken, loading: loading).Loaded.Count;
        _languageModel.LoadWeights(source, layout.Text, strict, cancellationToken, Part(), loading);
    }
}

/// <summary>Reports on the calling thread (Progress&lt;T&gt; would post to a synchronization context, out of order).</summary>
file sealed class SyncProgress(Action<WeightLoadProgress> report) : IProgress<WeightLoadProgress>
{
    public void Report(WeightLoadProgress value) => report(value);
}
