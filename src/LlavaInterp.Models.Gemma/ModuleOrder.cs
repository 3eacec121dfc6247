using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>Module enumeration in PyTorch's order.</summary>
internal static class ModuleOrder
{
    /// <summary>
    /// Pre-order depth-first enumeration of descendants, as PyTorch's <c>named_modules</c> (TorchSharp's default
    /// lists all children before any grandchild). Used where a module holds hook points both directly and in children,
    /// so that hook names come out in execution order.
    /// </summary>
    public static IEnumerable<(string Name, nn.Module Module)> DepthFirst(nn.Module module)
    {
        foreach (var (name, child) in module.named_children())
        {
            yield return (name, child);
            foreach (var (subName, sub) in child.named_modules())
            {
                yield return ($"{name}.{subName}", sub);
            }
        }
    }
}
