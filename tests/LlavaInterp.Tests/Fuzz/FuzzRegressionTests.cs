using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Fuzz;

/// <summary>Cases the long random fuzz run found, kept as fixed tests (each failed before its fix).</summary>
public sealed class FuzzRegressionTests
{
    [Fact]
    public void ATokenizerModelItsTwoReadersParseDifferentlyIsATypedErrorWhenEncoding()
    {
        // Seed fzOxw22F8a71: a quote byte and 25 random bytes at the front. Our protobuf reader then finds 181 pieces
        // while Microsoft.ML.Tokenizers' byte fallback hands out id 240: an IndexOutOfRangeException in Encode before.
        using var dir = TempDir.CopyOf(Fixture.ModelDir);

        var mutation = new Mutation([new ByteEdit(ByteEditKind.SetInterestingByte, 0, 59, 54999, true), new ByteEdit(ByteEditKind.InsertBytes, 0, 25, 25739, true)], []);
        File.WriteAllBytes(dir.File("tokenizer.model"), mutation.Apply(File.ReadAllBytes(dir.File("tokenizer.model")), 0));
        var error = Record.Exception(() => GemmaTokenizer.FromPretrained(dir.Path).Encode("Hello, world! 😀 <image> ünïcödé"));
        var typed = Assert.IsType<TokenizerException>(error);
        Assert.Contains(dir.File("tokenizer.model"), typed.Message, StringComparison.Ordinal);
    }
}
