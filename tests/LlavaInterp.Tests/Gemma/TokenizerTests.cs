using System.Text.Json;
using System.Text.Json.Nodes;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Gemma;

/// <summary>Gemma tokenizer against manifest.json → tokenizer_cases (HF transformers 4.46.3 GemmaTokenizer, slow).</summary>
public sealed class TokenizerTests
{
    internal static readonly Lazy<GemmaTokenizer> Shared = new(() => GemmaTokenizer.FromPretrained(Fixture.ModelDir));

    private static GemmaTokenizer Tok => Shared.Value;

    private static JsonElement Cases => Fixture.Manifest.GetProperty("tokenizer_cases").GetProperty("cases");

    private static JsonElement DecodeOnlyCases => Fixture.Manifest.GetProperty("tokenizer_cases").GetProperty("decode_only_cases");

    public static IEnumerable<object[]> CaseIndices() =>
        Enumerable.Range(0, Cases.GetArrayLength()).Select(i => new object[] { i, Cases[i].GetProperty("text").GetString()! });

    public static IEnumerable<object[]> DecodeOnlyIndices() =>
        Enumerable.Range(0, DecodeOnlyCases.GetArrayLength()).Select(i => new object[] { i });

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private static string[] Strings(JsonElement e) => e.EnumerateArray().Select(x => x.GetString()!).ToArray();

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Encode_WithoutSpecialTokens_EqualsHfIds(int index, string text)
    {
        var c = Cases[index];
        Assert.Equal(Ints(c.GetProperty("ids")), Tok.Encode(text, addSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Encode_WithSpecialTokens_PrependsBosOnly(int index, string text)
    {
        var c = Cases[index];
        Assert.Equal(Ints(c.GetProperty("ids_with_special_tokens")), Tok.Encode(text));
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void ToPieces_EqualsHfTokens(int index, string text)
    {
        var c = Cases[index];
        var expected = Strings(c.GetProperty("pieces"));
        Assert.Equal(expected, Tok.ToPieces(text));
        Assert.Equal(expected, Ints(c.GetProperty("ids")).Select(Tok.IdToToken));
        Assert.Equal(Ints(c.GetProperty("ids")), expected.Select(p => Tok.TokenToId(p)!.Value));
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Decode_EqualsHf(int index, string text)
    {
        var c = Cases[index];
        int[] ids = Ints(c.GetProperty("ids"));
        Assert.Equal(c.GetProperty("decode").GetString(), Tok.Decode(ids));
        Assert.Equal(c.GetProperty("decode_skip_special_tokens").GetString(), Tok.Decode(ids, skipSpecialTokens: true));
        Assert.Equal(c.GetProperty("decode_with_special_tokens_ids").GetString(), Tok.Decode(Ints(c.GetProperty("ids_with_special_tokens"))));
        Assert.Equal(c.GetProperty("roundtrip_exact").GetBoolean(), Tok.Decode(Tok.Encode(text, addSpecialTokens: false)) == text);
    }

    [Theory]
    [MemberData(nameof(CaseIndices))]
    public void Encode_DiffersFromRawSentencePieceOnlyWhereTextHasAddedTokens(int index, string text)
    {
        // Raw sentencepiece does not know <bos>/<eos>/<pad>/<unk> in text (CONTROL pieces); HF cuts them out first.
        var c = Cases[index];
        bool hasControlLiteral = new[] { "<bos>", "<eos>", "<pad>", "<unk>" }.Any(t => text.Contains(t, StringComparison.Ordinal));
        bool same = Ints(c.GetProperty("sentencepiece_encode_ids")).SequenceEqual(Tok.Encode(text, addSpecialTokens: false));
        Assert.Equal(!hasControlLiteral, same);
    }

    [Theory]
    [MemberData(nameof(DecodeOnlyIndices))]
    public void Decode_DecodeOnlyCases_EqualHf(int index)
    {
        var c = DecodeOnlyCases[index];
        int[] ids = Ints(c.GetProperty("ids"));
        Assert.Equal(c.GetProperty("decode").GetString(), Tok.Decode(ids));
        Assert.Equal(c.GetProperty("decode_skip_special_tokens").GetString(), Tok.Decode(ids, skipSpecialTokens: true));
    }

    [Theory]
    [InlineData("image_chat")]
    [InlineData("text_chat")]
    [InlineData("steered_image_chat")]
    public void Decode_GeneratedIds_EqualsHfText(string run)
    {
        var g = Fixture.Manifest.GetProperty("generation").GetProperty(run);
        int[] ids = Ints(g.GetProperty("new_ids"));
        string expected = g.GetProperty("new_text").GetString()!;
        Assert.Equal(expected, Tok.Decode(ids));

        var decoder = Tok.CreateStreamingDecoder();
        Assert.Equal(expected, string.Concat(ids.Select(decoder.Push)) + decoder.Flush());
    }

    [Fact]
    public void Vocabulary_MatchesManifest()
    {
        var info = Fixture.Manifest.GetProperty("tokenizer");
        Assert.Equal(info.GetProperty("len_tokenizer").GetInt32(), Tok.VocabSize);
        Assert.Equal(info.GetProperty("sentencepiece").GetProperty("vocab_size").GetInt32(), Tok.SentencePieceVocabSize);
        var special = info.GetProperty("special_tokens");
        Assert.Equal(special.GetProperty("bos")[1].GetInt32(), Tok.BosTokenId);
        Assert.Equal(special.GetProperty("eos")[1].GetInt32(), Tok.EosTokenId);
        Assert.Equal(special.GetProperty("pad")[1].GetInt32(), Tok.PadTokenId);
        Assert.Equal(special.GetProperty("unk")[1].GetInt32(), Tok.UnknownTokenId);
        Assert.Equal("<bos>", Tok.BosToken);
        Assert.True(Tok.AddBosToken);
        Assert.False(Tok.AddEosToken);

        var decoder = info.GetProperty("added_tokens_decoder");
        foreach (var p in decoder.EnumerateObject())
        {
            int id = int.Parse(p.Name, System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(p.Value.GetString(), Tok.IdToToken(id));
            Assert.Equal(id, Tok.TokenToId(p.Value.GetString()!));
            Assert.Contains(id, Tok.SpecialTokenIds);
        }

        Assert.Equal(decoder.EnumerateObject().Count(), Tok.SpecialTokenIds.Count);
        Assert.Equal(info.GetProperty("image_token_id").GetInt32(), Tok.TokenToId("<image>"));
        Assert.Equal("<0x00>", Tok.IdToToken(info.GetProperty("sentencepiece").GetProperty("first_byte_piece_id").GetInt32()));
        Assert.Null(Tok.TokenToId("no-such-piece"));
    }

    [Fact]
    public void ShardedFolder_LoadsTheSameTokenizer()
    {
        var sharded = GemmaTokenizer.FromPretrained(Fixture.ShardedModelDir);
        foreach (var c in Cases.EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            Assert.Equal(Tok.Encode(text), sharded.Encode(text));
        }
    }

    [Fact]
    public void Decode_OutOfVocabularyId_Throws()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Tok.Decode([5, Tok.VocabSize]));
        Assert.Contains(Tok.VocabSize.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Tok.Decode([-1]));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tok.IdToToken(Tok.VocabSize));
    }

    [Fact]
    public void Decode_ByteRuns_FollowSentencePieceReplacementRules()
    {
        int B(int b) => Tok.TokenToId($"<0x{b:X2}>")!.Value;

        // Each byte that does not start a valid character becomes one U+FFFD (not one per maximal subpart).
        Assert.Equal("\uFFFD\uFFFD", Tok.Decode([B(0xF0), B(0x9F)]));
        Assert.Equal("\uFFFD", Tok.Decode([B(0x80)]));
        Assert.Equal("\uFFFD\uFFFD", Tok.Decode([B(0xC0), B(0x80)]));           // overlong
        Assert.Equal("\uFFFD\uFFFD\uFFFD", Tok.Decode([B(0xED), B(0xA0), B(0x80)])); // surrogate
        Assert.Equal("\uFFFD", Tok.Decode([B(0xEF), B(0xBF), B(0xBD)]));      // an encoded U+FFFD is valid
        Assert.Equal("\uFFFDx", Tok.Decode([B(0xE2), Tok.TokenToId("x")!.Value]));

        // A byte run is interrupted by an added token (separate sentencepiece calls) but not by a skipped one.
        int bos = Tok.BosTokenId;
        Assert.Equal("\uFFFD<bos>\uFFFD\uFFFD", Tok.Decode([B(0xE2), bos, B(0x96), B(0x81)]));

        // U+2581 produced from bytes becomes a space: HF's final .replace("▁", " ") covers the whole text.
        Assert.Equal(" ", Tok.Decode([B(0xE2), bos, B(0x96), B(0x81)], skipSpecialTokens: true));
    }

    [Fact]
    public void Streaming_HoldsBackIncompleteUtf8()
    {
        // 🙂 = F0 9F 99 82 (ids from the emoji case).
        var decoder = Tok.CreateStreamingDecoder();
        Assert.Equal("", decoder.Push(247));
        Assert.Equal("", decoder.Push(166));
        Assert.Equal("", decoder.Push(160));
        Assert.Equal("🙂", decoder.Push(137));
        Assert.Equal("", decoder.Flush());

        // An incomplete sequence is released as U+FFFD per byte when a non-byte piece arrives or at Flush.
        Assert.Equal("", decoder.Push(247));
        Assert.Equal("", decoder.Push(166));
        Assert.Equal("\uFFFD\uFFFDok", decoder.Push(380));
        decoder.Reset();
        Assert.Equal("", decoder.Push(247));
        Assert.Equal("", decoder.Push(166));
        Assert.Equal("\uFFFD\uFFFD", decoder.Flush());

        // A byte that can no longer complete a character is released at once.
        decoder.Reset();
        Assert.Equal("", decoder.Push(247));
        Assert.Equal("\uFFFDx", decoder.Push(Tok.TokenToId("x")!.Value));
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Push(Tok.VocabSize + 3));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Streaming_ConcatenationEqualsDecode(bool skip)
    {
        var sequences = new List<int[]>();
        foreach (var c in Cases.EnumerateArray())
        {
            sequences.Add(Ints(c.GetProperty("ids_with_special_tokens")));
        }

        foreach (var c in DecodeOnlyCases.EnumerateArray())
        {
            sequences.Add(Ints(c.GetProperty("ids")));
        }

        // Random sequences biased towards byte pieces (7..262) so that partial and invalid UTF-8 occur often.
        var rng = new Random(1234);
        for (int n = 0; n < 300; n++)
        {
            var ids = new int[rng.Next(1, 24)];
            for (int k = 0; k < ids.Length; k++)
            {
                ids[k] = rng.Next(4) switch
                {
                    0 => rng.Next(Tok.VocabSize),
                    1 => 7 + 0xE0 + rng.Next(0x20), // lead bytes of 3/4-byte sequences and invalid F8..FF
                    _ => 7 + 0x80 + rng.Next(0x40), // continuation bytes
                };
            }

            sequences.Add(ids);
        }

        foreach (var ids in sequences)
        {
            var decoder = Tok.CreateStreamingDecoder(skip);
            var streamed = string.Concat(ids.Select(decoder.Push)) + decoder.Flush();
            Assert.Equal(Tok.Decode(ids, skip), streamed);
        }
    }

    [Fact]
    public void AddedTokenBeyondSentencePieceVocabulary_EncodesAndDecodes()
    {
        // Like Intel/llava-gemma-2b, whose <image> (256000) lies past the 256000-piece model.
        using var dir = CopyModel(config =>
        {
            config["added_tokens_decoder"]!["640"] = new JsonObject
            {
                ["content"] = "<extra_tok>",
                ["lstrip"] = false,
                ["normalized"] = false,
                ["rstrip"] = false,
                ["single_word"] = false,
                ["special"] = true,
            };
            config["additional_special_tokens"]!.AsArray().Add("<extra_tok>");
        });
        File.WriteAllText(dir.File("added_tokens.json"), """{"<extra_tok>": 640}""");
        var tok = GemmaTokenizer.FromPretrained(dir.Path);

        Assert.Equal(641, tok.VocabSize);
        Assert.Equal(640, tok.SentencePieceVocabSize);
        var ids = tok.Encode("x<extra_tok>x<image>", addSpecialTokens: false);
        Assert.Equal([579, 640, 579, 6], ids);
        Assert.Equal("x<extra_tok>x<image>", tok.Decode(ids));
        Assert.Equal("xx", tok.Decode(ids, skipSpecialTokens: true));
        Assert.Equal("<extra_tok>", tok.IdToToken(640));
        Assert.Equal(640, tok.TokenToId("<extra_tok>"));
        Assert.Equal(["x", "<extra_tok>", "x", "<image>"], tok.ToPieces("x<extra_tok>x<image>"));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([641]));
    }

    [Fact]
    public void AddedTokenNotInSpecialTokens_IsKeptBySkipSpecialTokens()
    {
        // skip_special_tokens drops HF's all_special_ids (attributes + additional_special_tokens), not every added token.
        using var dir = CopyModel(config =>
            config["added_tokens_decoder"]!["640"] = new JsonObject { ["content"] = "<plain_added>", ["special"] = false });
        var tok = GemmaTokenizer.FromPretrained(dir.Path);
        var ids = tok.Encode("a<plain_added>", addSpecialTokens: false);
        Assert.Equal(640, ids[^1]);
        Assert.Equal("a<plain_added>", tok.Decode(ids, skipSpecialTokens: true));
        Assert.DoesNotContain(640, tok.SpecialTokenIds);
    }

    [Fact]
    public void LegacyFolder_ReadsAddedTokensJsonAndSpecialTokensMap()
    {
        // Without added_tokens_decoder, HF reads added_tokens.json (special when listed in the special tokens).
        using var dir = CopyModel(config =>
        {
            config.Remove("added_tokens_decoder");
            config.Remove("additional_special_tokens");
        });
        var map = JsonNode.Parse(File.ReadAllText(dir.File("special_tokens_map.json")))!.AsObject();
        map["additional_special_tokens"]!.AsArray().Add("<legacy_tok>");
        File.WriteAllText(dir.File("special_tokens_map.json"), map.ToJsonString());
        File.WriteAllText(dir.File("added_tokens.json"), """{"<legacy_tok>": 640}""");
        var tok = GemmaTokenizer.FromPretrained(dir.Path);

        Assert.Equal(641, tok.VocabSize);
        Assert.Equal([2, 640, 4], tok.Encode("<legacy_tok><start_of_turn>"));
        Assert.Equal("<legacy_tok><start_of_turn>", tok.Decode([640, 4]));
        Assert.Contains(640, tok.SpecialTokenIds);
        Assert.Contains(4, tok.SpecialTokenIds);

        // Special tokens without an added-token entry keep their sentencepiece ids.
        Assert.Equal(2, tok.BosTokenId);
        Assert.Equal(0, tok.PadTokenId);
    }

    [Theory]
    [InlineData("x<a>bcd", new[] { "x", "<a>bc", "d" })]
    [InlineData("<a>bc", new[] { "<a>bc" })]
    [InlineData("a>bcd", new[] { "a>b", "cd" })]
    [InlineData("<a><a>bcx", new[] { "<a>", "<a>bc", "x" })]
    [InlineData("xa>bc", new[] { "x", "a>b", "c" })]
    [InlineData("<a>b", new[] { "<a>", "b" })]
    [InlineData("[CLS]L x", new[] { "[CLS]", "L", " x" })]
    [InlineData("a>bc<a", new[] { "a>b", "c<a" })]
    [InlineData("<<a>>", new[] { "<", "<a>", ">" })]
    public void AddedTokens_OverlappingMatches_SplitLikeHfTrie(string text, string[] expectedSplit)
    {
        // Expected splits computed with transformers' tokenization_utils.Trie.split on the same tokens.
        string[] tokens = ["<a>", "<a>bc", "a>b", "bcd", "[CLS]", "L"];
        using var dir = CopyModel(config =>
        {
            for (int k = 0; k < tokens.Length; k++)
            {
                config["added_tokens_decoder"]![(640 + k).ToString(System.Globalization.CultureInfo.InvariantCulture)] =
                    new JsonObject { ["content"] = tokens[k], ["special"] = true };
            }
        });
        var tok = GemmaTokenizer.FromPretrained(dir.Path);
        var expected = expectedSplit.SelectMany(seg => Array.IndexOf(tokens, seg) is var k and >= 0
            ? [640 + k]
            : Tok.Encode(seg, addSpecialTokens: false));
        Assert.Equal(expected, tok.Encode(text, addSpecialTokens: false));
    }

    [Fact]
    public void AddedToken_StripFlags_FollowHfRules()
    {
        using var dir = CopyModel(config =>
        {
            config["added_tokens_decoder"]!["640"] = new JsonObject { ["content"] = "<L>", ["lstrip"] = true, ["special"] = true };
            config["added_tokens_decoder"]!["641"] = new JsonObject { ["content"] = "<R>", ["rstrip"] = true, ["special"] = true };
        });
        var tok = GemmaTokenizer.FromPretrained(dir.Path);
        var a = tok.Encode("a", addSpecialTokens: false);
        var spaceB = tok.Encode(" b", addSpecialTokens: false);
        var b = tok.Encode("b", addSpecialTokens: false);

        // lstrip removes whitespace on the left of the token only, rstrip on the right only.
        Assert.Equal([.. a, 640, .. spaceB], tok.Encode("a \t<L> b", addSpecialTokens: false));
        Assert.Equal([.. tok.Encode("a ", addSpecialTokens: false), 641, .. b], tok.Encode("a <R>\n b", addSpecialTokens: false));
    }

    [Fact]
    public void Config_AddBosFalseAddEosTrue_IsHonoured()
    {
        using var dir = CopyModel(config =>
        {
            config["add_bos_token"] = false;
            config["add_eos_token"] = true;
        });
        var tok = GemmaTokenizer.FromPretrained(dir.Path);
        Assert.Equal([596, 373, 557, 541, 369, 1], tok.Encode("Hello world"));
        Assert.Equal([596, 373, 557, 541, 369], tok.Encode("Hello world", addSpecialTokens: false));
    }

    [Fact]
    public void FromPretrained_MissingFolderOrModel_ThrowsNamingThePath()
    {
        using var dir = new TempDir();
        var missing = Path.Combine(dir.Path, "nope");
        var e1 = Assert.Throws<TokenizerException>(() => GemmaTokenizer.FromPretrained(missing));
        Assert.Contains("nope", e1.Message);

        var e2 = Assert.Throws<TokenizerException>(() => GemmaTokenizer.FromPretrained(dir.Path));
        Assert.EndsWith("tokenizer.model", e2.FilePath);
    }

    [Fact]
    public void FromPretrained_CorruptModel_ThrowsTokenizerException()
    {
        using var dir = CopyModel(_ => { });
        byte[] bytes = File.ReadAllBytes(dir.File("tokenizer.model"));
        File.WriteAllBytes(dir.File("tokenizer.model"), bytes[..(bytes.Length / 2)]);
        var e = Assert.Throws<TokenizerException>(() => GemmaTokenizer.FromPretrained(dir.Path));
        Assert.EndsWith("tokenizer.model", e.FilePath);

        File.WriteAllBytes(dir.File("tokenizer.model"), [0xFF, 0xFF, 0xFF]);
        Assert.Throws<TokenizerException>(() => GemmaTokenizer.FromPretrained(dir.Path));
    }

    [Theory]
    [InlineData("{not json", null)]
    [InlineData("""{"add_bos_token": "yes"}""", "add_bos_token")]
    [InlineData("""{"added_tokens_decoder": {"x": {"content": "<a>"}}}""", "added_tokens_decoder.x")]
    [InlineData("""{"added_tokens_decoder": {"7": {"special": true}}}""", "added_tokens_decoder.7.content")]
    [InlineData("""{"bos_token": 5}""", "bos_token")]
    [InlineData("""{"added_tokens_decoder": {}, "eos_token": null}""", "eos_token")]
    [InlineData("""{"chat_template": 3}""", "chat_template")]
    public void FromPretrained_BadConfig_ThrowsNamingFileAndKey(string configJson, string? key)
    {
        using var dir = CopyModel(_ => { });
        File.WriteAllText(dir.File("tokenizer_config.json"), configJson);
        var e = Assert.Throws<TokenizerException>(() => GemmaTokenizer.FromPretrained(dir.Path));
        Assert.EndsWith("tokenizer_config.json", e.FilePath);
        Assert.Equal(key, e.Key);
    }

    [Fact]
    public void FromPretrained_NonGemmaNormalizerOrModelType_IsRejected()
    {
        using var dir = CopyModel(_ => { });

        // Unigram model (model_type 1).
        File.WriteAllBytes(dir.File("tokenizer.model"), TinyModel(modelType: 1, addDummyPrefix: false));
        var e1 = Assert.Throws<TokenizerException>(() => GemmaTokenizer.FromPretrained(dir.Path));
        Assert.Equal("trainer_spec.model_type", e1.Key);

        // add_dummy_prefix absent = proto default true.
        File.WriteAllBytes(dir.File("tokenizer.model"), TinyModel(modelType: 2, addDummyPrefix: null));
        var e2 = Assert.Throws<TokenizerException>(() => GemmaTokenizer.FromPretrained(dir.Path));
        Assert.Equal("normalizer_spec.add_dummy_prefix", e2.Key);

        // The same hand-written model with Gemma's settings loads and encodes.
        File.WriteAllBytes(dir.File("tokenizer.model"), TinyModel(modelType: 2, addDummyPrefix: false));
        File.Delete(dir.File("tokenizer_config.json"));
        File.Delete(dir.File("special_tokens_map.json"));
        var tok = GemmaTokenizer.FromPretrained(dir.Path);
        Assert.Equal([2, 7, 8, 7], tok.Encode("aba"));
        Assert.Equal("aba", tok.Decode([2, 7, 8, 7], skipSpecialTokens: true));

        // USER_DEFINED pieces that no config lists as added tokens are still matched whole by sentencepiece and,
        // not being special, survive skipSpecialTokens; a CONTROL piece that is not an added token decodes to nothing.
        Assert.Equal([7, 4, 8, 5, 6], tok.Encode("a<start_of_turn>b<end_of_turn> ", addSpecialTokens: false));
        Assert.Equal("a<start_of_turn>b", tok.Decode([7, 4, 8], skipSpecialTokens: true));
        Assert.Equal("ab", tok.Decode([7, 9, 8]));
        Assert.Equal("<ctl>", tok.IdToToken(9));
        Assert.Equal(11, tok.VocabSize);

        // A USER_DEFINED piece spelled with U+2581 matches spaces in the text (sentencepiece matches after escaping).
        Assert.Equal([7, 10, 8, 10, 6], tok.Encode("a  b   ", addSpecialTokens: false));
        Assert.Equal("a  b   ", tok.Decode([7, 10, 8, 10, 6]));
    }

    /// <summary>Copies the fixture's model folder tokenizer files and edits tokenizer_config.json.</summary>
    internal static TempDir CopyModel(Action<JsonObject> editConfig)
    {
        var dir = new TempDir();
        foreach (var name in new[] { "tokenizer.model", "special_tokens_map.json", "chat_template.json" })
        {
            File.Copy(Path.Combine(Fixture.ModelDir, name), dir.File(name));
        }

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Fixture.ModelDir, "tokenizer_config.json")))!.AsObject();
        editConfig(config);
        File.WriteAllText(dir.File("tokenizer_config.json"), config.ToJsonString());
        return dir;
    }

    /// <summary>A hand-built ModelProto: pad/eos/bos CONTROL, unk, two USER_DEFINED, '▁', 'a', 'b', another CONTROL, USER_DEFINED '▁▁'.</summary>
    private static byte[] TinyModel(int modelType, bool? addDummyPrefix)
    {
        var model = new List<byte>();
        void Piece(string text, float score, int type)
        {
            var p = new List<byte>();
            WriteBytes(p, 1, System.Text.Encoding.UTF8.GetBytes(text));
            p.Add((2 << 3) | 5);
            p.AddRange(BitConverter.GetBytes(score));
            p.Add(3 << 3);
            p.Add((byte)type);
            WriteBytes(model, 1, p.ToArray());
        }

        Piece("<pad>", 0, 3);
        Piece("<eos>", 0, 3);
        Piece("<bos>", 0, 3);
        Piece("<unk>", 0, 2);
        Piece("<start_of_turn>", 0, 4);
        Piece("<end_of_turn>", 0, 4);
        Piece("\u2581", -1, 1);
        Piece("a", -2, 1);
        Piece("b", -3, 1);
        Piece("<ctl>", 0, 3);
        Piece("\u2581\u2581", 0, 4);
        var trainer = new List<byte> { 3 << 3, (byte)modelType };
        WriteBytes(model, 2, trainer.ToArray());
        var normalizer = new List<byte>();
        WriteBytes(normalizer, 1, "identity"u8.ToArray());
        if (addDummyPrefix is { } adp)
        {
            normalizer.AddRange(new byte[] { 3 << 3, adp ? (byte)1 : (byte)0 });
        }

        normalizer.AddRange(new byte[] { 4 << 3, 0 });
        WriteBytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    private static void WriteBytes(List<byte> to, int field, byte[] value)
    {
        to.Add((byte)((field << 3) | 2));
        int length = value.Length;
        while (length >= 0x80)
        {
            to.Add((byte)(length | 0x80));
            length >>= 7;
        }

        to.Add((byte)length);
        to.AddRange(value);
    }
}
