using System.Globalization;
using System.Text.RegularExpressions;
using LlavaInterp.Configuration;
using LlavaInterp.Hooks;
using LlavaInterp.Loading;
using LlavaInterp.TensorFiles;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Sae;

/// <summary>How an SAE turns pre-activations into feature activations.</summary>
public enum SaeArchitecture
{
    /// <summary><c>acts = relu(pre)</c> (or <c>tanh(relu(pre))</c> for <c>activation_fn_str = "tanh-relu"</c>).</summary>
    Standard,

    /// <summary>Gated SAE: <c>acts = (sae_in·W_enc + b_gate &gt; 0) · relu(sae_in·(W_enc·exp(r_mag)) + b_mag)</c>.</summary>
    Gated,

    /// <summary>JumpReLU: <c>acts = (pre &gt; threshold) · relu(pre)</c> (strict <c>&gt;</c>).</summary>
    JumpRelu,

    /// <summary>TopK: the k largest pre-activations of each position, through relu; every other feature is 0.</summary>
    TopK,
}

/// <summary>
/// A sparse autoencoder with SAELens 4.x inference semantics:
/// <c>sae_in = norm_in(x) - b_dec·apply_b_dec_to_input</c>, <c>hidden_pre = sae_in·W_enc + b_enc</c>,
/// <c>feature_acts = activation(hidden_pre)</c> (<see cref="SaeArchitecture"/>),
/// <c>reconstruction = norm_out(feature_acts·W_dec + b_dec)</c>.
/// It computes in its own dtype and device (inputs are cast and moved), holds its weights and disposes them.
/// Encoding and decoding are stateless and may run on several threads at once; the folding methods mutate the
/// weights and must not run concurrently with them.
/// <para>
/// Like SAELens's SAE it is a hooked module: <c>hook_sae_input</c> (the input after the dtype cast, before the run-time
/// normalization), <c>hook_sae_acts_pre</c>, <c>hook_sae_acts_post</c>, <c>hook_sae_recons</c> (before the
/// normalization is undone), <c>hook_sae_error</c> and <c>hook_sae_output</c>, each named under the SAE's hook point
/// (<c>blocks.12.hook_resid_post.hook_sae_acts_post</c>) so that they are unique next to a model's own. Hook them with
/// <see cref="HookedRootModule{TInput, TOutput}.AddHook(string, HookFunction, HookDirection, bool)"/>,
/// <see cref="HookedRootModule{TInput, TOutput}.Hooks(HookSpec[])"/> or record them with <c>RunWithCache</c>; they
/// fire in <see cref="Encode"/>, <see cref="Decode"/>, <see cref="Forward"/> and the <see cref="SaeSplice"/>. With no hook
/// attached they cost one branch each.
/// </para>
/// </summary>
public sealed partial class SparseAutoencoder : HookedRootModule<Tensor, Tensor>
{
    /// <summary>SAELens's config file name.</summary>
    public const string ConfigFileName = "cfg.json";

    /// <summary>SAELens's weights file name.</summary>
    public const string WeightsFileName = "sae_weights.safetensors";

    /// <summary>SAELens's optional log-sparsity file name.</summary>
    public const string SparsityFileName = "sparsity.safetensors";

    /// <summary>GemmaScope's weights file name.</summary>
    public const string GemmaScopeFileName = "params.npz";

    private const double LayerNormEps = 1e-5;

    private readonly ScalarType _dtype;
    private readonly Device _device;
    private Tensor _wEnc;
    private Tensor _wDec;
    private Tensor _bEnc;
    private Tensor _bDec;
    private Tensor? _threshold;
    private Tensor? _bGate;
    private Tensor? _rMag;
    private Tensor? _bMag;
    private Tensor? _wMag;
    private Tensor? _finetuningScale;
    private readonly HookPoint _hookSaeInput;
    private readonly HookPoint _hookSaeActsPre;
    private readonly HookPoint _hookSaeActsPost;
    private readonly HookPoint _hookSaeRecons;
    private readonly HookPoint _hookSaeError;
    private readonly HookPoint _hookSaeOutput;
    private bool _disposed;

    private SparseAutoencoder(SaeConfig config, SaeArchitecture architecture, Dictionary<string, Tensor> weights, ScalarType dtype, Device device)
        : base("sae")
    {
        Config = config;
        Architecture = architecture;
        _dtype = dtype;
        _device = device;
        // The SAE owns its weights: whatever dispose scope the caller is in must not free them.
        foreach (var t in weights.Values)
        {
            t.DetachFromDisposeScope();
        }

        _wEnc = weights["W_enc"];
        _wDec = weights["W_dec"];
        _bEnc = weights["b_enc"];
        _bDec = weights["b_dec"];
        _threshold = weights.GetValueOrDefault("threshold");
        _bGate = weights.GetValueOrDefault("b_gate");
        _rMag = weights.GetValueOrDefault("r_mag");
        _bMag = weights.GetValueOrDefault("b_mag");
        _finetuningScale = weights.GetValueOrDefault("finetuning_scaling_factor");
        UpdateGatedWeights();

        // Only the hook points are registered: the weights stay plain fields, which the folding methods replace.
        HookPoint Point(string suffix)
        {
            var point = new HookPoint($"{config.HookName}.{suffix}", config.HookLayer);
            register_module(suffix, point);
            return point;
        }

        _hookSaeInput = Point(SaeHookNames.Input);
        _hookSaeActsPre = Point(SaeHookNames.ActsPre);
        _hookSaeActsPost = Point(SaeHookNames.ActsPost);
        _hookSaeRecons = Point(SaeHookNames.Recons);
        _hookSaeError = Point(SaeHookNames.Error);
        _hookSaeOutput = Point(SaeHookNames.Output);
        SetupHooks();
    }

