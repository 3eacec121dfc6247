using LlavaInterp.Hooks;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Gemma;

/// <summary>KV-cached decoding, greedy generation, left padding and steering against the HF goldens.</summary>
public sealed class GemmaDecodingTests(ITestOutputHelper output)
{
    private void Check(string what, Tensor expected, Tensor actual)
    {
        double diff = TensorAssert.Close(expected, actual, what: what);
        output.WriteLine($"{what}: max |diff| {diff:E2}");
    }

    [Fact]
    public void CachedDecodeOneTokenAtATimeEqualsFullForward()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var ids = TinyGemma.TextIds;
        using var full = model.call(GemmaInput.FromIds(ids));
        using var cache = model.CreateCache(initialCapacity: 8); // forces the storage to grow several times
        const int prefix = 30;
        using (var first = model.call(GemmaInput.FromIds(ids[.., ..prefix], cache: cache)))
        {
            Check("prefill logits", full.Logits![.., ..prefix], first.Logits!);
        }

        Assert.Equal(prefix, cache.Length);
        for (int p = prefix; p < ids.shape[1]; p++)
        {
            using var step = model.call(GemmaInput.FromIds(ids[.., p..(p + 1)], cache: cache));
            Assert.Equal(p, step.PastLength);
            TensorAssert.Close(full.Logits![.., p..(p + 1)], step.Logits!, what: $"position {p}");
        }

