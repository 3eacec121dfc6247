using System.Text.Json;
using System.Text.Json.Serialization;
using LlavaInterp.Configuration;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// A Hugging Face image size dictionary: <c>{"shortest_edge": n}</c> (optionally with <c>"longest_edge"</c>,
/// which CLIP ignores) or <c>{"height": h, "width": w}</c>.
/// </summary>
public sealed record ImageSizeSpec
{
    /// <summary>Target length of the shorter side, or null.</summary>
    public int? ShortestEdge { get; init; }

    /// <summary>Longest-edge cap; stored for completeness, unused by <c>CLIPImageProcessor.resize</c>.</summary>
    public int? LongestEdge { get; init; }

    /// <summary>Exact target height, or null.</summary>
    public int? Height { get; init; }

    /// <summary>Exact target width, or null.</summary>
    public int? Width { get; init; }

    /// <summary>True when both <see cref="Height"/> and <see cref="Width"/> are set.</summary>
    [JsonIgnore]
    public bool HasHeightWidth => Height is not null && Width is not null;
}

/// <summary>
/// <c>preprocessor_config.json</c> of a <c>CLIPImageProcessor</c> (transformers 4.46.3). Missing keys take the
/// processor's defaults (shortest edge 224, bicubic, center crop 224×224, rescale 1/255, OpenAI CLIP mean/std).
/// </summary>
public sealed record ClipImageProcessorConfig
{
    /// <summary>OpenAI CLIP channel means (<c>OPENAI_CLIP_MEAN</c>).</summary>
    public static IReadOnlyList<double> OpenAiClipMean { get; } = [0.48145466, 0.4578275, 0.40821073];

    /// <summary>OpenAI CLIP channel standard deviations (<c>OPENAI_CLIP_STD</c>).</summary>
    public static IReadOnlyList<double> OpenAiClipStd { get; } = [0.26862954, 0.26130258, 0.27577711];

    /// <summary>Whether to resize (<c>do_resize</c>).</summary>
    [JsonPropertyName("do_resize")]
    public bool DoResize { get; init; } = true;

    /// <summary>
    /// Resize target (<c>size</c>). A bare integer means <c>{"shortest_edge": n}</c>, a two-element list
    /// <c>[height, width]</c>, as HF's <c>get_size_dict(default_to_square=False)</c> reads them.
    /// </summary>
    [JsonPropertyName("size")]
    [JsonConverter(typeof(ShortestEdgeSizeConverter))]
    public ImageSizeSpec Size { get; init; } = new() { ShortestEdge = 224 };

    /// <summary>Resampling filter (<c>resample</c>, a <c>PILImageResampling</c> code; 3 = bicubic).</summary>
    [JsonPropertyName("resample")]
    public PilResampling Resample { get; init; } = PilResampling.Bicubic;

    /// <summary>Whether to center crop (<c>do_center_crop</c>).</summary>
    [JsonPropertyName("do_center_crop")]
    public bool DoCenterCrop { get; init; } = true;

    /// <summary>Crop size (<c>crop_size</c>); a bare integer means a square.</summary>
    [JsonPropertyName("crop_size")]
    [JsonConverter(typeof(SquareSizeConverter))]
    public ImageSizeSpec CropSize { get; init; } = new() { Height = 224, Width = 224 };

    /// <summary>Whether to multiply by <see cref="RescaleFactor"/> (<c>do_rescale</c>).</summary>
    [JsonPropertyName("do_rescale")]
    public bool DoRescale { get; init; } = true;

    /// <summary>Rescale factor (<c>rescale_factor</c>), applied in float64 before the cast to float32.</summary>
    [JsonPropertyName("rescale_factor")]
    public double RescaleFactor { get; init; } = 1.0 / 255;

    /// <summary>Whether to normalise with mean/std (<c>do_normalize</c>).</summary>
    [JsonPropertyName("do_normalize")]
    public bool DoNormalize { get; init; } = true;

