using LlavaInterp.Hooks;
using LlavaInterp.Loading;
using LlavaInterp.Native;
using LlavaInterp.Nn;
using LlavaInterp.TensorFiles;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Gemma (v1) causal language model with TransformerLens-style hook points, numerically equal to HF transformers 4.46
/// <c>GemmaForCausalLM</c> (eager attention). Children use HF's names — <c>model</c> (<see cref="GemmaModel"/>) and, only
/// when embeddings are untied, <c>lm_head</c> — so the state dict has the checkpoint's keys; a model that nests it
/// maps its own checkpoint names with a <see cref="GemmaWeightLayout"/>. See <c>docs/hook-points.md</c> for the hooks.
/// </summary>
/// <remarks>
/// Parameters are built with <c>torch.empty</c> (nothing is touched, and on the meta device nothing is allocated):
/// call <see cref="LoadWeights(ITensorSource, GemmaWeightLayout, bool, CancellationToken, IProgress{WeightLoadProgress}, WeightLoading)"/>,
/// <see cref="InitializeWeights"/> or use <see cref="FromPretrained"/>.
/// </remarks>
public sealed class HookedGemma : HookedRootModule<GemmaInput, GemmaOutput>, IActNameResolver
{
    /// <inheritdoc cref="GemmaActNames.GetActName"/>
    public string GetActName(string name, int? layer = null, string? layerType = null) => GemmaActNames.GetActName(name, layer, layerType);

    [ComponentName(Name = "model")]
    private readonly GemmaModel _model;

    [ComponentName(Name = "lm_head")]
    private readonly CastLinear? _lmHead;

    /// <summary>Builds the model with uninitialised parameters.</summary>
    /// <param name="config">The configuration (validated here).</param>
    /// <param name="dtype">Parameter (storage) dtype: float32, bfloat16 or float16.</param>
    /// <param name="device">Parameter device; <see langword="null"/> = CPU; the meta device builds shapes only.</param>
    /// <param name="computeDType">Activation dtype; <see langword="null"/> = <paramref name="dtype"/>. Float32 with
    /// bfloat16 or float16 storage keeps the weights narrow and casts each to float32 at its use: the float32
    /// computation on the rounded weights (see <see cref="ComputeDTypes"/>).</param>
    /// <exception cref="LlavaInterp.Configuration.ConfigException">The configuration is invalid.</exception>
    /// <exception cref="ArgumentException">Unsupported dtype or dtype pair.</exception>
    public HookedGemma(GemmaConfig config, ScalarType dtype = ScalarType.Float32, Device? device = null, ScalarType? computeDType = null)
        : base(nameof(HookedGemma))
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        ComputeDType = ComputeDTypes.Resolve(dtype, computeDType, nameof(dtype), nameof(computeDType));
        Config = config;
        DType = dtype;
        Device = device ?? CPU;
        _model = new GemmaModel(config, dtype, Device, ComputeDType);
        if (!config.TieWordEmbeddings)
        {
            _lmHead = new CastLinear(config.HiddenSize, config.VocabSize, false, dtype, Device);
        }

