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
    public async Task SteeringOnlyGeneratedPositionsDiffersFromSteeringAll()
    {
        var all = ParseJson((await CliRun.Llava(ImagePromptArgs("--json", "--sae", CliRun.SaeDir, "--steer", "219=-4"))).Succeeded().Stdout);
        var generated = ParseJson((await CliRun.Llava(ImagePromptArgs("--json", "--sae", CliRun.SaeDir, "--steer", "219=-4", "--positions", "generated"))).Succeeded().Stdout);
        Assert.Equal(CliRun.NewIds("steer.gen.sequences", all.Prompt.Length), all.Tokens);

        // The first new token comes from the last prompt position, which "generated" leaves alone.
        Assert.Equal(CliRun.ManifestInts("generation", "image_chat", "new_ids")[0], generated.Tokens[0]);
        Assert.NotEqual(all.Tokens, generated.Tokens);
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
