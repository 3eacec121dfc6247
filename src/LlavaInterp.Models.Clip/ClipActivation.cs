using TorchSharp;

namespace LlavaInterp.Models.Clip;

/// <summary>The MLP activations a CLIP config may name in <c>hidden_act</c>, as transformers' <c>ACT2FN</c> defines them.</summary>
public static class ClipActivation
{
    private static readonly Dictionary<string, Func<torch.Tensor, torch.Tensor>> ByName = new(StringComparer.Ordinal)
    {
        // QuickGELUActivation: x * sigmoid(1.702 x), in that order of operations.
        ["quick_gelu"] = x =>
        {
            using var scaled = x * 1.702;
            using var gate = torch.sigmoid(scaled);
            return x * gate;
        },

        // Exact (erf) GELU.
        ["gelu"] = x => torch.nn.functional.gelu(x),

        // Both are the tanh approximation; HF evaluates gelu_new with its own formula, equal up to float rounding.
        ["gelu_new"] = x => torch.nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        ["gelu_pytorch_tanh"] = x => torch.nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh),
        ["relu"] = x => torch.nn.functional.relu(x),
        ["silu"] = x => torch.nn.functional.silu(x),
        ["swish"] = x => torch.nn.functional.silu(x),
    };

    /// <summary>Every supported <c>hidden_act</c> name.</summary>
    public static IReadOnlyCollection<string> SupportedNames => ByName.Keys;

    /// <summary>Whether <paramref name="name"/> is a supported <c>hidden_act</c>.</summary>
    public static bool IsSupported(string? name) => name is not null && ByName.ContainsKey(name);

    /// <summary>The activation function for a <c>hidden_act</c> name.</summary>
    /// <exception cref="ArgumentException">The name is not supported.</exception>
    public static Func<torch.Tensor, torch.Tensor> Get(string name) =>
        name is not null && ByName.TryGetValue(name, out var f)
            ? f
            : throw new ArgumentException($"hidden_act '{name}' is not supported (supported: {string.Join(", ", ByName.Keys)}).", nameof(name));
}