    /// <summary>Per-channel mean (<c>image_mean</c>; a single number is used for every channel).</summary>
    [JsonPropertyName("image_mean")]
    [JsonConverter(typeof(MeanConverter))]
    public IReadOnlyList<double> ImageMean { get; init; } = OpenAiClipMean;

    /// <summary>Per-channel standard deviation (<c>image_std</c>; a single number is used for every channel).</summary>
    [JsonPropertyName("image_std")]
    [JsonConverter(typeof(StdConverter))]
    public IReadOnlyList<double> ImageStd { get; init; } = OpenAiClipStd;

    /// <summary>Whether to convert images to RGB first (<c>do_convert_rgb</c>).</summary>
    [JsonPropertyName("do_convert_rgb")]
    public bool DoConvertRgb { get; init; } = true;

    /// <summary>Legacy Kosmos-2 flag (<c>use_square_size</c>): when true the shortest edge becomes a square size.</summary>
    [JsonPropertyName("use_square_size")]
    public bool UseSquareSize { get; init; }

    /// <summary>The processor class name recorded in the file (<c>image_processor_type</c>), informational.</summary>
    [JsonPropertyName("image_processor_type")]
    public string? ImageProcessorType { get; init; }

    /// <summary>The multimodal processor class recorded in the file (<c>processor_class</c>), informational.</summary>
    [JsonPropertyName("processor_class")]
    public string? ProcessorClass { get; init; }

    /// <summary>Reads and validates <c>preprocessor_config.json</c>.</summary>
    /// <param name="path">The JSON file.</param>
    /// <returns>The bound configuration.</returns>
    /// <exception cref="ClipImageException">The file is missing, is not valid JSON, or holds an unusable setting.</exception>
    public static ClipImageProcessorConfig FromFile(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string json;
        try
        {
            json = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new ClipImageException(path, $"cannot read preprocessor config: {ex.Message}", ex);
        }

        return FromJson(json, path);
    }

    /// <summary>Binds and validates a <c>preprocessor_config.json</c> document.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">A name for error messages (the file path), or null.</param>
    /// <returns>The bound configuration.</returns>
    /// <exception cref="ClipImageException">The text is not valid JSON or holds an unusable setting.</exception>
    public static ClipImageProcessorConfig FromJson(string json, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        ClipImageProcessorConfig? config;
        try
        {
            // The config reader's checks (repeated keys, text that is not valid Unicode), with strict JSON as before.
            using var doc = HfConfigLoader.ParseDocument(json, sourceName ?? "preprocessor config", default(JsonDocumentOptions));
            config = doc.RootElement.Deserialize<ClipImageProcessorConfig>();
        }
        catch (ConfigException ex)
        {
            throw new ClipImageException(sourceName, $"invalid preprocessor config: {ex.Detail}", ex);
        }
        catch (JsonException ex)
        {
            string where = ex.Path is null ? string.Empty : $" at {ex.Path}";
            throw new ClipImageException(sourceName, $"invalid preprocessor config{where}: {ex.Message}", ex);
        }

        if (config is null)
        {
            throw new ClipImageException(sourceName, "preprocessor config is JSON null");
        }

        if (config.UseSquareSize && config.Size.ShortestEdge is int edge)
        {
            config = config with { Size = new ImageSizeSpec { Height = edge, Width = edge }, UseSquareSize = false };
        }

        config.Validate(sourceName);
        return config;
    }

