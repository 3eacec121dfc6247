using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;

namespace LlavaInterp.Llava;

/// <summary>
/// Turns text and images into model inputs, as HF's <c>LlavaProcessor</c>: images through the CLIP image processor,
/// every <c>&lt;image&gt;</c> placeholder expanded to the number of image tokens an image produces.
/// </summary>
public sealed class LlavaProcessor
{
    private readonly LlavaConfig _config;
    private readonly LlavaProcessorConfig _processorConfig;

    /// <summary>Creates a processor.</summary>
    /// <exception cref="LlavaException">The tokenizer has an id the language model has no embedding row for (other than
    /// the image placeholder): tokenizer and configuration do not belong together.</exception>
    public LlavaProcessor(GemmaTokenizer tokenizer, ClipImageProcessor imageProcessor, LlavaConfig config, LlavaProcessorConfig? processorConfig = null)
    {
        Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        ImageProcessor = imageProcessor ?? throw new ArgumentNullException(nameof(imageProcessor));
        _config = config ?? throw new ArgumentNullException(nameof(config));
        _processorConfig = processorConfig ?? new LlavaProcessorConfig();
        CheckVocabulary(tokenizer, config);
    }

    // Found here, at load, rather than as an index failure in the first forward that meets such a token. The image
    // placeholder may lie past the rows (llava-gemma-2b: <image> = 256000 = vocab_size): the merge overwrites its rows.
    private static void CheckVocabulary(GemmaTokenizer tokenizer, LlavaConfig config)
    {
        int rows = config.TextConfig.VocabSize;
        int? first = tokenizer.SentencePieceVocabSize > rows ? rows : null;
        foreach (int id in tokenizer.AddedTokens.Keys)
        {
            if (id >= rows && id != config.ImageTokenIndex && (first is null || id < first))
            {
                first = id;
            }
        }

        if (first is int bad)
        {
            throw new LlavaException($"The tokenizer has token id {bad} ('{tokenizer.IdToToken(bad)}', {tokenizer.VocabSize} ids in all) but the language model's vocab_size is {rows}: tokenizer and config.json do not belong together.");
        }
    }

    /// <summary>The tokenizer.</summary>
    public GemmaTokenizer Tokenizer { get; }

    /// <summary>The image processor.</summary>
    public ClipImageProcessor ImageProcessor { get; }

    /// <summary>The id of the image placeholder token.</summary>
    public int ImageTokenId => _config.ImageTokenIndex;

    /// <summary>The placeholder text.</summary>
    public string ImageToken => _processorConfig.ImageToken;

    /// <summary>
    /// Image tokens per image of height × width pixels after preprocessing: patches, plus the CLS token unless the
    /// strategy is <c>default</c> (HF 4.46 <c>LlavaProcessor</c>).
    /// </summary>
    public int ImageTokensFor(int height, int width)
    {
        int patch = _processorConfig.PatchSize ?? _config.VisionConfig.PatchSize;
        string strategy = _processorConfig.VisionFeatureSelectStrategy ?? _config.VisionFeatureSelectStrategy;
        int tokens = ((height / patch) * (width / patch)) + _processorConfig.NumAdditionalImageTokens;
        return strategy == "default" ? tokens - 1 : tokens;
    }

    /// <summary>
    /// Prepares one prompt. Without <paramref name="raw"/>, <paramref name="text"/> becomes one user turn in the model's
    /// chat format with a generation prompt (a single <c>&lt;bos&gt;</c>, as <c>apply_chat_template(tokenize=True)</c>),
    /// and with images the turn starts with one <c>&lt;image&gt;\n</c> per image. With <paramref name="raw"/>, the text is
    /// tokenized exactly as HF's tokenizer does (<c>&lt;bos&gt;</c> prepended, special tokens written in it honoured), so a
    /// rendered template reproduces HF's processor ids, double <c>&lt;bos&gt;</c> included.
    /// </summary>
    /// <param name="text">The prompt text.</param>
    /// <param name="imagePaths">Image files, one per placeholder.</param>
    /// <param name="raw">Tokenize the text as is instead of wrapping it in the chat format.</param>
    /// <exception cref="LlavaException">The number of placeholders and images differ.</exception>
    public LlavaPrompt Prepare(string text, IReadOnlyList<string>? imagePaths = null, bool raw = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        var images = (imagePaths ?? []).Select(p => ImageProcessor.Process(p)).ToList();
        return Prepare(text, images, raw);
    }

    /// <summary>Prepares one prompt from already processed images (see the path overload for the prompt rule).</summary>
    public LlavaPrompt Prepare(string text, IReadOnlyList<ProcessedImage> images, bool raw = false)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(images);
        string rendered;
        IReadOnlyList<int> ids;
        if (raw)
        {
            rendered = text;
            ids = Tokenizer.Encode(text);
        }
        else
        {
            string content = string.Concat(Enumerable.Repeat(ImageToken + "\n", images.Count)) + text;
            var messages = new[] { new ChatMessage("user", content) };
            rendered = Tokenizer.ApplyChatTemplate(messages, addGenerationPrompt: true);
            ids = Tokenizer.EncodeChat(messages, addGenerationPrompt: true);
        }

        int placeholders = ids.Count(i => i == ImageTokenId);
        if (placeholders != images.Count)
        {
            throw new LlavaException($"The prompt has {placeholders} {ImageToken} placeholder(s) but {images.Count} image(s) were given; give one image per placeholder.");
        }

        var expanded = new List<int>(ids.Count);
        var positions = new List<int>();
        int image = 0;
        foreach (int id in ids)
        {
            if (id != ImageTokenId)
            {
                expanded.Add(id);
                continue;
            }

            int count = ImageTokensFor(images[image].Height, images[image].Width);
            for (int k = 0; k < count; k++)
            {
                positions.Add(expanded.Count);
                expanded.Add(id);
            }

            image++;
        }

        var pixelValues = images.Count == 0 ? null : ProcessedImage.Stack(images);
        return new LlavaPrompt(rendered, expanded, positions, images, pixelValues);
    }

    /// <summary>Prepares several prompts as one left-padded batch (pad id from the tokenizer), images row by row.</summary>
    /// <exception cref="LlavaException">A row's placeholders and images differ.</exception>
    public LlavaBatch PrepareBatch(IReadOnlyList<(string Text, IReadOnlyList<string> Images)> items, bool raw = false)
    {
        ArgumentNullException.ThrowIfNull(items);
        if (items.Count == 0)
        {
            throw new ArgumentException("A batch needs at least one prompt.", nameof(items));
        }

        var prompts = new List<LlavaPrompt>();
        try
        {
            foreach (var (text, images) in items)
            {
                prompts.Add(Prepare(text, images, raw));
            }
        }
        catch
        {
            prompts.ForEach(p => p.Dispose());
            throw;
        }

        return new LlavaBatch(prompts, Tokenizer.PadTokenId);
    }
}
