using LlavaInterp.Loading;
using LlavaInterp.Models.Clip;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.Clip;

public sealed class ClipVisionLoadingTests
{
    [Fact]
    public void StateDictKeysAndShapesAreTheCheckpointsVisionTowerTensors()
    {
        using var model = new HookedClipVisionModel(TinyClip.Config(), device: torch.device("meta"));
        var expected = Fixture.Manifest.GetProperty("checkpoint").GetProperty("tensors").EnumerateObject()
            .Where(p => p.Name.StartsWith("vision_tower.", StringComparison.Ordinal))
            .ToDictionary(p => p.Name["vision_tower.".Length..], p => p.Value.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray());

        var actual = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);

        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, shape) in expected)
        {
            Assert.Equal(shape, actual[name]);
        }
    }

    [Fact]
    public void StrictLoadOfTheFixtureFillsEveryParameter()
    {
        using var model = new HookedClipVisionModel(TinyClip.Config());
        using var file = SafetensorsFile.Open(TinyClip.WeightsPath);
        var progress = new List<WeightLoadProgress>();

        var report = model.LoadWeights(file, TinyClip.Prefix, progress: new SyncProgress<WeightLoadProgress>(progress.Add));

        Assert.Equal("vision_tower.", report.Prefix);
        Assert.Equal(3 + 2 + 3 * 16 + 2, report.Loaded.Count);
        Assert.Empty(report.Missing);
        Assert.Empty(report.Unexpected);
        Assert.Equal(report.Loaded.Count, progress.Count);
        Assert.Equal(progress.Count, progress[^1].Loaded);
        using var stored = file.Load("vision_tower.vision_model.encoder.layers.2.mlp.fc1.bias");
        Assert.True(stored.eq(model.VisionModel.Encoder.Layers[2].Mlp.Fc1.Bias!).all().item<bool>());
    }

    [Fact]
    public void ShardedCheckpointLoadsTheSameWeights()
    {
        using var scope = torch.NewDisposeScope();
        using var sharded = Checkpoint.Open(Fixture.ShardedModelDir);
        using var model = new HookedClipVisionModel(TinyClip.Config());

        var report = model.LoadWeights(sharded, TinyClip.Prefix);

        Assert.Equal(55, report.Loaded.Count);
        using var _ = torch.no_grad();
        TensorAssert.Close(Fixture.Load("vision.pooler_output"), model.call(new ClipVisionInput(TinyClip.Pixels())).PooledOutput!, what: "sharded");

        var ex = Assert.Throws<WeightLoadException>(() => model.LoadWeights(sharded, "nothing."));
        Assert.EndsWith(Checkpoint.IndexFileName, ex.Checkpoint);
    }

    [Fact]
    public void NewerLlavaLayoutLoadsWithThePrefixLlavaGives()
    {
        using var scope = torch.NewDisposeScope();
        using var source = DictionaryTensorSource.FromFile(TinyClip.WeightsPath, n => "model." + n);
        using var model = new HookedClipVisionModel(TinyClip.Config());

        // CLIP does not guess LLaVA's layouts: LLaVA detects its layout and passes the vision prefix down.
        var report = model.LoadWeights(source, LlavaInterp.Llava.LlavaCheckpointLayout.Nested.VisionPrefix);

        Assert.Equal("model.vision_tower.", report.Prefix);
        using var _ = torch.no_grad();
        var features = model.GetFeatureLayer(TinyClip.Pixels(), -2);
        TensorAssert.Close(Fixture.Load("vision.hidden_states")[2], features, what: "newer layout");
    }

    [Fact]
    public void AStandaloneClipCheckpointLoadsWithAnEmptyPrefixIgnoringTheTextModel()
    {
        using var source = DictionaryTensorSource.FromFile(TinyClip.WeightsPath, n =>
            n.StartsWith("vision_tower.", StringComparison.Ordinal) ? n["vision_tower.".Length..] : null);
        source.Tensors["text_model.embeddings.token_embedding.weight"] = torch.zeros(8, 4).DetachFromDisposeScope();
        source.Tensors["logit_scale"] = torch.zeros(1).DetachFromDisposeScope();
        using var model = new HookedClipVisionModel(TinyClip.Config());

        var report = model.LoadWeights(source);

        Assert.Equal(string.Empty, report.Prefix);
        Assert.Empty(report.Unexpected);
    }

    [Fact]
    public void StrictLoadNamesMissingUnexpectedAndMisshapenTensorsAndLeavesTheModelUntouched()
    {
        using var source = DictionaryTensorSource.FromFile(TinyClip.WeightsPath, n => n);
        source.Tensors.Remove("vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.bias");
        source.Tensors["vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight"] = torch.zeros(64, 32).DetachFromDisposeScope();
        source.Tensors["vision_tower.vision_model.embeddings.position_embedding.weight"] = torch.zeros(577, 32).DetachFromDisposeScope();
        using var model = new HookedClipVisionModel(TinyClip.Config());
        using var before = model.VisionModel.PreLayrnorm.Weight.clone();

        var ex = Assert.Throws<WeightLoadException>(() => model.LoadWeights(source, TinyClip.Prefix));

        Assert.Equal(["vision_tower.vision_model.encoder.layers.1.self_attn.q_proj.bias"], ex.Missing);
        Assert.Equal(["vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight"], ex.Unexpected);
        var mismatch = Assert.Single(ex.ShapeMismatches);
        Assert.Equal("vision_tower.vision_model.embeddings.position_embedding.weight", mismatch.Name);
        Assert.Equal([17L, 32], mismatch.Expected);
        Assert.Equal([577L, 32], mismatch.Actual);
        Assert.Contains("q_proj.bias", ex.Message);
        Assert.Contains("layers.3.mlp.fc1.weight", ex.Message);
        Assert.Contains("expected [17, 32], checkpoint has [577, 32]", ex.Message);

        // Checked before copying: nothing was written.
        Assert.True(before.eq(model.VisionModel.PreLayrnorm.Weight).all().item<bool>());
    }

    [Fact]
    public void NonStrictLoadReportsWhatItSkippedButStillRejectsShapeMismatches()
    {
        using var source = DictionaryTensorSource.FromFile(TinyClip.WeightsPath, n => n);
        source.Tensors.Remove("vision_tower.vision_model.post_layernorm.bias");
        source.Tensors["vision_tower.vision_model.extra"] = torch.zeros(1).DetachFromDisposeScope();
        using var model = new HookedClipVisionModel(TinyClip.Config());

        var report = model.LoadWeights(source, TinyClip.Prefix, strict: false);

        Assert.Equal(["vision_tower.vision_model.post_layernorm.bias"], report.Missing);
        Assert.Equal(["vision_tower.vision_model.extra"], report.Unexpected);
        Assert.Equal(54, report.Loaded.Count);

        source.Tensors["vision_tower.vision_model.pre_layrnorm.bias"] = torch.zeros(31).DetachFromDisposeScope();
        Assert.Throws<WeightLoadException>(() => model.LoadWeights(source, TinyClip.Prefix, strict: false));
    }

    [Fact]
    public void AWrongPrefixReportsEveryTensorMissing()
    {
        using var file = SafetensorsFile.Open(TinyClip.WeightsPath);
        using var model = new HookedClipVisionModel(TinyClip.Config());

        var ex = Assert.Throws<WeightLoadException>(() => model.LoadWeights(file, "vision."));

        Assert.Equal(55, ex.Missing.Count);
        Assert.Equal(TinyClip.WeightsPath, ex.Checkpoint);
        Assert.Contains("(45 more)", ex.Message);
    }

    [Fact]
    public void LoadingIntoAMetaModelIsRefused()
    {
        using var file = SafetensorsFile.Open(TinyClip.WeightsPath);
        using var model = new HookedClipVisionModel(TinyClip.Config(), device: torch.device("meta"));

        var ex = Assert.Throws<InvalidOperationException>(() => model.LoadWeights(file, TinyClip.Prefix));
        Assert.Contains("meta", ex.Message);
    }

    [Fact]
    public void Float32WeightsAreMappedIntoTheSameParameterObjects()
    {
        using var scope = torch.NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyClip.WeightsPath);
        using var model = new HookedClipVisionModel(TinyClip.Config());
        var before = model.named_parameters().ToList();
        var keys = model.state_dict().Keys.ToList();
        var requiresGrad = before.Select(p => p.parameter.requires_grad).ToList();

        model.LoadWeights(file, TinyClip.Prefix);

        // Same names, same Parameter objects, same requires_grad: only the storage changed.
        var after = model.named_parameters().ToList();
        Assert.Equal(before.Select(p => p.name), after.Select(p => p.name));
        Assert.All(before.Zip(after), pair => Assert.Same(pair.First.parameter, pair.Second.parameter));
        Assert.Equal(keys, model.state_dict().Keys);
        Assert.Equal(requiresGrad, after.Select(p => p.parameter.requires_grad));

        // Each parameter is a view of the file mapping (no copy): same storage, same offset.
        Assert.Equal(55, after.Count);
        foreach (var (name, parameter) in after)
        {
            using var stored = file.Load(TinyClip.Prefix + name);
            Assert.Equal(stored.storage<float>().data_ptr(), parameter.storage<float>().data_ptr());
            Assert.Equal(stored.storage_offset(), parameter.storage_offset());
        }
    }

    [Fact]
    public void AnotherDTypeIsConvertedIntoTheModelsOwnMemory()
    {
        using var scope = torch.NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyClip.WeightsPath);
        using var model = new HookedClipVisionModel(TinyClip.Config(), dtype: torch.ScalarType.BFloat16);
        var weight = model.VisionModel.Encoder.Layers[1].Mlp.Fc1.Weight;

        model.LoadWeights(file, TinyClip.Prefix);

        using var stored = file.Load("vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight");
        Assert.Same(weight, model.VisionModel.Encoder.Layers[1].Mlp.Fc1.Weight);
        Assert.Equal(torch.ScalarType.BFloat16, weight.dtype);
        Assert.True(weight.eq(stored.to(torch.ScalarType.BFloat16)).all().item<bool>());
        Assert.All(model.parameters(), p => Assert.Equal(torch.ScalarType.BFloat16, p.dtype));
    }

    [Fact]
    public void ModelsLoadedFromOneOpenSourceShareTheMappedWeights()
    {
        using var scope = torch.NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyClip.WeightsPath);
        using var first = new HookedClipVisionModel(TinyClip.Config());
        using var second = new HookedClipVisionModel(TinyClip.Config());
        first.LoadWeights(file, TinyClip.Prefix);
        second.LoadWeights(file, TinyClip.Prefix);
        using var original = file.Load("vision_tower.vision_model.pre_layrnorm.weight").clone();

        using (torch.no_grad())
        {
            first.VisionModel.PreLayrnorm.Weight.mul_(2);
        }

        // The documented side effect: the pages are shared, so the edit shows in the other model ...
        Assert.True(second.VisionModel.PreLayrnorm.Weight.eq(original * 2).all().item<bool>());

        // ... but never in the file (copy-on-write), nor in a model loaded through another instance.
        using var reopened = SafetensorsFile.Open(TinyClip.WeightsPath);
        using var third = new HookedClipVisionModel(TinyClip.Config());
        third.LoadWeights(reopened, TinyClip.Prefix);
        Assert.True(third.VisionModel.PreLayrnorm.Weight.eq(original).all().item<bool>());
    }

    [Fact]
    public void CancellationStopsTheLoad()
    {
        using var file = SafetensorsFile.Open(TinyClip.WeightsPath);
        using var model = new HookedClipVisionModel(TinyClip.Config());
        using var cts = new CancellationTokenSource();
        cts.Cancel();

        Assert.Throws<OperationCanceledException>(() => model.LoadWeights(file, TinyClip.Prefix, cancellationToken: cts.Token));
    }
}
