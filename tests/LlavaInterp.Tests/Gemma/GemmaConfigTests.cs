using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization;
using LlavaInterp.Configuration;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Nn;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Gemma;

public sealed class GemmaConfigTests
{
    /// <summary>google/gemma-2b config.json as published on the Hugging Face hub.</summary>
    internal const string Gemma2bConfigJson = """
        {
          "architectures": ["GemmaForCausalLM"],
          "attention_bias": false,
          "attention_dropout": 0.0,
          "bos_token_id": 2,
          "eos_token_id": 1,
          "head_dim": 256,
          "hidden_act": "gelu",
          "hidden_size": 2048,
          "initializer_range": 0.02,
          "intermediate_size": 16384,
          "max_position_embeddings": 8192,
          "model_type": "gemma",
          "num_attention_heads": 8,
          "num_hidden_layers": 18,
          "num_key_value_heads": 1,
          "pad_token_id": 0,
          "rms_norm_eps": 1e-06,
          "rope_scaling": null,
          "rope_theta": 10000.0,
          "torch_dtype": "bfloat16",
          "transformers_version": "4.38.0.dev0",
          "use_cache": true,
          "vocab_size": 256000
        }
        """;

    [Fact]
    public void FixtureTextConfigBindsEveryKey()
    {
        var path = Path.Combine(Fixture.ModelDir, "config.json");
        var config = LlavaInterp.Llava.LlavaConfig.Load(path).TextConfig;
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        AssertEveryKeyBound(doc.RootElement.GetProperty("text_config"), config);
        Assert.Equal(640, config.VocabSize);
        Assert.Equal(64, config.HiddenSize);
        Assert.Equal(128, config.IntermediateSize);
        Assert.Equal(4, config.NumHiddenLayers);
        Assert.Equal(4, config.NumAttentionHeads);
        Assert.Equal(1, config.NumKeyValueHeads);
        Assert.Equal(16, config.HeadDim);
        Assert.Equal(4, config.KeyValueGroups);
        Assert.Equal(1e-6, config.RmsNormEps);
        Assert.Equal(10000.0, config.RopeTheta);
        Assert.Equal(512, config.MaxPositionEmbeddings);
        Assert.True(config.TieWordEmbeddings);
        Assert.False(config.AttentionBias);
        Assert.Same(Activation.GeluPytorchTanh, config.ResolveActivation());
        Assert.Equal([1], config.EosTokenId!);
        Assert.Equal(2, config.BosTokenId);
        Assert.Equal(0, config.PadTokenId);
        Assert.Equal("float32", config.TorchDType);
        Assert.Equal("gemma", config.ModelType);
    }

    [Fact]
    public void Gemma2bHubConfigBindsEveryKey()
    {
        var config = GemmaConfig.Parse(Gemma2bConfigJson, "gemma-2b/config.json");
        using var doc = JsonDocument.Parse(Gemma2bConfigJson);
        AssertEveryKeyBound(doc.RootElement, config);
        Assert.Equal(256000, config.VocabSize);
        Assert.Equal(2048, config.HiddenSize);
        Assert.Equal(16384, config.IntermediateSize);
        Assert.Equal(18, config.NumHiddenLayers);
        Assert.Equal(8, config.NumAttentionHeads);
        Assert.Equal(1, config.NumKeyValueHeads);
        Assert.Equal(256, config.HeadDim);
        Assert.Equal(8192, config.MaxPositionEmbeddings);
        Assert.Equal("bfloat16", config.TorchDType);
        // gemma-2b states hidden_act "gelu" and no hidden_activation: Gemma v1 ignores hidden_act (HF PR 29402).
        Assert.Equal("gelu", config.HiddenAct);
        Assert.Null(config.HiddenActivation);
        Assert.Same(Activation.GeluPytorchTanh, config.ResolveActivation());
        Assert.True(config.ExtraKeys!.ContainsKey("rope_scaling"));
        Assert.True(config.ExtraKeys.ContainsKey("transformers_version"));
    }

