namespace LlavaInterp.Sae.Training;

/// <summary>Live metrics of one training step (SAELens's logged metrics).</summary>
/// <param name="Step">The number of steps done, this one included.</param>
/// <param name="Tokens">Activations trained on so far.</param>
/// <param name="Loss">The total loss of the step.</param>
/// <param name="MseLoss">Squared reconstruction error summed over d_in, averaged over the batch.</param>
/// <param name="SparsityLoss">The L1 (standard), L0 (JumpReLU) or AuxK (TopK) term.</param>
/// <param name="L0">Mean number of active features per activation.</param>
/// <param name="ExplainedVariance">1 − mean squared error / mean variance about the batch mean.</param>
/// <param name="DeadFraction">Fraction of features that have not fired within the dead-feature window.</param>
/// <param name="LearningRate">The learning rate the step used.</param>
/// <param name="SparsityCoefficient">The L1 or L0 coefficient the step used.</param>
public sealed record TrainingProgress(
    long Step,
    long Tokens,
    double Loss,
    double MseLoss,
    double SparsityLoss,
    double L0,
    double ExplainedVariance,
    double DeadFraction,
    double LearningRate,
    double SparsityCoefficient);
