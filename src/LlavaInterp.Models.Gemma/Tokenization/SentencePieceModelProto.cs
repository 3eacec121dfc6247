using System.Text;

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
/// needs. Microsoft.ML.Tokenizers parses the same file but does not expose piece types, which are needed to find the
/// USER_DEFINED pieces (matched whole) and to decode CONTROL / BYTE / UNKNOWN pieces the way sentencepiece does.
/// </summary>
internal sealed class SentencePieceModelProto
{
    // Field numbers from sentencepiece_model.proto.
    private const int ModelPiecesField = 1;
    private const int ModelTrainerSpecField = 2;
    private const int ModelNormalizerSpecField = 3;
    private const int PieceTextField = 1;
    private const int PieceScoreField = 2;
    private const int PieceTypeField = 3;
    private const int TrainerModelTypeField = 3;
    private const int TrainerUnkSurfaceField = 44;
    private const int NormalizerNameField = 1;
    private const int NormalizerCharsmapField = 2;
    private const int NormalizerAddDummyPrefixField = 3;
    private const int NormalizerRemoveExtraWhitespacesField = 4;
    private const int NormalizerEscapeWhitespacesField = 5;

    /// <summary>TrainerSpec.ModelType values.</summary>
    internal const int ModelTypeUnigram = 1;

    /// <summary>TrainerSpec.ModelType BPE.</summary>
    internal const int ModelTypeBpe = 2;

    private SentencePieceModelProto(List<SentencePieceEntry> pieces)
    {
        Pieces = pieces;
    }

    public IReadOnlyList<SentencePieceEntry> Pieces { get; }

    // proto2 defaults apply when a field is absent.
    public int ModelType { get; private set; } = ModelTypeUnigram;

    public string UnknownSurface { get; private set; } = " \u2047 ";

    public string NormalizerName { get; private set; } = "";

    public int PrecompiledCharsmapLength { get; private set; }

    public bool AddDummyPrefix { get; private set; } = true;

    public bool RemoveExtraWhitespaces { get; private set; } = true;

    public bool EscapeWhitespaces { get; private set; } = true;

