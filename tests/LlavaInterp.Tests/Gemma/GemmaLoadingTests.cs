using LlavaInterp.Llava;
using LlavaInterp.Loading;
using LlavaInterp.Models.Gemma;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Gemma;

public sealed class GemmaLoadingTests(ITestOutputHelper output)
{
    [Fact]
    public void MetaDeviceGemma2bMatchesApprovedParameterList()
    {
        var config = GemmaConfig.Parse(GemmaConfigTests.Gemma2bConfigJson, "gemma-2b");
        using var model = new HookedGemma(config, ScalarType.BFloat16, torch.META);
        var actual = model.named_parameters().Select(p => $"{p.name} [{string.Join(", ", p.parameter.shape)}]").Order(StringComparer.Ordinal).ToList();
        var approved = Gemma2bApproved.Parameters.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(approved, actual);
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        Assert.Equal(2_506_172_416L, model.parameters().Sum(p => p.numel()));
        Assert.Null(model.LmHead);
        Assert.Same(model.Model.EmbedTokens.Weight, model.UnembedWeight);

        // LLaVA-Gemma's text model has 64 more rows (256064): only the embedding grows.
        using var llavaText = new HookedGemma(config with { VocabSize = 256064 }, ScalarType.BFloat16, torch.META);
        Assert.Equal(2_506_172_416L + (64L * 2048), llavaText.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void StateDictHasExactlyTheCheckpointKeys()
    {
        using var model = new HookedGemma(TinyGemma.Config, ScalarType.Float32, torch.META);
        var keys = model.state_dict().Keys.Order(StringComparer.Ordinal).ToList();
        Assert.Equal(model.named_parameters().Select(p => p.name).Order(StringComparer.Ordinal), keys);
        Assert.DoesNotContain(keys, k => k.Contains("hook", StringComparison.Ordinal) || k.Contains("inv_freq", StringComparison.Ordinal));
        var checkpoint = Fixture.Manifest.GetProperty("checkpoint").GetProperty("tensors").EnumerateObject()
            .Select(t => t.Name).Where(n => n.StartsWith("language_model.", StringComparison.Ordinal)).Order(StringComparer.Ordinal);
        Assert.Equal(checkpoint, keys.Select(k => "language_model." + k));
    }

    [Fact]
    public void Float32WeightsAreMappedNotCopied()
    {
        using var scope = NewDisposeScope();
        using var source = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        using var model = new HookedGemma(TinyGemma.Config);
        model.LoadWeights(source, LlavaCheckpointLayout.Detect(source).Text);
        const string key = "language_model.model.layers.1.mlp.up_proj.weight";
        using var mapped = source.Load(key);
        // Same storage as a view of the file mapping: the parameter is the mapped tensor, not a copy.
        Assert.Equal(mapped.storage<float>().data_ptr(), model.Model.Layers[1].Mlp.UpProj.Weight.storage<float>().data_ptr());
        using var other = source.Load("language_model.model.norm.weight");
        Assert.Equal(other.storage<float>().data_ptr(), model.Model.Norm.Weight.storage<float>().data_ptr());
        Assert.False(model.Model.Layers[1].Mlp.UpProj.Weight.requires_grad);

        using var bf16 = new HookedGemma(TinyGemma.Config, ScalarType.BFloat16);
        bf16.LoadWeights(source, "language_model.");
        Assert.Equal(ScalarType.BFloat16, bf16.Model.Layers[1].Mlp.UpProj.Weight.dtype);
    }

    [Fact]
    public void LoadingInsideACallersDisposeScopeKeepsTheWeights()
    {
        HookedGemma model;
        using (var scope = NewDisposeScope())
        {
            model = TinyGemma.Load();
        }

        using (model)
        using (var scope = NewDisposeScope())
        {
            using var result = model.call(GemmaInput.FromIds(TinyGemma.TextIds));
            TensorAssert.Close(Fixture.Load("lm.text_chat.logits"), result.Logits!);
        }
    }

    [Fact]
    public void FromPretrainedReadsAStandaloneGemmaFolder()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        TinyGemma.WriteStandaloneFolder(dir.Path);
        using var model = HookedGemma.FromPretrained(dir.Path);
        Assert.Equal(640, model.Config.VocabSize);
        using var result = model.call(GemmaInput.FromIds(TinyGemma.TextIds));
        output.WriteLine($"logits max |diff| {TensorAssert.Close(Fixture.Load("lm.text_chat.logits"), result.Logits!):E2}");

        using var half = HookedGemma.FromPretrained(dir.Path, new GemmaLoadOptions { DType = ScalarType.BFloat16 });
        Assert.Equal(ScalarType.BFloat16, half.DType);
        Assert.All(half.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
    }

    [Fact]
    public void FromPretrainedRejectsAMultimodalFolderByItsModelType()
    {
        // Gemma knows nothing of LLaVA: a LLaVA folder is another model type, loaded through HookedLlava.
        var error = Assert.Throws<LlavaInterp.Configuration.ConfigException>(() => HookedGemma.FromPretrained(Fixture.ModelDir));
        Assert.Contains("model_type", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FromPretrainedErrorsAreTyped()
    {
        using var dir = new TempDir();
        Assert.Throws<DirectoryNotFoundException>(() => HookedGemma.FromPretrained(dir.File("nope")));
        Assert.Throws<LlavaInterp.Configuration.ConfigException>(() => HookedGemma.FromPretrained(dir.Path));
        using (var standalone = new TempDir())
        {
            TinyGemma.WriteStandaloneFolder(standalone.Path);
            File.Copy(standalone.File("config.json"), dir.File("config.json"));
        }

        var error = Assert.Throws<TensorFileException>(() => HookedGemma.FromPretrained(dir.Path));
        Assert.Contains("model.safetensors", error.Message);
    }

    [Theory]
    [InlineData("standalone")]
    [InlineData("nested")]
    public void OtherCheckpointLayoutsAreDetectedAndLoad(string layout)
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        Assert.Same(LlavaCheckpointLayout.Legacy, LlavaCheckpointLayout.Detect(file));
        Func<string, string?> rename = layout == "standalone"
            ? n => n.StartsWith("language_model.", StringComparison.Ordinal) ? n["language_model.".Length..] : null
            : n => n.StartsWith("language_model.model.", StringComparison.Ordinal) ? "model.language_model." + n["language_model.model.".Length..] : n;
        using var source = MemoryTensorSource.From(file, rename);
        // A standalone checkpoint is Gemma's own layout; the nested one is LLaVA's, which the LLaVA layer detects.
        var detected = layout == "standalone" ? GemmaWeightLayout.Standalone : LlavaCheckpointLayout.Detect(source).Text;
        Assert.Same(layout == "standalone" ? GemmaWeightLayout.Standalone : LlavaCheckpointLayout.Nested.Text, detected);
        using var model = new HookedGemma(TinyGemma.Config);
        model.LoadWeights(source, detected);
        using var result = model.call(GemmaInput.FromIds(TinyGemma.TextIds));
        TensorAssert.Close(Fixture.Load("lm.text_chat.logits"), result.Logits!);
    }

    [Fact]
    public void MissingRenamedAndMisshapedTensorsAreListedByName()
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        using var source = MemoryTensorSource.From(file, n => n);
        source.Remove("language_model.model.layers.1.mlp.up_proj.weight");
        var oProj = source.Load("language_model.model.layers.2.self_attn.o_proj.weight");
        source.Remove("language_model.model.layers.2.self_attn.o_proj.weight");
        source.Set("language_model.model.layers.2.self_attn.out_proj.weight", oProj);
        source.Set("language_model.model.norm.weight", zeros(63));
        source.Set("language_model.model.layers.0.input_layernorm.weight", zeros(new long[] { 64 }, ScalarType.Int64));
        using var model = new HookedGemma(TinyGemma.Config);
        var error = Assert.Throws<WeightLoadException>(() => model.LoadWeights(source, "language_model."));
        Assert.Equal(
            new[] { "language_model.model.layers.1.mlp.up_proj.weight", "language_model.model.layers.2.self_attn.o_proj.weight" },
            error.Missing.Order(StringComparer.Ordinal));
        Assert.Equal(new[] { "language_model.model.layers.2.self_attn.out_proj.weight" }, error.Unexpected);
        var shape = Assert.Single(error.ShapeMismatches);
        Assert.Equal("language_model.model.norm.weight", shape.Name);
        Assert.Equal([64L], shape.Expected);
        Assert.Equal([63L], shape.Actual);
        var dtype = Assert.Single(error.DTypeMismatches);
        Assert.Equal("language_model.model.layers.0.input_layernorm.weight", dtype.Name);
        Assert.Equal(ScalarType.Float32, dtype.Expected);
        Assert.Equal("I64", dtype.Actual);
        Assert.Contains("language_model.model.norm.weight: expected [64], checkpoint has [63]", error.Message);
        Assert.Contains("language_model.model.layers.0.input_layernorm.weight: stored dtype I64", error.Message);
        foreach (var name in error.Missing.Concat(error.Unexpected))
        {
            Assert.Contains(name, error.Message);
        }

        // Vision tensors are outside the decoder's namespace: never unexpected.
        Assert.DoesNotContain(error.Unexpected, k => k.StartsWith("vision_tower", StringComparison.Ordinal));
        // A standalone checkpoint claims every name, so a stray tensor is unexpected there.
        using var standalone = MemoryTensorSource.From(file, n => n.StartsWith("language_model.", StringComparison.Ordinal) ? n["language_model.".Length..] : n);
        var stray = Assert.Throws<WeightLoadException>(() => model.LoadWeights(standalone, GemmaWeightLayout.Standalone));
        Assert.Contains("multi_modal_projector.linear_1.weight", stray.Unexpected);
        Assert.Empty(stray.Missing);
    }

    [Fact]
    public void NonStrictLoadingSkipsMissingAndUnexpectedButNotMisshaped()
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        using var source = MemoryTensorSource.From(file, n => n);
        source.Remove("language_model.model.layers.3.mlp.down_proj.weight");
        source.Set("language_model.model.extra.weight", zeros(3));
        using var model = new HookedGemma(TinyGemma.Config);
        model.LoadWeights(source, "language_model.", strict: false);
        using var expected = file.Load("language_model.model.layers.0.mlp.down_proj.weight");
        TensorAssert.Close(expected, model.Model.Layers[0].Mlp.DownProj.Weight, 0, 0);

        source.Set("language_model.model.norm.weight", zeros(65));
        Assert.Throws<WeightLoadException>(() => model.LoadWeights(source, "language_model.", strict: false));
    }

    [Fact]
    public void UntiedModelUsesItsOwnHeadAndTiedModelIgnoresAStoredHead()
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        using var source = MemoryTensorSource.From(file, n => n);
        using var embedding = file.Load("language_model.model.embed_tokens.weight");
        source.Set("language_model.lm_head.weight", embedding.clone());

        // Tied: the stored head is not "unexpected" and is not used.
        using (var tied = new HookedGemma(TinyGemma.Config))
        {
            tied.LoadWeights(source, "language_model.");
            Assert.Null(tied.LmHead);
        }

        var untiedConfig = TinyGemma.Config with { TieWordEmbeddings = false };
        using var untied = new HookedGemma(untiedConfig);
        Assert.NotNull(untied.LmHead);
        Assert.Contains("lm_head.weight", untied.state_dict().Keys);
        untied.LoadWeights(source, "language_model.");
        using (var result = untied.call(GemmaInput.FromIds(TinyGemma.TextIds)))
        {
            TensorAssert.Close(Fixture.Load("lm.text_chat.logits"), result.Logits!);
        }

        // A different head changes the logits: the head really is separate.
        source.Set("language_model.lm_head.weight", embedding * 2);
        untied.LoadWeights(source, "language_model.");
        using (var doubled = untied.call(GemmaInput.FromIds(TinyGemma.TextIds)))
        {
            TensorAssert.Close(Fixture.Load("lm.text_chat.logits") * 2, doubled.Logits!);
        }

        source.Remove("language_model.lm_head.weight");
        var error = Assert.Throws<WeightLoadException>(() => untied.LoadWeights(source, "language_model."));
        Assert.Equal(new[] { "language_model.lm_head.weight" }, error.Missing);
    }

