using LlavaInterp.Llava;
using LlavaInterp.Loading;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Nn;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Gemma;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Llava;

/// <summary>
/// Weights stored in bfloat16 and computed in float32 (<see cref="LlavaLoadOptions.ComputeDType"/>), and the start-up
/// probe that chooses the compute dtype (<see cref="LlavaLoadOptions.AutoComputeDType"/>).
/// </summary>
public sealed class ComputeDTypeTests(ITestOutputHelper output)
{
    private static readonly LlavaLoadOptions Bf16Fp32 = new() { DType = ScalarType.BFloat16, ComputeDType = ScalarType.Float32 };

    [Fact]
    public void Bf16StorageWithFloat32ComputeIsTheFloat32ModelOnBf16RoundedWeights()
    {
        using var scope = NewDisposeScope();
        using var mixed = HookedLlava.FromPretrained(Fixture.ModelDir, Bf16Fp32);
        using var rounded = RoundedFloat32Model();
        Assert.Equal(ScalarType.BFloat16, mixed.DType);
        Assert.Equal(ScalarType.Float32, mixed.ComputeDType);
        Assert.Null(mixed.ComputeDTypeProbe);

        using var prompt = ImageChatPrompt(mixed);
        using var expected = rounded.call(LlavaInput.From(prompt));
        using var actual = mixed.call(LlavaInput.From(prompt));
        double diff = TensorAssert.Close(expected.Logits!, actual.Logits!, what: "bf16 storage + fp32 compute vs fp32 on rounded weights");

        // The comparison can tell the modes apart: the unrounded float32 logits are farther off than the tolerance.
        using var golden = Fixture.Load("lm.image_chat.logits");
        double rounding = (golden - actual.Logits!).abs().max().item<float>();
        output.WriteLine($"max |diff| vs rounded fp32 {diff:E2}; vs unrounded fp32 golden {rounding:E2}");
        Assert.True(rounding > TensorAssert.ActivationAtol + TensorAssert.ActivationRtol * golden.abs().max().item<float>(), $"bf16 rounding of the weights moved the logits by only {rounding:E2}");
    }

