using LlavaInterp.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Sae.Training;

/// <summary>Reconstruction and sparsity metrics of an SAE over a set of activations.</summary>
/// <param name="Tokens">Activations evaluated.</param>
/// <param name="Mse">Mean squared error per element.</param>
/// <param name="ExplainedVariance">1 − Σ squared error / Σ squared deviation from each batch's mean (SAELens's <c>explained_variance</c>).</param>
/// <param name="L0">Mean number of active features per activation.</param>
/// <param name="DeadFeatures">Features that never fired on the set.</param>
/// <param name="DeadFraction"><paramref name="DeadFeatures"/> / d_sae.</param>
public sealed record SaeEvaluation(long Tokens, double Mse, double ExplainedVariance, double L0, int DeadFeatures, double DeadFraction);

/// <summary>The model's loss clean, with the SAE spliced in (reconstruction only), and with the hook zero-ablated.</summary>
/// <param name="CleanLoss">Mean loss of the unmodified model.</param>
/// <param name="SaeLoss">Mean loss with the activation replaced by the SAE's reconstruction.</param>
/// <param name="ZeroAblationLoss">Mean loss with the activation replaced by zeros.</param>
public sealed record CeLossEvaluation(double CleanLoss, double SaeLoss, double ZeroAblationLoss)
{
    /// <summary>SAELens's CE loss score: (zero − SAE) / (zero − clean); 1 is a perfect splice, 0 no better than ablation.</summary>
    public double Recovered => (ZeroAblationLoss - SaeLoss) / (ZeroAblationLoss - CleanLoss);
}

/// <summary>Evaluates SAEs: reconstruction/sparsity on activations, and the model's loss with the SAE spliced in.</summary>
public static class SaeEvaluator
{
    /// <summary>MSE, explained variance, L0 and dead features of <paramref name="sae"/> over <paramref name="batches"/> [..., d_in] (not disposed).</summary>
    /// <param name="sae">The SAE.</param>
    /// <param name="batches">Activation batches.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <exception cref="SaeException">A batch's last dimension is not d_in, or there are no activations.</exception>
    public static SaeEvaluation Evaluate(SparseAutoencoder sae, IEnumerable<Tensor> batches, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sae);
        ArgumentNullException.ThrowIfNull(batches);
        long tokens = 0;
        double sqErr = 0, variance = 0, active = 0;
        using var fired = torch.zeros(sae.DSae, dtype: ScalarType.Bool);
        foreach (var batch in batches)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var acts = sae.Encode(batch);
            var recon = sae.Decode(acts, batch);
            var x = batch.to(sae.Device).to(ScalarType.Float64).reshape(-1, sae.DIn);
            var r = recon.to(ScalarType.Float64).reshape(-1, sae.DIn);
            var f = acts.reshape(-1, sae.DSae).gt(0);
            tokens += x.shape[0];
            sqErr += (r - x).pow(2).sum().item<double>();
            variance += (x - x.mean([0L], keepdim: true)).pow(2).sum().item<double>();
            active += f.sum().to(ScalarType.Int64).item<long>();
            fired.logical_or_(f.any(0L).cpu());
        }

        if (tokens == 0)
        {
            throw new SaeException(sae.HookName, "evaluation needs at least one activation.");
        }

        using var firedCount = fired.sum();
        int dead = sae.DSae - checked((int)firedCount.to(ScalarType.Int64).item<long>());
        return new SaeEvaluation(tokens, sqErr / (tokens * (double)sae.DIn), variance > 0 ? 1 - (sqErr / variance) : double.NaN, active / tokens, dead, (double)dead / sae.DSae);
    }

    /// <summary>
    /// Runs each input clean, with the SAE spliced in at its hook point (reconstruction, no error term) and with the
    /// hook zero-ablated, and averages <paramref name="loss"/> over the inputs (SAELens's CE loss recovered). Outputs
    /// that are <see cref="IDisposable"/> are disposed after <paramref name="loss"/> has read them.
    /// </summary>
    /// <param name="model">The hooked model.</param>
    /// <param name="sae">The SAE (its hook name must be a hook point of the model).</param>
    /// <param name="inputs">Model inputs.</param>
    /// <param name="loss">The loss of one input and its output (e.g. next-token cross-entropy from the logits).</param>
    /// <param name="cancellationToken">Stops between inputs.</param>
    /// <exception cref="SaeException">The model has no hook point named as the SAE's, or there are no inputs.</exception>
    public static CeLossEvaluation CeLoss<TIn, TOut>(HookedRootModule<TIn, TOut> model, SparseAutoencoder sae, IEnumerable<TIn> inputs, Func<TIn, TOut, double> loss, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sae);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(loss);
        if (!model.HookNames.Contains(sae.HookName))
        {
            throw new SaeException(sae.HookName, "is not a hook point of the model.");
        }

        double Run(TIn input)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            var output = model.call(input);
            try
            {
                return loss(input, output);
            }
            finally
            {
                (output as IDisposable)?.Dispose();
            }
        }

        double clean = 0, spliced = 0, zero = 0;
        int n = 0;
        using var splice = sae.Splice(useErrorTerm: false);
        foreach (var input in inputs)
        {
            cancellationToken.ThrowIfCancellationRequested();
            clean += Run(input);
            using (splice.AttachTo(model))
            {
                spliced += Run(input);
            }

            using (model.Hooks((sae.HookName, (a, _) => torch.zeros_like(a))))
            {
                zero += Run(input);
            }

            n++;
        }

        if (n == 0)
        {
            throw new SaeException(sae.HookName, "CE loss evaluation needs at least one input.");
        }

        return new CeLossEvaluation(clean / n, spliced / n, zero / n);
    }
}
