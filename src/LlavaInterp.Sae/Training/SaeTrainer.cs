using System.Globalization;
using System.Text.Json;
using LlavaInterp.TensorFiles;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Sae.Training;

/// <summary>
/// Trains a sparse autoencoder on batches of activations [batch, d_in] with SAELens's training semantics:
/// <c>sae_in = x − b_dec</c>, <c>pre = sae_in·W_enc + b_enc</c>, architecture-specific activations,
/// <c>recon = acts·W_dec + b_dec</c>, loss = Σ_d (recon − x)² averaged over the batch, plus
/// <list type="bullet">
/// <item>standard: <c>mean(λ_t · ‖acts ⊙ ‖W_dec rows‖‖_p)</c> with λ warmed up linearly;</item>
/// <item>TopK: the AuxK loss (the top d_in/2 dead features reconstruct the detached residual);</item>
/// <item>JumpReLU: <c>mean(λ_t · Σ step(pre − θ))</c>, θ = exp(log θ), with SAELens's rectangle-kernel straight-through
/// gradients for θ in both the activation and the L0 term.</item>
/// </list>
/// Each step clips the global gradient norm, then takes an Adam step (PyTorch's update rule) at the scheduled learning
/// rate. Weights are initialized from <see cref="SaeTrainingOptions.Seed"/> only, so runs on the same data are
/// reproducible. The trainer owns its tensors and disposes them; it is not thread-safe.
/// </summary>
public sealed class SaeTrainer : IDisposable
{
    /// <summary>The file a checkpoint keeps the full training state in (next to the SAELens files).</summary>
    public const string StateFileName = "trainer_state.safetensors";

    private const string OptionsKey = "options";

    private readonly Tensor[] _params;
    private readonly string[] _names;
    private readonly Tensor[] _adamM;
    private readonly Tensor[] _adamV;
    private readonly ScalarType _dtype;
    private readonly ScalarType _computeDType;
    private Tensor _nSinceFired;
    private Tensor _actFreq;
    private Tensor? _lastLogSparsity;
    private long _nFracActive;
    private bool _disposed;

    /// <summary>Creates a trainer with freshly initialized weights (SAELens's init: Kaiming-uniform decoder rows scaled to <see cref="SaeTrainingOptions.DecoderInitNorm"/>, encoder = decoderᵀ, zero biases).</summary>
    /// <param name="options">The hyper-parameters.</param>
    /// <param name="device">Where to train; null is the CPU.</param>
    /// <exception cref="SaeException">An option is invalid.</exception>
    public SaeTrainer(SaeTrainingOptions options, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        Device = device ?? torch.CPU;
        _dtype = ParseDType(options.DType);
        _computeDType = ParseDType(options.ComputeDType);
        bool jump = options.Architecture == SaeTrainingArchitecture.JumpRelu;
        _names = jump ? ["W_enc", "b_enc", "W_dec", "b_dec", "log_threshold"] : ["W_enc", "b_enc", "W_dec", "b_dec"];
        _params = new Tensor[_names.Length];
        using (var scope = torch.NewDisposeScope())
        using (torch.no_grad())
        {
            var gen = new Generator(unchecked((ulong)options.Seed), torch.CPU);
            // Kaiming uniform (a = 0, fan_in = d_in) for both matrices, as nn.init.kaiming_uniform_.
            double decBound = Math.Sqrt(2.0) * Math.Sqrt(3.0 / options.DIn);
            double encBound = Math.Sqrt(2.0) * Math.Sqrt(3.0 / options.DSae);
            var wDec = (torch.rand([options.DSae, options.DIn], generator: gen, dtype: ScalarType.Float64) * (2 * decBound)) - decBound;
            var wEnc = (torch.rand([options.DIn, options.DSae], generator: gen, dtype: ScalarType.Float64) * (2 * encBound)) - encBound;
            if (options.DecoderNorm == DecoderNormHandling.UnitNorm)
            {
                wDec = wDec / wDec.norm(1, keepdim: true);
            }
            else if (options.DecoderInitNorm is double initNorm)
            {
                wDec = wDec / wDec.norm(1, keepdim: true) * initNorm;
            }

            if (options.InitEncoderAsDecoderTranspose)
            {
                wEnc = wDec.t().contiguous();
            }

            var init = new List<Tensor> { wEnc, torch.zeros(options.DSae, dtype: ScalarType.Float64), wDec, torch.zeros(options.DIn, dtype: ScalarType.Float64) };
            if (jump)
            {
                init.Add(torch.full(options.DSae, Math.Log(options.JumpReluInitThreshold), dtype: ScalarType.Float64));
            }

            for (int i = 0; i < _params.Length; i++)
            {
                _params[i] = init[i].to(_dtype).to(Device).contiguous().requires_grad_(true).DetachFromDisposeScope();
            }
        }

        _adamM = _params.Select(p => torch.zeros_like(p).DetachFromDisposeScope()).ToArray();
        _adamV = _params.Select(p => torch.zeros_like(p).DetachFromDisposeScope()).ToArray();
        _nSinceFired = torch.zeros(options.DSae, dtype: ScalarType.Float32, device: Device).DetachFromDisposeScope();
        _actFreq = torch.zeros(options.DSae, dtype: ScalarType.Float32, device: Device).DetachFromDisposeScope();
    }

