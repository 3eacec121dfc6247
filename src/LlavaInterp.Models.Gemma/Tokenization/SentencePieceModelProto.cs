using Google.Protobuf;
using LlavaInterp.Models.Gemma.SentencePiece;

namespace LlavaInterp.Models.Gemma;

/// <summary>Type of a sentencepiece vocabulary entry (<c>ModelProto.SentencePiece.Type</c>).</summary>
public enum SentencePieceType
{
    /// <summary>An ordinary piece produced by BPE merges.</summary>
    Normal = 1,

    /// <summary>The unknown piece (<c>&lt;unk&gt;</c>).</summary>
    Unknown = 2,

    /// <summary>A control symbol (<c>&lt;bos&gt;</c>, <c>&lt;eos&gt;</c>, <c>&lt;pad&gt;</c>): never produced from text, decodes to nothing.</summary>
    Control = 3,

    /// <summary>A user-defined symbol: matched as one unit wherever it occurs in the text.</summary>
    UserDefined = 4,

    /// <summary>An unused piece.</summary>
    Unused = 5,

    /// <summary>A byte-fallback piece <c>&lt;0xXX&gt;</c>.</summary>
    Byte = 6,
}

/// <summary>One entry of the sentencepiece vocabulary.</summary>
/// <param name="Piece">The piece text (spaces appear as U+2581).</param>
/// <param name="Score">The merge score.</param>
/// <param name="Type">The piece type.</param>
public readonly record struct SentencePieceEntry(string Piece, float Score, SentencePieceType Type);

/// <summary>
/// The parts of a sentencepiece <c>tokenizer.model</c> (a <c>ModelProto</c> protobuf message) that the Gemma tokenizer
/// needs, parsed with the type Google.Protobuf generates from <c>sentencepiece_model.proto</c>. Microsoft.ML.Tokenizers
/// parses the same file but does not expose piece types, which are needed to find the USER_DEFINED pieces (matched
/// whole) and to decode CONTROL / BYTE / UNKNOWN pieces the way sentencepiece does.
/// </summary>
internal sealed class SentencePieceModelProto
{
    /// <summary>TrainerSpec.ModelType UNIGRAM.</summary>
    internal const int ModelTypeUnigram = (int)TrainerSpec.Types.ModelType.Unigram;

    /// <summary>TrainerSpec.ModelType BPE.</summary>
    internal const int ModelTypeBpe = (int)TrainerSpec.Types.ModelType.Bpe;

    private SentencePieceModelProto(ModelProto proto, List<SentencePieceEntry> pieces)
    {
        Pieces = pieces;
        // proto2 defaults apply when a message or field is absent; the generated getters return them.
        var trainer = proto.TrainerSpec ?? new TrainerSpec();
        var normalizer = proto.NormalizerSpec ?? new NormalizerSpec();
        ModelType = (int)trainer.ModelType;
        UnknownSurface = trainer.UnkSurface;
        NormalizerName = normalizer.Name;
        PrecompiledCharsmapLength = normalizer.PrecompiledCharsmap.Length;
        AddDummyPrefix = normalizer.AddDummyPrefix;
        RemoveExtraWhitespaces = normalizer.RemoveExtraWhitespaces;
        EscapeWhitespaces = normalizer.EscapeWhitespaces;
    }

    public IReadOnlyList<SentencePieceEntry> Pieces { get; }

    public int ModelType { get; }

    public string UnknownSurface { get; }

    public string NormalizerName { get; }

    public int PrecompiledCharsmapLength { get; }

    public bool AddDummyPrefix { get; }

    public bool RemoveExtraWhitespaces { get; }

    public bool EscapeWhitespaces { get; }

    /// <summary>Parses a serialized <c>ModelProto</c>.</summary>
    /// <exception cref="FormatException">The bytes are not a well-formed message.</exception>
    public static SentencePieceModelProto Parse(byte[] data)
    {
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(data);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new FormatException(e.Message, e);
        }
        catch (System.Text.DecoderFallbackException e)
        {
            throw new FormatException("a string field is not valid UTF-8.", e);
        }

        if (proto.Pieces.Count == 0)
        {
            throw new FormatException("the model has no pieces.");
        }

        var pieces = new List<SentencePieceEntry>(proto.Pieces.Count);
        for (int i = 0; i < proto.Pieces.Count; i++)
        {
            var piece = proto.Pieces[i];
            if (!piece.HasPiece)
            {
                throw new FormatException($"piece {i} has no text.");
            }

            // Enums are open in C#: a value outside the proto's list arrives as is.
            int type = (int)piece.Type;
            if (type is < 1 or > 6)
            {
                throw new FormatException($"piece {i} has unknown type {type}.");
            }

            pieces.Add(new SentencePieceEntry(piece.Piece, piece.Score, (SentencePieceType)type));
        }

        return new SentencePieceModelProto(proto, pieces);
    }
}
