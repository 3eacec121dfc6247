using System.Text.Json;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Cli;

public sealed class GenerateCommandTests
{
    private static string[] ImagePromptArgs(params string[] extra) =>
    [
        "generate", "--model", Fixture.ModelDir, "--image", Fixture.Image("gradient_rgb"), "--prompt", CliRun.RenderedImagePrompt, "--raw",
        "--max-new-tokens", "12", .. extra,
    ];

    private static (int[] Prompt, int[] Tokens, string Text) ParseJson(string stdout)
    {
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal(["prompt_tokens", "tokens", "text"], root.EnumerateObject().Select(p => p.Name));
        return (
            root.GetProperty("prompt_tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            root.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            root.GetProperty("text").GetString()!);
    }

    [Fact]
    public async Task GreedyJsonEqualsHfGeneration()
    {
        var run = (await CliRun.Llava(ImagePromptArgs("--greedy", "--json"))).Succeeded();
        var (prompt, tokens, text) = ParseJson(run.Stdout);
        Assert.Equal(CliRun.GoldenInts("prompt.image_chat.input_ids"), prompt);
        Assert.Equal(CliRun.NewIds("gen.image_chat.sequences", prompt.Length), tokens);
        Assert.Equal(CliRun.ManifestInts("generation", "image_chat", "new_ids"), tokens);
        Assert.Equal(CliRun.ManifestString("generation", "image_chat", "new_text"), text);
    }

    [Fact]
    public async Task Bf16StorageWithFloat32ComputeGeneratesAsTheFloat32ModelOnRoundedWeights()
    {
        var run = (await CliRun.Llava(ImagePromptArgs("--greedy", "--json", "--dtype", "bfloat16-float32"))).Succeeded();
        var (_, tokens, _) = ParseJson(run.Stdout);
        using var rounded = LlavaInterp.Tests.Llava.ComputeDTypeTests.RoundedFloat32Model();
        using var prompt = LlavaInterp.Tests.Llava.ComputeDTypeTests.ImageChatPrompt(rounded);
        var expected = rounded.Generate(prompt, new LlavaInterp.Llava.GenerationOptions { MaxNewTokens = 12 });
        Assert.Equal(expected.Tokens, tokens);
    }

    [Fact]
    public async Task AutoDTypeSaysWhatItChose()
    {
        var run = (await CliRun.Llava(ImagePromptArgs("--greedy", "--json", "--dtype", "auto"))).Succeeded();
        Assert.NotEmpty(ParseJson(run.Stdout).Tokens);
        var line = Assert.Single(run.MessageLines, l => l.StartsWith("--dtype auto:", StringComparison.Ordinal));
        Assert.Matches(@"computing in (BFloat16|Float32) with BFloat16 weights$", line);
    }

    [Fact]
    public async Task PlainOutputIsTheText()
    {
        var run = (await CliRun.Llava(ImagePromptArgs())).Succeeded();
        Assert.Equal(CliRun.ManifestString("generation", "image_chat", "new_text") + Environment.NewLine, run.Stdout);
    }

    [Fact]
    public async Task SteeringWithAnSaeFeatureEqualsHfSteeredGeneration()
    {
        var run = (await CliRun.Llava(ImagePromptArgs("--json", "--sae", CliRun.SaeDir, "--steer", "219=-4", "--positions", "all"))).Succeeded();
        var (prompt, tokens, text) = ParseJson(run.Stdout);
        Assert.Equal(CliRun.NewIds("steer.gen.sequences", prompt.Length), tokens);
        Assert.Equal(CliRun.ManifestString("generation", "steered_image_chat", "new_text"), text);
        Assert.NotEqual(CliRun.NewIds("gen.image_chat.sequences", prompt.Length), tokens);
    }

    [Fact]
    public async Task SteeringOnlyGeneratedPositionsLeavesThePromptAlone()
    {
        var all = ParseJson((await CliRun.Llava(ImagePromptArgs("--json", "--sae", CliRun.SaeDir, "--steer", "219=-4"))).Succeeded().Stdout);
        var generated = ParseJson((await CliRun.Llava(ImagePromptArgs("--json", "--sae", CliRun.SaeDir, "--steer", "219=-4", "--positions", "generated"))).Succeeded().Stdout);
        Assert.Equal(CliRun.NewIds("steer.gen.sequences", all.Prompt.Length), all.Tokens);

        // "generated" leaves the prompt positions alone, so the first new token (read at the last prompt position) is the
        // plain one, and the generation is still steered from there on.
        var plain = CliRun.ManifestInts("generation", "image_chat", "new_ids");
        Assert.Equal(plain[0], generated.Tokens[0]);
        Assert.NotEqual(plain, generated.Tokens);

    }

    [Fact]
    public async Task SteeringImagePositionsEqualsAHandWrittenHook()
    {
        var cli = ParseJson((await CliRun.Llava(ImagePromptArgs("--json", "--sae", CliRun.SaeDir, "--steer", "219=-40", "--positions", "image"))).Succeeded().Stdout);

        // The same intervention written by hand: add -40·W_dec[219] to the image rows of the prompt pass only.
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var model = LlavaInterp.Llava.HookedLlava.FromPretrained(Fixture.ModelDir);
        using var sae = LlavaInterp.Sae.SparseAutoencoder.Load(CliRun.SaeDir);
        var direction = sae.WDec[219] * -40.0;
        var positions = TorchSharp.torch.tensor(CliRun.ManifestInts("prompts", "image_chat", "image_token_positions").Select(p => (long)p).ToArray());
        using var prompt = model.Processor!.Prepare(CliRun.RenderedImagePrompt, [Fixture.Image("gradient_rgb")], raw: true);
        LlavaInterp.Llava.GenerationResult manual;
        using (model.Hooks(LlavaInterp.Hooks.HookSpec.ForName("blocks.2.hook_resid_post", (x, ctx) => ctx.PositionOffset > 0 ? x : x.index_add(1, positions, direction.expand(1, positions.shape[0], -1), 1))))
        {
            manual = model.Generate(prompt, new LlavaInterp.Llava.GenerationOptions { MaxNewTokens = 12 });
        }

        Assert.Equal(manual.Tokens, cli.Tokens);
        Assert.NotEqual(CliRun.ManifestInts("generation", "image_chat", "new_ids"), cli.Tokens);
    }

    [Fact]
    public async Task AblatingAFeatureThatIsOffLeavesTheGenerationUnchanged()
    {
        // A feature that is zero at every image position: ablating it there (through the SAE, error term kept) changes nothing.
        var positions = CliRun.ManifestInts("prompts", "image_chat", "image_token_positions");
        int off;
        using (var acts = Fixture.Load("sae.standard.feature_acts"))
        using (var image = acts[0].index_select(0, TorchSharp.torch.tensor(positions.Select(p => (long)p).ToArray())))
        using (var maxPerFeature = image.max(0).values)
        using (var zero = maxPerFeature.eq(0).nonzero())
        {
            Assert.True(zero.shape[0] > 0);
            off = (int)zero[0, 0].item<long>();
        }

        var plain = ParseJson((await CliRun.Llava(ImagePromptArgs("--json"))).Succeeded().Stdout);
        var ablated = ParseJson((await CliRun.Llava(ImagePromptArgs("--json", "--sae", CliRun.SaeDir, "--ablate", off.ToString(System.Globalization.CultureInfo.InvariantCulture), "--positions", "image"))).Succeeded().Stdout);
        Assert.Equal(plain.Prompt, ablated.Prompt);
        Assert.Equal(plain.Tokens, ablated.Tokens);
    }

    [Fact]
    public async Task SeededSamplingIsReproducible()
    {
        var a = ParseJson((await CliRun.Llava(ImagePromptArgs("--json", "--temperature", "1.5", "--top-p", "0.9", "--seed", "7"))).Succeeded().Stdout);
        var b = ParseJson((await CliRun.Llava(ImagePromptArgs("--json", "--temperature", "1.5", "--top-p", "0.9", "--seed", "7"))).Succeeded().Stdout);
        Assert.Equal(a.Tokens, b.Tokens);
        Assert.Equal(12, a.Tokens.Length);
    }
}
