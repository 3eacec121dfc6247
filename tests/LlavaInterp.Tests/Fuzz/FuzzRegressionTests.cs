using LlavaInterp.Models.Clip;
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

    [Fact]
    public void APngWhoseZlibStreamFailsAfterTheNeededBytesIsReadAsPillowReadsIt()
    {
        // Seed 9CqocyIc4TA1 (the 16-bit interlaced PNG): zlib reported an error that is not InvalidDataException
        // (ZLibException) where the completeness check reads past the needed bytes, and it escaped untyped.
        string seed = Fixture.Path("..", "pillow-corpus", "png_rgb16_interlaced_23x11.png");
        var mutation = new Mutation(
            [
                new ByteEdit(ByteEditKind.SetInterestingByte, 0.1538, 27, 31558, false),
                new ByteEdit(ByteEditKind.DeleteRange, 0.2247, 24, 30457, false),
                new ByteEdit(ByteEditKind.DeleteRange, 0.6154, 26, 37715, true),
                new ByteEdit(ByteEditKind.SetInterestingByte, 0.0556, 29, 53234, true),
            ],
            []);
        byte[] mutated = mutation.Apply(File.ReadAllBytes(seed), 0);
        var error = Record.Exception(() => PilImageDecoder.Decode(new MemoryStream(mutated), "mutated.png"));
        Assert.True(error is null or ClipImageException, $"untyped {error?.GetType().Name}: {error?.Message}");
    }
}