    /// <summary>
    /// Whether <c>forward</c> (<c>call</c>) adds the error term, as SAELens's
    /// <c>use_error_term</c> (default false: the output is the reconstruction).
    /// </summary>
    public bool UseErrorTerm { get; set; }

    /// <summary>The configuration (after upgrades, overrides and folding).</summary>
    public SaeConfig Config { get; private set; }

    /// <summary>The activation rule.</summary>
    public SaeArchitecture Architecture { get; }

    /// <summary>The hook point the SAE reads, e.g. <c>blocks.12.hook_resid_post</c>.</summary>
    public string HookName => Config.HookName;

    /// <summary>The block of the hook point.</summary>
    public int HookLayer => Config.HookLayer;

    /// <summary>Input width.</summary>
    public int DIn => Config.DIn;

    /// <summary>Number of features.</summary>
    public int DSae => Config.DSae;

    /// <summary>Features kept per position by a TopK SAE; null otherwise.</summary>
    public int? K => Architecture == SaeArchitecture.TopK ? Config.TopK : null;

    /// <summary>The dtype the SAE computes in and returns.</summary>
    public ScalarType DType => _dtype;

    /// <summary>The device of the weights.</summary>
    public Device Device => _device;

    /// <summary>
    /// Whether <see cref="Decode"/> needs the encoded input: run-time normalizations (<c>constant_norm_rescale</c>,
    /// <c>layer_norm</c>) undo the input's own scale on the way out.
    /// </summary>
    public bool DecodeNeedsInput => Config.NormalizeActivations is "constant_norm_rescale" or "layer_norm";

    /// <summary>Encoder weight W_enc [d_in, d_sae] (owned by the SAE: do not dispose or modify).</summary>
    public Tensor WEnc => Alive(_wEnc);

    /// <summary>Decoder weight W_dec [d_sae, d_in]; row f is feature f's direction (owned by the SAE).</summary>
    public Tensor WDec => Alive(_wDec);

    /// <summary>Encoder bias b_enc [d_sae] (owned by the SAE).</summary>
    public Tensor BEnc => Alive(_bEnc);

    /// <summary>Decoder bias b_dec [d_in] (owned by the SAE).</summary>
    public Tensor BDec => Alive(_bDec);

    /// <summary>JumpReLU threshold [d_sae], or null for other architectures (owned by the SAE).</summary>
    public Tensor? Threshold => _threshold is null ? null : Alive(_threshold);

    /// <summary>
    /// Loads a SAELens folder: <c>cfg.json</c> (old keys upgraded, see <see cref="SaeConfig"/>) and
    /// <c>sae_weights.safetensors</c> (<c>W_enc</c>, <c>W_dec</c>, <c>b_enc</c>, <c>b_dec</c>, plus <c>threshold</c> for
    /// JumpReLU, <c>b_gate</c>/<c>r_mag</c>/<c>b_mag</c> for gated SAEs). A <c>scaling_factor</c> of all ones is dropped,
    /// any other becomes the fine-tuning scale (as SAELens's <c>read_sae_from_disk</c>). A norm scaling factor from the
    /// options or the release table is folded into the weights.
    /// </summary>
    /// <param name="folder">The folder holding <c>cfg.json</c> and <c>sae_weights.safetensors</c>.</param>
    /// <param name="options">Device, dtype, release metadata, scaling factor, logger.</param>
    /// <exception cref="ConfigException"><c>cfg.json</c> is missing or invalid.</exception>
    /// <exception cref="TensorFileException">The weights file is missing, malformed, lacks a tensor or has a wrong shape.</exception>
    /// <exception cref="SaeException">Unknown release, or a scaling factor given for a run-time-normalized SAE.</exception>
    public static SparseAutoencoder Load(string folder, SaeLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        options ??= new SaeLoadOptions();
        SaeReleaseEntry? entry = null;
        SaeRelease? release = null;
        if (options.Release is not null)
        {
            release = SaeReleases.Get(options.Release);
            entry = release.Get(options.SaeId ?? throw new SaeException(null, $"SaeLoadOptions.Release '{options.Release}' needs SaeId."));
        }

        var config = SaeConfig.Load(Path.Combine(folder, ConfigFileName), release?.ConfigOverrides);
        if (entry?.NeuronpediaId is not null)
        {
            config = config with { NeuronpediaId = entry.NeuronpediaId };
        }

        string weightsPath = Path.Combine(folder, WeightsFileName);
        using var file = SafetensorsFile.Open(weightsPath);
        var dtype = options.DType ?? ScalarTypeOf(config, Path.Combine(folder, ConfigFileName));
        var device = options.Device ?? torch.CPU;
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var name in file.Names)
            {
                weights[name] = WeightLoader.LoadTensor(file, name, dtype, device, options.WeightLoading);
            }