    /// <summary>Parses a serialized <c>ModelProto</c>.</summary>
    /// <exception cref="FormatException">The bytes are not a well-formed message.</exception>
    public static SentencePieceModelProto Parse(ReadOnlySpan<byte> data)
    {
        var pieces = new List<SentencePieceEntry>();
        var model = new SentencePieceModelProto(pieces);
        var reader = new ProtoReader(data);
        while (reader.Next(out int field, out int wire))
        {
            switch (field)
            {
                case ModelPiecesField when wire == ProtoReader.WireLengthDelimited:
                    pieces.Add(ParsePiece(reader.ReadBytes(), pieces.Count));
                    break;
                case ModelTrainerSpecField when wire == ProtoReader.WireLengthDelimited:
                    model.ParseTrainerSpec(reader.ReadBytes());
                    break;
                case ModelNormalizerSpecField when wire == ProtoReader.WireLengthDelimited:
                    model.ParseNormalizerSpec(reader.ReadBytes());
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        if (pieces.Count == 0)
        {
            throw new FormatException("the model has no pieces.");
        }

        return model;
    }

    private static SentencePieceEntry ParsePiece(ReadOnlySpan<byte> data, int index)
    {
        string? text = null;
        float score = 0f;
        var type = SentencePieceType.Normal;
        var reader = new ProtoReader(data);
        while (reader.Next(out int field, out int wire))
        {
            switch (field)
            {
                case PieceTextField when wire == ProtoReader.WireLengthDelimited:
                    text = reader.ReadString();
                    break;
                case PieceScoreField when wire == ProtoReader.WireFixed32:
                    score = reader.ReadFloat();
                    break;
                case PieceTypeField when wire == ProtoReader.WireVarint:
                    ulong t = reader.ReadVarint();
                    if (t is < 1 or > 6)
                    {
                        throw new FormatException($"piece {index} has unknown type {t}.");
                    }

                    type = (SentencePieceType)(int)t;
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }

        return new SentencePieceEntry(text ?? throw new FormatException($"piece {index} has no text."), score, type);
    }

    private void ParseTrainerSpec(ReadOnlySpan<byte> data)
    {
        var reader = new ProtoReader(data);
        while (reader.Next(out int field, out int wire))
        {
            switch (field)
            {
                case TrainerModelTypeField when wire == ProtoReader.WireVarint:
                    ModelType = (int)reader.ReadVarint();
                    break;
                case TrainerUnkSurfaceField when wire == ProtoReader.WireLengthDelimited:
                    UnknownSurface = reader.ReadString();
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }
    }

    private void ParseNormalizerSpec(ReadOnlySpan<byte> data)
    {
        var reader = new ProtoReader(data);
        while (reader.Next(out int field, out int wire))
        {
            switch (field)
            {
                case NormalizerNameField when wire == ProtoReader.WireLengthDelimited:
                    NormalizerName = reader.ReadString();
                    break;
                case NormalizerCharsmapField when wire == ProtoReader.WireLengthDelimited:
                    PrecompiledCharsmapLength = reader.ReadBytes().Length;
                    break;
                case NormalizerAddDummyPrefixField when wire == ProtoReader.WireVarint:
                    AddDummyPrefix = reader.ReadVarint() != 0;
                    break;
                case NormalizerRemoveExtraWhitespacesField when wire == ProtoReader.WireVarint:
                    RemoveExtraWhitespaces = reader.ReadVarint() != 0;
                    break;
                case NormalizerEscapeWhitespacesField when wire == ProtoReader.WireVarint:
                    EscapeWhitespaces = reader.ReadVarint() != 0;
                    break;
                default:
                    reader.Skip(wire);
                    break;
            }
        }
    }

    /// <summary>A minimal protobuf wire-format reader (varint, fixed32/64, length-delimited).</summary>
    private ref struct ProtoReader
    {
        public const int WireVarint = 0;
        public const int WireFixed64 = 1;
        public const int WireLengthDelimited = 2;
        public const int WireFixed32 = 5;

        private readonly ReadOnlySpan<byte> _data;
        private int _pos;

        public ProtoReader(ReadOnlySpan<byte> data)
        {
            _data = data;
            _pos = 0;
        }

        public bool Next(out int field, out int wire)
        {
            if (_pos >= _data.Length)
            {
                field = 0;
                wire = 0;
                return false;
            }

            ulong key = ReadVarint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field <= 0)
            {
                throw new FormatException($"invalid field number at byte {_pos}.");
            }

            return true;
        }

        public ulong ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _data.Length)
                {
                    throw new FormatException("truncated varint.");
                }

                byte b = _data[_pos++];
                result |= (ulong)(b & 0x7F) << shift;
                if (b < 0x80)
                {
                    return result;
                }
            }

            throw new FormatException("varint longer than 10 bytes.");
        }

        public ReadOnlySpan<byte> ReadBytes()
        {
            ulong length = ReadVarint();
            if (length > (ulong)(_data.Length - _pos))
            {
                throw new FormatException($"length-delimited field of {length} bytes runs past the end of its message.");
            }

            var slice = _data.Slice(_pos, (int)length);
            _pos += (int)length;
            return slice;
        }

        public string ReadString()
        {
            try
            {
                return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(ReadBytes());
            }
            catch (DecoderFallbackException e)
            {
                throw new FormatException("a string field is not valid UTF-8.", e);
            }
        }

        public float ReadFloat()
        {
            if (_data.Length - _pos < 4)
            {
                throw new FormatException("truncated fixed32.");
            }

            float value = BitConverter.ToSingle(_data.Slice(_pos, 4));
            if (!BitConverter.IsLittleEndian)
            {
                value = BitConverter.Int32BitsToSingle(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(BitConverter.SingleToInt32Bits(value)));
            }

            _pos += 4;
            return value;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case WireVarint:
                    ReadVarint();
                    break;
                case WireFixed64:
                    Advance(8);
                    break;
                case WireLengthDelimited:
                    ReadBytes();
                    break;
                case WireFixed32:
                    Advance(4);
                    break;
                default:
                    throw new FormatException($"unsupported wire type {wire} at byte {_pos}.");
            }
        }

        private void Advance(int n)
        {
            if (_data.Length - _pos < n)
            {
                throw new FormatException("truncated fixed-width field.");
            }

            _pos += n;
        }
    }
}
