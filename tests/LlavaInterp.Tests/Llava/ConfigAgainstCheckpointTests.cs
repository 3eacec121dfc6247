using System.Text.Json.Nodes;
using LlavaInterp.Configuration;
using LlavaInterp.Llava;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Gemma;
using LlavaInterp.Tests.Support;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Llava;

/// <summary>Configurations are checked against the checkpoint's headers before anything is allocated.</summary>
public sealed class ConfigAgainstCheckpointTests
{
    /// <summary>Copies the fixture model folder with one key of config.json (a nested one under <paramref name="section"/>) set to <paramref name="value"/>.</summary>
    internal static TempDir FixtureWith(string? section, string key, JsonNode value)
    {
        var dir = TempDir.CopyOf(Fixture.ModelDir);
        var root = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        var target = section is null ? root : root[section]!;
        target[key] = value;
        File.WriteAllText(dir.File("config.json"), root.ToJsonString());
        return dir;
    }

    [Theory]
    [InlineData("text_config", "num_hidden_layers", 100000)]
    [InlineData("text_config", "num_hidden_layers", 3)]
    [InlineData("text_config", "head_dim", 1_000_000_000)]
    [InlineData("text_config", "hidden_size", 1_000_000_000)]
    [InlineData("text_config", "vocab_size", 1_000_000_000)]
    [InlineData("text_config", "intermediate_size", 1_000_000_000)]
    [InlineData("text_config", "num_key_value_heads", 2)]
    [InlineData("vision_config", "num_hidden_layers", 100000)]
    [InlineData("vision_config", "hidden_size", 1_000_000_000)]
    [InlineData("vision_config", "intermediate_size", 1_000_000_000)]
    [InlineData("vision_config", "image_size", 64)]
    [InlineData("vision_config", "image_size", 800000)]
    [InlineData("vision_config", "patch_size", 4)]
    public void ASizeTheCheckpointDoesNotHaveIsAConfigErrorNamingFileAndKey(string section, string key, int value)
    {
        using var dir = FixtureWith(section, key, value);
        // Non-strict loading may leave stored layers unused, never build more than are stored.
        bool fewerLayers = key == "num_hidden_layers" && value < 100;
        foreach (bool strict in fewerLayers ? new[] { true } : new[] { true, false })
        {
            var error = Assert.Throws<ConfigException>(() => HookedLlava.FromPretrained(dir.Path, new LlavaLoadOptions { Strict = strict }));
            Assert.Equal(key, error.Key);
            Assert.StartsWith(dir.File("config.json") + "#" + section, error.SourcePath, StringComparison.Ordinal);
            Assert.Contains(key, error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void FewerLayersThanStoredAreAllowedWhenNotStrict()
    {
        using var dir = FixtureWith("text_config", "num_hidden_layers", 3);
        using var model = HookedLlava.FromPretrained(dir.Path, new LlavaLoadOptions { Strict = false });
        Assert.Equal(3, model.Config.TextConfig.NumHiddenLayers);
    }

    [Theory]
    [InlineData("rope_theta", 1e308)]
    [InlineData("rope_theta", 0.0)]
    [InlineData("rms_norm_eps", 1e-50)]
    [InlineData("rms_norm_eps", 1e300)]
    [InlineData("initializer_range", -1.0)]
    public void ImplausibleFloatsAreConfigErrors(string key, double value)
    {
        using var dir = FixtureWith("text_config", key, value);
        var error = Assert.Throws<ConfigException>(() => HookedLlava.FromPretrained(dir.Path));
        Assert.Equal(key, error.Key);
        Assert.Contains(dir.File("config.json"), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AStandaloneGemmaFolderIsCheckedBeforeBuilding()
    {
        using var dir = new TempDir();
        TinyGemma.WriteStandaloneFolder(dir.Path);
        var root = JsonNode.Parse(File.ReadAllText(dir.File("config.json")))!;
        root["num_hidden_layers"] = 100000;
        File.WriteAllText(dir.File("config.json"), root.ToJsonString());
        var error = Assert.Throws<ConfigException>(() => HookedGemma.FromPretrained(dir.Path));
        Assert.Equal("num_hidden_layers", error.Key);
        Assert.Equal(dir.File("config.json"), error.SourcePath);

        root["num_hidden_layers"] = 4;
        root["vocab_size"] = 1_000_000_000;
        File.WriteAllText(dir.File("config.json"), root.ToJsonString());
        error = Assert.Throws<ConfigException>(() => HookedGemma.FromPretrained(dir.Path));
        Assert.Equal("vocab_size", error.Key);
        Assert.Contains("640", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(true, false)]
    [InlineData(false, true)]
    public void GemmaExpectedTensorsAreTheModelsStateDict(bool tied, bool bias)
    {
        var config = TinyGemma.Config with { TieWordEmbeddings = tied, AttentionBias = bias };
        using var model = new HookedGemma(config, device: META);
        var layout = GemmaWeightLayout.FromPrefix("language_model.");
        var expected = config.ExpectedTensors(layout, Enumerable.Range(0, config.NumHiddenLayers)).ToDictionary(t => t.Name, t => t.Shape.Select(d => d.Size!.Value).ToArray());
        var actual = model.state_dict().ToDictionary(kv => layout.KeyFor(kv.Key), kv => kv.Value.shape);
        Assert.Equal(actual.Keys.Order(), expected.Keys.Order());
        Assert.All(actual, kv => Assert.Equal(kv.Value, expected[kv.Key]));
    }

    [Fact]
    public void ClipExpectedTensorsAreTheModelsStateDict()
    {
        var config = ClipVisionConfig.VitLarge14At336 with { NumHiddenLayers = 2 };
        using var model = new HookedClipVisionModel(config, device: META);
        var expected = config.ExpectedTensors("vision_tower.", Enumerable.Range(0, config.NumHiddenLayers)).ToDictionary(t => t.Name, t => t.Shape.Select(d => d.Size!.Value).ToArray());
        var actual = model.state_dict().ToDictionary(kv => "vision_tower." + kv.Key, kv => kv.Value.shape);
        Assert.Equal(actual.Keys.Order(), expected.Keys.Order());
        Assert.All(actual, kv => Assert.Equal(kv.Value, expected[kv.Key]));
    }

    [Fact]
    public void AProductIsBlamedOnTheFactorTheStoredSizeImplies()
    {
        // q_proj stores 4 heads × 16: with 4 heads, head_dim 1e9 is the key the checkpoint contradicts.
        var config = TinyGemma.Config with { HeadDim = 1_000_000_000 };
        using var file = LlavaInterp.TensorFiles.SafetensorsFile.Open(TinyGemma.CheckpointPath);
        var error = Assert.Throws<ConfigException>(() => config.CheckAgainst(file, GemmaWeightLayout.FromPrefix("language_model."), "cfg"));
        Assert.Equal("head_dim", error.Key);
        Assert.Contains("head_dim = 16", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NoCropAndNoFixedSizeIsAnErrorAtLoad()
    {
        // Found by the fuzz suite: the processor then keeps each image's aspect ratio (a 32x42 image reached the tower).
        using var dir = FixtureWith(null, "image_token_index", 6);
        var pre = JsonNode.Parse(File.ReadAllText(dir.File("preprocessor_config.json")))!;
        pre["do_center_crop"] = false;
        File.WriteAllText(dir.File("preprocessor_config.json"), pre.ToJsonString());
        var error = Assert.Throws<ConfigException>(() => HookedLlava.FromPretrained(dir.Path));
        Assert.Equal("do_center_crop", error.Key);
        Assert.Equal(dir.File("preprocessor_config.json"), error.SourcePath);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(16)]
    public void ACropSizeOtherThanTheVisionImageSizeIsAnErrorAtLoad(int crop)
    {
        using var dir = FixtureWith(null, "image_token_index", 6);
        var pre = JsonNode.Parse(File.ReadAllText(dir.File("preprocessor_config.json")))!;
        pre["crop_size"] = new JsonObject { ["height"] = crop, ["width"] = crop };
        File.WriteAllText(dir.File("preprocessor_config.json"), pre.ToJsonString());
        var error = Assert.Throws<ConfigException>(() => HookedLlava.FromPretrained(dir.Path));
        Assert.Equal("crop_size", error.Key);
        Assert.Equal(dir.File("preprocessor_config.json"), error.SourcePath);
        Assert.Contains("32x32", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"crop_size": {"height": 100000, "width": 100000}}""", "crop_size")]
    [InlineData("""{"size": {"shortest_edge": 100000}}""", "shortest_edge")]
    [InlineData("""{"size": {"height": 100000, "width": 100000}, "do_center_crop": false}""", "size")]
    public void APreprocessorSizeNoImageCanHoldIsATypedError(string json, string key)
    {
        var error = Assert.Throws<ClipImageException>(() => ClipImageProcessorConfig.FromJson(json, "pre.json"));
        Assert.Contains(key, error.Message, StringComparison.Ordinal);
        Assert.Equal("pre.json", error.FilePath);
    }

    [Fact]
    public void AnElongatedImageWhoseResizeNoArrayHoldsIsATypedError()
    {
        var processor = new ClipImageProcessor(ClipImageProcessorConfig.FromJson("""{"size": {"shortest_edge": 20000}, "crop_size": 32}"""));
        var image = new RgbImage(1, 3000, new byte[3 * 3000]);
        Assert.Throws<ClipImageException>(() => processor.Resize(image));
    }

    [Fact]
    public void AModelNoAllocatorCanHoldIsAnOutOfMemoryErrorNamingTheShape()
    {
        // Built directly, without a checkpoint to check against: int.MaxValue² float32 values overflow any size_t.
        var config = TinyGemma.Config with { VocabSize = int.MaxValue, HiddenSize = int.MaxValue, PadTokenId = null };
        var error = Assert.Throws<OutOfMemoryException>(() => new HookedGemma(config));
        Assert.Contains($"[{int.MaxValue}, {int.MaxValue}]", error.Message, StringComparison.Ordinal);
    }
}
