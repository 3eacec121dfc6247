using System.Collections.Frozen;
using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// The Gemma tokenizer, id for id equal to Hugging Face's slow <c>GemmaTokenizer</c> (transformers 4.46).
/// </summary>
/// <remarks>
/// <para>Encoding happens in three layers, as in the reference:</para>
/// <list type="number">
/// <item>Hugging Face layer: every added token (<c>added_tokens_decoder</c>, <c>added_tokens.json</c>, and the special
/// tokens) is cut out of the raw text first, so a literal <c>&lt;bos&gt;</c> in the text becomes id 2, and a token
/// whose id lies beyond the sentencepiece vocabulary (LLaVA-Gemma's <c>&lt;image&gt;</c> = 256000) still encodes.</item>
/// <item>sentencepiece's prefix matcher: USER_DEFINED pieces of <c>tokenizer.model</c> are matched as whole units.</item>
/// <item>sentencepiece BPE on the remaining plain text, delegated to Microsoft.ML.Tokenizers'
/// <see cref="SentencePieceTokenizer"/>. It is wrapped rather than used alone because it knows neither the Hugging Face
/// added tokens (ids beyond the model), nor piece types (needed to find USER_DEFINED pieces), and its decoder does
/// not reproduce sentencepiece's one-U+FFFD-per-invalid-byte rule; those parts are implemented here.</item>
/// </list>
/// <para>Decoding follows <c>GemmaTokenizer._decode</c>: added-token ids are emitted as their text, runs of other ids
/// are decoded by sentencepiece rules (byte pieces reassembled as UTF-8, each invalid byte becoming U+FFFD, control
/// pieces invisible), and nothing is inserted between them. Instances are immutable and thread-safe.</para>
/// <para>Only sentencepiece BPE models with Gemma's normalizer (no NFKC charsmap, <c>add_dummy_prefix=false</c>,
/// <c>remove_extra_whitespaces=false</c>) are accepted; anything else throws <see cref="TokenizerException"/>.</para>
/// </remarks>
public sealed class GemmaTokenizer
{
    private const char SpaceSymbol = '\u2581';

    private readonly SentencePieceTokenizer _bpe;
    private readonly SentencePieceEntry[] _pieces;
    private readonly short[] _byteValue;
    private readonly Dictionary<string, int> _pieceToId;
    private readonly Dictionary<int, GemmaAddedToken> _addedById;
    private readonly Dictionary<string, int> _addedByContent;
    private readonly TokenTrie _addedTrie;
    private readonly TokenTrie _userDefined;
    private readonly HashSet<int> _specialIds;
    private readonly bool _escapeWhitespaces;
    private readonly string? _chatTemplatePath;
    private readonly string _modelPath;
    private GemmaChatFormat? _chatFormat;

    private GemmaTokenizer(
        SentencePieceTokenizer bpe,
        SentencePieceModelProto model,
        Dictionary<int, GemmaAddedToken> addedById,
        HashSet<int> specialIds,
        TokenizerFolder settings,
        IReadOnlyDictionary<string, int> specialTokenIds)
    {
        _bpe = bpe;
        _pieces = model.Pieces.ToArray();
        UnknownSurface = model.UnknownSurface;
        _escapeWhitespaces = model.EscapeWhitespaces;
        _byteValue = new short[_pieces.Length];
        _pieceToId = new Dictionary<string, int>(_pieces.Length, StringComparer.Ordinal);
        var userDefined = new List<string>();
        for (int i = 0; i < _pieces.Length; i++)
        {
            _pieceToId.TryAdd(_pieces[i].Piece, i);
            _byteValue[i] = _pieces[i].Type == SentencePieceType.Byte ? ParseBytePiece(_pieces[i].Piece) : (short)-1;
            if (_pieces[i].Type == SentencePieceType.UserDefined)
            {
                userDefined.Add(_pieces[i].Piece);
            }
        }

        _userDefined = new TokenTrie(userDefined);
        _addedById = addedById;
        _addedByContent = ContentToId(addedById);
        _addedTrie = new TokenTrie(_addedByContent.Keys);

        _specialIds = specialIds;
        SpecialTokenIds = specialIds.ToFrozenSet();
        AddBosToken = settings.AddBosToken;
        AddEosToken = settings.AddEosToken;
        ChatTemplate = settings.ChatTemplate;
        _chatTemplatePath = settings.ChatTemplatePath;
        _modelPath = settings.ModelPath;
        BosToken = settings.SpecialTokens["bos_token"]!;
        EosToken = settings.SpecialTokens["eos_token"]!;
        PadToken = settings.SpecialTokens["pad_token"]!;
        BosTokenId = specialTokenIds["bos_token"];
        EosTokenId = specialTokenIds["eos_token"];
        PadTokenId = specialTokenIds["pad_token"];
        UnknownTokenId = specialTokenIds.TryGetValue("unk_token", out int unk) ? unk : null;
        SentencePieceVocabSize = _pieces.Length;
        VocabSize = Math.Max(_pieces.Length, addedById.Count == 0 ? 0 : addedById.Keys.Max() + 1);
        AddedTokens = addedById.ToFrozenDictionary();
    }

