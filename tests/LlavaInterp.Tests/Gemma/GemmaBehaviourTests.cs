using LlavaInterp.Hooks;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Gemma;

/// <summary>Hook names, reduced precision, non-finite detection and input validation.</summary>
public sealed class GemmaBehaviourTests(ITestOutputHelper output)
{
    private static readonly string[] BlockHooks =
    [
        "hook_resid_pre",
        "hook_attn_in",
        "hook_q_input",
        "hook_k_input",
        "hook_v_input",
        "ln1.hook_scale",
        "ln1.hook_normalized",
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_rot_q",
        "attn.hook_rot_k",
        "attn.hook_attn_scores",
        "attn.hook_pattern",
        "attn.hook_z",
        "attn.hook_result",
        "hook_attn_out",
        "hook_resid_mid",
        "hook_mlp_in",
        "ln2.hook_scale",
        "ln2.hook_normalized",
        "mlp.hook_pre",
        "mlp.hook_pre_linear",
        "mlp.hook_post",
        "hook_mlp_out",
        "hook_resid_post",
    ];

    [Fact]
    public void HookNamesAreTheGoldenListInExecutionOrder()
    {
        using var model = new HookedGemma(TinyGemma.Config, ScalarType.Float32, torch.META);
        var expected = new List<string> { "hook_embed" };
        for (int i = 0; i < 4; i++)
        {
            expected.AddRange(BlockHooks.Select(h => $"blocks.{i}.{h}"));
        }

        expected.Add("ln_final.hook_scale");
        expected.Add("ln_final.hook_normalized");
        Assert.Equal(expected, model.HookNames);
        Assert.Equal(2, model.HookDict["blocks.2.attn.hook_z"].Layer);
        Assert.Null(model.HookDict["ln_final.hook_scale"].Layer);
    }

    [Fact]
    public void HooksFireInTheListedOrder()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var fired = new List<string>();
        using var hooks = model.Hooks(HookSpec.ForFilter(_ => true, (x, ctx) =>
        {
            fired.Add(ctx.Name);
            return x;
        }));
        model.call(GemmaInput.FromIds(TinyGemma.TextIds)).Dispose();

        // TransformerLens's optional hooks are listed but fire only when switched on.
        string[] optional = ["hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input", "attn.hook_result", "hook_mlp_in"];
        Assert.Equal(model.HookNames.Where(n => !optional.Any(o => n.EndsWith("." + o, StringComparison.Ordinal))), fired);