    /// <summary>
    /// Checks the settings the way <c>validate_preprocess_arguments</c> and <c>CLIPImageProcessor</c> would reject
    /// them, plus what this port does not implement.
    /// </summary>
    /// <param name="sourceName">A name for error messages (the file path), or null.</param>
    /// <exception cref="ClipImageException">A setting is unusable.</exception>
    public void Validate(string? sourceName = null)
    {
        if (DoResize)
        {
            if (Size.ShortestEdge is null && !Size.HasHeightWidth)
            {
                throw new ClipImageException(sourceName, "size must contain either 'shortest_edge' or 'height' and 'width'");
            }

            if (Size.ShortestEdge is < 1 || Size.Height is < 1 || Size.Width is < 1)
            {
                throw new ClipImageException(sourceName, "size values must be positive");
            }

            // The smallest image a shortest-edge resize makes is edge × edge; a fixed size is exactly height × width.
            if (Size.ShortestEdge is int edge)
            {
                CheckPixels(sourceName, "size.shortest_edge", edge, edge);
            }
            else
            {
                CheckPixels(sourceName, "size", Size.Height!.Value, Size.Width!.Value);
            }

            if (Resample is not (PilResampling.Lanczos or PilResampling.Bilinear or PilResampling.Bicubic or PilResampling.Box or PilResampling.Hamming))
            {
                throw new ClipImageException(sourceName, $"resample {(int)Resample} is not supported: use 1 (LANCZOS), 2 (BILINEAR), 3 (BICUBIC), 4 (BOX) or 5 (HAMMING)", new NotSupportedException($"resample {(int)Resample}"));
            }
        }

        if (DoCenterCrop)
        {
            if (!CropSize.HasHeightWidth)
            {
                throw new ClipImageException(sourceName, "crop_size must contain 'height' and 'width'");
            }

            if (CropSize.Height < 1 || CropSize.Width < 1)
            {
                throw new ClipImageException(sourceName, "crop_size values must be positive");
            }

            CheckPixels(sourceName, "crop_size", CropSize.Height!.Value, CropSize.Width!.Value);
        }

        if (DoRescale && !double.IsFinite(RescaleFactor))
        {
            throw new ClipImageException(sourceName, "rescale_factor must be a finite number");
        }

        if (DoNormalize)
        {
            if (ImageMean.Count is not (1 or 3) || ImageStd.Count is not (1 or 3))
            {
                throw new ClipImageException(sourceName, $"image_mean and image_std must have 1 or 3 values for RGB images (got {ImageMean.Count} and {ImageStd.Count})");
            }
        }
    }

    /// <summary>
    /// Throws unless an RGB image of <paramref name="height"/> × <paramref name="width"/> fits in one array (3 values a
    /// pixel, bytes while resizing, floats after): a larger one cannot be processed at all.
    /// </summary>
    /// <param name="sourceName">The configuration file, for the error.</param>
    /// <param name="key">The key that gave the size.</param>
    /// <param name="height">Rows.</param>
    /// <param name="width">Columns.</param>
    /// <exception cref="ClipImageException">The image would not fit.</exception>
    internal static void CheckPixels(string? sourceName, string key, long height, long width)
    {
        if (height * width > Array.MaxLength / 3)
        {
            throw new ClipImageException(sourceName, $"{key} {height}x{width} gives {height * width} pixels, more than one image can hold here ({Array.MaxLength / 3} RGB pixels)");
        }
    }

    /// <summary>Reads a size dictionary where a bare integer means a shortest edge.</summary>
    private sealed class ShortestEdgeSizeConverter : SizeConverter
    {
        protected override ImageSizeSpec FromInt(int value) => new() { ShortestEdge = value };

        protected override ImageSizeSpec Default => new() { ShortestEdge = 224 };
    }

    /// <summary>Reads a size dictionary where a bare integer means a square.</summary>
    private sealed class SquareSizeConverter : SizeConverter
    {
        protected override ImageSizeSpec FromInt(int value) => new() { Height = value, Width = value };

        protected override ImageSizeSpec Default => new() { Height = 224, Width = 224 };
    }

    /// <summary>Base converter for HF size dictionaries (object, integer, [height, width] list or null → default).</summary>
    private abstract class SizeConverter : JsonConverter<ImageSizeSpec>
    {
        public override bool HandleNull => true;

        protected abstract ImageSizeSpec Default { get; }

