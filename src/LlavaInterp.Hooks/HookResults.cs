using TorchSharp;

namespace LlavaInterp.Hooks;

/// <summary>Dispose-scope handling for tensors that may have come back from a hook.</summary>
public static class HookResults
{
    /// <summary>
    /// Hands <paramref name="tensor"/> to the scope outside <paramref name="scope"/>. A hook may return a tensor this scope
    /// does not own (e.g. a cached activation it patches in); that one is aliased instead, so the caller never ends up
    /// owning, and later disposing, a tensor that belongs to someone else.
    /// </summary>
    /// <param name="scope">The forward pass's dispose scope.</param>
    /// <param name="tensor">The result, possibly returned by a hook.</param>
    /// <returns>A tensor the caller owns.</returns>
    public static torch.Tensor ReturnFrom(DisposeScope scope, torch.Tensor tensor) =>
        scope.Contains(tensor) ? tensor.MoveToOuterDisposeScope() : tensor.alias().MoveToOuterDisposeScope();
}
