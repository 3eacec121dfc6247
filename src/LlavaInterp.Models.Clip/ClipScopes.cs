using TorchSharp;

namespace LlavaInterp.Models.Clip;

/// <summary>Dispose-scope helpers for results that may have come back from a hook.</summary>
internal static class ClipScopes
{
    /// <summary>
    /// Hands <paramref name="tensor"/> to the scope outside <paramref name="scope"/>. A hook may return a tensor this scope
    /// does not own (e.g. a cached activation it patches in); that one is aliased instead, so the caller never ends up
    /// owning, and later disposing, a tensor that belongs to someone else.
    /// </summary>
    public static torch.Tensor Return(DisposeScope scope, torch.Tensor tensor) =>
        scope.Contains(tensor) ? tensor.MoveToOuterDisposeScope() : tensor.alias().MoveToOuterDisposeScope();
}