    [Fact]
    public void ParametersStayBf16AndHalveTheMemory()
    {
        using var scope = NewDisposeScope();
        using var mixed = HookedLlava.FromPretrained(Fixture.ModelDir, Bf16Fp32);
        using var full = HookedLlava.FromPretrained(Fixture.ModelDir);
        Assert.All(mixed.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.Equal(Bytes(full), 2 * Bytes(mixed));
        Assert.Equal(full.state_dict().Keys.Order(StringComparer.Ordinal), mixed.state_dict().Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Bf16TensorsOfTheFileStayMappedViews()
    {
        using var scope = NewDisposeScope();
        using var dir = TempDir.CopyOf(Fixture.ModelDir);
        string path = dir.File("model.safetensors");
        WriteAsBf16(Path.Combine(Fixture.ModelDir, "model.safetensors"), path);
        using var file = SafetensorsFile.Open(path);
        using var model = new HookedLlava(LlavaConfig.Load(dir.File("config.json")), null, ScalarType.BFloat16, computeDType: ScalarType.Float32);
        model.LoadWeights(file);

        // Mapped parameters share the pages of every other view of the same open file: an edit shows through.
        var parameters = model.named_parameters().ToList();
        Assert.Contains(parameters, p => p.name.StartsWith("vision_tower.", StringComparison.Ordinal));
        Assert.Contains(parameters, p => p.name.StartsWith("multi_modal_projector.", StringComparison.Ordinal));
        using (no_grad())
        {
            foreach (var (name, parameter) in parameters)
            {
                using var view = file.Load(name);
                Assert.Equal(ScalarType.BFloat16, view.dtype);
                parameter.add_(1);
                Assert.True(view.eq(parameter).all().item<bool>(), $"{name} is not a view of the mapped file");
            }
        }
    }

    [Fact]
    public void HooksAndTheKvCacheSeeFloat32AndGenerationMatchesTheRoundedModel()
    {
        using var scope = NewDisposeScope();
        using var mixed = HookedLlava.FromPretrained(Fixture.ModelDir, Bf16Fp32);
        using var rounded = RoundedFloat32Model();
        using var prompt = ImageChatPrompt(mixed);

        var (result, cache) = mixed.RunWithCache(LlavaInput.From(prompt));
        using (result)
        using (cache)
        {
            Assert.Contains("vision.hook_patch_embed", cache.Keys);
            Assert.Contains("hook_image_features", cache.Keys);
            Assert.Contains("blocks.0.attn.hook_pattern", cache.Keys);
            Assert.All(cache, pair => Assert.True(!pair.Value.is_floating_point() || pair.Value.dtype == ScalarType.Float32, $"{pair.Key} is {pair.Value.dtype}"));
        }

        using (var kv = mixed.LanguageModel.CreateCache())
        using (mixed.call(LlavaInput.From(prompt) with { Cache = kv }))
        {
            Assert.Equal(ScalarType.Float32, kv.Keys(0).dtype);
            Assert.Equal(ScalarType.Float32, kv.Values(mixed.Config.TextConfig.NumHiddenLayers - 1).dtype);
        }

        var options = new GenerationOptions { MaxNewTokens = 8, StopTokenIds = [] };
        var expected = rounded.Generate(prompt, options);
        var actual = mixed.Generate(prompt, options);
        Assert.Equal(8, actual.Tokens.Count);
        Assert.Equal(expected.Tokens, actual.Tokens);
    }

    [Fact]
    public void AutoPicksOneOfTheTwoModesAndReportsIt()
    {
        using var scope = NewDisposeScope();
        var logger = new ListLogger();
        using var model = HookedLlava.FromPretrained(Fixture.ModelDir, new LlavaLoadOptions { DType = ScalarType.BFloat16, AutoComputeDType = true, Logger = logger });
        var probe = Assert.IsType<ComputeDTypeProbeResult>(model.ComputeDTypeProbe);
        output.WriteLine($"probe: {probe} speed-up {probe.Speedup:F2} -> {probe.Chosen}");
        Assert.Contains(model.ComputeDType, new[] { ScalarType.BFloat16, ScalarType.Float32 });
        Assert.Equal(probe.Chosen, model.ComputeDType);
        Assert.Equal(model.ComputeDType, model.LanguageModel.ComputeDType);
        Assert.Equal(model.ComputeDType, model.VisionTower.ComputeDType);
        Assert.Equal(model.Config.TextConfig.HiddenSize, probe.InFeatures);
        Assert.Equal(model.Config.TextConfig.IntermediateSize, probe.OutFeatures);
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
        Assert.Contains(logger.Messages, m => m.Contains("Compute dtype probe", StringComparison.Ordinal) && m.Contains($"computing in {model.ComputeDType}", StringComparison.Ordinal));

        using var prompt = ImageChatPrompt(model);
        using var result = model.call(LlavaInput.From(prompt));
        Assert.Equal(ScalarType.Float32, result.Logits!.dtype);
    }

    [Theory]
    [InlineData(1.0, 0.8, ScalarType.BFloat16)]
    [InlineData(1.2, 1.0, ScalarType.BFloat16)]
    [InlineData(1.1, 1.0, ScalarType.Float32)]
    [InlineData(1.0, 2.0, ScalarType.Float32)]
    public void TheProbeComputesNarrowOnlyWhenItIsClearlyFaster(double float32Ms, double narrowMs, ScalarType chosen)
    {
        var result = new ComputeDTypeProbeResult(ScalarType.BFloat16, 256, 64, 128, TimeSpan.FromMilliseconds(float32Ms), TimeSpan.FromMilliseconds(narrowMs));
        Assert.Equal(chosen, result.Chosen);
    }

    [Theory]
    [InlineData(ScalarType.Float32, ScalarType.BFloat16, false, "ComputeDType")]
    [InlineData(ScalarType.BFloat16, ScalarType.Float16, false, "ComputeDType")]
    [InlineData(ScalarType.BFloat16, ScalarType.Int32, false, "ComputeDType")]
    [InlineData(ScalarType.BFloat16, ScalarType.Float64, false, "ComputeDType")]
    [InlineData(ScalarType.Int64, null, false, "DType")]
    [InlineData(ScalarType.Float32, null, true, "AutoComputeDType")]
    [InlineData(ScalarType.BFloat16, ScalarType.Float32, true, "AutoComputeDType")]
    public void BadCombinationsNameTheOption(ScalarType dtype, ScalarType? compute, bool auto, string option)
    {
        var llava = Assert.Throws<ArgumentException>(() => HookedLlava.FromPretrained(Fixture.ModelDir, new LlavaLoadOptions { DType = dtype, ComputeDType = compute, AutoComputeDType = auto }));
        Assert.Equal(option, llava.ParamName);
        Assert.Contains(option, llava.Message, StringComparison.Ordinal);

        using var dir = new TempDir();
        TinyGemma.WriteStandaloneFolder(dir.Path);
        var gemma = Assert.Throws<ArgumentException>(() => HookedGemma.FromPretrained(dir.Path, new GemmaLoadOptions { DType = dtype, ComputeDType = compute, AutoComputeDType = auto }));
        Assert.Equal(option, gemma.ParamName);
    }

    [Fact]
    public void GemmaAloneComputesInFloat32OnBf16Weights()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        TinyGemma.WriteStandaloneFolder(dir.Path);
        using var mixed = HookedGemma.FromPretrained(dir.Path, new GemmaLoadOptions { DType = ScalarType.BFloat16, ComputeDType = ScalarType.Float32 });
        using var rounded = HookedGemma.FromPretrained(dir.Path, new GemmaLoadOptions { WeightLoading = WeightLoading.Copied });
        RoundToBf16(rounded);
        Assert.Equal(ScalarType.Float32, mixed.ComputeDType);
        using var a = rounded.call(GemmaInput.FromIds(TinyGemma.TextIds));
        using var b = mixed.call(GemmaInput.FromIds(TinyGemma.TextIds));
        Assert.Equal(ScalarType.Float32, b.ResidualStream.dtype);
        TensorAssert.Close(a.Logits!, b.Logits!, what: "Gemma bf16 storage + fp32 compute");
    }

    [Theory]
    [InlineData(3)]
    [InlineData(40)]
    public void ALargeCastWeightIsMultipliedInBlocksWithTheSameResult(int rows)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(11);

        // 70000 x 256 = 17.9 M elements: cast in row blocks for few input rows (decode) and for many (prefill), the
        // last block partial either way.
        var weight = randn(70000, 256, generator: generator).to(ScalarType.BFloat16);
        var bias = randn(70000, generator: generator).to(ScalarType.BFloat16);
        var x = randn(rows, 256, generator: generator);
        var expected = nn.functional.linear(x, weight.to(ScalarType.Float32), bias.to(ScalarType.Float32));
        var actual = WeightCast.Linear(x, weight, bias);
        Assert.Equal(ScalarType.Float32, actual.dtype);
        TensorAssert.Close(expected, actual, what: "blocked cast linear");
    }

    [Fact]
    public void ACastLinearStaysDifferentiableThroughItsBlocks()
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(12);

        // Blocks reuse one cast buffer unless autograd needs each block's weight kept: the gradient must be the full
        // weight's, not the last block's written over the others.
        var weight = randn(9000, 256, generator: generator).to(ScalarType.BFloat16);
        var x = randn(2, 256, generator: generator).requires_grad_();
        WeightCast.Linear(x, weight, null).square().sum().backward();
        var reference = x.detach().clone().requires_grad_();
        nn.functional.linear(reference, weight.to(ScalarType.Float32)).square().sum().backward();
        TensorAssert.Close(reference.grad!, x.grad!, what: "input gradient through the blocked cast");
    }

