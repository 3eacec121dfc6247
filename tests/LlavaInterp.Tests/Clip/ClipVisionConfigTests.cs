using System.Text.Json;
using LlavaInterp.Configuration;
using LlavaInterp.Models.Clip;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Clip;

public sealed class ClipVisionConfigTests
{
    // Keys of an HF CLIPVisionConfig that the vision tower's numerics or shapes depend on: none may end up unbound.
    private static readonly string[] ModelKeys =
    [
        "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads", "num_channels",
        "image_size", "patch_size", "hidden_act", "layer_norm_eps", "attention_dropout", "initializer_range",
        "initializer_factor", "model_type",
    ];

    // The vision_config that transformers saves for CLIP ViT-L/14 at 336 px inside a LLaVA config.json (diff from
    // CLIPVisionConfig defaults only, as save_pretrained writes it).
    private const string ClipL14At336Json = """
        {
          "hidden_size": 1024,
          "image_size": 336,
          "intermediate_size": 4096,
          "model_type": "clip_vision_model",
          "num_attention_heads": 16,
          "num_hidden_layers": 24,
          "patch_size": 14,
          "projection_dim": 768
        }
        """;

    [Fact]
    public void BindsTheFixtureLlavaVisionConfig()
    {
        var config = ClipVisionConfig.Load(TinyClip.ConfigPath);

        Assert.Equal("clip_vision_model", config.ModelType);
        Assert.Equal(32, config.HiddenSize);
        Assert.Equal(64, config.IntermediateSize);
        Assert.Equal(3, config.NumHiddenLayers);
        Assert.Equal(4, config.NumAttentionHeads);
        Assert.Equal(3, config.NumChannels);
        Assert.Equal(32, config.ImageSize);
        Assert.Equal(8, config.PatchSize);
        Assert.Equal("quick_gelu", config.HiddenAct);
        Assert.Equal(1e-5, config.LayerNormEps);
        Assert.Equal(32, config.ProjectionDim);
        Assert.Equal(8, config.HeadDim);
        Assert.Equal(4, config.GridSize);
        Assert.Equal(16, config.NumPatches);
        Assert.Equal(17, config.NumPositions);
    }

    [Fact]
    public void NestedBindingMatchesTheManifestAndKeepsEveryKey()
    {
        var element = Fixture.Manifest.GetProperty("checkpoint").GetProperty("config").GetProperty("vision_config");
        var config = ClipVisionConfig.FromJson(element, "manifest#vision_config");

        var m = Fixture.Manifest.GetProperty("model").GetProperty("vision");
        Assert.Equal(m.GetProperty("hidden_size").GetInt32(), config.HiddenSize);
        Assert.Equal(m.GetProperty("intermediate_size").GetInt32(), config.IntermediateSize);
        Assert.Equal(m.GetProperty("num_hidden_layers").GetInt32(), config.NumHiddenLayers);
        Assert.Equal(m.GetProperty("num_attention_heads").GetInt32(), config.NumAttentionHeads);
        Assert.Equal(m.GetProperty("image_size").GetInt32(), config.ImageSize);
        Assert.Equal(m.GetProperty("patch_size").GetInt32(), config.PatchSize);
        Assert.Equal(m.GetProperty("layer_norm_eps").GetDouble(), config.LayerNormEps);
        Assert.Equal(m.GetProperty("hidden_act").GetString(), config.HiddenAct);
        Assert.Equal(m.GetProperty("projection_dim").GetInt32(), config.ProjectionDim);

        // Nothing is silently lost: every key is either bound or kept, and no model key is left unbound.
        var extra = config.ExtraKeys ?? [];
        foreach (var key in element.EnumerateObject().Select(p => p.Name))
        {
            Assert.True(ModelKeys.Contains(key) || extra.ContainsKey(key), $"key '{key}' was dropped");
        }

        Assert.DoesNotContain(ModelKeys, extra.ContainsKey);
        Assert.True(extra.ContainsKey("id2label"));
    }

    [Fact]
    public void BindsClipVitL14At336WithHfDefaultsForAbsentKeys()
    {
        var config = ClipVisionConfig.Parse(ClipL14At336Json);

        Assert.Equal(1024, config.HiddenSize);
        Assert.Equal(4096, config.IntermediateSize);
        Assert.Equal(24, config.NumHiddenLayers);
        Assert.Equal(16, config.NumAttentionHeads);
        Assert.Equal(336, config.ImageSize);
        Assert.Equal(14, config.PatchSize);
        Assert.Equal(768, config.ProjectionDim);
        Assert.Equal("quick_gelu", config.HiddenAct);
        Assert.Equal(1e-5, config.LayerNormEps);
        Assert.Equal(3, config.NumChannels);
        Assert.Equal(64, config.HeadDim);
        Assert.Equal(577, config.NumPositions);
        Assert.Null(config.ExtraKeys);

        // The same values as transformers' LlavaConfig fallback for an absent vision_config.
        Assert.Equal(ClipVisionConfig.VitLarge14At336 with { ExtraKeys = null }, config);
    }