    /// <summary>The hyper-parameters.</summary>
    public SaeTrainingOptions Options { get; }

    /// <summary>The training device.</summary>
    public Device Device { get; }

    /// <summary>Optimization steps done.</summary>
    public long StepCount { get; private set; }

    /// <summary>Activations trained on.</summary>
    public long Tokens { get; private set; }

    /// <summary>
    /// The input scale (√d_in / mean norm of the first batch) when <see cref="SaeTrainingOptions.NormalizeActivations"/>
    /// is set and a batch has been seen; 1 otherwise.
    /// </summary>
    public double NormScalingFactor { get; private set; } = 1.0;

    /// <summary>Whether the norm scaling factor has been fixed (after the first batch).</summary>
    public bool NormScalingFactorKnown { get; private set; }

    /// <summary>Encoder weight W_enc [d_in, d_sae] (live training parameter; do not dispose).</summary>
    public Tensor WEnc => Param(0);

    /// <summary>Encoder bias b_enc [d_sae] (live training parameter).</summary>
    public Tensor BEnc => Param(1);

    /// <summary>Decoder weight W_dec [d_sae, d_in] (live training parameter).</summary>
    public Tensor WDec => Param(2);

    /// <summary>Decoder bias b_dec [d_in] (live training parameter).</summary>
    public Tensor BDec => Param(3);

    /// <summary>JumpReLU log-threshold [d_sae] (live training parameter), or null for other architectures.</summary>
    public Tensor? LogThreshold => _params.Length > 4 ? Param(4) : null;