    /// <summary>Number of ids: the sentencepiece vocabulary plus added tokens beyond it (Hugging Face <c>len(tokenizer)</c> when ids are contiguous).</summary>
    public int VocabSize { get; }

    /// <summary>Number of pieces in <c>tokenizer.model</c> (Hugging Face <c>tokenizer.vocab_size</c>).</summary>
    public int SentencePieceVocabSize { get; }

    /// <summary>Id of the beginning-of-sequence token.</summary>
    public int BosTokenId { get; }

    /// <summary>Id of the end-of-sequence token.</summary>
    public int EosTokenId { get; }

    /// <summary>Id of the padding token.</summary>
    public int PadTokenId { get; }

    /// <summary>Id of the unknown token, or <see langword="null"/> when <c>unk_token</c> is unset.</summary>
    public int? UnknownTokenId { get; }

    /// <summary>Text of the beginning-of-sequence token (the chat template's <c>bos_token</c>).</summary>
    public string BosToken { get; }

    /// <summary>Text of the end-of-sequence token.</summary>
    public string EosToken { get; }

    /// <summary>Text of the padding token.</summary>
    public string PadToken { get; }

    /// <summary>Whether <see cref="Encode"/> prepends <see cref="BosTokenId"/> when asked to add special tokens (<c>add_bos_token</c>).</summary>
    public bool AddBosToken { get; }

    /// <summary>Whether <see cref="Encode"/> appends <see cref="EosTokenId"/> when asked to add special tokens (<c>add_eos_token</c>).</summary>
    public bool AddEosToken { get; }

    /// <summary>
    /// Ids that <c>skipSpecialTokens</c> drops: Hugging Face's <c>all_special_ids</c> (bos, eos, unk, pad, ... and
    /// <c>additional_special_tokens</c>).
    /// </summary>
    public IReadOnlySet<int> SpecialTokenIds { get; }

    /// <summary>Every added token by id (cut out of text before sentencepiece, decoded verbatim).</summary>
    public IReadOnlyDictionary<int, GemmaAddedToken> AddedTokens { get; }

    /// <summary>The chat template from <c>tokenizer_config.json</c> (or <c>chat_template.json</c>), if any.</summary>
    public string? ChatTemplate { get; }

    /// <summary>Text sentencepiece emits for an UNKNOWN piece that is not an added token (<c>unk_surface</c>).</summary>
    internal string UnknownSurface { get; }