    [Fact]
    public void FullOpenAiStyleVisionConfigBindsEveryModelKeyAndKeepsTheRest()
    {
        const string json = """
            {
              "attention_dropout": 0.0, "dropout": 0.0, "hidden_act": "quick_gelu", "hidden_size": 1024,
              "image_size": 336, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 4096,
              "layer_norm_eps": 1e-05, "model_type": "clip_vision_model", "num_attention_heads": 16, "num_channels": 3,
              "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768, "torch_dtype": "float16"
            }
            """;
        var config = ClipVisionConfig.Parse(json);

        Assert.Equal(1024, config.HiddenSize);
        Assert.Equal(24, config.NumHiddenLayers);
        Assert.Equal(0.02, config.InitializerRange);
        Assert.Equal(["dropout", "torch_dtype"], config.ExtraKeys!.Keys.Order().ToArray());
    }

    [Fact]
    public void EmptyObjectGivesHfClipVisionConfigDefaults()
    {
        var config = ClipVisionConfig.Parse("{}");

        Assert.Equal(768, config.HiddenSize);
        Assert.Equal(3072, config.IntermediateSize);
        Assert.Equal(512, config.ProjectionDim);
        Assert.Equal(12, config.NumHiddenLayers);
        Assert.Equal(12, config.NumAttentionHeads);
        Assert.Equal(3, config.NumChannels);
        Assert.Equal(224, config.ImageSize);
        Assert.Equal(32, config.PatchSize);
        Assert.Equal("quick_gelu", config.HiddenAct);
        Assert.Equal(1e-5, config.LayerNormEps);
        Assert.Equal(0.0, config.AttentionDropout);
        Assert.Equal(50, config.NumPositions);
    }

    [Fact]
    public void LoadsTheVisionHalfOfAFullClipConfig()
    {
        using var dir = new TempDir();
        string path = dir.File("config.json");
        File.WriteAllText(path, $$"""{"model_type": "clip", "text_config": {"model_type": "clip_text_model"}, "vision_config": {{ClipL14At336Json}}}""");

        var config = ClipVisionConfig.Load(path);

        Assert.Equal(1024, config.HiddenSize);
        Assert.Equal(14, config.PatchSize);
    }

    [Fact]
    public void LoadsAStandaloneVisionConfigFile()
    {
        using var dir = new TempDir();
        string path = dir.File("config.json");
        File.WriteAllText(path, ClipL14At336Json);

        Assert.Equal(24, ClipVisionConfig.Load(path).NumHiddenLayers);
    }

    [Theory]
    [InlineData("""{"model_type": "siglip_vision_model"}""", "model_type")]
    [InlineData("""{"hidden_act": "swiglu"}""", "hidden_act")]
    [InlineData("""{"hidden_act": null}""", "hidden_act")]
    [InlineData("""{"hidden_size": 100, "num_attention_heads": 12}""", "num_attention_heads")]
    [InlineData("""{"num_hidden_layers": 0}""", "num_hidden_layers")]
    [InlineData("""{"patch_size": 500}""", "patch_size")]
    [InlineData("""{"layer_norm_eps": 0}""", "layer_norm_eps")]
    [InlineData("""{"image_size": "big"}""", "$.image_size")]
    public void RejectsInvalidConfigsNamingTheKey(string json, string key)
    {
        var ex = Assert.Throws<ConfigException>(() => ClipVisionConfig.Parse(json, "test.json"));
        Assert.Equal(key, ex.Key);
        Assert.Equal("test.json", ex.SourcePath);
    }

    [Fact]
    public void MissingFileIsAConfigException()
    {
        var ex = Assert.Throws<ConfigException>(() => ClipVisionConfig.Load("/nonexistent/config.json"));
        Assert.Contains("not found", ex.Message);
    }

    [Fact]
    public void BadJsonFileIsAConfigException()
    {
        using var dir = new TempDir();
        string path = dir.File("config.json");
        File.WriteAllText(path, "{ not json");

        var ex = Assert.Throws<ConfigException>(() => ClipVisionConfig.Load(path));
        Assert.Equal(path, ex.SourcePath);
        Assert.IsAssignableFrom<JsonException>(ex.InnerException);
    }

    [Fact]
    public void GeluConfigsBind()
    {
        Assert.Equal("gelu", ClipVisionConfig.Parse("""{"hidden_act": "gelu"}""").HiddenAct);
    }
}
