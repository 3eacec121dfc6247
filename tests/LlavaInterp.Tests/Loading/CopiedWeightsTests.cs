using LlavaInterp.Llava;
using LlavaInterp.Loading;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Sae;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Gemma;
using LlavaInterp.Tests.Llava;
using LlavaInterp.Tests.Sae;
using LlavaInterp.Tests.Support;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Loading;

/// <summary>
/// <see cref="WeightLoading.Copied"/>: a loaded model no longer depends on its files. (Without it the weights are mapped,
/// and truncating the file would kill the test process with SIGBUS: that is documented, not tested.)
/// </summary>
public sealed class CopiedWeightsTests
{
    [Fact]
    public void ALlavaModelStillRunsAfterItsFileIsTruncatedAndRewritten()
    {
        using var scope = NewDisposeScope();
        using var dir = ConfigAgainstCheckpointTests.FixtureWith(null, "image_token_index", 6);
        using var model = HookedLlava.FromPretrained(dir.Path, new LlavaLoadOptions { WeightLoading = WeightLoading.Copied });
        using var prompt = model.Processor!.Prepare("Describe the image.", [Fixture.Image("gradient_rgb")]);
        using var before = model.call(LlavaInput.From(prompt));

        string weights = dir.File("model.safetensors");
        long length = new FileInfo(weights).Length;
        File.WriteAllBytes(weights, []);
        using var truncated = model.call(LlavaInput.From(prompt));
        File.WriteAllBytes(weights, Enumerable.Repeat((byte)0x7F, (int)length).ToArray());
        using var rewritten = model.call(LlavaInput.From(prompt));

        TensorAssert.Close(before.Logits!, truncated.Logits!, 0, 0, "after truncation");
        TensorAssert.Close(before.Logits!, rewritten.Logits!, 0, 0, "after rewrite");
    }

    [Fact]
    public void AGemmaModelStillRunsAfterItsFileIsTruncated()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        TinyGemma.WriteStandaloneFolder(dir.Path);
        using var model = HookedGemma.FromPretrained(dir.Path, new GemmaLoadOptions { WeightLoading = WeightLoading.Copied });
        using var before = model.call(GemmaInput.FromIds(TinyGemma.TextIds));
        File.WriteAllBytes(dir.File("model.safetensors"), []);
        using var after = model.call(GemmaInput.FromIds(TinyGemma.TextIds));
        TensorAssert.Close(before.Logits!, after.Logits!, 0, 0, "after truncation");
    }

    [Fact]
    public void AnSaeStillEncodesAfterItsFileIsTruncated()
    {
        using var scope = NewDisposeScope();
        using var dir = new TempDir();
        foreach (var file in Directory.EnumerateFiles(SaeFixture.StandardFolder))
        {
            File.Copy(file, dir.File(System.IO.Path.GetFileName(file)));
        }

        using var sae = SparseAutoencoder.Load(dir.Path, new SaeLoadOptions { WeightLoading = WeightLoading.Copied });
        using var input = randn(3, sae.Config.DIn, generator: new TorchSharp.torch.Generator(7));
        using var before = sae.Encode(input);
        File.WriteAllBytes(dir.File("sae_weights.safetensors"), []);
        using var after = sae.Encode(input);
        TensorAssert.Close(before, after, 0, 0, "after truncation");
    }

    [Theory]
    [InlineData(WeightLoading.Mapped, true)]
    [InlineData(WeightLoading.Copied, false)]
    public void CopiedParametersShareNoMemoryWithTheMappedFile(WeightLoading loading, bool shared)
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(TinyGemma.CheckpointPath);
        using var model = new HookedGemma(TinyGemma.Config);
        model.LoadWeights(file, GemmaWeightLayout.FromPrefix("language_model."), loading: loading);
        foreach (var (name, parameter) in model.named_parameters())
        {
            using var stored = file.Load("language_model." + name);
            Assert.Equal(shared, stored.storage<float>().data_ptr() == parameter.storage<float>().data_ptr());
        }

        using var loaded = WeightLoader.LoadTensor(file, "language_model.model.norm.weight", null, null, loading);
        using var view = file.Load("language_model.model.norm.weight");
        Assert.Equal(shared, view.storage<float>().data_ptr() == loaded.storage<float>().data_ptr());
    }
}
