using LlavaInterp.Hooks;
using LlavaInterp.Llava;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Llava;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Gemma;

/// <summary>
/// TransformerLens's cache analysis (accumulated_resid, decompose_resid, stack_head_results, apply_ln_to_stack,
/// logit_attrs, remove_batch_dim) and its optional hooks (hook_result, hook_attn_in, hook_q/k/v_input, hook_mlp_in),
/// each checked against the formula TransformerLens defines it by, on the fixture LLaVA's language model.
/// </summary>
public sealed class CacheAnalysisTests(TinyLlavaFixture tiny) : IClassFixture<TinyLlavaFixture>
{
    private HookedLlava Model => tiny.Model;

    private HookedGemma Lm => tiny.Model.LanguageModel;

    private int Layers => Lm.Config.NumHiddenLayers;

    [Fact]
    public void AccumulatedResidStacksResidPreAndTheFinalStream()
    {
        using var scope = NewDisposeScope();
        var (output, cache) = Run();
        using (output)
        using (cache)
        {
            using var all = cache.AccumulatedResid(Lm);
            Assert.Equal([.. Enumerable.Range(0, Layers).Select(l => $"{l}_pre"), "final_post"], all.Labels);
            for (int l = 0; l < Layers; l++)
            {
                TensorAssert.Close(cache[$"blocks.{l}.hook_resid_pre"], all.Components[l], atol: 0, rtol: 0, what: $"{l}_pre");
            }

            TensorAssert.Close(cache[$"blocks.{Layers - 1}.hook_resid_post"], all.Components[Layers], atol: 0, rtol: 0, what: "final_post");

            using var mid = cache.AccumulatedResid(Lm, layer: 2, inclMid: true, mlpInput: true);
            Assert.Equal(["0_pre", "0_mid", "1_pre", "1_mid", "2_pre", "2_mid"], mid.Labels);
            TensorAssert.Close(cache["blocks.1.hook_resid_mid"], mid.Components[3], atol: 0, rtol: 0, what: "1_mid");

            // apply_ln with the final norm's cached scale: the final stream becomes ln_final's normalised stream.
            using var normed = cache.AccumulatedResid(Lm, applyLn: true, position: -1);
            TensorAssert.Close(cache["ln_final.hook_normalized"].select(-2, -1), normed.Components[Layers], what: "final_post after apply_ln");
            Assert.Equal(cache["hook_embed"].shape[0], normed.Components.shape[1]);
            Assert.Equal(3, normed.Components.dim());
        }
    }

    [Fact]
    public void DecomposeResidSumsToTheStreamItDecomposes()
    {
        using var scope = NewDisposeScope();
        var (output, cache) = Run();
        using (output)
        using (cache)
        {
            using var toTwo = cache.DecomposeResid(Lm, layer: 2);
            Assert.Equal(["embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"], toTwo.Labels);
            TensorAssert.Close(cache["blocks.2.hook_resid_pre"], toTwo.Components.sum(0L), what: "sum = resid_pre 2");

            using var mlpInput = cache.DecomposeResid(Lm, layer: 2, mlpInput: true);
            TensorAssert.Close(cache["blocks.2.hook_resid_mid"], mlpInput.Components.sum(0L), what: "sum = resid_mid 2");

            using var final = cache.DecomposeResid(Lm);
            Assert.Equal(1 + (2 * Layers), final.Labels.Count);
            TensorAssert.Close(cache[$"blocks.{Layers - 1}.hook_resid_post"], final.Components.sum(0L), what: "sum = final resid_post");

            using var attnOnly = cache.DecomposeResid(Lm, layer: 3, mode: ResidComponents.Attn, inclEmbeds: false);
            Assert.Equal(["0_attn_out", "1_attn_out", "2_attn_out"], attnOnly.Labels);

            // apply_ln_to_stack is linear: the normalised parts sum to ln1's normalised input of block 2.
            using var normed = cache.DecomposeResid(Lm, layer: 2, applyLn: true);
            TensorAssert.Close(cache["blocks.2.ln1.hook_normalized"], normed.Components.sum(0L), what: "normalised sum = ln1.hook_normalized");
        }
    }

    [Fact]
    public void HeadResultsSumToAttnOutAndWithTheRemainderToResidPost()
    {
        using var scope = NewDisposeScope();
        var (output, cache) = Run();
        using (output)
        using (cache)
        {
            int heads = Lm.Config.NumAttentionHeads;
            using var stack = cache.StackHeadResults(Lm, layer: 2, inclRemainder: true);
            Assert.Equal([.. Enumerable.Range(0, 2).SelectMany(l => Enumerable.Range(0, heads).Select(h => $"L{l}H{h}")), "remainder"], stack.Labels);
            for (int l = 0; l < 2; l++)
            {
                TensorAssert.Close(cache[$"blocks.{l}.hook_attn_out"], stack.Components.narrow(0, l * heads, heads).sum(0L), what: $"heads of block {l} = attn_out");
            }

            TensorAssert.Close(cache["blocks.1.hook_resid_post"], stack.Components.sum(0L), what: "heads + remainder = resid_post 1");
            Assert.Throws<ArgumentOutOfRangeException>(() => cache.StackHeadResults(Lm, layer: Layers + 1));
        }
    }

