using LlavaInterp.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Nn;

/// <summary>
/// An MLP activation named as in transformers' <c>ACT2FN</c> table (<c>hidden_act</c>, <c>hidden_activation</c>,
/// <c>projector_hidden_act</c>). Each is evaluated with HF's order of operations, so low-precision results round the
/// same way as in HF.
/// </summary>
public sealed class Activation
{
    // One table for every model: the name a config may give → the function HF's ACT2FN builds for it.
    private static readonly Dictionary<string, Activation> ByName = new(StringComparer.Ordinal);

    private readonly Func<Tensor, Tensor> _apply;

    private Activation(string name, Func<Tensor, Tensor> apply)
    {
        Name = name;
        _apply = apply;
    }

    /// <summary><c>gelu</c>: exact (erf) GELU, <c>F.gelu(x)</c>.</summary>
    public static Activation Gelu { get; } = Register("gelu", x => nn.functional.gelu(x));

    /// <summary><c>gelu_pytorch_tanh</c>: <c>F.gelu(x, approximate="tanh")</c> (Gemma's default).</summary>
    public static Activation GeluPytorchTanh { get; } = Register("gelu_pytorch_tanh", x => nn.functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh));

    /// <summary><c>gelu_new</c>: <c>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c>, written out as HF's <c>NewGELUActivation</c>
    /// (not the fused tanh kernel, which rounds differently).</summary>
    public static Activation GeluNew { get; } = Register("gelu_new", x =>
    {
        using var scope = NewDisposeScope();
        var inner = (x + (x.pow(3.0) * 0.044715)) * Math.Sqrt(2.0 / Math.PI);
        return (x * 0.5 * (inner.tanh() + 1.0)).MoveToOuterDisposeScope();
    });

    /// <summary><c>gelu_fast</c>: <c>0.5·x·(1 + tanh(x·0.7978845608·(1 + 0.044715·x·x)))</c> (HF's <c>FastGELUActivation</c>).</summary>
    public static Activation GeluFast { get; } = Register("gelu_fast", x =>
    {
        using var scope = NewDisposeScope();
        var inner = x * 0.7978845608 * ((x * 0.044715 * x) + 1.0);
        return (x * 0.5 * (inner.tanh() + 1.0)).MoveToOuterDisposeScope();
    });

    /// <summary><c>quick_gelu</c>: <c>x·sigmoid(1.702·x)</c> (CLIP's activation).</summary>
    public static Activation QuickGelu { get; } = Register("quick_gelu", x =>
    {
        using var scaled = x * 1.702;
        using var gate = scaled.sigmoid();
        return x * gate;
    });

    /// <summary><c>relu</c>.</summary>
    public static Activation Relu { get; } = Register("relu", x => nn.functional.relu(x));

    /// <summary><c>silu</c>, also named <c>swish</c>: <c>x·sigmoid(x)</c>.</summary>
    public static Activation Silu { get; } = Register(["silu", "swish"], x => nn.functional.silu(x));

    /// <summary>Every name a configuration may use.</summary>
    public static IReadOnlyCollection<string> SupportedNames => ByName.Keys;

    /// <summary>The canonical <c>ACT2FN</c> name (<c>swish</c> resolves to <c>silu</c>).</summary>
    public string Name { get; }

    /// <summary>Whether <paramref name="name"/> names a supported activation.</summary>
    public static bool IsSupported(string? name) => name is not null && ByName.ContainsKey(name);

    /// <summary>The activation a configuration names.</summary>
    /// <param name="name">The configured name, e.g. <c>quick_gelu</c>.</param>
    /// <param name="source">The configuration source (file path or type), for the error message.</param>
    /// <param name="key">The configuration key the name came from, e.g. <c>hidden_act</c>.</param>
    /// <exception cref="ConfigException">The name is null or not supported; the exception names <paramref name="key"/>.</exception>
    public static Activation Get(string? name, string source, string key) =>
        name is not null && ByName.TryGetValue(name, out var activation)
            ? activation
            : throw new ConfigException(source, key, $"unsupported activation '{name ?? "null"}' (supported: {string.Join(", ", ByName.Keys)}).");

    /// <summary>Applies the activation elementwise; the result is a new tensor in the input's dtype.</summary>
    public Tensor Apply(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        return _apply(x);
    }

    /// <inheritdoc/>
    public override string ToString() => Name;

    private static Activation Register(string name, Func<Tensor, Tensor> apply) => Register([name], apply);

    private static Activation Register(string[] names, Func<Tensor, Tensor> apply)
    {
        var activation = new Activation(names[0], apply);
        foreach (var name in names)
        {
            ByName.Add(name, activation);
        }

        return activation;
    }
}