    [Fact]
    public void AttentionBiasesAreLoadedAndAddedAfterTheProjections()
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        using var source = MemoryTensorSource.From(file, n => n);
        var config = TinyGemma.Config with { AttentionBias = true };
        using var model = new HookedGemma(config);
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", model.state_dict().Keys);
        var missing = Assert.Throws<WeightLoadException>(() => model.LoadWeights(source, "language_model."));
        Assert.Equal(16, missing.Missing.Count); // q/k/v/o biases of 4 layers

        foreach (var proj in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
        {
            for (int i = 0; i < 4; i++)
            {
                long width = proj is "k_proj" or "v_proj" ? 16 : 64;
                source.Set($"language_model.model.layers.{i}.self_attn.{proj}.bias", zeros(width));
            }
        }

        model.LoadWeights(source, "language_model.");
        using (var zero = model.call(GemmaInput.FromIds(TinyGemma.TextIds)))
        {
            TensorAssert.Close(Fixture.Load("lm.text_chat.logits"), zero.Logits!);
        }

        // A bias on o_proj of layer 1 acts exactly like adding it to blocks.1.hook_attn_out of the bias-free model.
        var bias = linspace(-0.5, 0.5, 64);
        source.Set("language_model.model.layers.1.self_attn.o_proj.bias", bias.clone());
        model.LoadWeights(source, "language_model.");
        using var reference = TinyGemma.Load();
        using var expected = reference.RunWithHooks(GemmaInput.FromIds(TinyGemma.TextIds), ("blocks.1.hook_attn_out", (x, _) => x + bias));
        using var actual = model.call(GemmaInput.FromIds(TinyGemma.TextIds));
        TensorAssert.Close(expected.Logits!, actual.Logits!);
        Assert.False(expected.Logits!.allclose(Fixture.Load("lm.text_chat.logits"), 1e-3, 1e-3));
    }

