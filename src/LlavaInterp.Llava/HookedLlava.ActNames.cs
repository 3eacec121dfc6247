using LlavaInterp.Hooks;
using LlavaInterp.Models.Gemma;

namespace LlavaInterp.Llava;

public sealed partial class HookedLlava : IActNameResolver
{
    /// <summary>
    /// TransformerLens short names for the language model's hook points (<c>blocks.N.…</c>, see <see cref="GemmaActNames"/>);
    /// vision hooks keep their full <c>vision.</c> names.
    /// </summary>
    /// <inheritdoc cref="GemmaActNames.GetActName"/>
    public string GetActName(string name, int? layer = null, string? layerType = null) => GemmaActNames.GetActName(name, layer, layerType);
}