    [Fact]
    public void AbsentKeysTakeTransformers446Defaults()
    {
        var config = GemmaConfig.Parse("{}", "empty");
        Assert.Equal(256000, config.VocabSize);
        Assert.Equal(3072, config.HiddenSize);
        Assert.Equal(24576, config.IntermediateSize);
        Assert.Equal(28, config.NumHiddenLayers);
        Assert.Equal(16, config.NumAttentionHeads);
        Assert.Equal(16, config.NumKeyValueHeads);
        Assert.Equal(256, config.HeadDim);
        Assert.Equal(8192, config.MaxPositionEmbeddings);
        Assert.Equal(1e-6, config.RmsNormEps);
        Assert.Equal(10000.0, config.RopeTheta);
        Assert.True(config.TieWordEmbeddings);
        Assert.False(config.AttentionBias);
        Assert.Equal(0, config.PadTokenId);
        Assert.Equal(2, config.BosTokenId);
        Assert.Equal([1], config.EosTokenId!);
        Assert.Same(Activation.GeluPytorchTanh, config.ResolveActivation());
    }

    [Theory]
    [InlineData("gelu_pytorch_tanh", "gelu_pytorch_tanh")]
    [InlineData("gelu", "gelu")]
    [InlineData("gelu_new", "gelu_new")]
    [InlineData("gelu_fast", "gelu_fast")]
    [InlineData("quick_gelu", "quick_gelu")]
    [InlineData("relu", "relu")]
    [InlineData("silu", "silu")]
    [InlineData("swish", "silu")]
    public void HiddenActivationNamesMap(string name, string expected)
    {
        var config = GemmaConfig.Parse($$"""{"hidden_activation": "{{name}}", "hidden_act": "relu"}""", "test");
        Assert.Equal(expected, config.ResolveActivation().Name);
        Assert.Same(Activation.Get(name, "test", "hidden_activation"), config.ResolveActivation());
    }

    [Fact]
    public void ActivationsComputeTheirFormulas()
    {
        using var scope = NewDisposeScope();
        var x = linspace(-6, 6, 241, ScalarType.Float64);
        var c = Math.Sqrt(2 / Math.PI);
        var erf = special.erf(x / Math.Sqrt(2));
        var expected = new Dictionary<Activation, Tensor>
        {
            [Activation.Gelu] = x * 0.5 * (erf + 1),
            [Activation.GeluPytorchTanh] = x * 0.5 * ((x + x.pow(3) * 0.044715).mul(c).tanh() + 1),
            [Activation.GeluNew] = x * 0.5 * ((x + x.pow(3) * 0.044715).mul(c).tanh() + 1),
            [Activation.GeluFast] = x * 0.5 * ((x * 0.7978845608 * (x * x * 0.044715 + 1)).tanh() + 1),
            [Activation.QuickGelu] = x * (x * 1.702).sigmoid(),
            [Activation.Relu] = x.clamp_min(0),
            [Activation.Silu] = x * x.sigmoid(),
        };
        Assert.Equal(expected.Count + 1, Activation.SupportedNames.Count); // + the swish alias
        foreach (var (activation, reference) in expected)
        {
            TensorAssert.Close(reference, activation.Apply(x.to(ScalarType.Float32)), 1e-6, 1e-6, activation.ToString());
        }

        // The two tanh forms are not the same function: a mix-up would show here.
        Assert.False(Activation.Gelu.Apply(x).allclose(Activation.GeluPytorchTanh.Apply(x), 1e-6, 1e-6));
    }

    [Fact]
    public void UnknownActivationIsAConfigError()
    {
        var error = Assert.Throws<ConfigException>(() => GemmaConfig.Parse("""{"hidden_activation": "gelu_10"}""", "cfg.json"));
        Assert.Equal("hidden_activation", error.Key);
        Assert.Contains("gelu_10", error.Message);
    }