    [Fact]
    public void UseAttnResultFiresHookResultWithoutChangingTheModel()
    {
        using var scope = NewDisposeScope();
        var (plain, plainCache) = Run();
        Lm.UseAttnResult = true;
        try
        {
            var (withResult, cache) = Run();
            using (withResult)
            using (cache)
            {
                TensorAssert.Close(plain.Logits!, withResult.Logits!, what: "logits with use_attn_result");
                var result = cache["blocks.1.attn.hook_result"];
                Assert.Equal([.. cache["blocks.1.hook_attn_out"].shape[..2], Lm.Config.NumAttentionHeads, Lm.Config.HiddenSize], result.shape);
                TensorAssert.Close(cache["blocks.1.hook_attn_out"], result.sum(2), what: "sum of hook_result = attn_out");

                // stack_head_results reads the cached hook_result, and computes the same from hook_z without it.
                using var fromResult = cache.StackHeadResults(Lm, layer: 2);
                using var fromZ = plainCache.StackHeadResults(Lm, layer: 2);
                TensorAssert.Close(fromZ.Components, fromResult.Components, what: "head results from hook_z vs hook_result");
            }

            // Zeroing one head's result removes exactly its share of attn_out.
            using var zeroHead = Model.RunWithHooks(Input(), ("blocks.0.attn.hook_result", (a, _) =>
            {
                var edited = a.clone();
                edited.select(2, 0).zero_();
                return edited;
            }));
            Assert.False(zeroHead.Logits!.allclose(plain.Logits!));
        }
        finally
        {
            Lm.UseAttnResult = false;
            plain.Dispose();
            plainCache.Dispose();
        }
    }

    [Fact]
    public void LogitAttrsOfTheFullDecompositionAreTheLogits()
    {
        using var scope = NewDisposeScope();
        var (output, cache) = Run();
        using (output)
        using (cache)
        {
            var logits = output.Logits!;
            long batch = logits.shape[0];
            var predicted = logits.select(1, -1).argmax(-1);              // [batch]
            var other = full([batch], 7L, dtype: ScalarType.Int64);
            using var parts = cache.DecomposeResid(Lm, position: -1);
            var attrs = cache.LogitAttrs(Lm, parts.Components, predicted, position: -1);   // [components, batch]
            Assert.Equal(new long[] { parts.Labels.Count, batch }, attrs.shape);
            var expected = logits.select(1, -1).gather(-1, predicted.unsqueeze(-1)).squeeze(-1);
            TensorAssert.Close(expected, attrs.sum(0L), what: "summed logit attributions = logit");

            var diff = cache.LogitAttrs(Lm, parts.Components, predicted, other, position: -1).sum(0L);
            var expectedDiff = expected - logits.select(1, -1).gather(-1, other.unsqueeze(-1)).squeeze(-1);
            TensorAssert.Close(expectedDiff, diff, what: "summed logit-difference attributions");

            // Every position at once, one token per example: [components, batch, pos].
            using var allPos = cache.DecomposeResid(Lm);
            var perPos = cache.LogitAttrs(Lm, allPos.Components, predicted).sum(0L);
            var expectedPerPos = logits.gather(-1, predicted.view(batch, 1, 1).expand(batch, logits.shape[1], 1)).squeeze(-1);
            TensorAssert.Close(expectedPerPos, perPos, what: "logit attributions at every position");
            Assert.Throws<ArgumentException>(() => cache.LogitAttrs(Lm, parts.Components, predicted, full([batch, 2], 1L), position: -1));
        }
    }