            var sae = Build(config, weights, dtype, device, (tensor, message) => new TensorFileException(file.FilePath, tensor, message));
            weights.Clear();
            return sae.ApplyScaling(options, entry);
        }
        finally
        {
            foreach (var t in weights.Values)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>
    /// Loads a GemmaScope JumpReLU SAE from its <c>params.npz</c> (<c>W_enc</c> [d_in, d_sae], <c>W_dec</c> [d_sae, d_in],
    /// <c>b_enc</c>, <c>b_dec</c>, <c>threshold</c>; lower-case <c>w_</c> names are accepted), with SAELens's GemmaScope
    /// config: architecture <c>jumprelu</c>, <c>apply_b_dec_to_input = false</c>, no normalization, float32.
    /// GemmaScope folders carry no config, so the hook point is given.
    /// </summary>
    /// <param name="paramsNpzPath">The <c>params.npz</c> file, or the folder that holds it.</param>
    /// <param name="hookName">The hook point the SAE reads, e.g. <c>blocks.20.hook_resid_post</c>.</param>
    /// <param name="options">Device, dtype, scaling factor, logger (release metadata is not used).</param>
    /// <param name="hookLayer">The block; null reads it from <paramref name="hookName"/> (0 when it has none, e.g. <c>hook_embed</c>).</param>
    /// <param name="modelName">The model name recorded in the config.</param>
    /// <exception cref="TensorFileException">The archive is missing or malformed, or lacks an array, or an array has the wrong shape.</exception>
    public static SparseAutoencoder LoadGemmaScope(string paramsNpzPath, string hookName, SaeLoadOptions? options = null, int? hookLayer = null, string? modelName = null)
    {
        ArgumentNullException.ThrowIfNull(paramsNpzPath);
        ArgumentException.ThrowIfNullOrWhiteSpace(hookName);
        options ??= new SaeLoadOptions();
        string path = Directory.Exists(paramsNpzPath) ? Path.Combine(paramsNpzPath, GemmaScopeFileName) : paramsNpzPath;
        using var npz = Npz.Load(path);
        // SAELens's GemmaScope loader renames w_enc/w_dec to W_enc/W_dec.
        string Key(string name) => name.StartsWith("w_", StringComparison.Ordinal) ? "W_" + name[2..] : name;
        var arrays = npz.Names.ToDictionary(Key, n => npz[n], StringComparer.Ordinal);
        if (!arrays.TryGetValue("W_enc", out var wEnc) || wEnc.dim() != 2)
        {
            throw new TensorFileException(npz.FilePath, "W_enc", arrays.ContainsKey("W_enc")
                ? $"has shape [{Shape(arrays["W_enc"])}]; expected [d_in, d_sae]."
                : $"is missing (the archive has: {string.Join(", ", npz.Names)}).");
        }

        // W_enc gives d_in and d_sae: each must be a size an SAE can have (the other arrays are checked against them).
        if (wEnc.shape.Any(d => d < 1 || d > int.MaxValue))
        {
            throw new TensorFileException(npz.FilePath, "W_enc", $"has shape [{Shape(wEnc)}]; d_in and d_sae must lie in [1, {int.MaxValue}].");
        }

        var match = Regex.Match(hookName, @"(?:^|\.)blocks\.(\d+)\.");
        var config = new SaeConfig
        {
            Architecture = "jumprelu",
            DIn = checked((int)wEnc.shape[0]),
            DSae = checked((int)wEnc.shape[1]),
            DType = "float32",
            ModelName = modelName,
            HookName = hookName,
            HookLayer = hookLayer ?? (match.Success ? int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0),
            ActivationFn = "relu",
            ApplyBDecToInput = false,
            NormalizeActivations = "none",
            PrependBos = true,
            DatasetPath = "monology/pile-uncopyrighted",
            ContextSize = 1024,
        };

        var dtype = options.DType ?? ScalarType.Float32;
        var device = options.Device ?? torch.CPU;
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, t) in arrays)
            {
                weights[name] = t.to(dtype, device, copy: true);
            }

            var sae = Build(config, weights, dtype, device, (tensor, message) => new TensorFileException(npz.FilePath, tensor, message));
            weights.Clear();
            return sae.ApplyScaling(options with { Release = null, SaeId = null }, null);
        }
        finally
        {
            foreach (var t in weights.Values)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>
    /// Builds an SAE from a configuration and a SAELens state dict (names as in <see cref="Load"/>). The tensors are
    /// copied; the caller keeps ownership of its own.
    /// </summary>
    /// <exception cref="SaeException">A tensor is missing or has the wrong shape.</exception>
    public static SparseAutoencoder FromTensors(SaeConfig config, IReadOnlyDictionary<string, Tensor> tensors, SaeLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(tensors);
        options ??= new SaeLoadOptions();
        var dtype = options.DType ?? config.ScalarType;
        var device = options.Device ?? torch.CPU;
        var weights = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, t) in tensors)
            {
                using var moved = t.detach().to(dtype, device);
                weights[name] = moved.clone();
            }

            var sae = Build(config, weights, dtype, device, (tensor, message) => new SaeException(config.HookName, $"tensor '{tensor}': {message}"));
            weights.Clear();
            return sae.ApplyScaling(options, null);
        }
        finally
        {
            foreach (var t in weights.Values)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>Encodes activations [..., d_in] into feature activations [..., d_sae] (the encode hook points fire).</summary>
    /// <exception cref="SaeException">The input's last dimension is not d_in.</exception>
    public Tensor Encode(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return EncodeFlat(Prepare(x, out _), fire: true).Acts.MoveToOuterDisposeScope();
    }

    /// <summary>Encodes and also returns the pre-activations (<c>hook_sae_acts_pre</c>).</summary>
    /// <returns>HiddenPre [..., d_sae] and FeatureActs [..., d_sae]; the caller disposes both.</returns>
    /// <exception cref="SaeException">The input's last dimension is not d_in.</exception>
    public (Tensor HiddenPre, Tensor FeatureActs) EncodeWithPre(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var encoded = EncodeFlat(Prepare(x, out _), fire: true);
        return (encoded.Pre.MoveToOuterDisposeScope(), encoded.Acts.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Decodes feature activations [..., d_sae] into a reconstruction [..., d_in]: <c>acts·W_dec + b_dec</c>, then the
    /// run-time normalization is undone, which needs the encoded <paramref name="input"/> when
    /// <see cref="DecodeNeedsInput"/> (SAELens keeps it in the module instead).
    /// </summary>
    /// <exception cref="SaeException">Wrong last dimension, or no input for a run-time-normalized SAE.</exception>
    public Tensor Decode(Tensor featureActs, Tensor? input = null)
    {
        ArgumentNullException.ThrowIfNull(featureActs);
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = torch.NewDisposeScope();
        var acts = CheckActs(featureActs);
        NormState norm = NormState.None;
        long[]? shape = null;
        if (input is not null)
        {
            var flat = Prepare(input, out shape);
            if (!flat.shape[..^1].SequenceEqual(acts.shape[..^1]))
            {
                throw new SaeException(HookName, $"feature activations [{Shape(acts)}] do not match the input [{Shape(input)}].");
            }

            NormalizeIn(flat, out norm);
        }
        else if (DecodeNeedsInput)
        {
            throw new SaeException(HookName, $"normalize_activations '{Config.NormalizeActivations}' rescales each input: pass the encoded input to Decode.");
        }

        var recons = DecodeFlat(acts, norm, fire: true);
        return (shape is null ? recons : Unflatten(recons, shape)).MoveToOuterDisposeScope();
    }

    /// <summary>Encodes then decodes: the reconstruction of <paramref name="x"/>, same shape, in the SAE's dtype.</summary>
    /// <exception cref="SaeException">The input's last dimension is not d_in.</exception>
    public Tensor Forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var flat = Prepare(x, out var shape);
        var encoded = EncodeFlat(flat, fire: true);
        return Unflatten(DecodeFlat(encoded.Acts, encoded.Norm, fire: true), shape).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// SAELens's <c>forward</c>: the reconstruction, plus the error term when <see cref="UseErrorTerm"/>; the result has
    /// the input's dtype and device (see <see cref="Run"/>).
    /// </summary>
    public override Tensor forward(Tensor x) => Run(x, UseErrorTerm);

    /// <summary>A copy of feature <paramref name="feature"/>'s decoder row W_dec[f] [d_in] (no bias); the caller owns it.</summary>
    /// <exception cref="SaeException">The feature is out of range.</exception>
    public Tensor DecoderDirection(int feature)
    {
        CheckFeature(feature);
        using var row = WDec[feature];
        return row.clone();
    }

    /// <summary>
    /// Folds a constant activation scale into the weights, as SAELens's <c>fold_activation_norm_scaling_factor</c>:
    /// W_enc·s, W_dec/s, b_dec/s (the JumpReLU threshold and b_enc are unchanged: the pre-activations are identical).
    /// Afterwards the SAE takes raw activations and <c>normalize_activations</c> is <c>"none"</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="scalingFactor"/> is not a positive finite number.</exception>
    public void FoldActivationNormScalingFactor(double scalingFactor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!double.IsFinite(scalingFactor) || scalingFactor <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(scalingFactor), scalingFactor, "The scaling factor must be a positive finite number.");
        }

        Replace(ref _wEnc, _wEnc.mul(scalingFactor));
        Replace(ref _wDec, _wDec.div(scalingFactor));
        Replace(ref _bDec, _bDec.div(scalingFactor));
        UpdateGatedWeights();
        Config = Config with { NormalizeActivations = "none" };
    }

    /// <summary>
    /// Rescales every decoder row to unit norm and compensates in the encoder (W_enc, b_enc, and the JumpReLU threshold
    /// or the gated b_gate/b_mag), so reconstructions are unchanged and activations are in units of decoder norm.
    /// </summary>
    /// <exception cref="SaeException">TopK SAEs: rescaling changes which features are in the top k.</exception>
    public void FoldDecoderNorm()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Architecture == SaeArchitecture.TopK)
        {
            throw new SaeException(HookName, "folding decoder norms into a TopK SAE would change which features are selected.");
        }

        using var scope = torch.NewDisposeScope();
        var norms = _wDec.norm(1, keepdim: true);
        Replace(ref _wDec, _wDec.div(norms).MoveToOuterDisposeScope());
        var n = norms.squeeze(1);
        Replace(ref _wEnc, _wEnc.mul(n.unsqueeze(0)).MoveToOuterDisposeScope());
        if (Architecture == SaeArchitecture.Gated)
        {
            // Both paths see W_enc·n; scaling the biases keeps the gate's sign and scales the magnitude (r_mag is a log-scale and stays).
            ReplaceOptional(ref _bGate, _bGate!.mul(n).MoveToOuterDisposeScope());
            ReplaceOptional(ref _bMag, _bMag!.mul(n).MoveToOuterDisposeScope());
        }
        else
        {
            Replace(ref _bEnc, _bEnc.mul(n).MoveToOuterDisposeScope());
            if (_threshold is not null)
            {
                ReplaceOptional(ref _threshold, _threshold.mul(n).MoveToOuterDisposeScope());
            }
        }

        UpdateGatedWeights();
    }

    /// <summary>
    /// Creates a splice that runs this SAE at its hook point inside any hooked model (see <see cref="SaeSplice"/>).
    /// The splice does not own the SAE.
    /// </summary>
    public SaeSplice Splice(bool useErrorTerm = true) => new(this, useErrorTerm);

    /// <summary>Disposes the weights (and the hook points).</summary>
    protected override void Dispose(bool disposing)
    {
        if (!_disposed && disposing)
        {
            _disposed = true;
            foreach (var t in new[] { _wEnc, _wDec, _bEnc, _bDec, _threshold, _bGate, _rMag, _bMag, _wMag, _finetuningScale })
            {
                t?.Dispose();
            }
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// The one encode path, used by <see cref="Encode"/>, the splice and steering: run-time normalization, centring,
    /// pre-activation, activation. With <paramref name="fire"/> false the hook points are skipped (the clean path of the
    /// error term, steering edits).
    /// </summary>
    internal SaeEncoding EncodeFlat(Tensor flat, bool fire)
    {
        var input = fire ? _hookSaeInput.call(flat) : flat;
        var saeIn = Center(NormalizeIn(input, out var norm));
        var pre = PreActivation(saeIn);
        if (fire)
        {
            pre = _hookSaeActsPre.call(pre);
        }

        var acts = Activate(pre, saeIn);
        return new SaeEncoding(norm, pre, fire ? _hookSaeActsPost.call(acts) : acts);
    }

    /// <summary>The one decode path: <c>acts·W_dec + b_dec</c> (<c>hook_sae_recons</c>), then the normalization undone.</summary>
    internal Tensor DecodeFlat(Tensor acts, NormState norm, bool fire)
    {
        var recons = DecodeRaw(acts);
        return NormalizeOut(fire ? _hookSaeRecons.call(recons) : recons, norm);
    }

    /// <summary>
    /// Runs the SAE on an activation as a splice does. Without the error term the result is the reconstruction. With it
    /// (SAELens's <c>use_error_term</c>) the result is <c>hooked_reconstruction + error</c>, with
    /// <c>error = x - clean_reconstruction</c> computed with no hooks: an edit of the features changes the output by
    /// exactly the edit's effect. No hook on the encode/decode/error points means no edit, so then no SAE work is done
    /// and <paramref name="x"/> comes back unchanged. The sum is formed as <c>x + (hooked - clean) + (error' - error)</c>:
    /// hooks that change nothing give <paramref name="x"/> back bit for bit, without comparing tensors (no host sync).
    /// </summary>
    internal Tensor Run(Tensor x, bool useErrorTerm)
    {
        using var scope = torch.NewDisposeScope();
        var flat = Prepare(x, out var shape);
        Tensor result;
        if (!useErrorTerm)
        {
            var encoded = EncodeFlat(flat, fire: true);
            result = DecodeFlat(encoded.Acts, encoded.Norm, fire: true);
        }
        else
        {
            bool inputHooked = _hookSaeInput.IsHooked;
            bool pathHooked = inputHooked || _hookSaeActsPre.IsHooked || _hookSaeActsPost.IsHooked || _hookSaeRecons.IsHooked;
            bool errorHooked = _hookSaeError.IsHooked;
            result = flat;
            if (pathHooked || errorHooked)
            {
                // A hook on the input may edit it in place; both paths then read equal, equally aligned copies, so
                // that untouched values give identical bits on both.
                var clean = DecodeOf(inputHooked ? flat.clone() : flat, fire: false);
                if (pathHooked)
                {
                    result = result + (DecodeOf(inputHooked ? flat.clone() : flat, fire: true) - clean);
                }

                if (errorHooked)
                {
                    var error = _hookSaeError.call(flat - clean);
                    result = result + (error - (flat - clean));
                }
            }
        }

        result = Unflatten(_hookSaeOutput.call(result), shape);
        if (result.dtype != x.dtype || result.device != x.device)
        {
            result = result.to(x.dtype, x.device);
        }

        return (ReferenceEquals(result, flat) ? flat.alias() : result).MoveToOuterDisposeScope();
    }

    /// <summary>Casts, moves, flattens <c>hook_z</c> heads and validates an input; returns [..., d_in].</summary>
    internal Tensor Prepare(Tensor x, out long[] originalShape)
    {
        ArgumentNullException.ThrowIfNull(x);
        ObjectDisposedException.ThrowIf(_disposed, this);
        originalShape = x.shape;
        if (x.dim() == 0)
        {
            throw new SaeException(HookName, $"input is a scalar; expected [..., {DIn}].");
        }

        var t = x.device == _device && x.dtype == _dtype ? x.alias() : x.to(_dtype, _device);
        long last = t.shape[^1];
        // SAELens hook_z SAEs read [..., n_heads, d_head] and flatten the heads.
        if (last != DIn && HookName.EndsWith("_z", StringComparison.Ordinal) && t.dim() >= 2 && t.shape[^2] * last == DIn)
        {
            t = t.flatten(-2);
            last = DIn;
        }

        if (last != DIn)
        {
            throw new SaeException(HookName, $"input has last dimension {last} (shape [{Shape(x)}]) but the SAE's d_in is {DIn}.");
        }

        return t;
    }

    /// <summary>Restores the <c>hook_z</c> head layout of an input shape.</summary>
    internal static Tensor Unflatten(Tensor flat, long[] originalShape) =>
        flat.shape.SequenceEqual(originalShape) ? flat : flat.reshape(originalShape);

    /// <summary>Applies the run-time input normalization (SAELens <c>run_time_activation_norm_fn_in</c>).</summary>
    internal Tensor NormalizeIn(Tensor x, out NormState state)
    {
        switch (Config.NormalizeActivations)
        {
            case "constant_norm_rescale":
            {
                var coeff = Math.Sqrt(DIn) / x.norm(-1, keepdim: true);
                state = new NormState(coeff, null, null);
                return x * coeff;
            }

            case "layer_norm":
            {
                var mu = x.mean([-1L], keepdim: true);
                var centered = x - mu;
                var std = centered.std(-1, unbiased: true, keepdim: true);
                state = new NormState(null, mu, std);
                return centered / (std + LayerNormEps);
            }

            default:
                state = NormState.None;
                return x;
        }
    }

    /// <summary>Undoes the run-time normalization on a reconstruction (SAELens <c>run_time_activation_norm_fn_out</c>).</summary>
    internal static Tensor NormalizeOut(Tensor recons, NormState state)
    {
        if (state.Coeff is not null)
        {
            return recons / state.Coeff;
        }

        if (state.Std is not null)
        {
            return recons * state.Std + state.Mu!;
        }

        return recons;
    }

    /// <summary>The linear part of <see cref="NormalizeOut"/>, for reconstruction differences.</summary>
    internal static Tensor NormalizeOutDelta(Tensor delta, NormState state)
    {
        if (state.Coeff is not null)
        {
            return delta / state.Coeff;
        }

        return state.Std is not null ? delta * state.Std : delta;
    }

    /// <summary><c>sae_in = x - b_dec·apply_b_dec_to_input</c>.</summary>
    internal Tensor Center(Tensor normalized) => Config.ApplyBDecToInput ? normalized - _bDec : normalized;

    /// <summary>The pre-activation <c>hook_sae_acts_pre</c> (for gated SAEs, the magnitude path).</summary>
    internal Tensor PreActivation(Tensor saeIn) =>
        Architecture == SaeArchitecture.Gated ? saeIn.matmul(_wMag!) + _bMag! : saeIn.matmul(_wEnc) + _bEnc;

    /// <summary>Feature activations from the pre-activation (and, for gated SAEs, the gate computed from <paramref name="saeIn"/>).</summary>
    internal Tensor Activate(Tensor pre, Tensor saeIn)
    {
        switch (Architecture)
        {
            case SaeArchitecture.TopK:
            {
                var (values, indices) = pre.topk(Config.TopK!.Value, dim: -1);
                return torch.zeros_like(pre).scatter_(-1, indices, torch.nn.functional.relu(values));
            }

            case SaeArchitecture.JumpRelu:
                return BaseActivation(pre) * pre.gt(_threshold!).to(pre.dtype);

            case SaeArchitecture.Gated:
            {
                var active = (saeIn.matmul(_wEnc) + _bGate!).gt(0).to(pre.dtype);
                return active * BaseActivation(pre);
            }

            default:
                return BaseActivation(pre);
        }
    }

    /// <summary><c>acts·W_dec + b_dec</c> (with the fine-tuning scale), before the run-time normalization is undone.</summary>
    internal Tensor DecodeRaw(Tensor acts) => ScaleActs(acts).matmul(_wDec) + _bDec;

    /// <summary>The change of one feature's decoder contribution: <c>delta[..., None]·W_dec[f]</c>.</summary>
    internal Tensor FeatureDelta(Tensor delta, int feature, NormState norm)
    {
        var d = _finetuningScale is null ? delta : delta * _finetuningScale[feature];
        return NormalizeOutDelta(d.unsqueeze(-1) * _wDec[feature], norm);
    }

    /// <summary>Throws unless 0 ≤ feature &lt; d_sae.</summary>
    internal void CheckFeature(int feature)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (feature < 0 || feature >= DSae)
        {
            throw new SaeException(HookName, $"feature {feature} is out of range: this SAE has {DSae} features (0..{DSae - 1}).");
        }
    }

    private static string Shape(Tensor t) => string.Join(", ", t.shape);

    private static ScalarType ScalarTypeOf(SaeConfig config, string source)
    {
        try
        {
            return config.ScalarType;
        }
        catch (SaeException ex)
        {
            throw new ConfigException(source, "dtype", ex.Message, ex);
        }
    }

    private static SparseAutoencoder Build(SaeConfig config, Dictionary<string, Tensor> weights, ScalarType dtype, Device device, Func<string, string, Exception> error)
    {
        var architecture = config.Architecture switch
        {
            "jumprelu" or "batchtopk" or "matryoshka_batchtopk" => SaeArchitecture.JumpRelu,
            "gated" => SaeArchitecture.Gated,
            "topk" => SaeArchitecture.TopK,
            _ => config.ActivationFn == "topk" ? SaeArchitecture.TopK : SaeArchitecture.Standard,
        };

        long dIn = config.DIn;
        long dSae = config.DSae;
        var expected = new List<(string Name, long[] Shape)>
        {
            ("W_enc", [dIn, dSae]),
            ("W_dec", [dSae, dIn]),
            ("b_dec", [dIn]),
        };
        if (architecture == SaeArchitecture.Gated)
        {
            expected.Add(("b_gate", [dSae]));
            expected.Add(("r_mag", [dSae]));
            expected.Add(("b_mag", [dSae]));
        }
        else
        {
            expected.Add(("b_enc", [dSae]));
        }

        if (architecture == SaeArchitecture.JumpRelu)
        {
            expected.Add(("threshold", [dSae]));

            // A BatchTopK training checkpoint holds one global "topk_threshold"; SAELens turns it into the JumpReLU
            // threshold (the same value for every feature) when it saves for inference.
            if (!weights.ContainsKey("threshold") && weights.Remove("topk_threshold", out var global))
            {
                using (global)
                {
                    if (global.numel() != 1)
                    {
                        throw error("topk_threshold", $"has shape [{Shape(global)}]; a BatchTopK threshold is one number.");
                    }

                    weights["threshold"] = torch.full([dSae], global.to(ScalarType.Float64).item<double>(), dtype: global.dtype);
                }
            }
        }

        // SAELens read_sae_from_disk: an all-ones "scaling_factor" is a leftover and is dropped; any other is the fine-tuning scale.
        if (weights.Remove("scaling_factor", out var legacyScale))
        {
            using (legacyScale)
            {
                bool allOnes = legacyScale.shape.SequenceEqual(new[] { dSae }) && legacyScale.eq(1).all().item<bool>();
                if (!allOnes)
                {
                    if (!config.FinetuningScalingFactor)
                    {
                        throw error("scaling_factor", "is present and not all ones, but cfg.json finetuning_scaling_factor is false.");
                    }

                    weights["finetuning_scaling_factor"] = legacyScale.clone();
                }
                else if (!weights.ContainsKey("finetuning_scaling_factor"))
                {
                    config = config with { FinetuningScalingFactor = false };
                }
            }
        }

        if (config.FinetuningScalingFactor)
        {
            expected.Add(("finetuning_scaling_factor", [dSae]));
        }
        else if (weights.Remove("finetuning_scaling_factor", out var unused))
        {
            unused.Dispose();
        }

        foreach (var (name, shape) in expected)
        {
            if (!weights.TryGetValue(name, out var t))
            {
                throw error(name, $"is missing (a {config.Architecture} SAE needs {string.Join(", ", expected.Select(e => e.Name))}).");
            }

            if (!t.shape.SequenceEqual(shape))
            {
                throw error(name, $"has shape [{Shape(t)}] but cfg.json (d_in {dIn}, d_sae {dSae}) needs [{string.Join(", ", shape)}].");
            }
        }

        // Only the expected tensors are kept; anything else in the state dict is not used by inference.
        var kept = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, _) in expected)
        {
            kept[name] = weights[name];
            weights.Remove(name);
        }

        if (architecture == SaeArchitecture.Gated)
        {
            // The gated constructor still wants b_enc for the uniform field; it is unused.
            kept["b_enc"] = torch.zeros(dSae, dtype: dtype, device: device);
        }

        foreach (var t in weights.Values)
        {
            t.Dispose();
        }

        weights.Clear();
        return new SparseAutoencoder(config, architecture, kept, dtype, device);
    }

    private SparseAutoencoder ApplyScaling(SaeLoadOptions options, SaeReleaseEntry? entry)
    {
        try
        {
            double? factor = options.NormScalingFactor;
            if (factor is null && Config.NormalizeActivations == "expected_average_only_in")
            {
                factor = entry?.NormScalingFactor;
                if (factor is null)
                {
                    options.Logger?.LogWarning(
                        "SAE at {Hook}: normalize_activations is 'expected_average_only_in' but no norm scaling factor is known; the SAE is used unfolded (as SAELens does). Pass SaeLoadOptions.NormScalingFactor.",
                        HookName);
                }
            }

            if (factor is double s)
            {
                if (DecodeNeedsInput)
                {
                    throw new SaeException(HookName, $"normalize_activations '{Config.NormalizeActivations}' normalizes at run time; a constant norm scaling factor cannot be folded in.");
                }

                FoldActivationNormScalingFactor(s);
            }

            return this;
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private Tensor DecodeOf(Tensor flat, bool fire)
    {
        var encoded = EncodeFlat(flat, fire);
        return DecodeFlat(encoded.Acts, encoded.Norm, fire);
    }

    private Tensor CheckActs(Tensor acts)
    {
        if (acts.dim() == 0 || acts.shape[^1] != DSae)
        {
            throw new SaeException(HookName, $"feature activations have shape [{Shape(acts)}] but the SAE has d_sae {DSae}.");
        }

        return acts.device == _device && acts.dtype == _dtype ? acts.alias() : acts.to(_dtype, _device);
    }

    private Tensor BaseActivation(Tensor pre) =>
        Config.ActivationFn == "tanh-relu" ? torch.tanh(torch.nn.functional.relu(pre)) : torch.nn.functional.relu(pre);

    private Tensor ScaleActs(Tensor acts) => _finetuningScale is null ? acts : acts * _finetuningScale;

    private void UpdateGatedWeights()
    {
        if (Architecture != SaeArchitecture.Gated)
        {
            return;
        }

        _wMag?.Dispose();
        using var scope = torch.NewDisposeScope();
        _wMag = (_wEnc * _rMag!.exp()).DetachFromDisposeScope();
    }

    private Tensor Alive(Tensor t)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return t;
    }

    private static void ReplaceOptional(ref Tensor? field, Tensor value)
    {
        var old = field;
        field = value.DetachFromDisposeScope();
        old?.Dispose();
    }

    private static void Replace(ref Tensor field, Tensor value)
    {
        var old = field;
        field = value.DetachFromDisposeScope();
        old.Dispose();
    }
}