    /// <summary>Features that have not fired within <see cref="SaeTrainingOptions.DeadFeatureWindow"/> steps.</summary>
    public int DeadFeatureCount
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            using var dead = _nSinceFired.gt(Options.DeadFeatureWindow);
            using var count = dead.sum();
            return checked((int)count.to(ScalarType.Int64).item<long>());
        }
    }

    /// <summary>
    /// Takes one optimization step on a batch of activations [..., d_in] (leading dimensions are flattened). The batch
    /// is not modified or disposed.
    /// </summary>
    /// <exception cref="SaeException">The batch's last dimension is not d_in, or the loss is not finite.</exception>
    public TrainingProgress Step(Tensor batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = torch.NewDisposeScope();
        if (batch.dim() < 1 || batch.shape[^1] != Options.DIn)
        {
            throw new SaeException(Options.HookName, $"training batch has shape [{string.Join(", ", batch.shape)}]; expected [..., {Options.DIn}].");
        }

        var x = batch.detach().reshape(-1, Options.DIn).to(Device).to(_dtype);
        long n = x.shape[0];
        if (n == 0)
        {
            throw new SaeException(Options.HookName, "training batch is empty.");
        }

        if (!NormScalingFactorKnown)
        {
            if (Options.NormalizeActivations)
            {
                double meanNorm = x.norm(1).mean().to(ScalarType.Float64).item<double>();
                NormScalingFactor = meanNorm > 0 ? Math.Sqrt(Options.DIn) / meanNorm : 1.0;
            }

            NormScalingFactorKnown = true;
        }

        if (NormScalingFactor != 1.0)
        {
            x = x * NormScalingFactor;
        }

        if (Options.DecoderNorm == DecoderNormHandling.UnitNorm)
        {
            using var noGrad = torch.no_grad();
            WDec.div_(WDec.norm(1, keepdim: true));
        }

        double lr = Options.LearningRateAt(StepCount);
        double coefficient = Options.SparsityCoefficientAt(StepCount);
        var dead = _nSinceFired.gt(Options.DeadFeatureWindow);
        var pass = Forward(x, coefficient, dead);
        double loss = pass.Loss.to(ScalarType.Float64).item<double>();
        if (!double.IsFinite(loss))
        {
            throw new SaeException(Options.HookName, $"training loss is {loss} at step {StepCount} (lower the learning rate or check the activations).");
        }

        var grads = torch.autograd.grad([pass.Loss], _params, allow_unused: true);
        using (torch.no_grad())
        {
            var g = new Tensor[_params.Length];
            for (int i = 0; i < g.Length; i++)
            {
                g[i] = grads[i] is { } gi && !gi.IsInvalid ? gi : torch.zeros_like(_params[i]);
            }

            if (Options.DecoderNorm == DecoderNormHandling.UnitNorm)
            {
                // SAELens remove_gradient_parallel_to_decoder_directions: keep each row's gradient tangent to the unit sphere.
                var parallel = (g[2] * WDec).sum(1, keepdim: true);
                g[2] = g[2] - (parallel * WDec);
            }

            if (Options.GradientClipNorm > 0)
            {
                // torch.nn.utils.clip_grad_norm_: one global L2 norm, scale = max / (norm + 1e-6) when below 1.
                var total = torch.stack(g.Select(t => t.norm()).ToArray()).norm();
                var scale = (Options.GradientClipNorm / (total + 1e-6)).clamp_max(1.0);
                for (int i = 0; i < g.Length; i++)
                {
                    g[i] = g[i] * scale;
                }
            }

            long t = StepCount + 1;
            double b1 = Options.AdamBeta1;
            double b2 = Options.AdamBeta2;
            double bias1 = 1 - Math.Pow(b1, t);
            double bias2Sqrt = Math.Sqrt(1 - Math.Pow(b2, t));
            for (int i = 0; i < _params.Length; i++)
            {
                // PyTorch Adam: m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², p ← p − lr/(1−β1^t) · m / (√v/√(1−β2^t) + ε).
                _adamM[i].mul_(b1).add_(g[i], alpha: 1 - b1);
                _adamV[i].mul_(b2).addcmul_(g[i], g[i], value: 1 - b2);
                var denom = (_adamV[i].sqrt() / bias2Sqrt).add_(Options.AdamEpsilon);
                _params[i].addcdiv_(_adamM[i], denom, value: -lr / bias1);
            }

            if (Options.ResampleDeadFeaturesEvery > 0 && (StepCount + 1) % Options.ResampleDeadFeaturesEvery == 0)
            {
                ResampledFeatureCount += Resample(x, pass.Recon);
            }

            if ((StepCount + 1) % Options.FeatureSamplingWindow == 0)
            {
                ResetSparsityWindow();
            }

            var fired = pass.Acts.gt(0).to(ScalarType.Float32);
            var firedAny = fired.sum(0L).gt(0);
            _nSinceFired.add_(1).masked_fill_(firedAny, 0);
            _actFreq.add_(fired.sum(0L));
            _nFracActive += n;

            double l0 = fired.sum(1).mean().to(ScalarType.Float64).item<double>();
            var reconErr = (pass.Recon - x).pow(2).sum(1);
            var variance = (x - x.mean([0L], keepdim: true)).pow(2).sum(1);
            double meanVar = variance.mean().to(ScalarType.Float64).item<double>();
            double ev = meanVar > 0 ? 1 - (reconErr.mean().to(ScalarType.Float64).item<double>() / meanVar) : double.NaN;
            double deadFraction = _nSinceFired.gt(Options.DeadFeatureWindow).to(ScalarType.Float32).mean().to(ScalarType.Float64).item<double>();
            StepCount++;
            Tokens += n;
            return new TrainingProgress(StepCount, Tokens, loss, pass.Mse.to(ScalarType.Float64).item<double>(), pass.Sparsity.to(ScalarType.Float64).item<double>(), l0, ev, deadFraction, lr, coefficient);
        }
    }

    /// <summary>How many features <see cref="SaeTrainingOptions.ResampleDeadFeaturesEvery"/> has re-initialized so far.</summary>
    public long ResampledFeatureCount { get; private set; }

    /// <summary>
    /// Encodes raw activations [..., d_in] with the current weights (input scaling applied, no gradient): the feature
    /// activations the saved SAE will give. The caller disposes the result.
    /// </summary>
    /// <exception cref="SaeException">The last dimension is not d_in.</exception>
    public Tensor Encode(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (x.dim() < 1 || x.shape[^1] != Options.DIn)
        {
            throw new SaeException(Options.HookName, $"input has shape [{string.Join(", ", x.shape)}]; expected [..., {Options.DIn}].");
        }

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var flat = x.reshape(-1, Options.DIn).to(Device).to(_dtype);
        if (NormScalingFactor != 1.0)
        {
            flat = flat * NormScalingFactor;
        }

        using var dead = torch.zeros(Options.DSae, dtype: ScalarType.Bool, device: Device);
        var acts = Forward(flat, 0.0, dead).Acts.to(_dtype);
        return acts.reshape([.. x.shape[..^1], Options.DSae]).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Trains on <paramref name="batches"/> until <paramref name="maxTokens"/> activations have been seen (counting
    /// those of a resumed run) or the batches run out. Each batch is disposed after its step.
    /// </summary>
    /// <param name="batches">Activation batches [..., d_in].</param>
    /// <param name="maxTokens">Stop once <see cref="Tokens"/> reaches this; null trains on every batch.</param>
    /// <param name="checkpointFolder">Where <see cref="SaveCheckpoint"/> writes every <paramref name="checkpointEverySteps"/> steps; null: none.</param>
    /// <param name="checkpointEverySteps">Checkpoint period in steps (with <paramref name="checkpointFolder"/>).</param>
    /// <param name="progress">Receives every step's metrics.</param>
    /// <param name="cancellationToken">Stops between steps; the weights stay those of the last full step.</param>
    /// <returns>The last step's metrics, or null if no step ran.</returns>
    public TrainingProgress? Train(
        IEnumerable<Tensor> batches,
        long? maxTokens = null,
        string? checkpointFolder = null,
        int checkpointEverySteps = 1000,
        IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batches);
        TrainingProgress? last = null;
        if (maxTokens is long max && Tokens >= max)
        {
            return null;
        }

        foreach (var batch in batches)
        {
            last = RunOne(batch, checkpointFolder, checkpointEverySteps, progress, cancellationToken);
            if (maxTokens is long m && Tokens >= m)
            {
                break;
            }
        }

        return last;
    }

    /// <summary>As <see cref="Train"/>, over an asynchronous stream of batches (e.g. an activation store fed by a model).</summary>
    /// <param name="batches">Activation batches [..., d_in]; each is disposed after its step.</param>
    /// <param name="maxTokens">Stop once <see cref="Tokens"/> reaches this; null trains on every batch.</param>
    /// <param name="checkpointFolder">Where checkpoints go; null: none.</param>
    /// <param name="checkpointEverySteps">Checkpoint period in steps.</param>
    /// <param name="progress">Receives every step's metrics.</param>
    /// <param name="cancellationToken">Stops between steps.</param>
    public async Task<TrainingProgress?> TrainAsync(
        IAsyncEnumerable<Tensor> batches,
        long? maxTokens = null,
        string? checkpointFolder = null,
        int checkpointEverySteps = 1000,
        IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batches);
        TrainingProgress? last = null;
        if (maxTokens is long max && Tokens >= max)
        {
            return null;
        }

        await foreach (var batch in batches.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            last = RunOne(batch, checkpointFolder, checkpointEverySteps, progress, cancellationToken);
            if (maxTokens is long m && Tokens >= m)
            {
                break;
            }
        }

        return last;
    }

    /// <summary>
    /// The SAELens configuration of the trained SAE (architecture, sizes, hook, <c>normalize_activations = "none"</c>:
    /// any norm scaling factor is folded into the saved weights).
    /// </summary>
    public SaeConfig ToConfig()
    {
        var o = Options;
        var config = new SaeConfig
        {
            Architecture = o.Architecture switch
            {
                SaeTrainingArchitecture.TopK => "topk",
                SaeTrainingArchitecture.JumpRelu => "jumprelu",
                _ => "standard",
            },
            DIn = o.DIn,
            DSae = o.DSae,
            DType = "float32",
            Device = "cpu",
            ModelName = o.ModelName,
            HookName = o.HookName,
            HookLayer = o.HookLayer,
            ActivationFn = o.Architecture == SaeTrainingArchitecture.TopK ? "topk" : "relu",
            ApplyBDecToInput = o.ApplyBDecToInput,
            NormalizeActivations = "none",
            DatasetPath = o.DatasetPath,
            SaeLensTrainingVersion = null,
        };
        if (o.Architecture == SaeTrainingArchitecture.TopK)
        {
            // Both places SAELens versions read k from.
            using var doc = JsonDocument.Parse(o.K.ToString(CultureInfo.InvariantCulture));
            config = config with
            {
                K = o.K,
                ActivationFnKwargs = new Dictionary<string, JsonElement>(StringComparer.Ordinal) { ["k"] = doc.RootElement.Clone() },
            };
        }

        return config;
    }

    /// <summary>
    /// The inference state dict in SAELens's names (<c>W_enc</c>, <c>W_dec</c>, <c>b_enc</c>, <c>b_dec</c>, and
    /// <c>threshold = exp(log_threshold)</c> for JumpReLU), float32 on the CPU, with the norm scaling factor folded in
    /// (W_enc·s, W_dec/s, b_dec/s). The caller disposes the tensors.
    /// </summary>
    public Dictionary<string, Tensor> ToStateDict()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var noGrad = torch.no_grad();
        double s = NormScalingFactor;
        Tensor Out(Tensor t) => t.detach().to(ScalarType.Float32).cpu().contiguous().clone();
        var dict = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        using (var scope = torch.NewDisposeScope())
        {
            dict["W_enc"] = Out(s == 1.0 ? WEnc : WEnc * s);
            dict["W_dec"] = Out(s == 1.0 ? WDec : WDec / s);
            dict["b_enc"] = Out(BEnc);
            dict["b_dec"] = Out(s == 1.0 ? BDec : BDec / s);
            if (LogThreshold is { } logT)
            {
                dict["threshold"] = Out(logT.exp());
            }

            foreach (var t in dict.Values)
            {
                t.MoveToOuterDisposeScope();
            }
        }

        return dict;
    }

    /// <summary>
    /// log10 of each feature's firing frequency (+1e-10) over the current sampling window (the last full window
    /// when the current one is empty), as SAELens's <c>log_feature_sparsity</c>. The caller disposes it.
    /// </summary>
    public Tensor LogFeatureSparsity()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_nFracActive == 0)
        {
            return _lastLogSparsity?.clone() ?? torch.full(Options.DSae, Math.Log10(1e-10), dtype: ScalarType.Float32);
        }

        using var scope = torch.NewDisposeScope();
        return (_actFreq / _nFracActive + 1e-10).log10().cpu().MoveToOuterDisposeScope();
    }

    /// <summary>An inference <see cref="SparseAutoencoder"/> with the current weights (a copy; the caller disposes it).</summary>
    public SparseAutoencoder ToSparseAutoencoder(SaeLoadOptions? options = null)
    {
        var dict = ToStateDict();
        try
        {
            return SparseAutoencoder.FromTensors(ToConfig(), dict, options);
        }
        finally
        {
            foreach (var t in dict.Values)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>
    /// Writes the SAE in SAELens's folder format: <c>cfg.json</c>, <c>sae_weights.safetensors</c> and
    /// <c>sparsity.safetensors</c> (tensor <c>sparsity</c>: log10 feature frequencies). Loads with
    /// <see cref="SparseAutoencoder.Load"/> and SAELens's <c>SAE.load_from_disk</c>. Each file is written whole or not at all.
    /// </summary>
    /// <param name="folder">The output folder (created if missing).</param>
    public void Save(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        Directory.CreateDirectory(folder);
        var dict = ToStateDict();
        try
        {
            SafetensorsWriter.Save(Path.Combine(folder, SparseAutoencoder.WeightsFileName), dict);
        }
        finally
        {
            foreach (var t in dict.Values)
            {
                t.Dispose();
            }
        }

        using (var sparsity = LogFeatureSparsity())
        {
            SafetensorsWriter.Save(Path.Combine(folder, SparseAutoencoder.SparsityFileName), [new("sparsity", sparsity)]);
        }

        WriteAtomically(Path.Combine(folder, SparseAutoencoder.ConfigFileName), ToConfig().ToJson());
    }

    /// <summary>
    /// Writes a resumable checkpoint: the SAELens files of <see cref="Save"/> plus <see cref="StateFileName"/> with the
    /// parameters, Adam moments, dead-feature counters, step, token count, norm factor and options.
    /// </summary>
    /// <param name="folder">The checkpoint folder (created if missing).</param>
    public void SaveCheckpoint(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        ObjectDisposedException.ThrowIf(_disposed, this);
        Save(folder);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        for (int i = 0; i < _params.Length; i++)
        {
            tensors.Add(new("param." + _names[i], _params[i].detach()));
            tensors.Add(new("adam_m." + _names[i], _adamM[i]));
            tensors.Add(new("adam_v." + _names[i], _adamV[i]));
        }

        tensors.Add(new("n_since_fired", _nSinceFired));
        tensors.Add(new("act_freq", _actFreq));
        if (_lastLogSparsity is not null)
        {
            tensors.Add(new("last_log_sparsity", _lastLogSparsity));
        }

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [OptionsKey] = JsonSerializer.Serialize(Options),
            ["step"] = StepCount.ToString(CultureInfo.InvariantCulture),
            ["tokens"] = Tokens.ToString(CultureInfo.InvariantCulture),
            ["n_frac_active"] = _nFracActive.ToString(CultureInfo.InvariantCulture),
            ["resampled_features"] = ResampledFeatureCount.ToString(CultureInfo.InvariantCulture),
            ["norm_scaling_factor"] = NormScalingFactor.ToString("R", CultureInfo.InvariantCulture),
            ["norm_scaling_factor_known"] = NormScalingFactorKnown ? "true" : "false",
        };
        SafetensorsWriter.Save(Path.Combine(folder, StateFileName), tensors, metadata);
    }

    /// <summary>Restores a trainer from a <see cref="SaveCheckpoint"/> folder; training continues exactly where it stopped.</summary>
    /// <param name="folder">The checkpoint folder.</param>
    /// <param name="device">Where to train; null is the CPU.</param>
    /// <exception cref="TensorFileException">The state file is missing, malformed or lacks a tensor.</exception>
    public static SaeTrainer Resume(string folder, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string path = Path.Combine(folder, StateFileName);
        using var file = SafetensorsFile.Open(path);
        string Meta(string key) => file.Metadata.TryGetValue(key, out var v) ? v : throw new TensorFileException(path, null, $"metadata '{key}' is missing: not a trainer checkpoint.");
        SaeTrainingOptions options;
        try
        {
            options = JsonSerializer.Deserialize<SaeTrainingOptions>(Meta(OptionsKey)) ?? throw new JsonException("null options");
        }
        catch (JsonException ex)
        {
            throw new TensorFileException(path, null, $"metadata 'options' is invalid: {ex.Message}", ex);
        }

        var trainer = new SaeTrainer(options, device);
        try
        {
            using var noGrad = torch.no_grad();
            void Copy(string name, Tensor target)
            {
                if (!file.Contains(name))
                {
                    throw new TensorFileException(path, name, "is missing.");
                }

                using var t = file.Load(name, target.dtype, target.device);
                if (!t.shape.SequenceEqual(target.shape))
                {
                    throw new TensorFileException(path, name, $"has shape [{string.Join(", ", t.shape)}]; expected [{string.Join(", ", target.shape)}].");
                }

                target.copy_(t);
            }

            for (int i = 0; i < trainer._params.Length; i++)
            {
                Copy("param." + trainer._names[i], trainer._params[i]);
                Copy("adam_m." + trainer._names[i], trainer._adamM[i]);
                Copy("adam_v." + trainer._names[i], trainer._adamV[i]);
            }

            Copy("n_since_fired", trainer._nSinceFired);
            Copy("act_freq", trainer._actFreq);
            if (file.Contains("last_log_sparsity"))
            {
                trainer._lastLogSparsity = file.Load("last_log_sparsity", ScalarType.Float32, torch.CPU).DetachFromDisposeScope();
            }

            trainer.StepCount = long.Parse(Meta("step"), CultureInfo.InvariantCulture);
            trainer.Tokens = long.Parse(Meta("tokens"), CultureInfo.InvariantCulture);
            trainer._nFracActive = long.Parse(Meta("n_frac_active"), CultureInfo.InvariantCulture);
            trainer.NormScalingFactor = double.Parse(Meta("norm_scaling_factor"), CultureInfo.InvariantCulture);
            trainer.NormScalingFactorKnown = Meta("norm_scaling_factor_known") == "true";
            // Absent from checkpoints written before resampling existed.
            trainer.ResampledFeatureCount = file.Metadata.TryGetValue("resampled_features", out var resampled) ? long.Parse(resampled, CultureInfo.InvariantCulture) : 0;
            return trainer;
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
    }

    /// <summary>Disposes the parameters and optimizer state.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var t in _params.Concat(_adamM).Concat(_adamV))
        {
            t.Dispose();
        }

        _nSinceFired.Dispose();
        _actFreq.Dispose();
        _lastLogSparsity?.Dispose();
    }

    private static ScalarType ParseDType(string name) => name switch
    {
        "float32" => ScalarType.Float32,
        "float64" => ScalarType.Float64,
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        _ => throw new SaeException(null, $"unknown dtype '{name}'."),
    };

    private static void WriteAtomically(string path, string text)
    {
        string temp = path + "." + Guid.NewGuid().ToString("N") + ".tmp";
        try
        {
            File.WriteAllText(temp, text);
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    private TrainingProgress RunOne(Tensor batch, string? checkpointFolder, int checkpointEverySteps, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        TrainingProgress p;
        using (batch)
        {
            cancellationToken.ThrowIfCancellationRequested();
            p = Step(batch);
        }

        progress?.Report(p);
        if (checkpointFolder is not null && checkpointEverySteps > 0 && StepCount % checkpointEverySteps == 0)
        {
            SaveCheckpoint(checkpointFolder);
        }

        return p;
    }

    // Re-initializes dead features from the batch rows with the largest reconstruction error, sampled with probability
    // proportional to the squared error: the decoder row points at the row (minus b_dec), the encoder column follows
    // at a fraction of the live features' encoder norm, and their Adam moments restart. The generator is seeded by the
    // step, so a resumed run resamples identically. Runs under no_grad inside Step's dispose scope.
    private int Resample(Tensor x, Tensor recon)
    {
        var dead = _nSinceFired.gt(Options.DeadFeatureWindow);
        var deadIndex = dead.nonzero().reshape(-1);
        int numDead = (int)deadIndex.shape[0];
        if (numDead == 0)
        {
            return 0;
        }

        var err = (recon.to(_dtype) - x).pow(2).sum(1);
        var weights = err.pow(2).to(ScalarType.Float64).cpu();
        if (!(weights.sum().item<double>() > 0))
        {
            return 0;
        }

        using var gen = new Generator(unchecked(((ulong)Options.Seed) ^ ((ulong)StepCount * 0x9E3779B97F4A7C15UL)), torch.CPU);
        var picks = torch.multinomial(weights, numDead, replacement: true, generator: gen).to(x.device);
        var directions = x.index_select(0, picks) - BDec;
        directions = directions / directions.norm(1, keepdim: true).clamp_min(1e-12);

        var alive = dead.logical_not();
        bool anyAlive = alive.any().item<bool>();
        var encNorms = WEnc.norm(0L);
        double encNorm = anyAlive ? encNorms.masked_select(alive).mean().to(ScalarType.Float64).item<double>() : 1.0;
        double decNorm = Options.DecoderNorm == DecoderNormHandling.UnitNorm || !anyAlive
            ? 1.0
            : WDec.norm(1).masked_select(alive).mean().to(ScalarType.Float64).item<double>();

        WDec.index_copy_(0, deadIndex, directions * decNorm);
        WEnc.index_copy_(1, deadIndex, directions.t() * (encNorm * Options.ResampleEncoderScale));
        BEnc.index_fill_(0, deadIndex, 0);
        foreach (var state in new[] { _adamM, _adamV })
        {
            state[0].index_fill_(1, deadIndex, 0);
            state[1].index_fill_(0, deadIndex, 0);
            state[2].index_fill_(0, deadIndex, 0);
        }

        _nSinceFired.index_fill_(0, deadIndex, 0);
        return numDead;
    }

    private void ResetSparsityWindow()
    {
        if (_nFracActive > 0)
        {
            var previous = _lastLogSparsity;
            using (var scope = torch.NewDisposeScope())
            {
                _lastLogSparsity = (_actFreq / _nFracActive + 1e-10).log10().cpu().DetachFromDisposeScope();
            }

            previous?.Dispose();
        }

        _actFreq.zero_();
        _nFracActive = 0;
    }


    private Tensor Param(int index)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _params[index];
    }

    private Tensor Cast(Tensor t) => t.dtype == _computeDType ? t : t.to(_computeDType);

    /// <summary>The training forward pass; every tensor lives in the caller's dispose scope.</summary>
    internal ForwardPass Forward(Tensor x, double coefficient, Tensor deadMask)
    {
        var o = Options;
        var xc = Cast(x);
        var wEnc = Cast(WEnc);
        var wDec = Cast(WDec);
        var bDec = Cast(BDec);
        var saeIn = o.ApplyBDecToInput ? xc - bDec : xc;
        var pre = saeIn.matmul(wEnc) + Cast(BEnc);
        Tensor acts;
        Tensor? sparsity = null;
        switch (o.Architecture)
        {
            case SaeTrainingArchitecture.TopK:
            {
                var (values, indices) = pre.topk(o.K, dim: -1);
                acts = torch.zeros_like(pre).scatter(-1, indices, torch.nn.functional.relu(values));
                break;
            }

            case SaeTrainingArchitecture.JumpRelu:
            {
                // SAELens's JumpReLU/Step autograd functions as surrogates: (θ − θ.detach()) is exactly 0 forward, and its
                // gradient routes −(θ/bw)·rect((pre−θ)/bw) (activation) and −(1/bw)·rect(...) (L0) to θ; pre gets mask·grad.
                var theta = Cast(LogThreshold!.exp());
                var thetaD = theta.detach();
                var preD = pre.detach();
                var mask = preD.gt(thetaD).to(pre.dtype);
                var z = (preD - thetaD) / o.JumpReluBandwidth;
                var rect = z.gt(-0.5).logical_and(z.lt(0.5)).to(pre.dtype);
                var ste = theta - thetaD;
                acts = (pre * mask) + (ste * (-(thetaD / o.JumpReluBandwidth) * rect));
                var l0 = mask.sum(-1) + (ste * (rect * (-1.0 / o.JumpReluBandwidth))).sum(-1);
                sparsity = (coefficient * l0.to(_dtype)).mean();
                break;
            }

            default:
                acts = torch.nn.functional.relu(pre);
                break;
        }

        if (o.Architecture == SaeTrainingArchitecture.Standard)
        {
            // Decoder-norm-weighted Lp sparsity, as StandardTrainingSAE.calculate_aux_loss.
            var weighted = acts.to(_dtype) * WDec.norm(1);
            var norm = o.LpNorm == 1.0 ? weighted.abs().sum(-1) : weighted.abs().pow(o.LpNorm).sum(-1).pow(1.0 / o.LpNorm);
            sparsity = (coefficient * norm).mean();
        }

        var recon = (acts.matmul(wDec) + bDec).to(_dtype);
        var mse = (recon - x).pow(2).sum(-1).mean();
        if (o.Architecture == SaeTrainingArchitecture.TopK)
        {
            sparsity = AuxK(x, recon, pre, deadMask, wDec, bDec) * o.AuxKCoefficient;
        }

        sparsity ??= torch.zeros([], dtype: _dtype, device: Device);

        return new ForwardPass(mse + sparsity, mse, sparsity, acts, recon.detach());
    }

    /// <summary>TopK AuxK loss (SAELens calculate_topk_aux_loss): the top d_in/2 dead features reconstruct the detached residual.</summary>
    private Tensor AuxK(Tensor x, Tensor recon, Tensor pre, Tensor deadMask, Tensor wDec, Tensor bDec)
    {
        long numDead = deadMask.sum().to(ScalarType.Int64).item<long>();
        if (numDead == 0)
        {
            return torch.zeros([], dtype: _dtype, device: Device);
        }

        var residual = (x - recon).detach();
        long kAux = Options.DIn / 2;
        double scale = Math.Min((double)numDead / kAux, 1.0);
        kAux = Math.Min(kAux, numDead);
        var latents = torch.where(deadMask.unsqueeze(0), pre, torch.tensor(double.NegativeInfinity, dtype: pre.dtype, device: pre.device));
        var (values, indices) = latents.topk((int)kAux, dim: -1, sorted: false);
        var auxActs = torch.zeros_like(pre).scatter(-1, indices, values);
        var auxRecon = (auxActs.matmul(wDec) + bDec).to(_dtype);
        return (auxRecon - residual).pow(2).sum(-1).mean() * scale;
    }

    /// <summary>The tensors of one training forward pass.</summary>
    internal sealed record ForwardPass(Tensor Loss, Tensor Mse, Tensor Sparsity, Tensor Acts, Tensor Recon);
}
