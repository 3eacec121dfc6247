using LlavaInterp.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Sae;

/// <summary>
/// Runs a <see cref="SparseAutoencoder"/> inside any <see cref="HookedRootModule{TInput, TOutput}"/> at the SAE's hook
/// point (SAELens's <c>HookedSAETransformer.add_sae</c>): the activation is replaced by the SAE's output.
/// <para>
/// The splice is itself a small hooked module: its hook points are named <c>{hook}.hook_sae_input</c>,
/// <c>.hook_sae_acts_pre</c>, <c>.hook_sae_acts_post</c>, <c>.hook_sae_recons</c>, <c>.hook_sae_error</c> and
/// <c>.hook_sae_output</c> (e.g. <c>blocks.2.hook_resid_post.hook_sae_acts_post</c>). Hook them on the splice with
/// <see cref="HookedRootModule{TInput, TOutput}.AddHook(string, HookFunction, HookDirection, bool)"/> or
/// <see cref="HookedRootModule{TInput, TOutput}.Hooks(HookSpec[])"/> (scoped hooks follow the calling async flow, so
/// they fire while that flow runs the model); <see cref="RunWithCache{TIn, TOut}"/> records the model's and the
/// splice's activations in one cache. Hooks fire with the model's position offset.
/// </para>
/// <para>
/// With <see cref="UseErrorTerm"/> (default) the output is <c>reconstruction + error</c>, where
/// <c>error = x - reconstruction(x)</c> is computed on the clean path (no hooks), as SAELens's <c>use_error_term</c>:
/// an edit of the features changes the output by exactly the edit's effect. When no hook changes anything the
/// activation is returned unchanged, bit for bit (each hook receives a copy, compared with the clean value afterwards,
/// so in-place edits are seen). Without the error term the activation is replaced by the reconstruction.
/// </para>
/// <para>Attach with <see cref="AttachTo{TIn, TOut}"/> (until disposed) or pass <see cref="Spec"/> to a run. The splice
/// does not own the SAE.</para>
/// </summary>
public sealed class SaeSplice : HookedRootModule<Tensor, Tensor>
{
    /// <summary>Suffix of the hook point on the SAE input (after dtype cast, before normalization).</summary>
    public const string InputHook = "hook_sae_input";

    /// <summary>Suffix of the hook point on the pre-activations.</summary>
    public const string ActsPreHook = "hook_sae_acts_pre";

    /// <summary>Suffix of the hook point on the feature activations.</summary>
    public const string ActsPostHook = "hook_sae_acts_post";

    /// <summary>Suffix of the hook point on the reconstruction (before the run-time normalization is undone).</summary>
    public const string ReconsHook = "hook_sae_recons";

    /// <summary>Suffix of the hook point on the error term (only with <see cref="UseErrorTerm"/>).</summary>
    public const string ErrorHook = "hook_sae_error";

    /// <summary>Suffix of the hook point on the splice's output.</summary>
    public const string OutputHook = "hook_sae_output";

    private readonly HookPoint hook_sae_input;
    private readonly HookPoint hook_sae_acts_pre;
    private readonly HookPoint hook_sae_acts_post;
    private readonly HookPoint hook_sae_recons;
    private readonly HookPoint hook_sae_error;
    private readonly HookPoint hook_sae_output;

    internal SaeSplice(SparseAutoencoder sae, bool useErrorTerm)
        : base($"sae_splice:{sae.HookName}")
    {
        Sae = sae;
        UseErrorTerm = useErrorTerm;
        int layer = sae.HookLayer;
        hook_sae_input = new HookPoint(Name(InputHook), layer);
        hook_sae_acts_pre = new HookPoint(Name(ActsPreHook), layer);
        hook_sae_acts_post = new HookPoint(Name(ActsPostHook), layer);
        hook_sae_recons = new HookPoint(Name(ReconsHook), layer);
        hook_sae_error = new HookPoint(Name(ErrorHook), layer);
        hook_sae_output = new HookPoint(Name(OutputHook), layer);
        RegisterComponents();
        SetupHooks();
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
        using var scope = torch.NewDisposeScope();
        var sae = Sae;
        var flat = sae.Prepare(x, out var shape);

        // Clean path: what the SAE computes with no hooks.
        var saeIn = sae.Center(sae.NormalizeIn(flat, out var norm));
        var pre = sae.PreActivation(saeIn);
        var acts = sae.Activate(pre, saeIn);
        var recons = sae.DecodeRaw(acts);
        var output = SparseAutoencoder.NormalizeOut(recons, norm);

        // Hooked path: recomputed from the first hook that changes its value.
        bool changed = false;
        var input = Fire(hook_sae_input, flat, ref changed);
        if (changed)
        {
            saeIn = sae.Center(sae.NormalizeIn(input, out norm));
            pre = sae.PreActivation(saeIn);
        }

        var hookedPre = Fire(hook_sae_acts_pre, pre, ref changed);
        var actsBase = changed ? sae.Activate(hookedPre, saeIn) : acts;
        var hookedActs = Fire(hook_sae_acts_post, actsBase, ref changed);
        var reconsBase = changed ? sae.DecodeRaw(hookedActs) : recons;
        var hookedRecons = Fire(hook_sae_recons, reconsBase, ref changed);
        var hookedOutput = changed ? SparseAutoencoder.NormalizeOut(hookedRecons, norm) : output;

        Tensor result;
        if (UseErrorTerm)
        {
            var error = Fire(hook_sae_error, flat - output, ref changed);
            result = changed ? hookedOutput + error : flat;
        }
        else
        {
            result = hookedOutput;
        }

        result = SparseAutoencoder.Unflatten(hook_sae_output.call(result), shape);
        if (result.dtype != x.dtype || result.device != x.device)
        {
            result = result.to(x.device).to(x.dtype);
        }

        return result.MoveToOuterDisposeScope();
    }

    // Hooks get a copy so that in-place edits can be detected by comparing with the clean value.
    private static Tensor Fire(HookPoint point, Tensor value, ref bool changed)
    {
        var probe = value.clone();
        var result = point.call(probe);
        if (!changed && !result.allclose(value, rtol: 0, atol: 0, equal_nan: true))
        {
            changed = true;
        }

        return result;
    }
}
