using LlavaInterp.Configuration;
using LlavaInterp.Llava;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Llava;

public sealed class LlavaLoadingTests
{
    [Fact]
    public void ShardedCheckpointGivesBitIdenticalLogits()
    {
        using var scope = NewDisposeScope();
        using var single = HookedLlava.FromPretrained(Fixture.ModelDir);
        using var sharded = HookedLlava.FromPretrained(Fixture.ShardedModelDir);
        string text = Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("rendered_chat_template").GetString()!;
        using var p1 = single.Processor!.Prepare(text, [Fixture.Image("gradient_rgb")], raw: true);
        using var p2 = sharded.Processor!.Prepare(text, [Fixture.Image("gradient_rgb")], raw: true);
        using var o1 = single.call(LlavaInput.From(p1));
        using var o2 = sharded.call(LlavaInput.From(p2));
        TensorAssert.Close(o1.Logits!, o2.Logits!, 0, 0, "sharded vs single");
    }

    [Fact]
    public void EveryFloat32ParameterIsAViewOfTheMappedCheckpoint()
    {
        using var scope = NewDisposeScope();
        var config = LlavaConfig.Load(System.IO.Path.Combine(Fixture.ModelDir, "config.json"));
        using var file = SafetensorsFile.Open(System.IO.Path.Combine(Fixture.ModelDir, "model.safetensors"));
        using var model = new HookedLlava(config);
        model.LoadWeights(file);
        var parameters = model.named_parameters().ToList();
        Assert.Contains(parameters, p => p.name.StartsWith("multi_modal_projector.", StringComparison.Ordinal));
        foreach (var (name, parameter) in parameters)
        {
            using var stored = file.Load(name);
            Assert.Equal(stored.storage<float>().data_ptr(), parameter.storage<float>().data_ptr());
            Assert.Equal(stored.storage_offset(), parameter.storage_offset());
        }
    }

    [Fact]
    public async Task LoadingReportsEveryTensorOverTheWholeModel()
    {
        var reports = new List<LlavaInterp.Loading.WeightLoadProgress>();
        using var model = await HookedLlava.FromPretrainedAsync(Fixture.ModelDir, new LlavaLoadOptions { LoadProgress = new SyncProgress<LlavaInterp.Loading.WeightLoadProgress>(reports.Add) });
        int total = model.state_dict().Count;
        Assert.Equal(Enumerable.Range(1, total), reports.Select(r => r.Loaded));
        Assert.All(reports, r => Assert.Equal(total, r.Total));
        Assert.Equal(total, reports.Select(r => r.Name).Distinct().Count());
        Assert.Contains(reports, r => r.Name.StartsWith("vision_tower.", StringComparison.Ordinal));
        Assert.Contains(reports, r => r.Name.StartsWith("multi_modal_projector.", StringComparison.Ordinal));
        Assert.Contains(reports, r => r.Name.StartsWith("language_model.", StringComparison.Ordinal));
    }

    [Fact]
    public void UnknownProjectorActivationIsAConfigError()
    {
        var config = LlavaConfig.Load(System.IO.Path.Combine(Fixture.ModelDir, "config.json")) with { ProjectorHiddenAct = "swiglu" };
        var error = Assert.Throws<ConfigException>(() => new HookedLlava(config, device: torch.device("meta")));
        Assert.Equal("projector_hidden_act", error.Key);
        Assert.Contains("swiglu", error.Message);
    }

    [Fact]
    public void ImageCountMismatchIsAClearError()
    {
        using var model = HookedLlava.FromPretrained(Fixture.ModelDir);
        var none = Assert.Throws<LlavaException>(() => model.Processor!.Prepare("<image> twice <image>", [Fixture.Image("gradient_rgb")], raw: true));
        Assert.Contains("2", none.Message, StringComparison.Ordinal);
        Assert.Contains("1 image", none.Message, StringComparison.Ordinal);
        Assert.Throws<LlavaException>(() => model.Processor!.Prepare("no placeholder", [Fixture.Image("gradient_rgb")], raw: true));

        // Hand-made input: image tokens without matching pixel values.
        using var ids = tensor(new long[] { 2, model.Config.ImageTokenIndex, 5 }).unsqueeze(0);
        Assert.Throws<LlavaException>(() => model.call(new LlavaInput { InputIds = ids }));
        using var pixels = Fixture.Load("prompt.image_chat.pixel_values");
        Assert.Throws<LlavaException>(() => model.call(new LlavaInput { InputIds = ids, PixelValues = pixels }));
    }