    /// <summary>
    /// The chat format recognised from <see cref="ChatTemplate"/>.
    /// </summary>
    /// <exception cref="UnsupportedChatTemplateException">
    /// The folder has no chat template or it is not Gemma's. Render the prompt yourself and call
    /// <see cref="Encode"/> on it instead (see <see cref="GemmaChatFormat"/>).
    /// </exception>
    public GemmaChatFormat ChatFormat
    {
        get
        {
            if (_chatFormat is null)
            {
                if (ChatTemplate is null)
                {
                    throw new UnsupportedChatTemplateException(
                        "the tokenizer folder has no chat template (tokenizer_config.json 'chat_template' or chat_template.json); "
                        + "render the prompt yourself and pass it to GemmaTokenizer.Encode.");
                }

                try
                {
                    _chatFormat = Gemma.ChatTemplate.Recognise(ChatTemplate, BosToken);
                }
                catch (UnsupportedChatTemplateException ex) when (_chatTemplatePath is not null)
                {
                    throw new UnsupportedChatTemplateException($"{_chatTemplatePath}: {ex.Message}");
                }
            }

            return _chatFormat;
        }
    }

    /// <summary>
    /// Loads the tokenizer from a Hugging Face folder: <c>tokenizer.model</c> (required), <c>tokenizer_config.json</c>,
    /// and for folders without <c>added_tokens_decoder</c> also <c>special_tokens_map.json</c> and <c>added_tokens.json</c>;
    /// the chat template comes from <c>tokenizer_config.json</c> or else <c>chat_template.json</c>.
    /// </summary>
    /// <param name="folder">The model or tokenizer folder.</param>
    /// <exception cref="TokenizerException">A file is missing or malformed, or the model is not a Gemma-style BPE model.</exception>
    public static GemmaTokenizer FromPretrained(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        folder = Path.GetFullPath(folder);
        if (!Directory.Exists(folder))
        {
            throw new TokenizerException(folder, null, "tokenizer folder not found.");
        }

        string modelPath = Path.Combine(folder, TokenizerFolder.ModelFileName);
        if (!File.Exists(modelPath))
        {
            throw new TokenizerException(modelPath, null, "file not found (a sentencepiece tokenizer.model is required).");
        }

        byte[] modelBytes;
        try
        {
            modelBytes = File.ReadAllBytes(modelPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerException(modelPath, null, $"cannot be read: {e.Message}", e);
        }

        SentencePieceModelProto model;
        try
        {
            model = SentencePieceModelProto.Parse(modelBytes);
        }
        catch (FormatException e)
        {
            throw new TokenizerException(modelPath, null, $"not a valid sentencepiece model: {e.Message}", e);
        }

        CheckSupported(model, modelPath);
        var settings = TokenizerFolder.Read(folder);

        SentencePieceTokenizer bpe;
        try
        {
            using var stream = new MemoryStream(modelBytes, writable: false);
            bpe = SentencePieceTokenizer.Create(stream, addBeginningOfSentence: false, addEndOfSentence: false, specialTokens: null);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new TokenizerException(modelPath, null, $"Microsoft.ML.Tokenizers could not load the model: {e.Message}", e);
        }

        // The file is read twice (our protobuf reader for the piece table, Microsoft.ML.Tokenizers for the BPE): a
        // damaged file the two read differently would hand out ids past our table (found by the fuzz suite).
        int bpeMax = new[] { bpe.Vocabulary.Count == 0 ? -1 : bpe.Vocabulary.Values.Max(), bpe.UnknownId, bpe.BeginningOfSentenceId, bpe.EndOfSentenceId }.Max();
        if (bpeMax >= model.Pieces.Count || bpe.Vocabulary.Count > model.Pieces.Count)
        {
            throw new TokenizerException(modelPath, null, $"inconsistent sentencepiece model: {model.Pieces.Count} pieces, but ids up to {bpeMax} in its vocabulary or trainer spec.");
        }

        return Build(bpe, model, settings, folder);
    }

    private static GemmaTokenizer Build(SentencePieceTokenizer bpe, SentencePieceModelProto model, TokenizerFolder settings, string folder)
    {
        string configPath = Path.Combine(folder, TokenizerFolder.ConfigFileName);
        var addedById = new Dictionary<int, GemmaAddedToken>();
        foreach (var token in settings.AddedTokens)
        {
            addedById[token.Id] = token;
        }

        var pieceIds = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < model.Pieces.Count; i++)
        {
            pieceIds.TryAdd(model.Pieces[i].Piece, i);
        }

        // PreTrainedTokenizer.__init__ adds every special token that is not an added token yet: with its
        // sentencepiece id when the model has the piece, otherwise with the next free id.
        var specialContents = new List<string>();
        foreach (string key in TokenizerFolder.SpecialTokenKeys)
        {
            if (settings.SpecialTokens.TryGetValue(key, out string? content) && content is not null)
            {
                specialContents.Add(content);
            }
        }

        specialContents.AddRange(settings.AdditionalSpecialTokens);
        foreach (string content in specialContents)
        {
            if (!addedById.Values.Any(t => t.Content == content))
            {
                int next = Math.Max(model.Pieces.Count, addedById.Count == 0 ? 0 : addedById.Keys.Max() + 1);
                int id = pieceIds.TryGetValue(content, out int pieceId) ? pieceId : next;
                addedById[id] = new GemmaAddedToken(id, content, Special: true);
            }
        }

        var contentToId = ContentToId(addedById);
        var specialIds = new HashSet<int>(specialContents.Select(c => contentToId[c]));
        var specialTokenIds = new Dictionary<string, int>();
        foreach (string key in TokenizerFolder.SpecialTokenKeys)
        {
            if (settings.SpecialTokens.TryGetValue(key, out string? content) && content is not null)
            {
                specialTokenIds[key] = contentToId[content];
            }
        }

        foreach (string key in new[] { "bos_token", "eos_token", "pad_token" })
        {
            if (!specialTokenIds.ContainsKey(key))
            {
                throw new TokenizerException(configPath, key, "is null; Gemma needs a bos, eos and pad token.");
            }
        }

        return new GemmaTokenizer(bpe, model, addedById, specialIds, settings, specialTokenIds);
    }