    /// <summary>The fixture model in float32 with every weight rounded to bfloat16 (the reference of the mixed mode).</summary>
    internal static HookedLlava RoundedFloat32Model()
    {
        var model = HookedLlava.FromPretrained(Fixture.ModelDir, new LlavaLoadOptions { WeightLoading = WeightLoading.Copied });
        RoundToBf16(model);
        return model;
    }

    private static void RoundToBf16(nn.Module model)
    {
        using var noGrad = no_grad();
        foreach (var parameter in model.parameters())
        {
            using var rounded = parameter.to(ScalarType.BFloat16).to(ScalarType.Float32);
            parameter.copy_(rounded);
        }
    }

    internal static LlavaPrompt ImageChatPrompt(HookedLlava model) =>
        model.Processor!.Prepare(Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("rendered_chat_template").GetString()!, [Fixture.Image("gradient_rgb")], raw: true);

    private static long Bytes(HookedLlava model) => model.parameters().Sum(p => p.numel() * p.element_size());

    private static void WriteAsBf16(string source, string destination)
    {
        using var file = SafetensorsFile.Open(source);
        var tensors = file.Names.Select(n =>
        {
            var t = file.Load(n);
            return new KeyValuePair<string, Tensor>(n, t.is_floating_point() ? t.to(ScalarType.BFloat16) : t);
        }).ToList();
        SafetensorsWriter.Save(destination, tensors);
        foreach (var (_, t) in tensors)
        {
            t.Dispose();
        }
    }
}
