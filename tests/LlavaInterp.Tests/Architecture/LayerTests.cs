using System.Reflection;
using LlavaInterp.Analysis;
using LlavaInterp.Hooks;
using LlavaInterp.Llava;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Sae;
using LlavaInterp.TensorFiles;
using NetArchTest.Rules;

namespace LlavaInterp.Tests.Architecture;

/// <summary>
/// The layers of docs/architecture.md: Core ← Hooks ← {Models.Gemma, Models.Clip} ← Llava; Hooks ← Sae; Llava + Sae ←
/// Analysis. Each library may use only the layers below it.
/// </summary>
public sealed class LayerTests
{
    private static readonly Assembly Core = typeof(SafetensorsFile).Assembly;
    private static readonly Assembly Hooks = typeof(HookPoint).Assembly;
    private static readonly Assembly Gemma = typeof(HookedGemma).Assembly;
    private static readonly Assembly Clip = typeof(HookedClipVisionModel).Assembly;
    private static readonly Assembly Llava = typeof(HookedLlava).Assembly;
    private static readonly Assembly Sae = typeof(SparseAutoencoder).Assembly;
    private static readonly Assembly Analysis = typeof(FeatureAnalyzer).Assembly;

    private static readonly Assembly[] Layers = [Core, Hooks, Gemma, Clip, Llava, Sae, Analysis];

    public static TheoryData<string, string[]> Allowed => new()
    {
        { "LlavaInterp.Core", [] },
        { "LlavaInterp.Hooks", ["LlavaInterp.Core"] },
        { "LlavaInterp.Models.Gemma", ["LlavaInterp.Core", "LlavaInterp.Hooks"] },
        { "LlavaInterp.Models.Clip", ["LlavaInterp.Core", "LlavaInterp.Hooks"] },
        { "LlavaInterp.Llava", ["LlavaInterp.Core", "LlavaInterp.Hooks", "LlavaInterp.Models.Gemma", "LlavaInterp.Models.Clip"] },
        { "LlavaInterp.Sae", ["LlavaInterp.Core", "LlavaInterp.Hooks"] },
        { "LlavaInterp.Analysis", ["LlavaInterp.Core", "LlavaInterp.Hooks", "LlavaInterp.Models.Gemma", "LlavaInterp.Models.Clip", "LlavaInterp.Llava", "LlavaInterp.Sae"] },
    };

    [Theory]
    [MemberData(nameof(Allowed))]
    public void EachLayerReferencesOnlyTheLayersBelowIt(string layer, string[] allowed)
    {
        var assembly = Layers.Single(a => a.GetName().Name == layer);
        var ours = assembly.GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("LlavaInterp", StringComparison.Ordinal));
        Assert.All(ours, name => Assert.Contains(name, allowed));

        // The same rule on the types' own dependencies (namespaces of the layers it must not use).
        var forbidden = Layers.Where(a => a != assembly && !allowed.Contains(a.GetName().Name))
            .SelectMany(NamespacesOf).Except(NamespacesOf(assembly)).Distinct().ToArray();
        var result = Types.InAssembly(assembly).ShouldNot().HaveDependencyOnAny(forbidden).GetResult();
        Assert.True(result.IsSuccessful, $"{layer} uses {string.Join(", ", forbidden)}: {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    [Fact]
    public void TheModelsKnowNothingOfLlava()
    {
        // No LLaVA names in the model layers' public surface (configs, layouts, loaders).
        foreach (var assembly in new[] { Gemma, Clip, Hooks, Core })
        {
            var llavaNamed = assembly.GetExportedTypes().SelectMany(t => t.GetMembers().Select(m => $"{t.Name}.{m.Name}").Prepend(t.Name))
                .Where(n => n.Contains("Llava", StringComparison.OrdinalIgnoreCase)).ToArray();
            Assert.True(llavaNamed.Length == 0, $"{assembly.GetName().Name}: {string.Join(", ", llavaNamed)}");
        }
    }

    [Fact]
    public void HooksHoldNoModelSpecificTypes()
    {
        var result = Types.InAssembly(Hooks).ShouldNot().HaveNameMatching("Gemma|Clip|Llava|Sae").GetResult();
        Assert.True(result.IsSuccessful, string.Join(", ", result.FailingTypeNames ?? []));
    }

    private static IEnumerable<string> NamespacesOf(Assembly assembly) =>
        assembly.GetTypes().Select(t => t.Namespace).OfType<string>().Where(n => n.StartsWith("LlavaInterp", StringComparison.Ordinal)).Distinct();
}