        // Switched on (split Q/K/V inputs aside: ln1 then runs once per input), every listed hook fires in order.
        model.UseAttnResult = model.UseAttnIn = model.UseHookMlpIn = true;
        fired.Clear();
        model.call(GemmaInput.FromIds(TinyGemma.TextIds)).Dispose();
        Assert.Equal(model.HookNames.Where(n => !n.EndsWith("_input", StringComparison.Ordinal)), fired);
    }

    /// <summary>
    /// bfloat16 keeps 8 significant bits (unit round-off u = 2⁻⁹ ≈ 0.2%) and float16 11 (u = 2⁻¹¹ ≈ 0.05%). Every
    /// stored activation is re-rounded about six times per layer, so after 4 layers the logits are expected within a
    /// few percent of their scale in bf16 (measured: 1.4% of max |logit|) and a fraction of a percent in fp16 (measured
    /// 0.16%). The bounds — 5% and 1% of max |logit|, about 25u and 20u — leave a 3-6× margin; argmax must agree
    /// wherever the float32 top-1/top-2 gap exceeds twice the bound.
    /// </summary>
    [Theory]
    [InlineData(ScalarType.BFloat16, 0.05)]
    [InlineData(ScalarType.Float16, 0.01)]
    public void ReducedPrecisionStaysCloseToFloat32(ScalarType dtype, double fractionOfScale)
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load(dtype);
        Assert.All(model.parameters(), p => Assert.Equal(dtype, p.dtype));
        foreach (var (name, input, key) in new[]
        {
            ("text", GemmaInput.FromIds(TinyGemma.TextIds), "lm.text_chat.logits"),
            ("image", new GemmaInput { InputsEmbeds = TinyGemma.ImageEmbeds }, "lm.image_chat.logits"),
        })
        {
            var (result, cache) = model.RunWithCache(input);
            using (result)
            using (cache)
            {
                Assert.Equal(ScalarType.Float32, result.Logits!.dtype);
                Assert.Equal(dtype, result.ResidualStream.dtype);
                Assert.Equal(dtype, cache["blocks.1.attn.hook_pattern"].dtype);
                Assert.Equal(ScalarType.Float32, cache["blocks.1.ln1.hook_scale"].dtype);
                var golden = Fixture.Load(key);
                double bound = fractionOfScale * golden.abs().max().item<float>();
                double diff = TensorAssert.Close(golden, result.Logits!, bound, 0, $"{dtype} {name} logits");
                output.WriteLine($"{dtype} {name}: max |diff| {diff:E2} (bound {bound:E2})");
                var top2 = golden.topk(2, -1).values;
                var clear = (top2.select(-1, 0) - top2.select(-1, 1)).gt(2 * bound);
                var agree = result.Logits!.argmax(-1).eq(golden.argmax(-1));
                Assert.True(agree.logical_or(clear.logical_not()).all().item<bool>(), "argmax differs where the float32 margin is clear");
            }
        }
    }

    [Fact]
    public void NonFiniteLayerOutputIsNamed()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        using (no_grad())
        {
            model.Model.Layers[2].Mlp.DownProj.Weight[0, 0].fill_(double.PositiveInfinity);
        }

        var error = Assert.Throws<NonFiniteActivationException>(() => model.call(GemmaInput.FromIds(TinyGemma.TextIds) with { CheckFinite = true }));
        Assert.Equal(2, error.Layer);
        Assert.Equal("blocks.2.hook_resid_post", error.Location);
        Assert.Contains("layer 2", error.Message);
    }

    [Fact]
    public void NonFiniteFromAHookOrTheInputOrTheHeadIsNamed()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var nan = HookSpec.ForName("blocks.1.hook_mlp_out", (x, _) => x * double.NaN);
        var fromHook = Assert.Throws<NonFiniteActivationException>(() => model.RunWithHooks(GemmaInput.FromIds(TinyGemma.TextIds) with { CheckFinite = true }, nan));
        Assert.Equal(1, fromHook.Layer);

        var embeds = TinyGemma.ImageEmbeds.clone();
        embeds[0, 3, 5] = tensor(float.NaN);
        var fromInput = Assert.Throws<NonFiniteActivationException>(() => model.call(new GemmaInput { InputsEmbeds = embeds, CheckFinite = true }));
        Assert.Equal("hook_embed", fromInput.Location);
        Assert.Null(fromInput.Layer);

        using (no_grad())
        {
            model.Model.Norm.Weight[7].fill_(double.PositiveInfinity);
        }

        var fromHead = Assert.Throws<NonFiniteActivationException>(() => model.call(GemmaInput.FromIds(TinyGemma.TextIds) with { CheckFinite = true }));
        Assert.Equal("logits", fromHead.Location);

        // Without logits there is nothing to check, and the residual stream is returned as computed.
        using var noLogits = model.call(new GemmaInput { InputIds = TinyGemma.TextIds, ComputeLogits = false });
        Assert.Null(noLogits.Logits);
    }

    [Fact]
    public void BadInputsThrowTypedExceptions()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var ids = TinyGemma.TextIds;
        Assert.Throws<ArgumentException>(() => model.call(new GemmaInput()));
        Assert.Throws<ArgumentException>(() => model.call(new GemmaInput { InputIds = ids, InputsEmbeds = TinyGemma.ImageEmbeds }));
        var outOfRange = Assert.Throws<ArgumentOutOfRangeException>(() => model.call(GemmaInput.FromIds(tensor(new long[,] { { 2, 640 } }))));
        Assert.Contains("640", outOfRange.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => model.call(GemmaInput.FromIds(tensor(new long[,] { { -1 } }))));
        Assert.Throws<ArgumentException>(() => model.call(GemmaInput.FromIds(ids[0])));
        Assert.Throws<ArgumentException>(() => model.call(GemmaInput.FromIds(ids.to(ScalarType.Float32))));
        Assert.Throws<ArgumentException>(() => model.call(new GemmaInput { InputsEmbeds = zeros(1, 3, 65) }));
        Assert.Throws<ArgumentException>(() => model.call(GemmaInput.FromIds(ids, ones(1, 40, ScalarType.Int64))));
        Assert.Throws<ArgumentException>(() => model.call(new GemmaInput { InputIds = ids, PositionIds = zeros(new long[] { 1, 40 }, ScalarType.Int64) }));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.call(new GemmaInput { InputIds = ids, StopAtLayer = 5 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.call(new GemmaInput { InputsEmbeds = TinyGemma.ImageEmbeds, StartAtLayer = 3, StopAtLayer = 2 }));
        Assert.Throws<ArgumentException>(() => model.call(new GemmaInput { InputIds = ids, StartAtLayer = 1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.call(new GemmaInput { InputIds = ids, LogitsToKeep = -1 }));

        using var cache = model.CreateCache();
        Assert.Throws<ArgumentException>(() => model.call(new GemmaInput { InputIds = ids, Cache = cache, StopAtLayer = 2 }));
        model.call(GemmaInput.FromIds(ids, cache: cache)).Dispose();
        Assert.Throws<ArgumentException>(() => model.call(GemmaInput.FromIds(cat([ids, ids]), cache: cache)));
        using var wrongDepth = new GemmaKvCache(3);
        Assert.Throws<ArgumentException>(() => model.call(GemmaInput.FromIds(ids, cache: wrongDepth)));
        Assert.Throws<ArgumentException>(() => new HookedGemma(TinyGemma.Config, ScalarType.Float64, torch.META));
        Assert.Equal(41, cache.Length);
    }

    [Fact]
    public void InputsLongerThanMaxPositionEmbeddingsAreRejectedBeforeAnyBlockRuns()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        int max = model.Config.MaxPositionEmbeddings;
        int fired = 0;
        using var counter = model.AddHook("blocks.0.hook_resid_pre", (a, _) => { fired++; return a; });
        var tooLong = Assert.Throws<ContextLengthException>(() => model.call(GemmaInput.FromIds(ones(1, max + 1, ScalarType.Int64))));
        Assert.Equal(max + 1, tooLong.Length);
        Assert.Contains("max_position_embeddings", tooLong.Message, StringComparison.Ordinal);
        Assert.Contains($"{max + 1}", tooLong.Message, StringComparison.Ordinal);
        Assert.Contains($"{max}", tooLong.Message, StringComparison.Ordinal);

        using var cache = model.CreateCache();
        model.call(GemmaInput.FromIds(ones(1, max - 1, ScalarType.Int64), cache: cache)).Dispose();
        model.call(GemmaInput.FromIds(ones(1, 1, ScalarType.Int64), cache: cache)).Dispose();
        var past = Assert.Throws<ContextLengthException>(() => model.call(GemmaInput.FromIds(ones(1, 1, ScalarType.Int64), cache: cache)));
        Assert.Contains($"cache ({max} positions)", past.Message, StringComparison.Ordinal);
        Assert.Equal(max, cache.Length);
        Assert.Equal(2, fired);
    }

    [Fact]
    public void APatchedInLastResidualStaysTheCallersAfterTheOutputIsDisposed()
    {
        using var model = TinyGemma.Load();
        using var ids = TinyGemma.TextIds;
        using var patch = torch.zeros(ids.shape[0], ids.shape[1], model.Config.HiddenSize);
        using (var output = model.RunWithHooks(GemmaInput.FromIds(ids), ($"blocks.{model.Config.NumHiddenLayers - 1}.hook_resid_post", (_, _) => patch)))
        {
            TensorAssert.Close(patch, output.ResidualStream, 0, 0, "residual stream is the patch");
        }

        Assert.False(patch.IsInvalid);
        Assert.Equal(0.0, patch.abs().sum().item<float>());
    }
}
