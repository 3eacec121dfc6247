using LlavaInterp.Configuration;
using LlavaInterp.Llava;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Llava;

namespace LlavaInterp.Tests.Core;

/// <summary>A key repeated in one object is an error naming the file and the key, in every configuration reader.</summary>
public sealed class RepeatedConfigKeyTests
{
    [Fact]
    public void SaeCfgJson()
    {
        var error = Assert.Throws<ConfigException>(() => SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.3.hook_resid_post", "d_sae": 32}""", "sae/cfg.json"));
        Assert.Equal("sae/cfg.json", error.SourcePath);
        Assert.Equal("d_sae", error.Key);
    }

    [Fact]
    public void GemmaAndClipConfigJson()
    {
        var gemma = Assert.Throws<ConfigException>(() => GemmaConfig.Parse("""{"model_type": "gemma", "hidden_size": 64, "hidden_size": 128}""", "gemma/config.json"));
        Assert.Equal("hidden_size", gemma.Key);
        var clip = Assert.Throws<ConfigException>(() => ClipVisionConfig.Parse("""{"image_size": 32, "patch_size": 8, "image_size": 64}""", "clip/config.json"));
        Assert.Equal("image_size", clip.Key);
        Assert.Equal("clip/config.json", clip.SourcePath);
    }

    [Fact]
    public void ANestedKeyIsNamedByItsPath()
    {
        string json = """{"model_type": "llava", "text_config": {"model_type": "gemma", "head_dim": 16, "head_dim": 32}}""";
        var error = Assert.Throws<ConfigException>(() => LlavaConfig.Parse(json, "llava/config.json"));
        Assert.Equal("text_config.head_dim", error.Key);
        Assert.Contains("llava/config.json", error.Message, StringComparison.Ordinal);

        // The same key in sibling objects is not a repetition.
        Assert.Null(HfConfigLoader.FindRepeatedKey(System.Text.Json.JsonDocument.Parse("""{"a": {"k": 1}, "b": {"k": 2}, "c": [{"k": 1}, {"k": 2}]}""").RootElement));
        Assert.Equal("c[1].k", HfConfigLoader.FindRepeatedKey(System.Text.Json.JsonDocument.Parse("""{"c": [{"k": 1}, {"k": 2, "k": 3}]}""").RootElement));
    }

    [Fact]
    public void PreprocessorConfigJson()
    {
        var error = Assert.Throws<ClipImageException>(() => ClipImageProcessorConfig.FromJson("""{"crop_size": {"height": 32, "width": 32, "height": 64}}""", "pre.json"));
        Assert.Contains("crop_size.height", error.Message, StringComparison.Ordinal);
        Assert.Equal("pre.json", error.FilePath);
    }

    [Fact]
    public void AModelFolderWithARepeatedKeyDoesNotLoad()
    {
        using var dir = ConfigAgainstCheckpointTests.FixtureWith(null, "image_token_index", 6);
        string text = File.ReadAllText(dir.File("config.json")).TrimStart();
        File.WriteAllText(dir.File("config.json"), "{\"image_token_index\":5," + text[1..]);
        var error = Assert.Throws<ConfigException>(() => HookedLlava.FromPretrained(dir.Path));
        Assert.Equal("image_token_index", error.Key);
        Assert.Equal(dir.File("config.json"), error.SourcePath);
    }

    [Theory]
    [InlineData("\\ud800")]
    [InlineData("\\udfff\\ud800")]
    public void TextThatIsNotValidUnicodeIsATypedErrorInEveryConfigReader(string escape)
    {
        // Found by the fuzz suite: System.Text.Json threw InvalidOperationException (no file, no key) for these.
        string value = "\"x" + escape + "\"";
        var hf = Assert.Throws<ConfigException>(() => GemmaConfig.Parse($$"""{"model_type": "gemma", "hidden_act": {{value}}}""", "gemma/config.json"));
        Assert.Equal("gemma/config.json", hf.SourcePath);
        Assert.Equal("sae/cfg.json", Assert.Throws<ConfigException>(() => SaeConfig.Parse($$"""{"d_in": 8, "d_sae": 16, "hook_name": {{value}}}""", "sae/cfg.json")).SourcePath);
        Assert.Equal("pre.json", Assert.Throws<ClipImageException>(() => ClipImageProcessorConfig.FromJson($$"""{"image_processor_type": {{value}}}""", "pre.json")).FilePath);

        using var dir = LlavaInterp.Tests.Support.TempDir.CopyOf(LlavaInterp.Tests.Support.Fixture.ModelDir);

        string tokenizerConfig = File.ReadAllText(dir.File("tokenizer_config.json")).TrimStart();
        File.WriteAllText(dir.File("tokenizer_config.json"), "{\"clean_up_tokenization_spaces\": " + value + "," + tokenizerConfig[1..]);
        var tok = Assert.Throws<TokenizerException>(() => GemmaTokenizer.FromPretrained(dir.Path));
        Assert.Contains("tokenizer_config.json", tok.Message, StringComparison.Ordinal);
    }
}
