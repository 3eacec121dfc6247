using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>Creates parameters that belong to their module rather than to the caller's dispose scope.</summary>
internal static class OwnedParameter
{
    /// <summary>
    /// Wraps <paramref name="data"/> (consumed) in a parameter without gradient, detached from any dispose scope so
    /// that building or loading a model inside a caller's <c>NewDisposeScope</c> does not dispose its weights.
    /// </summary>
    public static Parameter From(Tensor data) => (Parameter)new Parameter(data, requires_grad: false).DetachFromDisposeScope();
}
