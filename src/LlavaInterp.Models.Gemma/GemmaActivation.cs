using LlavaInterp.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>MLP activations, named as in transformers' <c>ACT2FN</c>.</summary>
public enum GemmaActivation
{
    /// <summary><c>gelu_pytorch_tanh</c>: <c>F.gelu(x, approximate="tanh")</c> (Gemma's default).</summary>
    GeluPytorchTanh,

    /// <summary><c>gelu</c>: exact erf GELU, <c>F.gelu(x)</c>.</summary>
    Gelu,

    /// <summary><c>gelu_new</c>: <c>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c> written out as HF does.</summary>
    GeluNew,

    /// <summary><c>gelu_fast</c>: <c>0.5·x·(1 + tanh(x·0.7978845608·(1 + 0.044715·x·x)))</c>.</summary>
    GeluFast,

    /// <summary><c>quick_gelu</c>: <c>x·sigmoid(1.702·x)</c>.</summary>
    QuickGelu,

    /// <summary><c>relu</c>.</summary>
    Relu,

    /// <summary><c>silu</c> / <c>swish</c>: <c>x·sigmoid(x)</c>.</summary>
    Silu,
}

/// <summary>Parsing and evaluation of <see cref="GemmaActivation"/>.</summary>
public static class GemmaActivations
{
    private static readonly Dictionary<string, GemmaActivation> Names = new(StringComparer.Ordinal)
    {
        ["gelu_pytorch_tanh"] = GemmaActivation.GeluPytorchTanh,
        ["gelu"] = GemmaActivation.Gelu,
        ["gelu_new"] = GemmaActivation.GeluNew,
        ["gelu_fast"] = GemmaActivation.GeluFast,
        ["quick_gelu"] = GemmaActivation.QuickGelu,
        ["relu"] = GemmaActivation.Relu,
        ["silu"] = GemmaActivation.Silu,
        ["swish"] = GemmaActivation.Silu,
    };

    /// <summary>Maps an HF activation name to the enum.</summary>
    /// <param name="name">The <c>hidden_activation</c> value.</param>
    /// <param name="source">The configuration source, for the error message.</param>
    /// <exception cref="ConfigException">The name is not one of the supported activations.</exception>
    public static GemmaActivation Parse(string name, string source)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (Names.TryGetValue(name, out var activation))
        {
            return activation;
        }

        throw new ConfigException(source, "hidden_activation", $"unsupported activation '{name}' (supported: {string.Join(", ", Names.Keys)}).");
    }

    /// <summary>Applies the activation, with HF's operation order so low-precision results round the same way.</summary>
    public static Tensor Apply(this GemmaActivation activation, Tensor x)
    {
        switch (activation)
        {
            case GemmaActivation.GeluPytorchTanh:
                return nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh);
            case GemmaActivation.Gelu:
                return nn.functional.gelu(x);
            case GemmaActivation.GeluNew:
            {
                using var scope = NewDisposeScope();
                var inner = (x + x.pow(3.0) * 0.044715) * Math.Sqrt(2.0 / Math.PI);
                return (x * 0.5 * (inner.tanh() + 1.0)).MoveToOuterDisposeScope();
            }

            case GemmaActivation.GeluFast:
            {
                using var scope = NewDisposeScope();
                var inner = x * 0.7978845608 * (x * 0.044715 * x + 1.0);
                return (x * 0.5 * (inner.tanh() + 1.0)).MoveToOuterDisposeScope();
            }

            case GemmaActivation.QuickGelu:
            {
                using var scope = NewDisposeScope();
                return (x * (x * 1.702).sigmoid()).MoveToOuterDisposeScope();
            }

            case GemmaActivation.Relu:
                return nn.functional.relu(x);
            case GemmaActivation.Silu:
                return nn.functional.silu(x);
            default:
                throw new ArgumentOutOfRangeException(nameof(activation), activation, "unknown activation.");
        }
    }
}
