using LlavaInterp.Llava;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Llava;

/// <summary>A disposed model says so, instead of failing on a freed native handle.</summary>
public sealed class LlavaDisposalTests
{
    [Fact]
    public async Task EveryEntryPointOfADisposedModelThrowsObjectDisposedException()
    {
        var model = HookedLlava.FromPretrained(Fixture.ModelDir);
        using var prompt = model.Processor!.Prepare("Describe the image.", [Fixture.Image("gradient_rgb")]);
        var gemma = model.LanguageModel;
        var vision = model.VisionTower;
        model.Dispose();

        Assert.True(model.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => model.call(LlavaInput.From(prompt)));
        Assert.Throws<ObjectDisposedException>(() => model.RunWithCache(LlavaInput.From(prompt)));
        Assert.Throws<ObjectDisposedException>(() => model.Generate(prompt));
        Assert.Throws<ObjectDisposedException>(() => model.GetImageFeatures(prompt.PixelValues!));
        await Assert.ThrowsAsync<ObjectDisposedException>(async () =>
        {
            await foreach (var _ in model.GenerateStreamAsync(prompt))
            {
            }
        });
        Assert.Throws<ObjectDisposedException>(() => model.Hooks(("blocks.0.hook_resid_post", (a, _) => a)));

        // Its parts were disposed with it.
        Assert.Throws<ObjectDisposedException>(() => gemma.call(GemmaInput.FromIds(prompt.InputIds.masked_fill(prompt.InputIds.eq(model.Config.ImageTokenIndex), 0))));
        Assert.Throws<ObjectDisposedException>(() => vision.call(new ClipVisionInput(prompt.PixelValues!)));
        model.Dispose();
    }

    [Fact]
    public void ADisposedStandaloneGemmaOrVisionTowerThrowsObjectDisposedException()
    {
        var gemma = new HookedGemma(LlavaConfig.Load(Fixture.Path("model", "config.json")).TextConfig);
        gemma.InitializeWeights(1);
        gemma.Dispose();
        using var ids = tensor(new long[,] { { 2, 5 } });
        Assert.Throws<ObjectDisposedException>(() => gemma.call(GemmaInput.FromIds(ids)));
        Assert.Throws<ObjectDisposedException>(() => gemma.InitializeWeights(2));

        var vision = new HookedClipVisionModel(ClipVisionConfig.Load(Fixture.Path("model", "config.json")));
        vision.Dispose();
        using var pixels = zeros(1, 3, 32, 32);
        Assert.Throws<ObjectDisposedException>(() => vision.call(new ClipVisionInput(pixels)));
    }
}
