using LlavaInterp.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Sae;

/// <summary>
/// Runs a <see cref="SparseAutoencoder"/> inside any <see cref="HookedRootModule{TInput, TOutput}"/> at the SAE's hook
/// point (SAELens's <c>HookedSAETransformer.add_sae</c>): the activation is replaced by the SAE's output.
/// <para>
/// The splice's hook points are the SAE's own, named <c>{hook}.hook_sae_input</c>, <c>.hook_sae_acts_pre</c>,
/// <c>.hook_sae_acts_post</c>, <c>.hook_sae_recons</c>, <c>.hook_sae_error</c> and <c>.hook_sae_output</c> (e.g.
/// <c>blocks.2.hook_resid_post.hook_sae_acts_post</c>). Hook them on the splice (or the SAE) with
/// <see cref="HookedRootModule{TInput, TOutput}.AddHook(string, HookFunction, HookDirection, bool)"/> or
/// <see cref="HookedRootModule{TInput, TOutput}.Hooks(HookSpec[])"/> (scoped hooks follow the calling async flow, so
/// they fire while that flow runs the model); <see cref="RunWithCache{TIn, TOut}"/> records the model's and the
/// splice's activations in one cache. Hooks fire with the model's position offset.
/// </para>
/// <para>
/// With <see cref="UseErrorTerm"/> (default) the output is <c>reconstruction + error</c>, where
/// <c>error = x - reconstruction(x)</c> is computed on the clean path (no hooks), as SAELens's <c>use_error_term</c>:
/// an edit of the features changes the output by exactly the edit's effect, and hooks that change nothing give the
/// activation back bit for bit. Without the error term the activation is replaced by the reconstruction.
/// </para>
/// <para>Attach with <see cref="AttachTo{TIn, TOut}"/> (until disposed) or pass <see cref="Spec"/> to a run. The splice
/// does not own the SAE.</para>
/// </summary>
public sealed class SaeSplice : HookedRootModule<Tensor, Tensor>
{
    /// <summary>Suffix of the hook point on the SAE input (after dtype cast, before normalization).</summary>
    public const string InputHook = SaeHookNames.Input;

    /// <summary>Suffix of the hook point on the pre-activations.</summary>
    public const string ActsPreHook = SaeHookNames.ActsPre;

    /// <summary>Suffix of the hook point on the feature activations.</summary>
    public const string ActsPostHook = SaeHookNames.ActsPost;

    /// <summary>Suffix of the hook point on the reconstruction (before the run-time normalization is undone).</summary>
    public const string ReconsHook = SaeHookNames.Recons;

    /// <summary>Suffix of the hook point on the error term (only with <see cref="UseErrorTerm"/>).</summary>
    public const string ErrorHook = SaeHookNames.Error;

    /// <summary>Suffix of the hook point on the splice's output.</summary>
    public const string OutputHook = SaeHookNames.Output;

    internal SaeSplice(SparseAutoencoder sae, bool useErrorTerm)
        : base($"sae_splice:{sae.HookName}")
    {
        Sae = sae;
        UseErrorTerm = useErrorTerm;
        // The SAE's hook points, not registered as a child: disposing the splice must not dispose the SAE.
        SetupHooks(sae);
        Hook = (x, _) => call(x);
    }

    /// <summary>The SAE.</summary>
    public SparseAutoencoder Sae { get; }

    /// <summary>The model hook point the splice replaces (the SAE's <c>hook_name</c>).</summary>
    public string HookName => Sae.HookName;

    /// <summary>Whether the output adds the clean-path error term (default true).</summary>
    public bool UseErrorTerm { get; set; }

    /// <summary>The splice as a hook function for <see cref="HookName"/>.</summary>
    public HookFunction Hook { get; }

    /// <summary>The splice as a hook spec on <see cref="HookName"/>, for <c>RunWithHooks</c>/<c>Hooks</c>/<c>RunWithCache</c>.</summary>
    public HookSpec Spec => HookSpec.ForName(HookName, Hook);

    /// <summary>The full name of one of the splice's hook points, e.g. <c>Name(SaeSplice.ActsPostHook)</c>.</summary>
    public string Name(string suffix) => $"{Sae.HookName}.{suffix}";

    /// <summary>Attaches the splice to the model at <see cref="HookName"/> until the returned handle is disposed.</summary>
    /// <exception cref="HookException">The model has no hook point of that name.</exception>
    public IDisposable AttachTo<TIn, TOut>(HookedRootModule<TIn, TOut> model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.AddHook(HookName, Hook);
    }

    /// <summary>
    /// Runs the model once and records the model's and the splice's activations (names the filter accepts; all when
    /// null) in one cache. With <paramref name="attach"/> the splice is attached for this run only; pass false when it is
    /// already attached with <see cref="AttachTo{TIn, TOut}"/>.
    /// </summary>
    /// <returns>The output and the cache; the caller disposes the cache.</returns>
    public (TOut Output, ActivationCache Cache) RunWithCache<TIn, TOut>(HookedRootModule<TIn, TOut> model, TIn input, Func<string, bool>? namesFilter = null, Device? device = null, bool attach = true)
    {
        ArgumentNullException.ThrowIfNull(model);
        var recorded = new List<(string Name, Tensor Value)>();
        var record = HookNames
            .Where(n => namesFilter is null || namesFilter(n))
            .Select(n => HookSpec.ForName(n, (t, ctx) =>
            {
                var stored = device is null ? t.detach() : t.detach().to(device);
                recorded.Add((ctx.Name, stored.DetachFromDisposeScope()));
                return t;
            }))
            .ToList();
        try
        {
            using (Hooks(record))
            {
                var (output, cache) = model.RunWithCache(input, namesFilter, device, hooks: attach ? [Spec] : []);
                foreach (var (name, value) in recorded)
                {
                    cache.Add(name, value);
                }

                recorded.Clear();
                return (output, cache);
            }
        }
        finally
        {
            foreach (var (_, value) in recorded)
            {
                value.Dispose();
            }
        }
    }

    /// <summary>The splice's computation on one activation (see the class remarks).</summary>
    public override Tensor forward(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        return Sae.Run(x, UseErrorTerm);
    }
}
