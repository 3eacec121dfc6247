using System.Collections.Immutable;
using TorchSharp;

namespace LlavaInterp.Hooks;

/// <summary>
/// An identity module placed where TransformerLens places its hook points. It knows its full dotted name.
/// With no hook attached anywhere it costs one branch.
/// </summary>
public sealed class HookPoint : torch.nn.Module<torch.Tensor, torch.Tensor>
{
    private readonly object _lock = new();
    private ImmutableArray<(HookFunction Hook, bool Permanent)> _modelHooks = ImmutableArray<(HookFunction, bool)>.Empty;

    /// <summary>Creates a hook point.</summary>
    /// <param name="name">Full hook name, e.g. <c>blocks.3.attn.hook_pattern</c>.</param>
    /// <param name="layer">Block index, or <see langword="null"/> outside blocks.</param>
    public HookPoint(string name, int? layer = null)
        : base(name)
    {
        Name = name;
        Layer = layer;
    }

    /// <summary>Full hook name.</summary>
    public string Name { get; }

    /// <summary>Block index, or <see langword="null"/> outside blocks.</summary>
    public int? Layer { get; }

    /// <summary>Whether any model-level hook is attached here (scoped hooks are not counted).</summary>
    public bool HasModelHooks => !_modelHooks.IsEmpty;

    /// <summary>
    /// Whether a hook would fire here now: a model hook, or a hook of a scope open in the calling flow. Lets a module skip
    /// work that only hooks could change, or take a fused path that never materialises this activation.
    /// </summary>
    public bool IsHooked => !_modelHooks.IsEmpty || (HookScope.AnyActive && !HookScope.HooksFor(this).IsEmpty);

    /// <inheritdoc/>
    public override torch.Tensor forward(torch.Tensor input)
    {
        if (_modelHooks.IsEmpty && !HookScope.AnyActive)
        {
            return input;
        }

        return Fire(input);
    }

    private torch.Tensor Fire(torch.Tensor input)
    {
        var model = _modelHooks;
        var scoped = HookScope.HooksFor(this);
        if (model.IsEmpty && scoped.IsEmpty)
        {
            return input;
        }

        var context = new HookContext(Name, Layer, HookRun.PositionOffset);
        var x = input;
        foreach (var (hook, _) in model)
        {
            x = Invoke(hook, x, context);
        }

        foreach (var hook in scoped)
        {
            x = Invoke(hook, x, context);
        }

        return x;
    }

    private torch.Tensor Invoke(HookFunction hook, torch.Tensor x, HookContext context)
    {
        torch.Tensor result;
        try
        {
            result = hook(x, context);
        }
        catch (HookException)
        {
            throw;
        }
        catch (Exception ex)
        {
            throw new HookException(Name, $"the hook threw {ex.GetType().Name}: {ex.Message}", ex);
        }

        if (result is null)
        {
            throw new HookException(Name, "the hook returned null; return the activation to pass it through.");
        }

        if (ReferenceEquals(result, x))
        {
            return result;
        }

        if (!result.shape.SequenceEqual(x.shape))
        {
            throw new HookException(Name, $"the hook returned shape [{string.Join(", ", result.shape)}] but the activation has shape [{string.Join(", ", x.shape)}].");
        }

        // Another dtype would be promoted silently downstream (or fail deep inside a kernel), another device fails far
        // from the hook: both are the hook's mistake, so say so here.
        if (result.dtype != x.dtype)
        {
            throw new HookException(Name, $"the hook returned dtype {result.dtype} but the activation has dtype {x.dtype}; convert it with .to(activation.dtype).");
        }

        if (result.device_type != x.device_type || result.device_index != x.device_index)
        {
            throw new HookException(Name, $"the hook returned a tensor on device {result.device} but the activation is on {x.device}.");
        }

        return result;
    }

    internal void AddModelHook(HookFunction hook, bool permanent)
    {
        lock (_lock)
        {
            _modelHooks = _modelHooks.Add((hook, permanent));
        }
    }

    internal bool RemoveModelHook(HookFunction hook)
    {
        lock (_lock)
        {
            int index = _modelHooks.IndexOf(_modelHooks.FirstOrDefault(h => ReferenceEquals(h.Hook, hook)));
            if (index < 0 || !ReferenceEquals(_modelHooks[index].Hook, hook))
            {
                return false;
            }

            _modelHooks = _modelHooks.RemoveAt(index);
            return true;
        }
    }

    internal void ClearModelHooks(bool includePermanent)
    {
        lock (_lock)
        {
            _modelHooks = includePermanent ? ImmutableArray<(HookFunction, bool)>.Empty : _modelHooks.RemoveAll(h => !h.Permanent);
        }
    }
}
