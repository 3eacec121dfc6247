using System.Text.Json;
using LlavaInterp.Configuration;
using LlavaInterp.Hub;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Native;
using LlavaInterp.Nn;
using LlavaInterp.TensorFiles;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace LlavaInterp.Llava;

/// <content>Loading from a Hugging Face folder or hub repo id.</content>
public sealed partial class HookedLlava
{
    /// <summary>
    /// Loads a LLaVA checkpoint from a local folder or a Hugging Face repo id (resolved through the hub cache,
    /// downloading missing files): config, sharded or single-file safetensors (memory-mapped), tokenizer and processor.
    /// </summary>
    /// <param name="pathOrRepoId">A folder, or <c>owner/name</c> such as <c>Intel/llava-gemma-2b</c>.</param>
    /// <param name="options">dtype, device, strictness, hub settings, progress, logger.</param>
    /// <param name="cancellationToken">Cancels downloads and loading.</param>
    public static async Task<HookedLlava> FromPretrainedAsync(string pathOrRepoId, LlavaLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pathOrRepoId);
        options ??= new LlavaLoadOptions();
        string folder = pathOrRepoId;
        if (!Directory.Exists(pathOrRepoId))
        {
            if (!HubClient.LooksLikeRepoId(pathOrRepoId))
            {
                throw new DirectoryNotFoundException($"Model folder not found, and '{pathOrRepoId}' is not a Hugging Face repo id: {Path.GetFullPath(pathOrRepoId)}");
            }

            using var hub = new HubClient(options.Hub ?? HubOptions.FromEnvironment(), options.Logger);
            folder = await hub.DownloadModelAsync(pathOrRepoId, options.Revision, options.DownloadProgress, cancellationToken).ConfigureAwait(false);
        }

