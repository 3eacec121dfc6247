using LlavaInterp.Hooks;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Llava;

/// <summary>The whole LLaVA model against HF transformers 4.46.3 goldens (fixture README tolerances).</summary>
public sealed class LlavaParityTests(TinyLlavaFixture tiny) : IClassFixture<TinyLlavaFixture>
{
    private HookedLlava Model => tiny.Model;

    [Fact]
    public void ProcessorReproducesHfIdsPixelValuesAndImagePositions()
    {
        using var prompt = tiny.ImageChatPrompt();
        using var ids = Fixture.Load("prompt.image_chat.input_ids");
        TensorAssert.Equal(ids, prompt.InputIds, "input_ids");
        TensorAssert.Equal(Fixture.Load("prompt.image_chat.attention_mask"), prompt.AttentionMask, "attention_mask");
        TensorAssert.Close(Fixture.Load("prompt.image_chat.pixel_values"), prompt.PixelValues!, TensorAssert.PixelAtol, 0, "pixel_values");
        var positions = Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("image_token_positions").EnumerateArray().Select(e => e.GetInt32());
        Assert.Equal(positions, prompt.ImageTokenPositions);
    }

    [Fact]
    public void ChatPathHasASingleBos()
    {
        using var prompt = Model.Processor!.Prepare("Describe the image.", [Fixture.Image("gradient_rgb")]);
        var expected = Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("apply_chat_template_tokenize_true_ids").EnumerateArray().Select(e => e.GetInt32()).ToList();
        var collapsed = new List<int>();
        foreach (int id in prompt.Ids)
        {
            if (id != Model.Config.ImageTokenIndex || collapsed.Count == 0 || collapsed[^1] != id)
            {
                collapsed.Add(id);
            }
        }

        Assert.Equal(expected, collapsed);
        Assert.Equal(16, prompt.ImageTokenPositions.Count);
    }

    [Fact]
    public void EveryActivationOfTheImagePromptMatchesHf()
    {
        using var scope = NewDisposeScope();
        using var prompt = tiny.ImageChatPrompt();
        var (output, cache) = Model.RunWithCache(LlavaInput.From(prompt));
        using (output)
        using (cache)
        {
            TensorAssert.Close(Fixture.Load("vision.embeddings"), cache["vision.hook_embed"], what: "vision embeddings");
            var visionHidden = Fixture.Load("vision.hidden_states");
            TensorAssert.Close(visionHidden[0], cache["vision.ln_pre.hook_normalized"], what: "vision hidden 0");
            for (int i = 1; i < visionHidden.shape[0] - 1; i++)
            {
                TensorAssert.Close(visionHidden[i], cache[$"vision.blocks.{i - 1}.hook_resid_post"], what: $"vision hidden {i}");
            }

            // vision_feature_layer -2: the last vision layer is never run.
            Assert.False(cache.ContainsKey($"vision.blocks.{Model.Config.VisionConfig.NumHiddenLayers - 1}.hook_resid_post"));
            TensorAssert.Close(Fixture.Load("vision.image_features"), cache["hook_image_features"], what: "image features");
            TensorAssert.Close(Fixture.Load("lm.image_chat.inputs_embeds"), cache["hook_inputs_embeds"], what: "inputs_embeds");
            var hidden = Fixture.Load("lm.image_chat.hidden_states");
            var residPost = Fixture.Load("lm.image_chat.resid_post");
            var attentions = Fixture.Load("lm.image_chat.attentions");
            int layers = Model.Config.TextConfig.NumHiddenLayers;
            for (int i = 0; i < layers; i++)
            {
                TensorAssert.Close(hidden[i], cache[$"blocks.{i}.hook_resid_pre"], what: $"resid_pre {i}");
                TensorAssert.Close(residPost[i], cache[$"blocks.{i}.hook_resid_post"], what: $"resid_post {i}");
                TensorAssert.Close(attentions[i], cache[$"blocks.{i}.attn.hook_pattern"], TensorAssert.AttentionAtol, 0, $"pattern {i}");
            }

            TensorAssert.Close(hidden[layers], cache["ln_final.hook_normalized"] * (1 + Model.LanguageModel.Model.Norm.Weight), what: "final norm");
            TensorAssert.Close(Fixture.Load("lm.image_chat.logits"), output.Logits!, what: "logits");
        }
    }

    [Fact]
    public void ImageFeaturesOfEveryTestImageMatchHf()
    {
        using var scope = NewDisposeScope();
        foreach (var name in new[] { "gradient_rgb", "rgba_alpha", "gray_l", "tiny_5x7" })
        {
            var pixels = Model.Processor!.ImageProcessor.Process(Fixture.Image(name)).ToTensor();
            using var features = Model.GetImageFeatures(pixels);
            TensorAssert.Close(Fixture.Load($"image.{name}.image_features"), features, what: name);
        }
    }

    [Fact]
    public void GreedyGenerationEqualsHf()
    {
        using var prompt = tiny.ImageChatPrompt();
        var result = Model.Generate(prompt, GenerationOptions.Greedy with { MaxNewTokens = 12 });
        using var golden = Fixture.Load("gen.image_chat.sequences");
        var expected = golden[0].data<long>().Skip(prompt.Ids.Count).Select(x => (int)x).ToList();
        Assert.Equal(expected, result.Tokens);
        Assert.Equal(Model.Tokenizer.Decode(expected, skipSpecialTokens: true), result.Text);
    }