    [Fact]
    public void MissingFolderAndBadConfigAreTypedErrors()
    {
        Assert.Throws<DirectoryNotFoundException>(() => HookedLlava.FromPretrained("/nonexistent/model"));
        Assert.Throws<ConfigException>(() => LlavaConfig.Parse("""{"model_type":"llava","text_config":{"model_type":"gemma"},"vision_feature_select_strategy":"odd"}"""));
        Assert.Throws<ConfigException>(() => LlavaConfig.Parse("""{"model_type":"llava"}"""));
        Assert.Throws<ConfigException>(() => LlavaConfig.Parse("""{"model_type":"mistral","text_config":{"model_type":"gemma"}}"""));
        Assert.Equal("text_config", Assert.Throws<ConfigException>(() => LlavaConfig.Parse("""{"model_type":"llava"}""")).Key);
        var act = Assert.Throws<ConfigException>(() => LlavaConfig.Parse("""{"model_type":"llava","projector_hidden_act":"nope","text_config":{"model_type":"gemma"}}""", "cfg.json"));
        Assert.Equal("projector_hidden_act", act.Key);
        Assert.Contains("cfg.json", act.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void RealIntelLlavaGemma2bLayoutOnTheMetaDevice()
    {
        var config = LlavaConfig.Load(System.IO.Path.Combine(AppContext.BaseDirectory, "fixtures", "configs", "llava-gemma-2b.config.json"));
        Assert.Equal(256000, config.ImageTokenIndex);
        using var model = new HookedLlava(config, device: torch.device("meta"));
        var shapes = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);

        Assert.Equal([256064L, 2048], shapes["language_model.model.embed_tokens.weight"]);
        Assert.Equal([2048L, 2048], shapes["language_model.model.layers.17.self_attn.q_proj.weight"]);
        Assert.Equal([256L, 2048], shapes["language_model.model.layers.17.self_attn.k_proj.weight"]);
        Assert.Equal([16384L, 2048], shapes["language_model.model.layers.0.mlp.gate_proj.weight"]);
        Assert.Equal([1024L, 3, 14, 14], shapes["vision_tower.vision_model.embeddings.patch_embedding.weight"]);
        Assert.Equal([577L, 1024], shapes["vision_tower.vision_model.embeddings.position_embedding.weight"]);
        Assert.Equal([1024L], shapes["vision_tower.vision_model.encoder.layers.23.layer_norm2.bias"]);
        Assert.Equal([2048L, 1024], shapes["multi_modal_projector.linear_1.weight"]);
        Assert.Equal([2048L, 2048], shapes["multi_modal_projector.linear_2.weight"]);
        Assert.DoesNotContain("language_model.lm_head.weight", shapes.Keys);

        // Gemma-2b at 256064 rows (2,506,172,416 + 64·2048), CLIP ViT-L/14-336 (303,507,456), projector 1024→2048→2048.
        long gemma = 2_506_172_416L + (64L * 2048);
        long clip = 303_507_456L;
        long projector = (1024L * 2048) + 2048 + (2048L * 2048) + 2048;
        Assert.Equal(gemma + clip + projector, shapes.Values.Sum(s => s.Aggregate(1L, (a, b) => a * b)));
        Assert.Equal(576, model.Config.VisionConfig.NumPatches);
        Assert.Contains("vision.blocks.23.attn.hook_pattern", model.HookNames);
        Assert.Contains("blocks.17.hook_resid_post", model.HookNames);
        Assert.Contains("hook_image_features", model.HookNames);
    }
}