        Assert.Equal(ids.shape[1], cache.Length);
        Assert.Equal(new long[] { 1, 1, 41, 16 }, cache.Keys(3).shape);
        Check("decoded logits vs golden", Fixture.Load("lm.text_chat.logits")[.., ^1..], full.Logits![.., ^1..]);
    }

    [Fact]
    public void GreedyTextGenerationMatchesGolden()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var prompt = TinyGemma.TextIds;
        var (newIds, stepLogits) = TinyGemma.Greedy(model, GemmaInput.FromIds(prompt, Fixture.Load("prompt.text_chat.attention_mask")), 12);
        TensorAssert.Equal(Fixture.Load("gen.text_chat.sequences"), cat([prompt, newIds], 1), "sequences");
        Check("step logits", Fixture.Load("gen.text_chat.step_logits"), stepLogits);
    }

    [Fact]
    public void GreedyImageGenerationFromInputsEmbedsMatchesGolden()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var (newIds, stepLogits) = TinyGemma.Greedy(model, new GemmaInput { InputsEmbeds = TinyGemma.ImageEmbeds }, 12);
        TensorAssert.Equal(Fixture.Load("gen.image_chat.sequences")[.., 35..], newIds, "new ids");
        Check("step logits", Fixture.Load("gen.image_chat.step_logits"), stepLogits);
    }

    [Fact]
    public void DefaultPositionIdsFromMaskMatchGenerate()
    {
        using var scope = NewDisposeScope();
        var positions = GemmaModel.PositionIdsFromAttentionMask(Fixture.Load("prompt.batch.attention_mask"), 56);
        TensorAssert.Equal(Fixture.Load("prompt.batch.position_ids"), positions, "position ids");
        TensorAssert.Equal(Fixture.Load("prompt.batch.position_ids")[.., ^3..], GemmaModel.PositionIdsFromAttentionMask(Fixture.Load("prompt.batch.attention_mask"), 3), "last 3");
    }

    /// <summary>
    /// The golden left-padded LLaVA batch at language-model level: the merged inputs_embeds are rebuilt from
    /// embed_tokens and the golden projector outputs of the two images (LLaVA's merge: image-token rows replaced in order).
    /// </summary>
    [Fact]
    public void LeftPaddedImageBatchMatchesGoldenLastLogitsAndGeneration()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var ids = Fixture.Load("prompt.batch.input_ids");
        var mask = Fixture.Load("prompt.batch.attention_mask");
        var embeds = model.Model.EmbedTokens.call(ids).clone();
        var features = new[] { Fixture.Load("image.gradient_rgb.image_features"), Fixture.Load("image.rgba_alpha.image_features") };
        for (int row = 0; row < 2; row++)
        {
            var positions = ids[row].eq(6).nonzero().squeeze(1);
            Assert.Equal(16, positions.shape[0]);
            embeds[row].index_copy_(0, positions, features[row][0]);
        }

        // Default position ids from the mask; the golden forward passed the same ids explicitly.
        using (var result = model.call(new GemmaInput { InputsEmbeds = embeds, AttentionMask = mask }))
        {
            Assert.False(result.Logits!.isnan().any().item<bool>(), "fully masked padding rows must not produce NaN");
            Check("batch last logits", Fixture.Load("batch.last_logits"), result.Logits![.., -1]);
        }

        using (var explicitPositions = model.call(new GemmaInput { InputsEmbeds = embeds, AttentionMask = mask, PositionIds = Fixture.Load("prompt.batch.position_ids") }))
        {
            Check("batch last logits, explicit position ids", Fixture.Load("batch.last_logits"), explicitPositions.Logits![.., -1]);
        }

        var (newIds, _) = TinyGemma.Greedy(model, new GemmaInput { InputsEmbeds = embeds, AttentionMask = mask }, 12);
        TensorAssert.Equal(Fixture.Load("gen.batch.sequences")[.., 56..], newIds, "batched greedy ids");
    }

    [Fact]
    public void LeftPaddedTextBatchEqualsUnpaddedRows()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var longIds = TinyGemma.TextIds;                       // 41 tokens
        var shortIds = tensor(Fixture.Manifest.GetProperty("prompts").GetProperty("text_chat")
            .GetProperty("apply_chat_template_tokenize_true_ids").EnumerateArray().Take(23).Select(e => e.GetInt64()).ToArray()).unsqueeze(0);
        long pad = longIds.shape[1] - shortIds.shape[1];
        var batch = cat([longIds, cat([zeros(1, pad, ScalarType.Int64), shortIds], 1)], 0);
        var mask = cat([ones(1, longIds.shape[1], ScalarType.Int64), cat([zeros(1, pad, ScalarType.Int64), ones(1, shortIds.shape[1], ScalarType.Int64)], 1)], 0);

        var (batchIds, batchLogits) = TinyGemma.Greedy(model, GemmaInput.FromIds(batch, mask), 5);
        var (longNew, longLogits) = TinyGemma.Greedy(model, GemmaInput.FromIds(longIds), 5);
        var (shortNew, shortLogits) = TinyGemma.Greedy(model, GemmaInput.FromIds(shortIds), 5);
        Check("row 0 step logits", longLogits[.., 0], batchLogits[.., 0]);
        Check("row 1 (left-padded) step logits", shortLogits[.., 0], batchLogits[.., 1]);
        TensorAssert.Equal(cat([longNew, shortNew], 0), batchIds, "batched greedy ids");
    }

    [Fact]
    public void SteeringHookMatchesGoldenLogitsAndCachedGeneration()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var vector = Fixture.Load("steer.vector");
        HookFunction steer = (x, _) => x + vector;
        using (var steered = model.RunWithHooks(new GemmaInput { InputsEmbeds = TinyGemma.ImageEmbeds }, ("blocks.2.hook_resid_post", steer)))
        {
            Check("steered logits", Fixture.Load("steer.logits"), steered.Logits!);
        }

        using (model.AddHook("blocks.2.hook_resid_post", steer))
        {
            var (newIds, stepLogits) = TinyGemma.Greedy(model, new GemmaInput { InputsEmbeds = TinyGemma.ImageEmbeds }, 12);
            TensorAssert.Equal(Fixture.Load("steer.gen.sequences")[.., 35..], newIds, "steered ids");
            Check("steered step logits", Fixture.Load("steer.gen.step_logits"), stepLogits);
        }

        using var plain = model.call(new GemmaInput { InputsEmbeds = TinyGemma.ImageEmbeds });
        Check("hook removed", Fixture.Load("lm.image_chat.logits"), plain.Logits!);
    }

    [Fact]
    public void HookContextsReportAbsolutePositionsDuringCachedDecoding()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var seen = new List<(string Name, long Offset, long Positions, long Keys)>();
        using var hook = model.AddHook(n => n is "blocks.1.hook_resid_pre" or "blocks.1.attn.hook_pattern" or "hook_embed", (x, ctx) =>
        {
            seen.Add((ctx.Name, ctx.PositionOffset, x.dim() == 3 ? x.shape[1] : x.shape[2], x.shape[^1]));
            return x;
        });
        var ids = TinyGemma.TextIds;
        using var cache = model.CreateCache();
        model.call(GemmaInput.FromIds(ids[.., ..38], cache: cache)).Dispose();
        for (int p = 38; p < 41; p++)
        {
            model.call(GemmaInput.FromIds(ids[.., p..(p + 1)], cache: cache)).Dispose();
        }

        var resid = seen.Where(s => s.Name == "blocks.1.hook_resid_pre").ToList();
        Assert.Equal(new long[] { 0, 38, 39, 40 }, resid.Select(s => s.Offset));
        Assert.Equal(new long[] { 38, 1, 1, 1 }, resid.Select(s => s.Positions));
        var pattern = seen.Where(s => s.Name == "blocks.1.attn.hook_pattern").ToList();
        Assert.Equal(new long[] { 38, 39, 40, 41 }, pattern.Select(s => s.Keys));
        Assert.Equal(new long[] { 0, 38, 39, 40 }, seen.Where(s => s.Name == "hook_embed").Select(s => s.Offset));
        Assert.Equal(new long[] { 38, 1, 1, 1 }, pattern.Select(s => s.Positions));
        Assert.Equal(0, HookRun.PositionOffset);
    }

    [Fact]
    public void FailedPassLeavesTheCacheUnchanged()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var ids = TinyGemma.TextIds;
        using var full = model.call(GemmaInput.FromIds(ids));
        using var cache = model.CreateCache();
        model.call(GemmaInput.FromIds(ids[.., ..40], cache: cache)).Dispose();
        var failing = HookSpec.ForName("blocks.3.hook_mlp_out", (_, _) => throw new InvalidOperationException("boom"));
        var error = Assert.Throws<HookException>(() => model.RunWithHooks(GemmaInput.FromIds(ids[.., 40..], cache: cache), failing));
        Assert.Equal("blocks.3.hook_mlp_out", error.HookName);
        Assert.Equal(40, cache.Length);
        using var step = model.call(GemmaInput.FromIds(ids[.., 40..], cache: cache));
        Check("after a failed pass", full.Logits![.., 40..], step.Logits!);

        cache.Truncate(20);
        Assert.Equal(20, cache.Length);
        using var redo = model.call(GemmaInput.FromIds(ids[.., 20..], cache: cache));
        Check("after truncation", full.Logits![.., 20..], redo.Logits!);
        cache.Reset();
        Assert.Equal(0, cache.Length);
        Assert.Throws<InvalidOperationException>(() => cache.Keys(0));
    }
}