        public override ImageSizeSpec Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.Null:
                    return Default;
                case JsonTokenType.Number:
                    return FromInt(ReadInt(ref reader));
                case JsonTokenType.StartArray:
                    {
                        var values = new List<int>();
                        while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                        {
                            values.Add(ReadInt(ref reader));
                        }

                        if (values.Count != 2)
                        {
                            throw new JsonException($"a size list must be [height, width], got {values.Count} values");
                        }

                        return new ImageSizeSpec { Height = values[0], Width = values[1] };
                    }

                case JsonTokenType.StartObject:
                    {
                        var spec = new ImageSizeSpec();
                        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
                        {
                            string key = reader.GetString() ?? string.Empty;
                            reader.Read();
                            int? value = reader.TokenType == JsonTokenType.Null ? null : ReadInt(ref reader);
                            spec = key switch
                            {
                                "shortest_edge" => spec with { ShortestEdge = value },
                                "longest_edge" => spec with { LongestEdge = value },
                                "height" => spec with { Height = value },
                                "width" => spec with { Width = value },
                                _ => SkipValue(ref reader, spec),
                            };
                        }

                        return spec;
                    }

                default:
                    throw new JsonException($"a size must be an integer, a [height, width] list or an object, got {reader.TokenType}");
            }
        }

        public override void Write(Utf8JsonWriter writer, ImageSizeSpec value, JsonSerializerOptions options)
        {
            writer.WriteStartObject();
            if (value.ShortestEdge is int s)
            {
                writer.WriteNumber("shortest_edge", s);
            }

            if (value.LongestEdge is int l)
            {
                writer.WriteNumber("longest_edge", l);
            }

            if (value.Height is int h)
            {
                writer.WriteNumber("height", h);
            }

            if (value.Width is int w)
            {
                writer.WriteNumber("width", w);
            }

            writer.WriteEndObject();
        }

        protected abstract ImageSizeSpec FromInt(int value);

        private static ImageSizeSpec SkipValue(ref Utf8JsonReader reader, ImageSizeSpec spec)
        {
            // Other HF keys (max_height, ...) are not used by CLIPImageProcessor.
            reader.Skip();
            return spec;
        }

        private static int ReadInt(ref Utf8JsonReader reader)
        {
            if (reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out int value))
            {
                return value;
            }

            throw new JsonException($"expected an integer size, got {reader.TokenType}");
        }
    }

    /// <summary>Reads <c>image_mean</c>; null means the OpenAI CLIP mean, as in HF.</summary>
    private sealed class MeanConverter : ScalarOrListConverter
    {
        protected override IReadOnlyList<double> Default => OpenAiClipMean;
    }

    /// <summary>Reads <c>image_std</c>; null means the OpenAI CLIP std, as in HF.</summary>
    private sealed class StdConverter : ScalarOrListConverter
    {
        protected override IReadOnlyList<double> Default => OpenAiClipStd;
    }

    /// <summary>Reads a list of numbers or a single number (replicated per channel when used).</summary>
    private abstract class ScalarOrListConverter : JsonConverter<IReadOnlyList<double>>
    {
        public override bool HandleNull => true;

        protected abstract IReadOnlyList<double> Default { get; }

        public override IReadOnlyList<double> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
        {
            if (reader.TokenType == JsonTokenType.Null)
            {
                return Default;
            }

            if (reader.TokenType == JsonTokenType.Number)
            {
                return [reader.GetDouble()];
            }

            if (reader.TokenType != JsonTokenType.StartArray)
            {
                throw new JsonException($"expected a number or a list of numbers, got {reader.TokenType}");
            }

            var values = new List<double>();
            while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
            {
                if (reader.TokenType != JsonTokenType.Number)
                {
                    throw new JsonException($"expected a number, got {reader.TokenType}");
                }

                values.Add(reader.GetDouble());
            }

            return values;
        }

        public override void Write(Utf8JsonWriter writer, IReadOnlyList<double> value, JsonSerializerOptions options)
        {
            writer.WriteStartArray();
            foreach (double v in value)
            {
                writer.WriteNumberValue(v);
            }

            writer.WriteEndArray();
        }
    }
}