    [Fact]
    public void EosTokenIdAcceptsAList()
    {
        var config = GemmaConfig.Parse("""{"eos_token_id": [1, 107], "pad_token_id": null}""", "cfg.json");
        Assert.Equal([1, 107], config.EosTokenId!);
        Assert.Null(config.PadTokenId);
    }

    [Theory]
    [InlineData("""{"model_type": "llama"}""", "model_type")]
    [InlineData("""{"num_attention_heads": 8, "num_key_value_heads": 3}""", "num_key_value_heads")]
    [InlineData("""{"head_dim": 15}""", "head_dim")]
    [InlineData("""{"hidden_size": 0}""", "hidden_size")]
    [InlineData("""{"rms_norm_eps": -1}""", "rms_norm_eps")]
    [InlineData("""{"vocab_size": 10, "pad_token_id": 10}""", "pad_token_id")]
    [InlineData("""{"model_type": "llava"}""", "model_type")]
    [InlineData("""{"model_type": "llava", "text_config": {"model_type": "llama"}}""", "model_type")]
    public void InvalidConfigsNameTheKey(string json, string key)
    {
        var error = Assert.Throws<ConfigException>(() => GemmaConfig.Parse(json, "cfg.json"));
        Assert.Equal(key, error.Key);
    }

    [Fact]
    public void MalformedJsonAndWrongTypesAreConfigErrors()
    {
        Assert.Throws<ConfigException>(() => GemmaConfig.Parse("""{"hidden_size": "big"}""", "cfg.json"));
        Assert.Throws<ConfigException>(() => GemmaConfig.Parse("""{"hidden_size": 64""", "cfg.json"));
        Assert.Throws<ConfigException>(() => GemmaConfig.Parse("[]", "cfg.json"));
        using var dir = new TempDir();
        Assert.Throws<ConfigException>(() => GemmaConfig.Load(dir.File("config.json")));
    }

    /// <summary>Every key of the JSON object is either bound to a property with the same value or kept in ExtraKeys.</summary>
    private static void AssertEveryKeyBound(JsonElement json, GemmaConfig config)
    {
        var bound = typeof(GemmaConfig).GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Select(p => (Property: p, Name: p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name))
            .Where(p => p.Name is not null)
            .ToDictionary(p => p.Name!, p => p.Property);
        foreach (var item in json.EnumerateObject())
        {
            if (bound.TryGetValue(item.Name, out var property))
            {
                var value = property.GetValue(config);
                var serialized = JsonSerializer.SerializeToElement(value, property.PropertyType, HfConfigLoader.Options);
                if (property.Name == nameof(GemmaConfig.EosTokenId) && serialized.ValueKind == JsonValueKind.Array && item.Value.ValueKind == JsonValueKind.Number)
                {
                    serialized = serialized[0];
                }

                Assert.True(JsonEquals(item.Value, serialized), $"key '{item.Name}': file has {item.Value}, bound {serialized}");
            }
            else
            {
                Assert.True(config.ExtraKeys is not null && config.ExtraKeys.ContainsKey(item.Name), $"key '{item.Name}' was dropped");
            }
        }
    }

    private static bool JsonEquals(JsonElement a, JsonElement b)
    {
        if (a.ValueKind == JsonValueKind.Number && b.ValueKind == JsonValueKind.Number)
        {
            return a.GetDouble() == b.GetDouble();
        }

        if (a.ValueKind != b.ValueKind)
        {
            return false;
        }

        return a.ValueKind switch
        {
            JsonValueKind.Array => a.GetArrayLength() == b.GetArrayLength() && a.EnumerateArray().Zip(b.EnumerateArray()).All(p => JsonEquals(p.First, p.Second)),
            JsonValueKind.String => a.GetString() == b.GetString(),
            _ => a.GetRawText() == b.GetRawText(),
        };
    }
}
