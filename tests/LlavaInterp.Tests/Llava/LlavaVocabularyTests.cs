using System.Text.Json.Nodes;
using LlavaInterp.Llava;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Llava;

/// <summary>Token ids the model cannot embed are typed errors, at load and in a forward.</summary>
public sealed class LlavaVocabularyTests
{
    private static int FixtureVocabSize => LlavaConfig.Load(Fixture.Path("model", "config.json")).TextConfig.VocabSize;

    [Fact]
    public void ATokenIdOutsideTheVocabularyNamesTheIdAndTheVocabularySize()
    {
        using var model = HookedLlava.FromPretrained(Fixture.ModelDir);
        int vocab = model.Config.TextConfig.VocabSize;
        using var ids = tensor(new long[,] { { 2, vocab + 3, 5 } });
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => model.call(new LlavaInput { InputIds = ids }));
        Assert.Contains($"{vocab + 3}", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"{vocab}", ex.Message, StringComparison.Ordinal);
        using var negative = tensor(new long[,] { { 2, -1 } });
        Assert.Throws<ArgumentOutOfRangeException>(() => model.call(new LlavaInput { InputIds = negative }));
    }

    [Fact]
    public void ATokenizerWithMoreIdsThanEmbeddingRowsIsALoadError()
    {
        using var dir = CopyModel();
        int tokenizerVocab = GemmaTokenizer.FromPretrained(Fixture.ModelDir).VocabSize;
        EditConfig(dir, c => c["text_config"]!["vocab_size"] = tokenizerVocab - 1);

        // The checkpoint's embedding rows are checked first (they disagree with the edited config too)...
        var ex = Assert.Throws<LlavaInterp.Configuration.ConfigException>(() => HookedLlava.FromPretrained(dir.Path));
        Assert.Equal("vocab_size", ex.Key);

        // ...and a model built from that config (no checkpoint to compare) still refuses the tokenizer.
        var config = LlavaConfig.Load(dir.File("config.json"));
        var tokenizer = GemmaTokenizer.FromPretrained(dir.Path);
        var images = LlavaInterp.Models.Clip.ClipImageProcessor.FromDirectory(dir.Path);
        var vocabEx = Assert.Throws<LlavaException>(() => new LlavaProcessor(tokenizer, images, config));
        Assert.Contains($"{tokenizerVocab - 1}", vocabEx.Message, StringComparison.Ordinal);
        Assert.Contains("vocab_size", vocabEx.Message, StringComparison.Ordinal);
        Assert.Contains($"id {tokenizerVocab - 1}", vocabEx.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnAddedTokenBeyondTheRowsIsFineOnlyWhenItIsTheImageToken()
    {
        // llava-gemma-2b's layout: <image> is the one added id past the embedding rows; its rows are overwritten.
        using var dir = CopyModel();
        int vocab = FixtureVocabSize;
        var tokenizerConfig = JsonNode.Parse(File.ReadAllText(dir.File("tokenizer_config.json")))!;
        tokenizerConfig["added_tokens_decoder"]![$"{vocab}"] = new JsonObject { ["content"] = "<img_extra>", ["special"] = true };
        File.WriteAllText(dir.File("tokenizer_config.json"), tokenizerConfig.ToJsonString());
        var ex = Assert.Throws<LlavaException>(() => HookedLlava.FromPretrained(dir.Path));
        Assert.Contains("<img_extra>", ex.Message, StringComparison.Ordinal);

        EditConfig(dir, c => c["image_token_index"] = vocab);
        EditJson(dir, "processor_config.json", c => c["image_token"] = "<img_extra>");
        using var model = HookedLlava.FromPretrained(dir.Path);
        Assert.Equal(vocab, model.Processor!.ImageTokenId);
    }

    [Theory]
    [InlineData("image_token", "\"<bos>\"")]
    [InlineData("image_token", "\"not a token\"")]
    [InlineData("image_token", "null")]
    [InlineData("patch_size", "3")]
    [InlineData("vision_feature_select_strategy", "\"full\"")]
    [InlineData("num_additional_image_tokens", "0")]
    public void AProcessorConfigThatCannotFeedTheModelIsALoadErrorNamingFileAndKey(string key, string value)
    {
        // Each of these used to load and then fail in the first forward ("image features and image tokens do not match").
        using var dir = CopyModel();
        EditJson(dir, "processor_config.json", c => c[key] = JsonNode.Parse(value));
        var ex = Assert.Throws<LlavaInterp.Configuration.ConfigException>(() => HookedLlava.FromPretrained(dir.Path));
        Assert.Equal(dir.File("processor_config.json"), ex.SourcePath);
        Assert.Equal(key, ex.Key);
    }

    private static TempDir CopyModel() => TempDir.CopyOf(Fixture.ModelDir);

    private static void EditConfig(TempDir dir, Action<JsonNode> edit) => EditJson(dir, "config.json", edit);

    private static void EditJson(TempDir dir, string file, Action<JsonNode> edit)
    {
        var node = JsonNode.Parse(File.ReadAllText(dir.File(file)))!;
        edit(node);
        File.WriteAllText(dir.File(file), node.ToJsonString());
    }
}
