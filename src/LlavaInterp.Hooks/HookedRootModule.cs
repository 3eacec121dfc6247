using TorchSharp;

namespace LlavaInterp.Hooks;

/// <summary>
/// A model whose hook points can be found by name and hooked, TransformerLens-style.
/// Hooks added with <see cref="AddHook(string, HookFunction, HookDirection, bool)"/> belong to the model and fire in
/// every run until removed; hooks given to <see cref="Hooks(HookSpec[])"/>, <see cref="RunWithHooks"/> and
/// <see cref="RunWithCache"/> belong to the calling async flow only and never fire in a run on another thread.
/// </summary>
/// <typeparam name="TInput">The forward input.</typeparam>
/// <typeparam name="TOutput">The forward output.</typeparam>
public abstract class HookedRootModule<TInput, TOutput> : torch.nn.Module<TInput, TOutput>
{
    private Dictionary<string, HookPoint> _hookDict = new(StringComparer.Ordinal);
    private List<string> _hookNames = new();
    private int _disposed;

    /// <summary>Creates the root module.</summary>
    /// <param name="name">Module name.</param>
    protected HookedRootModule(string name)
        : base(name)
    {
    }

    /// <summary>Whether the model has been disposed (directly, or with a model that holds it).</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>
    /// Throws <see cref="ObjectDisposedException"/> once the model is disposed. A derived model calls it first in
    /// <c>forward</c> and every public method that reads its weights: they are freed native handles by then, and
    /// TorchSharp's own error ("empty handle") would not say why.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    protected void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, this);

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Volatile.Write(ref _disposed, 1);
        }

        base.Dispose(disposing);
    }

    /// <summary>Every hook point name, in module order.</summary>
    public IReadOnlyList<string> HookNames => _hookNames;

    /// <summary>Every hook point by name.</summary>
    public IReadOnlyDictionary<string, HookPoint> HookDict => _hookDict;

    /// <summary>
    /// Finds every <see cref="HookPoint"/> below this module. Call at the end of the derived constructor, after
    /// <c>RegisterComponents()</c>.
    /// </summary>
    /// <exception cref="InvalidOperationException">Two hook points share a name.</exception>
    protected void SetupHooks() => SetupHooks(this);

    /// <summary>
    /// Indexes the hook points of <paramref name="source"/>'s module tree instead of this module's: for a root that runs
    /// another module it does not own (and so does not register as a child, which would dispose it).
    /// </summary>
    protected void SetupHooks(torch.nn.Module source)
    {
        ArgumentNullException.ThrowIfNull(source);
        var dict = new Dictionary<string, HookPoint>(StringComparer.Ordinal);
        var names = new List<string>();
        foreach (var module in DepthFirst(source))
        {
            if (module is HookPoint point)
            {
                if (!dict.TryAdd(point.Name, point))
                {
                    throw new InvalidOperationException($"Two hook points are named '{point.Name}'.");
                }

                names.Add(point.Name);
            }
        }

        _hookDict = dict;
        _hookNames = names;
    }

    // TorchSharp's modules() lists all children before any grandchild; PyTorch order (pre-order depth first) keeps
    // hook names in execution order when a module holds hook points both directly and inside its children.
    private static IEnumerable<torch.nn.Module> DepthFirst(torch.nn.Module module)
    {
        foreach (var (_, child) in module.named_children())
        {
            yield return child;
            foreach (var descendant in DepthFirst(child))
            {
                yield return descendant;
            }
        }
    }

    /// <summary>The hook point of that name.</summary>
    /// <exception cref="HookException">No hook point has that name (the message suggests close names).</exception>
    public HookPoint GetHookPoint(string name)
    {
        if (_hookDict.TryGetValue(name, out var point))
        {
            return point;
        }

        var close = _hookNames.Where(n => n.EndsWith(name.Split('.').Last(), StringComparison.Ordinal)).Take(5).ToList();
        throw new HookException(name, close.Count > 0
            ? $"no such hook point. Similar: {string.Join(", ", close)}."
            : $"no such hook point. This model has {_hookNames.Count} hook points, e.g. {string.Join(", ", _hookNames.Take(5))}.");
    }

    /// <summary>Attaches a hook to the model at one hook point; it fires in every run until removed or reset.</summary>
    /// <param name="name">Hook point name.</param>
    /// <param name="hook">The hook.</param>
    /// <param name="direction">Forward (backward hooks are not supported yet).</param>
    /// <param name="permanent">Permanent hooks survive <see cref="ResetHooks"/> unless it includes them.</param>
    /// <returns>A handle that removes the hook when disposed.</returns>
    public IDisposable AddHook(string name, HookFunction hook, HookDirection direction = HookDirection.Forward, bool permanent = false)
    {
        ArgumentNullException.ThrowIfNull(hook);
        ThrowIfDisposed();
        CheckDirection(direction, name);
        var point = GetHookPoint(name);
        point.AddModelHook(hook, permanent);
        return new ModelHookHandle([point], hook);
    }

    /// <summary>Attaches a hook to the model at every hook point whose name the predicate accepts.</summary>
    /// <returns>A handle that removes the hooks when disposed.</returns>
    public IDisposable AddHook(Func<string, bool> filter, HookFunction hook, HookDirection direction = HookDirection.Forward, bool permanent = false)
    {
        ArgumentNullException.ThrowIfNull(filter);
        ArgumentNullException.ThrowIfNull(hook);
        ThrowIfDisposed();
        CheckDirection(direction, "<filter>");
        var points = _hookNames.Where(filter).Select(n => _hookDict[n]).ToList();
        foreach (var p in points)
        {
            p.AddModelHook(hook, permanent);
        }

        return new ModelHookHandle(points, hook);
    }

    /// <summary>Removes the hooks attached with <c>AddHook</c>; permanent ones only when asked.</summary>
    public void ResetHooks(bool includePermanent = false)
    {
        foreach (var p in _hookDict.Values)
        {
            p.ClearModelHooks(includePermanent);
        }
    }

    /// <summary>
    /// Attaches hooks for the calling async flow until the returned scope is disposed. Runs on other threads do not see them.
    /// </summary>
    /// <exception cref="HookException">A hook given by name names no hook point.</exception>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    public IDisposable Hooks(params HookSpec[] hooks) => Hooks((IEnumerable<HookSpec>)hooks);

    /// <inheritdoc cref="Hooks(HookSpec[])"/>
    public IDisposable Hooks(IEnumerable<HookSpec> hooks)
    {
        ArgumentNullException.ThrowIfNull(hooks);
        ThrowIfDisposed();
        var pairs = new List<(HookPoint, HookFunction)>();
        foreach (var spec in hooks)
        {
            if (spec.ExactName is not null)
            {
                pairs.Add((GetHookPoint(spec.ExactName), spec.Hook));
                continue;
            }

            foreach (var name in _hookNames)
            {
                if (spec.Filter(name))
                {
                    pairs.Add((_hookDict[name], spec.Hook));
                }
            }
        }

        return HookScope.Push(pairs);
    }

    /// <summary>Runs the model once with extra hooks that apply to this run only.</summary>
    public TOutput RunWithHooks(TInput input, params HookSpec[] hooks)
    {
        using (Hooks(hooks))
        {
            return call(input);
        }
    }

    /// <summary>
    /// Runs the model once and records the activation at every hook point the filter accepts (all when null).
    /// </summary>
    /// <param name="input">The forward input.</param>
    /// <param name="namesFilter">Which hook points to record; <see langword="null"/> records all.</param>
    /// <param name="device">Move recorded activations here; <see langword="null"/> keeps them where they are.</param>
    /// <param name="stopAtLayer">Run blocks <c>0 .. stopAtLayer-1</c> only and return the residual stream (TransformerLens semantics).</param>
    /// <param name="hooks">Extra hooks for this run; they fire before the recording hooks of the same hook point
    /// were added, so the cache sees what they return.</param>
    /// <returns>The output and the cache; the caller disposes the cache.</returns>
    public (TOutput Output, ActivationCache Cache) RunWithCache(TInput input, Func<string, bool>? namesFilter = null, torch.Device? device = null, int? stopAtLayer = null, IEnumerable<HookSpec>? hooks = null)
    {
        ThrowIfDisposed();
        var cache = new ActivationCache { Naming = (this as IActNameResolver) is { } names ? names.GetActName : null };
        var record = new List<HookSpec>();
        foreach (var name in _hookNames)
        {
            if (namesFilter is null || namesFilter(name))
            {
                record.Add(HookSpec.ForName(name, (x, ctx) =>
                {
                    var stored = device is null ? x.detach() : x.detach().to(device);
                    cache.Add(ctx.Name, stored.DetachFromDisposeScope());
                    return x;
                }));
            }
        }

        try
        {
            var run = stopAtLayer is int stop ? WithStopAtLayer(input, stop) : input;
            using (Hooks(hooks ?? []))
            using (Hooks(record))
            {
                return (call(run), cache);
            }
        }
        catch
        {
            cache.Dispose();
            throw;
        }
    }

    /// <summary>Returns the input changed so that the forward stops before block <paramref name="stopAtLayer"/>.</summary>
    /// <exception cref="NotSupportedException">This model cannot stop early.</exception>
    protected virtual TInput WithStopAtLayer(TInput input, int stopAtLayer) =>
        throw new NotSupportedException($"{GetType().Name} does not support stopAtLayer.");

    private static void CheckDirection(HookDirection direction, string name)
    {
        if (direction != HookDirection.Forward)
        {
            throw new HookException(name, "backward (gradient) hooks are not supported yet.");
        }
    }

    private sealed class ModelHookHandle(IReadOnlyList<HookPoint> points, HookFunction hook) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                foreach (var p in points)
                {
                    p.RemoveModelHook(hook);
                }
            }
        }
    }
}
