using TorchSharp;

namespace LlavaInterp.Hooks;

/// <summary>
/// A hook: receives the activation at a hook point and where it is, returns the activation the model goes on with
/// (the same tensor to pass it through, a modified or a new tensor of the same shape, dtype and device to replace it).
/// </summary>
/// <param name="activation">The activation flowing through the hook point.</param>
/// <param name="context">Which hook point fired and at which absolute position the chunk starts.</param>
/// <returns>The activation to use from here on.</returns>
public delegate torch.Tensor HookFunction(torch.Tensor activation, HookContext context);

/// <summary>When a hook fires. Only forward hooks exist today; the enum keeps room for gradient hooks.</summary>
public enum HookDirection
{
    /// <summary>During the forward pass, on the activation.</summary>
    Forward,

    /// <summary>During the backward pass, on the gradient of the activation (not supported yet).</summary>
    Backward,
}

/// <summary>What a hook knows about the place and run it fires in.</summary>
/// <param name="Name">The hook point's full name, e.g. <c>blocks.12.hook_resid_post</c>.</param>
/// <param name="Layer">The block index the hook point belongs to, or <see langword="null"/> outside blocks.</param>
/// <param name="PositionOffset">
/// Absolute position of the first token in this forward pass: 0 for a full prompt, the cached length during
/// KV-cached decoding (so position <c>p</c> of the activation is token <c>PositionOffset + p</c>).
/// </param>
/// <param name="Direction">Whether this is the forward activation or a gradient.</param>
public sealed record HookContext(string Name, int? Layer, long PositionOffset, HookDirection Direction = HookDirection.Forward);

/// <summary>A hook to attach by exact name or by a predicate over names.</summary>
/// <param name="Filter">Selects hook point names.</param>
/// <param name="Hook">The hook.</param>
/// <param name="Description">How the selection was given, for messages.</param>
public sealed record HookSpec(Func<string, bool> Filter, HookFunction Hook, string Description)
{
    /// <summary>A hook on the hook point of exactly this name.</summary>
    public static HookSpec ForName(string name, HookFunction hook)
    {
        ArgumentNullException.ThrowIfNull(name);
        return new HookSpec(n => n == name, hook, name) { ExactName = name };
    }

    /// <summary>A hook on every hook point whose name the predicate accepts.</summary>
    public static HookSpec ForFilter(Func<string, bool> filter, HookFunction hook) => new(filter, hook, "<filter>");

    /// <summary>The exact name, when the spec was made by name (unknown names are then an error).</summary>
    public string? ExactName { get; init; }

    /// <summary>Lets <c>("blocks.0.hook_resid_pre", hook)</c> stand for a spec.</summary>
    public static implicit operator HookSpec((string Name, HookFunction Hook) pair) => ForName(pair.Name, pair.Hook);
}