    [Fact]
    public void LeftPaddedBatchEqualsHfAndSinglePrompts()
    {
        var batchInfo = Fixture.Manifest.GetProperty("prompts").GetProperty("batch");
        var texts = batchInfo.GetProperty("rendered_chat_template").EnumerateArray().Select(e => e.GetString()!).ToList();
        var images = batchInfo.GetProperty("images").EnumerateArray().Select(e => Fixture.Image(e.GetString()!)).ToList();
        using var batch = Model.Processor!.PrepareBatch([(texts[0], [images[0]]), (texts[1], [images[1]])], raw: true);
        TensorAssert.Equal(Fixture.Load("prompt.batch.input_ids"), batch.InputIds, "batch ids");
        TensorAssert.Equal(Fixture.Load("prompt.batch.attention_mask"), batch.AttentionMask, "batch mask");
        using (var output = Model.call(LlavaInput.From(batch)))
        {
            TensorAssert.Close(Fixture.Load("batch.last_logits"), output.Logits![.., -1], what: "batch last logits");
        }

        var results = Model.GenerateBatch(batch, GenerationOptions.Greedy with { MaxNewTokens = 12 });
        using var golden = Fixture.Load("gen.batch.sequences");
        long padded = batch.InputIds.shape[1];
        for (int row = 0; row < 2; row++)
        {
            Assert.Equal(golden[row].data<long>().Skip((int)padded).Select(x => (int)x), results[row].Tokens);
        }
    }

    [Fact]
    public void SteeringReproducesHfSteeredLogitsAndGeneration()
    {
        using var scope = NewDisposeScope();
        using var sae = SparseAutoencoder.Load(Fixture.Path("sae", "standard-L2"));
        var steer = Steering.AddFeature(sae, 219, -4.0);
        using var prompt = tiny.ImageChatPrompt();
        using (var steered = Model.RunWithHooks(LlavaInput.From(prompt), steer))
        {
            TensorAssert.Close(Fixture.Load("steer.logits"), steered.Logits!, what: "steered logits");
        }

        GenerationResult result;
        using (Model.Hooks(steer))
        {
            result = Model.Generate(prompt, GenerationOptions.Greedy with { MaxNewTokens = 12 });
        }

        using var golden = Fixture.Load("steer.gen.sequences");
        Assert.Equal(golden[0].data<long>().Skip(prompt.Ids.Count).Select(x => (int)x), result.Tokens);

        // The scope is gone: plain generation is back to HF's unsteered tokens.
        var plain = Model.Generate(prompt, GenerationOptions.Greedy with { MaxNewTokens = 12 });
        using var unsteered = Fixture.Load("gen.image_chat.sequences");
        Assert.Equal(unsteered[0].data<long>().Skip(prompt.Ids.Count).Select(x => (int)x), plain.Tokens);
    }

    [Fact]
    public async Task StreamingYieldsTheGeneratedText()
    {
        using var prompt = tiny.ImageChatPrompt();
        var options = GenerationOptions.Greedy with { MaxNewTokens = 12 };
        var whole = Model.Generate(prompt, options);
        var pieces = new List<string>();
        await foreach (var piece in Model.GenerateStreamAsync(prompt, options))
        {
            pieces.Add(piece);
        }

        Assert.Equal(whole.Text, string.Concat(pieces));
        Assert.True(pieces.Count > 1);
    }

    [Fact]
    public void SamplingIsSeededAndHooksFireOnEveryStep()
    {
        using var prompt = tiny.ImageChatPrompt();
        var options = new GenerationOptions { MaxNewTokens = 5, DoSample = true, Temperature = 0.9, TopK = 50, TopP = 0.9, Seed = 7 };
        var offsets = new List<long>();
        GenerationResult first;
        using (Model.Hooks(("blocks.0.hook_resid_post", (a, ctx) => { offsets.Add(ctx.PositionOffset); return a; })))
        {
            first = Model.Generate(prompt, options);
        }

        var second = Model.Generate(prompt, options);
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.Equal(new long[] { 0, 35, 36, 37, 38 }, offsets);
    }

    [Fact]
    public void StopAtLayerReturnsTheResidualStreamOfThatLayer()
    {
        using var scope = NewDisposeScope();
        using var prompt = tiny.ImageChatPrompt();
        var (output, cache) = Model.RunWithCache(LlavaInput.From(prompt), n => n == "blocks.2.hook_resid_post", stopAtLayer: 3);
        using (output)
        using (cache)
        {
            Assert.Null(output.Logits);
            TensorAssert.Close(Fixture.Load("lm.image_chat.resid_post")[2], output.ResidualStream, what: "stop at layer 3");
            TensorAssert.Close(cache["blocks.2.hook_resid_post"], output.ResidualStream, 0, 0, "cache vs output");
        }
    }

    [Fact]
    public void PatchingInACallerOwnedActivationLeavesItToTheCaller()
    {
        using var prompt = tiny.ImageChatPrompt();
        var (plain, cache) = Model.RunWithCache(LlavaInput.From(prompt), n => n is "hook_inputs_embeds" or "hook_image_features");
        using (plain)
        using (cache)
        {
            var embeds = cache["hook_inputs_embeds"];
            var features = cache["hook_image_features"];
            using (var patched = Model.RunWithHooks(LlavaInput.From(prompt), ("hook_inputs_embeds", (_, _) => embeds), ("hook_image_features", (_, _) => features)))
            {
                TensorAssert.Close(plain.Logits!, patched.Logits!, 0, 0, "patched run");
            }

            Assert.False(embeds.IsInvalid);
            Assert.False(features.IsInvalid);
            TensorAssert.Close(Fixture.Load("lm.image_chat.inputs_embeds"), embeds, what: "cached inputs_embeds still usable");
        }
    }
}