    [Fact]
    public void SplitQkvInputHooksFeedEachHeadItsOwnInput()
    {
        using var scope = NewDisposeScope();
        var (plain, plainCache) = Run();
        Lm.UseSplitQkvInput = true;
        try
        {
            var (split, cache) = Run();
            using (split)
            using (cache)
            {
                TensorAssert.Close(plain.Logits!, split.Logits!, what: "logits with use_split_qkv_input");
                var qInput = cache["blocks.1.hook_q_input"];
                Assert.Equal(Lm.Config.NumAttentionHeads, qInput.shape[2]);
                Assert.Equal(Lm.Config.NumKeyValueHeads, cache["blocks.1.hook_k_input"].shape[2]);
                TensorAssert.Close(cache["blocks.1.hook_resid_pre"], qInput.select(2, 0), atol: 0, rtol: 0, what: "q_input copy");
            }

            // Patch only head 0's query input with another stream: head 0's q becomes ln1(patched)·W_Q[head 0], the others keep theirs.
            var replacement = plainCache["blocks.0.hook_resid_pre"];
            var (patched, patchedCache) = RunWithCacheAndHooks(("blocks.1.hook_q_input", (a, _) =>
            {
                var edited = a.clone();
                edited.select(2, 0).copy_(replacement);
                return edited;
            }));
            using (patched)
            using (patchedCache)
            {
                var block = Lm.Model.Layers[1];
                int dh = block.SelfAttn.HeadDim;
                var wq0 = block.SelfAttn.QProj.Weight.narrow(0, 0, dh);
                var expectedQ0 = nn.functional.linear(block.InputLayernorm.call(replacement), wq0);
                TensorAssert.Close(expectedQ0, patchedCache["blocks.1.attn.hook_q"].select(2, 0), what: "patched head 0 query");
                var q = plainCache["blocks.1.attn.hook_q"];
                TensorAssert.Close(q.narrow(2, 1, q.shape[2] - 1), patchedCache["blocks.1.attn.hook_q"].narrow(2, 1, q.shape[2] - 1), what: "other heads' queries");
            }
        }
        finally
        {
            Lm.UseSplitQkvInput = false;
            plain.Dispose();
            plainCache.Dispose();
        }
    }

    [Fact]
    public void AttnInAndMlpInHooksFireAndEditWhatTheSublayerReads()
    {
        using var scope = NewDisposeScope();
        var (plain, plainCache) = Run();
        Lm.UseAttnIn = true;
        Lm.UseHookMlpIn = true;
        try
        {
            var (hooked, cache) = Run();
            using (plain)
            using (plainCache)
            using (hooked)
            using (cache)
            {
                TensorAssert.Close(plain.Logits!, hooked.Logits!, what: "logits with use_attn_in + use_hook_mlp_in");
                Assert.Equal(Lm.Config.NumAttentionHeads, cache["blocks.0.hook_attn_in"].shape[2]);
                TensorAssert.Close(cache["blocks.1.hook_resid_mid"], cache["blocks.1.hook_mlp_in"], atol: 0, rtol: 0, what: "mlp_in = resid_mid");
            }

            // A zero MLP input gives a zero MLP output (ln2(0) = 0, gelu(0)·0 = 0): resid_post = resid_mid.
            var (zeroed, zeroedCache) = RunWithCacheAndHooks(("blocks.1.hook_mlp_in", (a, _) => zeros_like(a)));
            using (zeroed)
            using (zeroedCache)
            {
                TensorAssert.Close(zeroedCache["blocks.1.hook_resid_mid"], zeroedCache["blocks.1.hook_resid_post"], atol: 0, rtol: 0, what: "resid_post with a zero MLP input");
            }
        }
        finally
        {
            Lm.UseAttnIn = false;
            Lm.UseHookMlpIn = false;
        }
    }

    [Fact]
    public void RemoveBatchDimSqueezesSingleExampleCachesOnly()
    {
        using var scope = NewDisposeScope();
        var (output, cache) = Run();
        using (output)
        using (cache)
        {
            var shape = cache["blocks.0.hook_resid_post"].shape;
            cache.RemoveBatchDim();
            Assert.False(cache.HasBatchDim);
            Assert.Equal(shape[1..], cache["blocks.0.hook_resid_post"].shape);
            using var parts = cache.DecomposeResid(Lm, layer: 1);
            Assert.Equal(3, parts.Components.dim());
            Assert.Throws<InvalidOperationException>(cache.RemoveBatchDim);
        }

        using var two = new ActivationCache();
        two.Add("a", ones(2, 3));
        two.Add("b", ones(1, 3));
        var error = Assert.Throws<InvalidOperationException>(two.RemoveBatchDim);
        Assert.Contains("'a'", error.Message, StringComparison.Ordinal);
        Assert.Equal(2, two["b"].dim());
    }

    private LlavaInput Input() => LlavaInput.From(tiny.ImageChatPrompt());

    private (LlavaOutputLike Output, ActivationCache Cache) Run()
    {
        var (output, cache) = Model.RunWithCache(Input());
        return (new LlavaOutputLike(output.Logits!), cache);
    }

    private (LlavaOutputLike Output, ActivationCache Cache) RunWithCacheAndHooks(HookSpec hook)
    {
        using var hooks = Model.Hooks(hook);
        return Run();
    }

    /// <summary>The logits of a run (the fixture's tests only need those).</summary>
    private sealed record LlavaOutputLike(Tensor? Logits) : IDisposable
    {
        public void Dispose() => Logits?.Dispose();
    }
}