        RegisterComponents();
        SetupHooks();
    }

    /// <summary>The configuration.</summary>
    public GemmaConfig Config { get; }

    /// <summary>Parameter (storage) dtype.</summary>
    public ScalarType DType { get; }

    /// <summary>Activation dtype: hook points, the KV cache and every product are in it (logits are returned in float32).</summary>
    public ScalarType ComputeDType { get; }

    /// <summary>With <see cref="GemmaLoadOptions.AutoComputeDType"/>: what the start-up probe measured and chose; otherwise <see langword="null"/>.</summary>
    public ComputeDTypeProbeResult? ComputeDTypeProbe { get; init; }

    /// <summary>Parameter device.</summary>
    public Device Device { get; }

    /// <summary>The decoder (<c>model</c>).</summary>
    public GemmaModel Model => _model;

    /// <summary>The untied <c>lm_head</c>, or <see langword="null"/> when tied to the embedding.</summary>
    public CastLinear? LmHead => _lmHead;

    /// <summary>The unembedding [vocab, hidden]: <c>lm_head.weight</c>, or the embedding table itself when tied (shared, not copied).</summary>
    public Tensor UnembedWeight => _lmHead?.Weight ?? _model.EmbedTokens.Weight;

    /// <summary>Receives loading diagnostics.</summary>
    public ILogger Logger { get; set; } = NullLogger.Instance;

    /// <summary>
    /// TransformerLens's <c>use_attn_result</c>: compute each head's output separately so <c>blocks.{i}.attn.hook_result</c>
    /// [batch, pos, heads, hidden] fires (more memory and time; <see cref="GemmaCacheAnalysis.StackHeadResults"/> does
    /// not need it). Off by default.
    /// </summary>
    public bool UseAttnResult { get => _model.Flags.UseAttnResult; set => _model.Flags.UseAttnResult = value; }

    /// <summary>TransformerLens's <c>use_attn_in</c>: <c>blocks.{i}.hook_attn_in</c> [batch, pos, heads, hidden] fires. Off by default.</summary>
    public bool UseAttnIn { get => _model.Flags.UseAttnIn; set => _model.Flags.UseAttnIn = value; }

    /// <summary>
    /// TransformerLens's <c>use_split_qkv_input</c>: <c>blocks.{i}.hook_q_input</c> [batch, pos, heads, hidden] and
    /// <c>hook_k_input</c>/<c>hook_v_input</c> [batch, pos, kv_heads, hidden] fire. Off by default.
    /// </summary>
    public bool UseSplitQkvInput { get => _model.Flags.UseSplitQkvInput; set => _model.Flags.UseSplitQkvInput = value; }

    /// <summary>TransformerLens's <c>use_hook_mlp_in</c>: <c>blocks.{i}.hook_mlp_in</c> [batch, pos, hidden] fires. Off by default.</summary>
    public bool UseHookMlpIn { get => _model.Flags.UseHookMlpIn; set => _model.Flags.UseHookMlpIn = value; }

    /// <summary>A KV cache sized for this model.</summary>
    public GemmaKvCache CreateCache(long initialCapacity = 0) => new(Config.NumHiddenLayers, initialCapacity);

    /// <summary>Runs the model. Hook contexts report the absolute position of the first new token.</summary>
    /// <exception cref="ArgumentException">Inconsistent input.</exception>
    /// <exception cref="NonFiniteActivationException">With <see cref="GemmaInput.CheckFinite"/>: the logits contain NaN or infinity.</exception>
    /// <exception cref="HookException">A hook failed.</exception>
    public override GemmaOutput forward(GemmaInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        ThrowIfDisposed();
        if (input.LogitsToKeep < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(input), "LogitsToKeep must be non-negative.");
        }

        using var scope = NewDisposeScope();
        var output = _model.call(input);
        var checksums = output.Checksums;
        if (!input.ComputeLogits || output.LastHiddenState is not { } last)
        {
            return Outer(output, null);
        }

        var h = last;
        long t = h.shape[1];
        if (input.LogitsToKeep > 0 && input.LogitsToKeep < t)
        {
            // Standard strides: a batch-1 narrow counts as contiguous but keeps the prompt's batch stride, and libtorch's
            // bf16 linear on it took 6.0 s for one position of a 594-position prompt against Gemma's 256000-row
            // unembedding, 0.06 s with fresh strides (measured, docs/performance.md). Flattening and viewing back
            // gives them without a copy when the batch is 1.
            var kept = h.narrow(1, t - input.LogitsToKeep, input.LogitsToKeep);
            h = kept.reshape(-1).view(kept.shape);
        }

        // HF: lm_head in the model dtype (no upcast); generate() then takes .float() of the logits. Narrower stored
        // weights are cast to the compute dtype in row blocks (the tied unembedding is the largest weight).
        var logits = WeightCast.Linear(h, UnembedWeight, null);
        if (logits.dtype != ScalarType.Float32)
        {
            logits = logits.to(ScalarType.Float32);
        }

        if (input.CheckFinite && Device.type != DeviceType.META && !logits.isfinite().all().item<bool>())
        {
            throw Locate(checksums!, output.FirstLayer);
        }

        return Outer(output, logits);
    }

    /// <summary>Loads a Hugging Face folder: a Gemma <c>config.json</c> and the checkpoint (standalone layout).</summary>
    /// <param name="folder">The model folder.</param>
    /// <param name="options">dtype, device, strictness, layout, logger.</param>
    /// <param name="cancellationToken">Stops between tensors.</param>
    /// <exception cref="DirectoryNotFoundException">No such folder.</exception>
    /// <exception cref="LlavaInterp.Configuration.ConfigException">Bad <c>config.json</c>.</exception>
    /// <exception cref="TensorFileException">Missing or malformed checkpoint file.</exception>
    /// <exception cref="WeightLoadException">The checkpoint does not fit the configuration.</exception>
    /// <exception cref="ArgumentException">A bad dtype combination in <paramref name="options"/> (its
    /// <see cref="ArgumentException.ParamName"/> names the option).</exception>
    public static HookedGemma FromPretrained(string folder, GemmaLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(folder);
        LibTorchVersion.Check();
        options ??= new GemmaLoadOptions();
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Model folder not found: {folder}");
        }

        string configPath = Path.Combine(folder, "config.json");
        var config = GemmaConfig.Load(configPath);
        using var source = Checkpoint.Open(folder);
        var layout = options.Layout ?? GemmaWeightLayout.Standalone;

        // Against the headers first: a size that does not match the weights must not be allocated.
        config.CheckAgainst(source, layout, configPath, options.Strict);
        var logger = options.Logger ?? NullLogger.Instance;
        var device = options.Device ?? CPU;
        var compute = ComputeDTypes.Choose(options.DType, options.ComputeDType, options.AutoComputeDType, config.HiddenSize, config.IntermediateSize, device, logger, out var probe);
        var model = new HookedGemma(config, options.DType, device, compute) { Logger = logger, ComputeDTypeProbe = probe };
        try
        {
            model.LoadWeights(source, layout, options.Strict, cancellationToken, loading: options.WeightLoading);
        }
        catch
        {
            model.Dispose();
            throw;
        }

        return model;
    }

    /// <summary>Loads the decoder's tensors from a checkpoint whose decoder names start with <paramref name="prefix"/>
    /// (<c>""</c> standalone; a multimodal checkpoint's own prefix otherwise).</summary>
    /// <inheritdoc cref="LoadWeights(ITensorSource, GemmaWeightLayout, bool, CancellationToken, IProgress{WeightLoadProgress}, WeightLoading)"/>
    public void LoadWeights(ITensorSource source, string prefix = "", bool strict = true) =>
        LoadWeights(source, GemmaWeightLayout.FromPrefix(prefix), strict);

    /// <summary>
    /// Loads every parameter from the checkpoint, mapping names with <paramref name="layout"/>, through the shared
    /// <see cref="WeightLoader"/>: a tensor stored in the model's dtype, with the model on the CPU, becomes the
    /// parameter's storage — a copy-on-write view of the memory-mapped file, nothing is copied; other tensors are
    /// converted into the parameter's own memory. The parameter objects (and so state-dict keys) stay the same.
    /// With tied embeddings a stored <c>lm_head.weight</c> is ignored (HF ties it to the embedding as well).
    /// </summary>
    /// <remarks>
    /// Parameters mapped from the same <see cref="ITensorSource"/> instance share memory: editing one model's weights in
    /// place shows in another model loaded from that same instance (never in the file).
    /// </remarks>
    /// <param name="source">The checkpoint.</param>
    /// <param name="layout">Where the decoder's tensors are (<see cref="GemmaWeightLayout.Standalone"/>, or a nesting model's own layout).</param>
    /// <param name="strict">Fail when decoder tensors are missing or unexpected; otherwise missing ones stay
    /// uninitialised (logged) and unexpected ones are ignored. Wrong shapes or dtypes always fail.</param>
    /// <param name="cancellationToken">Stops between tensors.</param>
    /// <exception cref="WeightLoadException">Lists every missing, unexpected and mis-shaped or mis-typed tensor by name;
    /// nothing is loaded then.</exception>
    /// <exception cref="InvalidOperationException">The model was built on the meta device.</exception>
    /// <param name="progress">Reports each loaded tensor.</param>
    /// <param name="loading">Map the file (default) or copy every weight into memory (see <see cref="WeightLoading"/>).</param>
    public void LoadWeights(ITensorSource source, GemmaWeightLayout layout, bool strict = true, CancellationToken cancellationToken = default, IProgress<WeightLoadProgress>? progress = null, WeightLoading loading = WeightLoading.Mapped)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(layout);
        ThrowIfDisposed();
        var report = WeightLoader.Load(this, source, layout.Naming(_lmHead is null), strict, progress: progress, cancellationToken: cancellationToken, loading: loading);
        foreach (var key in report.Missing)
        {
            Logger.LogWarning("{Source}: no tensor '{Key}'; the parameter stays uninitialised.", WeightLoader.SourceName(source), key);
        }
    }

    /// <summary>
    /// Fills every parameter as HF's <c>_init_weights</c> for a fresh model: linear and embedding weights
    /// ~ N(0, <c>initializer_range</c>), the padding row of the embedding 0, biases 0, RMSNorm weights 0 (gain 1).
    /// For tests and benchmarks with random weights.
    /// </summary>
    /// <param name="seed">Seed of the generator used (the global generator is not touched).</param>
    public void InitializeWeights(long seed)
    {
        ThrowIfDisposed();
        if (Device.type == DeviceType.META)
        {
            return;
        }

        using var noGrad = no_grad();
        using var generator = new Generator((ulong)seed, Device);
        foreach (var (name, parameter) in named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal) || name.EndsWith(".bias", StringComparison.Ordinal))
            {
                parameter.zero_();
            }
            else
            {
                parameter.normal_(0.0, Config.InitializerRange, generator);
            }
        }

        if (Config.PadTokenId is int pad)
        {
            using var row = _model.EmbedTokens.Weight[pad];
            row.zero_();
        }
    }

    /// <inheritdoc/>
    protected override GemmaInput WithStopAtLayer(GemmaInput input, int stopAtLayer) => input with { StopAtLayer = stopAtLayer };

    private static NonFiniteActivationException Locate(Tensor checksums, int firstLayer)
    {
        var hits = checksums.isfinite().logical_not().nonzero();
        if (hits.shape[0] == 0)
        {
            return new NonFiniteActivationException("logits", null, "The logits contain NaN or infinity although every block's output is finite: the final norm or the unembedding overflowed.");
        }

        int index = (int)hits[0, 0].item<long>();
        if (index == 0)
        {
            string where = firstLayer == 0 ? "hook_embed" : $"blocks.{firstLayer}.hook_resid_pre";
            return new NonFiniteActivationException(where, null, $"The logits contain NaN or infinity; the input of the first block ({where}) already did.");
        }

        int layer = firstLayer + index - 1;
        string hook = $"blocks.{layer}.hook_resid_post";
        return new NonFiniteActivationException(hook, layer, $"The logits contain NaN or infinity; the first non-finite residual stream is the output of layer {layer} ({hook}).");
    }

    private static GemmaOutput Outer(GemmaOutput output, Tensor? logits) => new()
    {
        Logits = logits?.MoveToOuterDisposeScope(),
        ResidualStream = output.ResidualStream.MoveToOuterDisposeScope(),
        LastHiddenState = output.LastHiddenState?.MoveToOuterDisposeScope(),
        Cache = output.Cache,
        PastLength = output.PastLength,
    };
}
