using LlavaInterp.Configuration;
using LlavaInterp.Models.Clip;
using LlavaInterp.Nn;
using TorchSharp;

namespace LlavaInterp.Tests.Clip;

/// <summary>Approval of every parameter name and shape at the real LLaVA vision tower size, built on the meta device.</summary>
public sealed class ClipVisionArchitectureTests
{
    [Fact]
    public void ClipVitL14At336HasHfParameterNamesShapesAndCount()
    {
        var config = ClipVisionConfig.VitLarge14At336;
        using var model = new HookedClipVisionModel(config, device: torch.device("meta"));

        // Expected from HF CLIPVisionModel's architecture, written out independently of the implementation.
        const long d = 1024, mlp = 4096, patch = 14, channels = 3, positions = (336 / 14) * (336 / 14) + 1;
        var expected = new Dictionary<string, long[]>
        {
            ["vision_model.embeddings.class_embedding"] = [d],
            ["vision_model.embeddings.patch_embedding.weight"] = [d, channels, patch, patch],
            ["vision_model.embeddings.position_embedding.weight"] = [positions, d],
            ["vision_model.pre_layrnorm.weight"] = [d],
            ["vision_model.pre_layrnorm.bias"] = [d],
            ["vision_model.post_layernorm.weight"] = [d],
            ["vision_model.post_layernorm.bias"] = [d],
        };
        for (int i = 0; i < 24; i++)
        {
            string l = $"vision_model.encoder.layers.{i}.";
            foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "out_proj" })
            {
                expected[l + $"self_attn.{proj}.weight"] = [d, d];
                expected[l + $"self_attn.{proj}.bias"] = [d];
            }

            expected[l + "layer_norm1.weight"] = [d];
            expected[l + "layer_norm1.bias"] = [d];
            expected[l + "mlp.fc1.weight"] = [mlp, d];
            expected[l + "mlp.fc1.bias"] = [mlp];
            expected[l + "mlp.fc2.weight"] = [d, mlp];
            expected[l + "mlp.fc2.bias"] = [d];
            expected[l + "layer_norm2.weight"] = [d];
            expected[l + "layer_norm2.bias"] = [d];
        }

        var actual = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, shape) in expected)
        {
            Assert.Equal(shape, actual[name].shape);
            Assert.Equal(DeviceType.META, actual[name].device.type);
        }

        // The state dict holds exactly the parameters (no buffers), so it is what a checkpoint must provide.
        Assert.Equal(expected.Keys.Order(), model.state_dict().Keys.Order());

        long perLayer = 4 * (d * d + d) + 2 * 2 * d + (mlp * d + mlp) + (d * mlp + d);
        long computed = d + d * channels * patch * patch + positions * d + 2 * d + 24 * perLayer + 2 * d;
        long counted = actual.Values.Sum(p => p.numel());
        Assert.Equal(computed, counted);
        Assert.Equal(303_507_456L, counted);
    }

    [Fact]
    public void MetaConstructionAtFullSizeAllocatesNoParameterMemory()
    {
        using var model = new HookedClipVisionModel(ClipVisionConfig.VitLarge14At336, device: torch.device("meta"), dtype: torch.ScalarType.BFloat16);

        Assert.All(model.parameters(), p =>
        {
            Assert.Equal(DeviceType.META, p.device.type);
            Assert.Equal(torch.ScalarType.BFloat16, p.dtype);
        });
        Assert.Equal(24 * 15 + 4, model.HookNames.Count);
    }

    [Fact]
    public void NonFloatingDtypeIsRejected()
    {
        var ex = Assert.Throws<ArgumentException>(() => new HookedClipVisionModel(ClipVisionConfig.VitLarge14At336, device: torch.device("meta"), dtype: torch.ScalarType.Int32));
        Assert.Equal("dtype", ex.ParamName);
    }

    [Fact]
    public void ActivationsFollowTheirHfDefinitions()
    {
        using var scope = torch.NewDisposeScope();
        var x = torch.linspace(-4, 4, 33, dtype: torch.float64);

        var quick = Activation.Get("quick_gelu", "test", "hidden_act").Apply(x);
        Assert.True(quick.allclose(x * torch.sigmoid(1.702 * x), rtol: 0, atol: 0));

        var gelu = Activation.Get("gelu", "test", "hidden_act").Apply(x);
        Assert.True(gelu.allclose(0.5 * x * (1 + torch.special.erf(x / Math.Sqrt(2))), rtol: 1e-12, atol: 1e-12));

        var tanh = Activation.Get("gelu_new", "test", "hidden_act").Apply(x);
        var reference = 0.5 * x * (1 + torch.tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x.pow(3))));
        Assert.True(tanh.allclose(reference, rtol: 1e-12, atol: 1e-12));

        // gelu_new is HF's written-out formula (NewGELUActivation), bit for bit in float32, not the fused tanh kernel.
        var x32 = torch.linspace(-4, 4, 4097, dtype: torch.float32);
        var hf = 0.5 * x32 * (1.0 + torch.tanh(Math.Sqrt(2.0 / Math.PI) * (x32 + (0.044715 * torch.pow(x32, 3.0)))));
        Assert.True(Activation.GeluNew.Apply(x32).eq(hf).all().item<bool>());

        var ex = Assert.Throws<ConfigException>(() => Activation.Get("swiglu", "test.json", "hidden_act"));
        Assert.Equal("hidden_act", ex.Key);
        Assert.Contains("swiglu", ex.Message);
    }
}
