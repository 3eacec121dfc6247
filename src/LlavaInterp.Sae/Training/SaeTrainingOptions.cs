using System.Text.Json.Serialization;

namespace LlavaInterp.Sae.Training;

/// <summary>The SAE architectures <see cref="SaeTrainer"/> trains (SAELens's training SAEs).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<SaeTrainingArchitecture>))]
public enum SaeTrainingArchitecture
{
    /// <summary>ReLU with an L1 penalty on feature activations weighted by their decoder row norms.</summary>
    Standard,

    /// <summary>TopK activation with SAELens's AuxK loss on dead features.</summary>
    TopK,

    /// <summary>JumpReLU with a learnt log-threshold, trained through SAELens's straight-through estimator and an L0 penalty.</summary>
    JumpRelu,
}

/// <summary>How decoder row norms are handled during training.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<DecoderNormHandling>))]
public enum DecoderNormHandling
{
    /// <summary>
    /// SAELens 4+ default: decoder rows start at <see cref="SaeTrainingOptions.DecoderInitNorm"/> and are free; the L1
    /// penalty of a standard SAE weights each feature by its decoder row norm.
    /// </summary>
    ScaleSparsityPenalty,

    /// <summary>
    /// Legacy SAELens (<c>normalize_sae_decoder</c>): rows are set to unit norm before every step and the gradient
    /// component parallel to each row is removed before the optimizer step.
    /// </summary>
    UnitNorm,
}

/// <summary>
/// Hyper-parameters of an SAE training run, with SAELens's names and defaults where it has them. The record is
/// serialized into checkpoints, so a resumed run uses exactly the same settings.
/// </summary>
public sealed record SaeTrainingOptions
{
    /// <summary>The architecture.</summary>
    public SaeTrainingArchitecture Architecture { get; init; } = SaeTrainingArchitecture.Standard;

    /// <summary>Input width (<c>d_in</c>).</summary>
    public int DIn { get; init; }

    /// <summary>Number of features (<c>d_sae</c>).</summary>
    public int DSae { get; init; }

    /// <summary>The hook point the activations come from, recorded in <c>cfg.json</c>.</summary>
    public string HookName { get; init; } = "hook";

    /// <summary>The block of the hook point, recorded in <c>cfg.json</c>.</summary>
    public int HookLayer { get; init; }

    /// <summary>The model the activations come from, recorded in <c>cfg.json</c>.</summary>
    public string? ModelName { get; init; }

    /// <summary>Where the activations come from, recorded as <c>dataset_path</c>.</summary>
    public string? DatasetPath { get; init; }

    /// <summary>Subtract <c>b_dec</c> from the input before encoding (<c>apply_b_dec_to_input</c>).</summary>
    public bool ApplyBDecToInput { get; init; } = true;

    /// <summary>
    /// Scale inputs by one constant so their mean norm is √d_in (SAELens <c>expected_average_only_in</c>); the factor is
    /// estimated on the first batch and folded into the saved weights, so the saved SAE takes raw activations.
    /// </summary>
    public bool NormalizeActivations { get; init; }

    /// <summary>Features kept per position by a TopK SAE.</summary>
    public int K { get; init; } = 100;

    /// <summary>The final L1 coefficient of a standard SAE (<c>l1_coefficient</c>).</summary>
    public double L1Coefficient { get; init; } = 1.0;

    /// <summary>Steps over which the L1 coefficient rises linearly from 0 (<c>l1_warm_up_steps</c>).</summary>
    public int L1WarmUpSteps { get; init; }

    /// <summary>The p of the sparsity norm of a standard SAE (<c>lp_norm</c>).</summary>
    public double LpNorm { get; init; } = 1.0;

    /// <summary>The final L0 coefficient of a JumpReLU SAE (<c>l0_coefficient</c>).</summary>
    public double L0Coefficient { get; init; } = 1.0;

    /// <summary>Steps over which the L0 coefficient rises linearly from 0 (<c>l0_warm_up_steps</c>).</summary>
    public int L0WarmUpSteps { get; init; }

    /// <summary>Width of the rectangle kernel of the JumpReLU straight-through estimator (<c>jumprelu_bandwidth</c>).</summary>
    public double JumpReluBandwidth { get; init; } = 0.001;

    /// <summary>The initial JumpReLU threshold (<c>jumprelu_init_threshold</c>).</summary>
    public double JumpReluInitThreshold { get; init; } = 0.001;

    /// <summary>Scale of the TopK AuxK loss (SAELens applies it unscaled: 1).</summary>
    public double AuxKCoefficient { get; init; } = 1.0;

    /// <summary>Adam learning rate (<c>lr</c>).</summary>
    public double LearningRate { get; init; } = 3e-4;

    /// <summary>Adam β1.</summary>
    public double AdamBeta1 { get; init; } = 0.9;

    /// <summary>Adam β2.</summary>
    public double AdamBeta2 { get; init; } = 0.999;

    /// <summary>Adam ε.</summary>
    public double AdamEpsilon { get; init; } = 1e-8;

    /// <summary>Linear learning-rate warm-up steps (<c>lr_warm_up_steps</c>): step t uses lr·(t+1)/warm-up.</summary>
    public int LrWarmUpSteps { get; init; }

    /// <summary>Linear decay to 0 over the last steps of <see cref="TotalSteps"/> (<c>lr_decay_steps</c>).</summary>
    public int LrDecaySteps { get; init; }

    /// <summary>Planned number of steps; needed for <see cref="LrDecaySteps"/> (0: unknown).</summary>
    public long TotalSteps { get; init; }

    /// <summary>Gradients are clipped to this global L2 norm (SAELens clips at 1); 0 disables clipping.</summary>
    public double GradientClipNorm { get; init; } = 1.0;

