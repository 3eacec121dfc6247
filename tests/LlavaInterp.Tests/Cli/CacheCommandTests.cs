using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Cli;

public sealed class CacheCommandTests(ITestOutputHelper output)
{
    [Fact]
    public async Task RawPromptCacheMatchesHfGolden()
    {
        using var dir = new TempDir();
        string outFile = dir.File("acts.safetensors");
        var run = (await CliRun.Llava(
            "cache", "--model", Fixture.ModelDir, "--image", Fixture.Image("gradient_rgb"), "--prompt", CliRun.RenderedImagePrompt, "--raw",
            "--hooks", "blocks.2.hook_resid_post", "hook_image_features", "--device", "cpu", "--out", outFile)).Succeeded();
        Assert.Contains("blocks.2.hook_resid_post", run.Stdout, StringComparison.Ordinal);
        Assert.Equal(["acts.safetensors"], CliRun.FilesUnder(dir.Path));

        using var scope = torch.NewDisposeScope();
        using var file = SafetensorsFile.Open(outFile);
        Assert.Equal(
            ["input_ids", "logits", "hook_image_features", "blocks.2.hook_resid_post"],
            file.Names.OrderBy(n => n == "input_ids" ? 0 : n == "logits" ? 1 : n.StartsWith("hook_", StringComparison.Ordinal) ? 2 : 3).ToArray());

        // input_ids: HF's processor path (the rendered template starts with <bos>, the tokenizer adds another).
        var ids = file.Load("input_ids");
        Assert.Equal(ScalarType.Int64, ids.dtype);
        TensorAssert.Equal(Fixture.Load("prompt.image_chat.input_ids")[0], ids, "input_ids");

        var logits = file.Load("logits");
        Assert.Equal(ScalarType.Float32, logits.dtype);
        double dLogits = TensorAssert.Close(Fixture.Load("lm.image_chat.logits")[0], logits, what: "logits");
        double dResid = TensorAssert.Close(Fixture.Load("lm.image_chat.resid_post")[2, 0], file.Load("blocks.2.hook_resid_post"), what: "blocks.2.hook_resid_post");
        double dImage = TensorAssert.Close(Fixture.Load("vision.image_features")[0], file.Load("hook_image_features"), what: "hook_image_features");
        output.WriteLine($"max |diff| vs golden: logits {dLogits:E2}, blocks.2.hook_resid_post {dResid:E2}, hook_image_features {dImage:E2}");
    }

    [Fact]
    public async Task ChatPathHasOneBosAndExpandedImageTokens()
    {
        using var dir = new TempDir();
        string outFile = dir.File("chat.safetensors");
        (await CliRun.Llava(
            "cache", "--model", Fixture.ModelDir, "--image", Fixture.Image("gradient_rgb"), "--prompt", "Describe the image.",
            "--hooks", "blocks.0.hook_resid_pre", "--out", outFile)).Succeeded();

        // apply_chat_template(tokenize=True) ids (single <bos>) with the one <image> expanded to 16 image tokens.
        var template = CliRun.ManifestInts("prompts", "image_chat", "apply_chat_template_tokenize_true_ids");
        var expected = template.SelectMany(id => id == 6 ? Enumerable.Repeat(6, 16) : [id]).ToArray();
        using var file = SafetensorsFile.Open(outFile);
        using var ids = file.Load("input_ids");
        Assert.Equal(expected, ids.data<long>().ToArray().Select(v => (int)v));
        Assert.Single(expected.TakeWhile(id => id == 2));
        Assert.Equal(["blocks.0.hook_resid_pre", "input_ids", "logits"], file.Names.Order(StringComparer.Ordinal).ToArray());
    }

    [Fact]
    public async Task StopAtLayerCachesEarlyBlocksAndNoLogits()
    {
        using var dir = new TempDir();
        string outFile = dir.File("early.safetensors");
        (await CliRun.Llava(
            "cache", "--model", Fixture.ModelDir, "--image", Fixture.Image("gradient_rgb"), "--prompt", CliRun.RenderedImagePrompt, "--raw",
            "--hooks", "blocks.*.hook_resid_post", "--stop-at-layer", "2", "--out", outFile)).Succeeded();

        using var scope = torch.NewDisposeScope();
        using var file = SafetensorsFile.Open(outFile);
        Assert.Equal(["blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "input_ids"], file.Names.Order(StringComparer.Ordinal).ToArray());
        Assert.Equal("2", file.Metadata["stop_at_layer"]);
        var golden = Fixture.Load("lm.image_chat.resid_post");
        TensorAssert.Close(golden[0, 0], file.Load("blocks.0.hook_resid_post"), what: "blocks.0.hook_resid_post");
        TensorAssert.Close(golden[1, 0], file.Load("blocks.1.hook_resid_post"), what: "blocks.1.hook_resid_post");
    }

    [Fact]
    public async Task DefaultHooksCacheEveryHookPointAndBfloat16IsStoredAsFloat32()
    {
        using var dir = new TempDir();
        string outFile = dir.File("all.safetensors");
        (await CliRun.Llava(
            "cache", "--model", Fixture.ModelDir, "--image", Fixture.Image("gray_l"), "--prompt", "What is this?", "--dtype", "bfloat16", "--out", outFile)).Succeeded();
        using var file = SafetensorsFile.Open(outFile);
        Assert.Contains("vision.blocks.0.hook_resid_post", file.Names);
        Assert.Contains("blocks.3.hook_resid_post", file.Names);
        Assert.Contains("hook_inputs_embeds", file.Names);
        Assert.All(file.Names.Where(n => n != "input_ids"), n => Assert.Equal("F32", file.GetEntry(n).DType));
        Assert.DoesNotContain(file.Names, n => file.GetEntry(n).Shape.Count > 0 && file.GetEntry(n).Shape[0] == 1 && n.StartsWith("blocks.", StringComparison.Ordinal));
    }
}