/// <summary>What the run-time input normalization needs to be undone on the way out.</summary>
/// <param name="Coeff"><c>constant_norm_rescale</c>: √d_in / ‖x‖ per position.</param>
/// <param name="Mu"><c>layer_norm</c>: the mean per position.</param>
/// <param name="Std"><c>layer_norm</c>: the (unbiased) standard deviation per position.</param>
internal sealed record NormState(Tensor? Coeff, Tensor? Mu, Tensor? Std)
{
    public static NormState None { get; } = new(null, null, null);
}

/// <summary>What the encode path computes for one input: the normalization state, pre-activations and activations.</summary>
internal sealed record SaeEncoding(NormState Norm, Tensor Pre, Tensor Acts);

/// <summary>The suffixes of an SAE's hook points (SAELens's names).</summary>
public static class SaeHookNames
{
    /// <summary>The SAE input after the dtype cast, before the run-time normalization.</summary>
    public const string Input = "hook_sae_input";

    /// <summary>The pre-activations.</summary>
    public const string ActsPre = "hook_sae_acts_pre";

    /// <summary>The feature activations.</summary>
    public const string ActsPost = "hook_sae_acts_post";

    /// <summary>The reconstruction, before the run-time normalization is undone.</summary>
    public const string Recons = "hook_sae_recons";

    /// <summary>The error term <c>x - clean reconstruction</c> (only with the error term).</summary>
    public const string Error = "hook_sae_error";

    /// <summary>The output.</summary>
    public const string Output = "hook_sae_output";
}