    /// <summary>Decoder norm handling.</summary>
    public DecoderNormHandling DecoderNorm { get; init; } = DecoderNormHandling.ScaleSparsityPenalty;

    /// <summary>Initial decoder row norm (<c>decoder_init_norm</c>); null keeps the Kaiming-uniform norms.</summary>
    public double? DecoderInitNorm { get; init; } = 0.1;

    /// <summary>Initialize W_enc as W_decᵀ (<c>init_encoder_as_decoder_transpose</c>).</summary>
    public bool InitEncoderAsDecoderTranspose { get; init; } = true;

    /// <summary>A feature that has not fired for this many steps is dead (<c>dead_feature_window</c>).</summary>
    public int DeadFeatureWindow { get; init; } = 1000;

    /// <summary>Feature firing frequencies are reset every this many steps (<c>feature_sampling_window</c>).</summary>
    public int FeatureSamplingWindow { get; init; } = 2000;

    /// <summary>
    /// Every this many steps, re-initialize the features that are dead (no firing within <see cref="DeadFeatureWindow"/>
    /// steps) from the inputs of the current batch the SAE reconstructs worst, as Anthropic's "Towards
    /// Monosemanticity" resampling (the method SAELens's early versions offered); 0 turns resampling off.
    /// </summary>
    public int ResampleDeadFeaturesEvery { get; init; }

    /// <summary>Encoder norm of a resampled feature relative to the mean encoder norm of the live features (Anthropic uses 0.2).</summary>
    public double ResampleEncoderScale { get; init; } = 0.2;

    /// <summary>Seed of the weight initialization.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>The dtype of the parameters and optimizer state (<c>float32</c> recommended).</summary>
    public string DType { get; init; } = "float32";

    /// <summary>The dtype of the forward and backward matmuls (<c>bfloat16</c> runs them in bf16 against float32 master weights, like autocast).</summary>
    public string ComputeDType { get; init; } = "float32";

    /// <summary>Checks the options; throws <see cref="SaeException"/> naming the bad option.</summary>
    public void Validate()
    {
        void Require(bool ok, string message)
        {
            if (!ok)
            {
                throw new SaeException(HookName, $"training options: {message}");
            }
        }

        Require(DIn > 0, $"DIn must be positive, found {DIn}.");
        Require(DSae > 0, $"DSae must be positive, found {DSae}.");
        Require(!string.IsNullOrWhiteSpace(HookName), "HookName is required.");
        Require(Architecture != SaeTrainingArchitecture.TopK || (K > 0 && K <= DSae), $"K must be in 1..DSae ({DSae}), found {K}.");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"LearningRate must be positive, found {LearningRate}.");
        Require(AdamBeta1 is >= 0 and < 1 && AdamBeta2 is >= 0 and < 1, "Adam betas must be in [0, 1).");
        Require(AdamEpsilon > 0, "AdamEpsilon must be positive.");
        Require(L1WarmUpSteps >= 0 && L0WarmUpSteps >= 0 && LrWarmUpSteps >= 0 && LrDecaySteps >= 0, "warm-up and decay steps must not be negative.");
        Require(LrDecaySteps == 0 || TotalSteps > LrWarmUpSteps + LrDecaySteps, $"LrDecaySteps needs TotalSteps > LrWarmUpSteps + LrDecaySteps (found TotalSteps {TotalSteps}).");
        Require(GradientClipNorm >= 0, "GradientClipNorm must not be negative.");
        Require(JumpReluBandwidth > 0 && JumpReluInitThreshold > 0, "JumpReLU bandwidth and initial threshold must be positive.");
        Require(LpNorm > 0, "LpNorm must be positive.");
        Require(DeadFeatureWindow > 0 && FeatureSamplingWindow > 0, "DeadFeatureWindow and FeatureSamplingWindow must be positive.");
        Require(ResampleDeadFeaturesEvery >= 0, $"ResampleDeadFeaturesEvery must not be negative, found {ResampleDeadFeaturesEvery}.");
        Require(ResampleEncoderScale > 0 && double.IsFinite(ResampleEncoderScale), $"ResampleEncoderScale must be positive, found {ResampleEncoderScale}.");
        Require(DType is "float32" or "float64", $"DType must be float32 or float64, found '{DType}'.");
        Require(ComputeDType is "float32" or "float64" or "bfloat16" or "float16", $"ComputeDType must be float32, float64, bfloat16 or float16, found '{ComputeDType}'.");
    }

    /// <summary>The learning rate of step <paramref name="step"/> (0-based), as SAELens's constant schedule with linear warm-up and decay.</summary>
    public double LearningRateAt(long step)
    {
        double factor = 1.0;
        if (LrWarmUpSteps > 0 && step < LrWarmUpSteps)
        {
            factor = (step + 1.0) / LrWarmUpSteps;
        }
        else if (LrDecaySteps > 0 && step >= TotalSteps - LrDecaySteps)
        {
            factor = Math.Max(0.0, 1.0 - (double)(step - (TotalSteps - LrDecaySteps)) / LrDecaySteps);
        }

        return LearningRate * factor;
    }

    /// <summary>The sparsity coefficient (L1 or L0) of step <paramref name="step"/>: final·min(1, step/warm-up), as SAELens's coefficient scheduler.</summary>
    public double SparsityCoefficientAt(long step)
    {
        (double final, int warm) = Architecture == SaeTrainingArchitecture.JumpRelu ? (L0Coefficient, L0WarmUpSteps) : (L1Coefficient, L1WarmUpSteps);
        return warm == 0 ? final : final * Math.Min(1.0, (double)step / warm);
    }
}