    /// <summary>Hugging Face's <c>_added_tokens_encoder</c>: text to id, the highest id winning for duplicate texts.</summary>
    private static Dictionary<string, int> ContentToId(Dictionary<int, GemmaAddedToken> addedById)
    {
        var map = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var token in addedById.Values.OrderBy(t => t.Id))
        {
            map[token.Content] = token.Id;
        }

        return map;
    }

    private static void CheckSupported(SentencePieceModelProto model, string path)
    {
        if (model.ModelType != SentencePieceModelProto.ModelTypeBpe)
        {
            throw new TokenizerException(path, "trainer_spec.model_type", $"model type {model.ModelType} is not supported; Gemma tokenizers are BPE (2).");
        }

        if (model.PrecompiledCharsmapLength > 0)
        {
            throw new TokenizerException(path, "normalizer_spec.precompiled_charsmap", $"normalizer '{model.NormalizerName}' with a precompiled character map is not supported; Gemma uses 'identity'.");
        }

        if (model.AddDummyPrefix)
        {
            throw new TokenizerException(path, "normalizer_spec.add_dummy_prefix", "true is not supported; Gemma tokenizers never add a dummy prefix.");
        }

        if (model.RemoveExtraWhitespaces)
        {
            throw new TokenizerException(path, "normalizer_spec.remove_extra_whitespaces", "true is not supported; Gemma tokenizers keep whitespace.");
        }
    }

    /// <summary>
    /// Encodes text to ids like Hugging Face <c>tokenizer(text)["input_ids"]</c> (<paramref name="addSpecialTokens"/>
    /// true: <c>&lt;bos&gt;</c> prepended when <c>add_bos_token</c>, <c>&lt;eos&gt;</c> appended only when
    /// <c>add_eos_token</c>) or <c>tokenizer.encode(text, add_special_tokens=False)</c>.
    /// </summary>
    /// <remarks>
    /// Added and special tokens written in the text are recognised, so a rendered chat prompt that already starts
    /// with <c>&lt;bos&gt;</c> yields two bos ids with <paramref name="addSpecialTokens"/> true, exactly like the
    /// LLaVA processor; pass false to keep just the one in the text.
    /// </remarks>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        if (addSpecialTokens && AddBosToken)
        {
            ids.Add(BosTokenId);
        }

        foreach (var (segment, addedId) in Segment(text))
        {
            if (addedId is { } id)
            {
                ids.Add(id);
                continue;
            }

            // sentencepiece's BPE stage matches USER_DEFINED pieces on the normalized text, where spaces are
            // already U+2581 (so a piece like "▁▁" matches two spaces). Handing the escaped text on to the BPE is
            // harmless: escaping leaves U+2581 as it is.
            string normalized = _escapeWhitespaces ? segment.Replace(' ', SpaceSymbol) : segment;
            foreach (var (run, isSymbol) in _userDefined.SplitLongestMatch(normalized))
            {
                if (isSymbol)
                {
                    ids.Add(MapPiece(run, _pieceToId[run]));
                    continue;
                }

                foreach (int pieceId in _bpe.EncodeToIds(run, addBeginningOfSentence: false, addEndOfSentence: false))
                {
                    if ((uint)pieceId >= (uint)_pieces.Length)
                    {
                        // Only a damaged model can do this (the two readers of the file disagree): say which file.
                        throw new TokenizerException(_modelPath, null, $"inconsistent sentencepiece model: the BPE produced id {pieceId} of {_pieces.Length} pieces.");
                    }

                    ids.Add(MapPiece(_pieces[pieceId].Piece, pieceId));
                }
            }
        }

        if (addSpecialTokens && AddEosToken)
        {
            ids.Add(EosTokenId);
        }

        return ids;
    }

    /// <summary>
    /// The tokens of <paramref name="text"/> without special tokens added (Hugging Face <c>tokenizer.tokenize(text)</c>):
    /// sentencepiece pieces (U+2581 for spaces, <c>&lt;0xXX&gt;</c> for byte fallback) and added tokens' text.
    /// </summary>
    public IReadOnlyList<string> ToPieces(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Encode(text, addSpecialTokens: false).Select(IdToToken).ToList();
    }

    /// <summary>
    /// Decodes ids like Hugging Face <c>tokenizer.decode(ids, skip_special_tokens=...)</c>.
    /// </summary>
    /// <param name="ids">Token ids.</param>
    /// <param name="skipSpecialTokens">Drop the ids in <see cref="SpecialTokenIds"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var output = new StringBuilder();
        var state = new DecodeState(this, skipSpecialTokens);
        foreach (int id in ids)
        {
            state.Push(id, output);
        }

        state.Finish(output);
        return output.ToString();
    }

    /// <summary>Creates a streaming decoder for generation (see <see cref="GemmaStreamingDecoder"/>).</summary>
    public GemmaStreamingDecoder CreateStreamingDecoder(bool skipSpecialTokens = false) => new(this, skipSpecialTokens);

    /// <summary>
    /// The id of a token string (Hugging Face <c>convert_tokens_to_ids</c>): an added token's id, else the
    /// sentencepiece piece's id; <see langword="null"/> where Hugging Face would fall back to the unknown id.
    /// </summary>
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        if (_addedByContent.TryGetValue(token, out int added))
        {
            return added;
        }

        return _pieceToId.TryGetValue(token, out int id) ? id : null;
    }

    /// <summary>The token string of an id (Hugging Face <c>convert_ids_to_tokens</c>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is not in the vocabulary.</exception>
    public string IdToToken(int id)
    {
        if (_addedById.TryGetValue(id, out var added))
        {
            return added.Content;
        }

        if ((uint)id < (uint)_pieces.Length)
        {
            return _pieces[id].Piece;
        }

        throw OutOfVocabulary(id, nameof(id));
    }

    /// <summary>
    /// Renders a conversation with <see cref="ChatFormat"/> and tokenizes it without adding special tokens, like
    /// Hugging Face <c>apply_chat_template(messages, tokenize=True)</c>: a single <c>&lt;bos&gt;</c>, the one the template writes.
    /// </summary>
    /// <exception cref="UnsupportedChatTemplateException">The folder's chat template is not Gemma's.</exception>
    /// <exception cref="ChatTemplateException">The conversation is one the template rejects.</exception>
    public IReadOnlyList<int> EncodeChat(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true) =>
        Encode(ChatFormat.Render(messages, addGenerationPrompt), addSpecialTokens: false);

    /// <summary>Renders a conversation with <see cref="ChatFormat"/> (Hugging Face <c>apply_chat_template(..., tokenize=False)</c>).</summary>
    /// <exception cref="UnsupportedChatTemplateException">The folder's chat template is not Gemma's.</exception>
    /// <exception cref="ChatTemplateException">The conversation is one the template rejects.</exception>
    public string ApplyChatTemplate(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = true) =>
        ChatFormat.Render(messages, addGenerationPrompt);

    internal ArgumentOutOfRangeException OutOfVocabulary(int id, string paramName) =>
        new(paramName, id, $"token id {id} is not in the vocabulary (sentencepiece ids 0..{_pieces.Length - 1} and {_addedById.Count} added tokens; VocabSize {VocabSize}).");

    /// <summary>Hugging Face maps a piece string back to an id through the added tokens first.</summary>
    private int MapPiece(string piece, int pieceId) => _addedByContent.TryGetValue(piece, out int added) ? added : pieceId;

    /// <summary>
    /// <c>PreTrainedTokenizer.tokenize</c>'s first stage: split on added tokens, apply their lstrip / rstrip /
    /// single_word rules, and classify each piece by its text.
    /// </summary>
    private IEnumerable<(string Text, int? AddedId)> Segment(string text)
    {
        if (_addedTrie.IsEmpty)
        {
            if (text.Length > 0)
            {
                yield return (text, null);
            }

            yield break;
        }

        var tokens = _addedTrie.SplitAddedTokens(text);
        for (int i = 0; i < tokens.Count; i++)
        {
            if (!_addedByContent.TryGetValue(tokens[i], out int id))
            {
                continue;
            }

            var token = _addedById[id];
            string? left = i > 0 ? tokens[i - 1] : null;
            string? right = i < tokens.Count - 1 ? tokens[i + 1] : null;
            if (token.RStrip && !string.IsNullOrEmpty(right))
            {
                tokens[i + 1] = PythonString.LStrip(right);
            }

            if (token.LStrip && !string.IsNullOrEmpty(left))
            {
                tokens[i - 1] = PythonString.RStrip(left);
            }

            if (token.SingleWord && !string.IsNullOrEmpty(left) && left[^1] != ' ')
            {
                tokens[i - 1] += tokens[i];
                tokens[i] = "";
            }
            else if (token.SingleWord && !string.IsNullOrEmpty(right) && right[0] != ' ')
            {
                tokens[i + 1] = tokens[i] + tokens[i + 1];
                tokens[i] = "";
            }
        }

        foreach (string token in tokens)
        {
            if (token.Length == 0)
            {
                continue;
            }

            yield return _addedByContent.TryGetValue(token, out int id) ? (token, id) : (token, null);
        }
    }

    private static short ParseBytePiece(string piece)
    {
        // Byte pieces are spelled <0xXX>.
        if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
            && byte.TryParse(piece.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte value))
        {
            return value;
        }

        return -1;
    }

    /// <summary>
    /// Incremental form of <c>GemmaTokenizer._decode</c> + sentencepiece's decoder, shared by <see cref="Decode"/> and
    /// <see cref="GemmaStreamingDecoder"/> so that both produce the same text.
    /// </summary>
    internal sealed class DecodeState
    {
        private readonly GemmaTokenizer _tokenizer;
        private readonly bool _skipSpecialTokens;
        private readonly List<byte> _pendingBytes = new(4);

        public DecodeState(GemmaTokenizer tokenizer, bool skipSpecialTokens)
        {
            _tokenizer = tokenizer;
            _skipSpecialTokens = skipSpecialTokens;
        }

        /// <summary>Appends the text that <paramref name="id"/> completes; incomplete UTF-8 byte sequences stay pending.</summary>
        public void Push(int id, StringBuilder output)
        {
            var t = _tokenizer;
            bool isAdded = t._addedById.TryGetValue(id, out var added);
            if (!isAdded && (uint)id >= (uint)t._pieces.Length)
            {
                throw t.OutOfVocabulary(id, "ids");
            }

            // Skipped ids do not end a sentencepiece run: bytes on both sides still join (as in the reference).
            if (_skipSpecialTokens && t._specialIds.Contains(id))
            {
                return;
            }

            if (isAdded)
            {
                FlushBytes(output, final: true);
                AppendText(output, added!.Content);
                return;
            }

            short byteValue = t._byteValue[id];
            if (byteValue >= 0)
            {
                _pendingBytes.Add((byte)byteValue);
                FlushBytes(output, final: false);
                return;
            }

            FlushBytes(output, final: true);
            var piece = t._pieces[id];
            switch (piece.Type)
            {
                case SentencePieceType.Control:
                    break;
                case SentencePieceType.Unknown:
                    AppendText(output, t.UnknownSurface);
                    break;
                default:
                    AppendText(output, piece.Piece);
                    break;
            }
        }

        /// <summary>Ends the stream: pending bytes that never completed a character become U+FFFD each.</summary>
        public void Finish(StringBuilder output) => FlushBytes(output, final: true);

        // GemmaTokenizer._decode ends with .replace("▁", " ") over the whole text, added tokens and byte-decoded
        // characters included; the replacement is per character, so applying it to each chunk is the same.
        private static void AppendText(StringBuilder output, string text)
        {
            int start = output.Length;
            output.Append(text);
            output.Replace(SpaceSymbol, ' ', start, text.Length);
        }

        /// <summary>
        /// sentencepiece's byte-run decoding: at each position take one valid UTF-8 character, or map a single byte to
        /// U+FFFD. When not final, a trailing prefix that may still become a valid character is held back.
        /// </summary>
        private void FlushBytes(StringBuilder output, bool final)
        {
            var bytes = _pendingBytes;
            int n = bytes.Count;
            if (n == 0)
            {
                return;
            }

            int i = 0;
            while (i < n)
            {
                byte b = bytes[i];
                int need = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
                if (need == 1)
                {
                    output.Append((char)b);
                    i++;
                    continue;
                }

                if (need == 0)
                {
                    output.Append('\uFFFD');
                    i++;
                    continue;
                }

                if (n - i < need)
                {
                    bool couldComplete = true;
                    for (int j = i + 1; j < n; j++)
                    {
                        couldComplete &= IsTrailByte(bytes[j]);
                    }

                    if (!final && couldComplete)
                    {
                        break;
                    }

                    output.Append('\uFFFD');
                    i++;
                    continue;
                }

                if (TryDecode(bytes, i, need, out int codePoint))
                {
                    AppendText(output, char.ConvertFromUtf32(codePoint));
                    i += need;
                }
                else
                {
                    output.Append('\uFFFD');
                    i++;
                }
            }

            bytes.RemoveRange(0, i);
        }

        private static bool IsTrailByte(byte b) => (b & 0xC0) == 0x80;

        // sentencepiece's string_util::DecodeUTF8: trail bytes, no overlong forms, no surrogates, at most U+10FFFF.
        private static bool TryDecode(List<byte> bytes, int start, int length, out int codePoint)
        {
            codePoint = 0;
            for (int k = 1; k < length; k++)
            {
                if (!IsTrailByte(bytes[start + k]))
                {
                    return false;
                }
            }

            byte b0 = bytes[start];
            int min;
            switch (length)
            {
                case 2:
                    codePoint = ((b0 & 0x1F) << 6) | (bytes[start + 1] & 0x3F);
                    min = 0x80;
                    break;
                case 3:
                    codePoint = ((b0 & 0x0F) << 12) | ((bytes[start + 1] & 0x3F) << 6) | (bytes[start + 2] & 0x3F);
                    min = 0x800;
                    break;
                default:
                    codePoint = ((b0 & 0x07) << 18) | ((bytes[start + 1] & 0x3F) << 12) | ((bytes[start + 2] & 0x3F) << 6) | (bytes[start + 3] & 0x3F);
                    min = 0x10000;
                    break;
            }

            return codePoint >= min && (codePoint < 0xD800 || (codePoint >= 0xE000 && codePoint <= 0x10FFFF));
        }
    }
}
