using LlavaInterp.Hooks;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Gemma;

/// <summary>Float32 parity with the HF 4.46.3 goldens of the tiny-llava-gemma language model.</summary>
public sealed class GemmaParityTests(ITestOutputHelper output)
{
    private double Check(string what, Tensor expected, Tensor actual, double atol = TensorAssert.ActivationAtol, double rtol = TensorAssert.ActivationRtol)
    {
        double diff = TensorAssert.Close(expected, actual, atol, rtol, what);
        output.WriteLine($"{what}: max |diff| {diff:E2}");
        return diff;
    }

    [Fact]
    public void TextPromptHiddenStatesAndLogitsMatchGolden()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var (result, cache) = model.RunWithCache(GemmaInput.FromIds(TinyGemma.TextIds));
        using (result)
        using (cache)
        {
            var hidden = Fixture.Load("lm.text_chat.hidden_states");
            for (int i = 0; i < 4; i++)
            {
                Check($"blocks.{i}.hook_resid_pre", hidden[i], cache[$"blocks.{i}.hook_resid_pre"]);
            }

            Check("last hidden state (ln_final output)", hidden[4], result.LastHiddenState!);
            Check("logits", Fixture.Load("lm.text_chat.logits"), result.Logits!);
            Assert.Equal(ScalarType.Float32, result.Logits!.dtype);
        }
    }

    [Fact]
    public void ImagePromptEveryLanguageModelGoldenMatches()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var embeds = TinyGemma.ImageEmbeds;
        var (result, cache) = model.RunWithCache(new GemmaInput { InputsEmbeds = embeds });
        using (result)
        using (cache)
        {
            var hidden = Fixture.Load("lm.image_chat.hidden_states");
            var residPost = Fixture.Load("lm.image_chat.resid_post");
            var attentions = Fixture.Load("lm.image_chat.attentions");

            // hook_embed is the scaled embedding: HF's inputs_embeds × float32(sqrt(64)) = hidden_states[0].
            Check("hook_embed", hidden[0], cache["hook_embed"]);
            Check("hook_embed / 8 = inputs_embeds", embeds, cache["hook_embed"] / 8.0);
            for (int i = 0; i < 4; i++)
            {
                Check($"blocks.{i}.hook_resid_pre", hidden[i], cache[$"blocks.{i}.hook_resid_pre"]);
                Check($"blocks.{i}.hook_resid_post", residPost[i], cache[$"blocks.{i}.hook_resid_post"]);
                Check($"blocks.{i}.attn.hook_pattern", attentions[i], cache[$"blocks.{i}.attn.hook_pattern"], TensorAssert.AttentionAtol, 0);
            }

            Check("last hidden state", hidden[4], result.LastHiddenState!);
            Check("residual stream = last resid_post", residPost[3], result.ResidualStream);
            Check("logits", Fixture.Load("lm.image_chat.logits"), result.Logits!);

            // Layer 2 internals.
            var layer = model.Model.Layers[2];
            Check("layer2 ln1 module output", Fixture.Load("lm.image_chat.layer2.ln1_out"), layer.InputLayernorm.call(cache["blocks.2.hook_resid_pre"]));
            var gain1 = layer.InputLayernorm.Weight + 1.0;
            Check("ln1.hook_normalized·(1+w)", Fixture.Load("lm.image_chat.layer2.ln1_out"), cache["blocks.2.ln1.hook_normalized"] * gain1);
            var x = cache["blocks.2.hook_resid_pre"].to(float64);
            var expectedScale = (x.pow(2).mean([-1L], keepdim: true) + 1e-6).rsqrt();
            Check("ln1.hook_scale = 1/rms", expectedScale, cache["blocks.2.ln1.hook_scale"]);
            Assert.Equal(new long[] { 1, 35, 1 }, cache["blocks.2.ln1.hook_scale"].shape);

            Assert.Equal(new long[] { 1, 35, 4, 16 }, cache["blocks.2.attn.hook_q"].shape);
            Assert.Equal(new long[] { 1, 35, 1, 16 }, cache["blocks.2.attn.hook_k"].shape);
            Check("hook_q (q_proj)", Fixture.Load("lm.image_chat.layer2.q_proj"), cache["blocks.2.attn.hook_q"].reshape(1, 35, 64));
            Check("hook_k (k_proj)", Fixture.Load("lm.image_chat.layer2.k_proj"), cache["blocks.2.attn.hook_k"].reshape(1, 35, 16));
            Check("hook_v (v_proj)", Fixture.Load("lm.image_chat.layer2.v_proj"), cache["blocks.2.attn.hook_v"].reshape(1, 35, 16));
            Check("hook_rot_q", Fixture.Load("lm.image_chat.layer2.q_rot"), cache["blocks.2.attn.hook_rot_q"].transpose(1, 2));
            Check("hook_rot_k", Fixture.Load("lm.image_chat.layer2.k_rot"), cache["blocks.2.attn.hook_rot_k"].transpose(1, 2));
            var (cos, sin) = model.Model.RotaryEmb.call(arange(35L).unsqueeze(0));
            Check("rope cos", Fixture.Load("lm.image_chat.layer2.rope_cos"), cos);
            Check("rope sin", Fixture.Load("lm.image_chat.layer2.rope_sin"), sin);

            var scores = cache["blocks.2.attn.hook_attn_scores"];
            Assert.Equal(new long[] { 1, 4, 35, 35 }, scores.shape);
            Assert.Equal(finfo(ScalarType.Float32).min, scores[0, 0, 0, 1].item<float>());
            Check("softmax(hook_attn_scores)", attentions[2], scores.softmax(-1), TensorAssert.AttentionAtol, 0);

            var attnOut = Fixture.Load("lm.image_chat.layer2.attn_out");
            Check("hook_attn_out", attnOut, cache["blocks.2.hook_attn_out"]);
            Check("o_proj(hook_z)", attnOut, layer.SelfAttn.OProj.call(cache["blocks.2.attn.hook_z"].reshape(1, 35, 64)));
            Check("hook_resid_mid", Fixture.Load("lm.image_chat.layer2.resid_mid"), cache["blocks.2.hook_resid_mid"]);
            Check("layer2 ln2 module output", Fixture.Load("lm.image_chat.layer2.ln2_out"), layer.PostAttentionLayernorm.call(cache["blocks.2.hook_resid_mid"]));
            Check("ln2.hook_normalized·(1+w)", Fixture.Load("lm.image_chat.layer2.ln2_out"), cache["blocks.2.ln2.hook_normalized"] * (layer.PostAttentionLayernorm.Weight + 1.0));

            var mlpOut = Fixture.Load("lm.image_chat.layer2.mlp_out");
            Check("hook_mlp_out", mlpOut, cache["blocks.2.hook_mlp_out"]);
            Check("down_proj(hook_post)", mlpOut, layer.Mlp.DownProj.call(cache["blocks.2.mlp.hook_post"]));
            var pre = cache["blocks.2.mlp.hook_pre"];
            Check("hook_pre = gate_proj(ln2)", layer.Mlp.GateProj.call(Fixture.Load("lm.image_chat.layer2.ln2_out")), pre);
            Check("hook_pre_linear = up_proj(ln2)", layer.Mlp.UpProj.call(Fixture.Load("lm.image_chat.layer2.ln2_out")), cache["blocks.2.mlp.hook_pre_linear"]);
            Check("hook_post = gelu_tanh(pre)·pre_linear", nn.functional.gelu(pre, TorchSharp.Modules.GELU.Approximate.tanh) * cache["blocks.2.mlp.hook_pre_linear"], cache["blocks.2.mlp.hook_post"]);

            var ln = Fixture.Load("lm.image_chat.hidden_states")[4];
            Check("ln_final.hook_normalized·(1+w)", ln, cache["ln_final.hook_normalized"] * (model.Model.Norm.Weight + 1.0));
        }
    }

    [Fact]
    public void StopAtLayerReturnsTheResidualStreamAndStartAtLayerResumes()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        var residPost = Fixture.Load("lm.image_chat.resid_post");
        var (stopped, cache) = model.RunWithCache(new GemmaInput { InputsEmbeds = TinyGemma.ImageEmbeds }, stopAtLayer: 2);
        using (stopped)
        using (cache)
        {
            Assert.Null(stopped.Logits);
            Assert.Null(stopped.LastHiddenState);
            Check("stop at 2 = blocks.1.hook_resid_post", residPost[1], stopped.ResidualStream);
            Assert.Contains("blocks.1.hook_resid_post", cache.Keys);
            Assert.DoesNotContain("blocks.2.hook_resid_pre", cache.Keys);
            Assert.DoesNotContain("ln_final.hook_scale", cache.Keys);
        }

        using (var negative = model.call(new GemmaInput { InputsEmbeds = TinyGemma.ImageEmbeds, StopAtLayer = -1 }))
        {
            Check("stop at -1 = blocks.2.hook_resid_post", residPost[2], negative.ResidualStream);
        }

        using var resumed = model.call(new GemmaInput { InputsEmbeds = residPost[1], StartAtLayer = 2 });
        Check("start at 2 from resid_post[1]: logits", Fixture.Load("lm.image_chat.logits"), resumed.Logits!);

        using var slice = model.call(new GemmaInput { InputsEmbeds = residPost[0], StartAtLayer = 1, StopAtLayer = 3 });
        Check("blocks 1..2 only", residPost[2], slice.ResidualStream);
    }

    [Fact]
    public void LogitsToKeepAndComputeLogits()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        using var last = model.call(new GemmaInput { InputIds = TinyGemma.TextIds, LogitsToKeep = 1 });
        Assert.Equal(new long[] { 1, 1, 640 }, last.Logits!.shape);
        Check("last logits", Fixture.Load("lm.text_chat.logits")[.., ^1..], last.Logits!);
        using var none = model.call(new GemmaInput { InputIds = TinyGemma.TextIds, ComputeLogits = false });
        Assert.Null(none.Logits);
        Check("last hidden state without logits", Fixture.Load("lm.text_chat.hidden_states")[4], none.LastHiddenState!);
    }
}