        // Reading configs, the tokenizer and mapping the weights is blocking work: keep it off the caller's thread.
        return await Task.Run(() => FromPretrained(folder, options, cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Loads a LLaVA checkpoint from a local Hugging Face folder.</summary>
    /// <exception cref="DirectoryNotFoundException">No such folder.</exception>
    /// <exception cref="ConfigException">A bad configuration file.</exception>
    /// <exception cref="LlavaException">The tokenizer has ids the language model has no embedding rows for.</exception>
    /// <exception cref="TensorFileException">A missing or malformed checkpoint file.</exception>
    /// <exception cref="LlavaInterp.Loading.WeightLoadException">The checkpoint does not fit the configuration.</exception>
    /// <exception cref="ArgumentException">A bad dtype combination in <paramref name="options"/> (its
    /// <see cref="ArgumentException.ParamName"/> names the option).</exception>
    public static HookedLlava FromPretrained(string folder, LlavaLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(folder);
        options ??= new LlavaLoadOptions();
        LibTorchVersion.Check();
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Model folder not found: {Path.GetFullPath(folder)}");
        }

        var logger = options.Logger ?? NullLogger.Instance;
        string configPath = Path.Combine(folder, "config.json");
        var config = LlavaConfig.Load(configPath);
        var tokenizer = GemmaTokenizer.FromPretrained(folder);
        var imageProcessor = ClipImageProcessor.FromDirectory(folder);
        string processorConfigPath = Path.Combine(folder, "processor_config.json");
        var processorConfig = LlavaProcessorConfig.LoadOrDefault(processorConfigPath);
        var stops = ReadStopTokens(folder, config, tokenizer);

        using var source = Checkpoint.Open(folder);

        // Against the headers first: a size that does not match the weights must not be allocated. The weights are
        // the truth the other files are then checked against.
        config.CheckAgainst(source, LlavaCheckpointLayout.Detect(source), configPath, options.Strict);
        CheckImageSize(imageProcessor.Config, config.VisionConfig, Path.Combine(folder, "preprocessor_config.json"));
        processorConfig.Validate(processorConfigPath, config, tokenizer);
        LlavaProcessor processor;
        try
        {
            processor = new LlavaProcessor(tokenizer, imageProcessor, config, processorConfig);
        }
        catch (LlavaException ex)
        {
            // Tokenizer and config disagree: say which checkpoint.
            throw new LlavaException($"{Path.GetFullPath(folder)}: {ex.Message}", ex);
        }

        var device = options.Device ?? TorchSharp.torch.CPU;
        var text = config.TextConfig;
        var compute = ComputeDTypes.Choose(options.DType, options.ComputeDType, options.AutoComputeDType, text.HiddenSize, text.IntermediateSize, device, logger, out var probe);
        var model = new HookedLlava(config, processor, options.DType, device, compute) { DefaultStopTokenIds = stops, Logger = logger, ComputeDTypeProbe = probe };
        try
        {
            model.LoadWeights(source, options.Strict, cancellationToken, options.LoadProgress, options.WeightLoading);
        }
        catch
        {
            model.Dispose();
            throw;
        }

        logger.LogInformation("Loaded {Folder}: {Layers} language layers, {VisionLayers} vision layers, dtype {DType}, compute dtype {ComputeDType}.", folder, config.TextConfig.NumHiddenLayers, config.VisionConfig.NumHiddenLayers, options.DType, compute);
        return model;
    }

    // The processor must hand the vision tower the square it embeds (its position table has one row per patch of that
    // square): checked here, so a mismatch is reported against the file at load rather than as a shape error at forward.
    private static void CheckImageSize(ClipImageProcessorConfig processor, ClipVisionConfig vision, string path)
    {
        (string Key, int Height, int Width)? output = processor.DoCenterCrop
            ? ("crop_size", processor.CropSize.Height!.Value, processor.CropSize.Width!.Value)
            : processor.DoResize && processor.Size.ShortestEdge is null
                ? ("size", processor.Size.Height!.Value, processor.Size.Width!.Value)
                : null;
        if (output is null)
        {
            // No crop and no fixed size: the output follows each image's shape, which fits the tower only by chance.
            throw new ConfigException(path, "do_center_crop", $"without a centre crop or a fixed resize the processor's images keep their own aspect ratio, but the vision tower embeds only {vision.ImageSize}x{vision.ImageSize} (vision_config.image_size in config.json).");
        }

        if (output is var (key, height, width) && (height != vision.ImageSize || width != vision.ImageSize))
        {
            throw new ConfigException(path, key, $"the processor makes {height}x{width} images, but the vision tower embeds {vision.ImageSize}x{vision.ImageSize} (vision_config.image_size in config.json).");
        }
    }

    // eos ids from generation_config.json (an int or a list), else config.json's text eos, plus <end_of_turn>.
    private static IReadOnlyList<int> ReadStopTokens(string folder, LlavaConfig config, GemmaTokenizer tokenizer)
    {
        var ids = new List<int>();
        string path = Path.Combine(folder, "generation_config.json");
        if (File.Exists(path))
        {
            try
            {
                using var doc = HfConfigLoader.ParseDocument(File.ReadAllText(path), path);
                if (doc.RootElement.TryGetProperty("eos_token_id", out var eos))
                {
                    if (eos.ValueKind == JsonValueKind.Number)
                    {
                        ids.Add(eos.GetInt32());
                    }
                    else if (eos.ValueKind == JsonValueKind.Array)
                    {
                        ids.AddRange(eos.EnumerateArray().Select(e => e.GetInt32()));
                    }
                }
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException)
            {
                throw new ConfigException(path, "eos_token_id", $"invalid generation config: {ex.Message}", ex);
            }
        }

        if (ids.Count == 0)
        {
            ids.Add(tokenizer.EosTokenId);
        }

        if (tokenizer.TokenToId("<end_of_turn>") is int endOfTurn && !ids.Contains(endOfTurn))
        {
            ids.Add(endOfTurn);
        }

        return ids;
    }
}