    [Fact]
    public void LoadingIntoAMetaModelIsRefused()
    {
        using var file = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        using var model = new HookedGemma(TinyGemma.Config, ScalarType.Float32, torch.META);
        var error = Assert.Throws<InvalidOperationException>(() => model.LoadWeights(file, "language_model."));
        Assert.Contains("meta", error.Message);
        Assert.Contains(TinyGemma.CheckpointPath, error.Message);
        using var dir = new TempDir();
        TinyGemma.WriteStandaloneFolder(dir.Path);
        Assert.Throws<InvalidOperationException>(() => HookedGemma.FromPretrained(dir.Path, new GemmaLoadOptions { Device = torch.META }));
    }

    [Fact]
    public void LoadingKeepsTheParameterObjectsAndNames()
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        using var model = new HookedGemma(TinyGemma.Config);
        var before = model.named_parameters().ToList();
        model.LoadWeights(file, "language_model.");
        var after = model.named_parameters().ToList();
        Assert.Equal(before.Select(p => p.name), after.Select(p => p.name));
        Assert.All(before.Zip(after), pair => Assert.Same(pair.First.parameter, pair.Second.parameter));
        Assert.All(after, p => Assert.False(p.parameter.requires_grad));
        Assert.Same(model.Model.EmbedTokens.Weight, model.UnembedWeight);
    }

    [Fact]
    public void UnknownLayoutIsAWeightLoadError()
    {
        using var source = new MemoryTensorSource([new("foo.weight", zeros(2))]);
        var error = Assert.Throws<WeightLoadException>(() => LlavaCheckpointLayout.Detect(source));
        Assert.Contains("embed_tokens", error.Message);
    }

    [Fact]
    public void RandomInitialisationFollowsHf()
    {
        using var scope = NewDisposeScope();
        using var a = new HookedGemma(TinyGemma.Config);
        using var b = new HookedGemma(TinyGemma.Config);
        a.InitializeWeights(7);
        b.InitializeWeights(7);
        TensorAssert.Close(a.Model.Layers[2].SelfAttn.QProj.Weight, b.Model.Layers[2].SelfAttn.QProj.Weight, 0, 0);
        Assert.Equal(0.0, a.Model.Norm.Weight.abs().max().item<float>());
        Assert.Equal(0.0, a.Model.EmbedTokens.Weight[0].abs().max().item<float>());
        double std = a.Model.Layers[0].Mlp.UpProj.Weight.std().item<float>();
        Assert.InRange(std, 0.019, 0.021);
        using var result = a.call(GemmaInput.FromIds(TinyGemma.TextIds));
        Assert.True(result.Logits!.isfinite().all().item<bool>());
    }
}
