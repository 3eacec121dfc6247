using TorchSharp;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// Hugging Face <c>CLIPImageProcessor</c> (transformers 4.46.3) with Pillow-exact resampling:
/// PIL <c>convert("RGB")</c> → shortest-edge (or fixed-size) resize with Pillow's filter → center crop (zero
/// padded when the image is smaller) → <c>float32(uint8 · rescale_factor)</c> computed in float64 →
/// <c>(x − float32(mean)) / float32(std)</c> in float32 → CHW.
/// </summary>
/// <remarks>
/// Differences from HF by design: HF infers the channel axis from the array shape and misreads RGB images whose
/// height is 1 or 3 as channels-first; this port always treats decoded images as HWC. When neither rescale nor
/// normalise is enabled HF returns uint8 tensors; this port returns the same values as float32.
/// </remarks>
public sealed class ClipImageProcessor
{
    private readonly float[] mean;
    private readonly float[] std;

    /// <summary>Creates a processor; the configuration is validated.</summary>
    /// <param name="config">The settings.</param>
    /// <exception cref="ClipImageException">A setting is unusable.</exception>
    public ClipImageProcessor(ClipImageProcessorConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        Config = config;

        // HF builds np.array(mean, dtype=float32) from Python floats: double → float32 rounding, as here.
        mean = ExpandChannels(config.ImageMean);
        std = ExpandChannels(config.ImageStd);
    }

    /// <summary>The settings.</summary>
    public ClipImageProcessorConfig Config { get; }

    /// <summary>Loads <c>preprocessor_config.json</c>.</summary>
    /// <param name="preprocessorConfigPath">The JSON file.</param>
    /// <returns>The processor.</returns>
    /// <exception cref="ClipImageException">The file is missing, invalid, or holds an unusable setting.</exception>
    public static ClipImageProcessor FromFile(string preprocessorConfigPath) => new(ClipImageProcessorConfig.FromFile(preprocessorConfigPath));

    /// <summary>Loads <c>preprocessor_config.json</c> from a model folder.</summary>
    /// <param name="modelDirectory">A Hugging Face model folder.</param>
    /// <returns>The processor.</returns>
    /// <exception cref="ClipImageException">The file is missing, invalid, or holds an unusable setting.</exception>
    public static ClipImageProcessor FromDirectory(string modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        return FromFile(Path.Combine(modelDirectory, "preprocessor_config.json"));
    }

    /// <summary>Decodes an image file to RGB as <c>PIL.Image.open(path)</c> then <c>convert("RGB")</c>.</summary>
    /// <param name="path">The image file.</param>
    /// <returns>The RGB image.</returns>
    /// <exception cref="ClipImageException">The file is missing, undecodable, or not RGB while <c>do_convert_rgb</c> is false.</exception>
    public RgbImage Decode(string path) => ToRgb(PilImageDecoder.Decode(path), path);

    /// <summary>Decodes an image stream to RGB as <c>PIL.Image.open</c> then <c>convert("RGB")</c>.</summary>
    /// <param name="stream">The encoded image.</param>
    /// <param name="sourceName">A name for error messages, or null.</param>
    /// <returns>The RGB image.</returns>
    /// <exception cref="ClipImageException">The bytes are undecodable, or not RGB while <c>do_convert_rgb</c> is false.</exception>
    public RgbImage Decode(Stream stream, string? sourceName = null) => ToRgb(PilImageDecoder.Decode(stream, sourceName), sourceName);

    /// <summary>
    /// The (height, width) <c>CLIPImageProcessor.resize</c> produces for an image of the given size:
    /// with <c>shortest_edge</c> s, the shorter side becomes s and the longer <c>int(s · long / short)</c>
    /// (float64 division, truncated); with <c>height</c>/<c>width</c>, exactly those.
    /// </summary>
    /// <param name="height">Input height.</param>
    /// <param name="width">Input width.</param>
    /// <returns>The output size.</returns>
    public (int Height, int Width) GetResizeOutputSize(int height, int width)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ImageSizeSpec size = Config.Size;
        if (size.ShortestEdge is int edge)
        {
            return ShortestEdgeSize(height, width, edge);
        }

        return (size.Height!.Value, size.Width!.Value);
    }

    /// <summary>HF <c>get_resize_output_image_size(default_to_square=False)</c> for a shortest-edge target.</summary>
    /// <param name="height">Input height.</param>
    /// <param name="width">Input width.</param>
    /// <param name="shortestEdge">Target length of the shorter side.</param>
    /// <returns>The output (height, width).</returns>
    public static (int Height, int Width) ShortestEdgeSize(int height, int width, int shortestEdge)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(shortestEdge, 1);
        bool widthIsShort = width <= height;
        int shortSide = widthIsShort ? width : height;
        int longSide = widthIsShort ? height : width;

        // Python: int(size * long / short): exact integer product, true division in float64, truncation.
        double newLongExact = (double)((long)shortestEdge * longSide) / shortSide;
        if (newLongExact >= int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(shortestEdge), $"resizing {width}x{height} to shortest edge {shortestEdge} gives a side of {newLongExact}");
        }

        int newLong = (int)newLongExact;
        return widthIsShort ? (newLong, shortestEdge) : (shortestEdge, newLong);
    }

    /// <summary>Resizes per <c>size</c> and <c>resample</c> (HF <c>CLIPImageProcessor.resize</c>).</summary>
    /// <param name="image">The RGB image.</param>
    /// <returns>The resized image.</returns>
    /// <exception cref="ClipImageException">The computed size is empty (an extreme aspect ratio).</exception>
    public RgbImage Resize(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int h, w;
        try
        {
            (h, w) = GetResizeOutputSize(image.Height, image.Width);
        }
        catch (ArgumentOutOfRangeException ex)
        {
            throw new ClipImageException(null, $"cannot resize a {image.Width}x{image.Height} image: {ex.Message}", ex);
        }

        if (h < 1 || w < 1)
        {
            throw new ClipImageException(null, $"resizing a {image.Width}x{image.Height} image gives an empty {w}x{h} image");
        }

        // A shortest-edge resize of an elongated image can be far larger than the configuration's square.
        ClipImageProcessorConfig.CheckPixels(null, $"resizing a {image.Width}x{image.Height} image to", h, w);

        return PillowResampler.Resize(image, w, h, Config.Resample);
    }

    /// <summary>Center crops per <c>crop_size</c> (see <see cref="CenterCrop(RgbImage, int, int)"/>).</summary>
    /// <param name="image">The RGB image.</param>
    /// <returns>The cropped image.</returns>
    public RgbImage CenterCrop(RgbImage image) => CenterCrop(image, Config.CropSize.Height!.Value, Config.CropSize.Width!.Value);

    /// <summary>
    /// HF <c>center_crop</c>: top = (h − crop_h) // 2, left = (w − crop_w) // 2 (floor division); when the image is
    /// smaller than the crop along a side, it is first placed on a zero canvas with ceil((crop − size) / 2) padding
    /// before that side.
    /// </summary>
    /// <param name="image">The RGB image.</param>
    /// <param name="cropHeight">Output height (≥ 1).</param>
    /// <param name="cropWidth">Output width (≥ 1).</param>
    /// <returns>The cropped image.</returns>
    public static RgbImage CenterCrop(RgbImage image, int cropHeight, int cropWidth)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentOutOfRangeException.ThrowIfLessThan(cropHeight, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(cropWidth, 1);

        // Where output row/col 0 falls in source coordinates. Without padding: floor((h - crop) / 2).
        // With padding (h < crop): the image sits at ceil((crop - h) / 2) on a crop-sized canvas.
        int top = CropOrigin(image.Height, cropHeight);
        int left = CropOrigin(image.Width, cropWidth);
        var output = new byte[(long)cropHeight * cropWidth * 3];
        for (int y = 0; y < cropHeight; y++)
        {
            int sy = top + y;
            if (sy < 0 || sy >= image.Height)
            {
                continue;
            }

            for (int x = 0; x < cropWidth; x++)
            {
                int sx = left + x;
                if (sx < 0 || sx >= image.Width)
                {
                    continue;
                }

                long s = (((long)sy * image.Width) + sx) * 3;
                long d = (((long)y * cropWidth) + x) * 3;
                output[d] = image.Pixels[s];
                output[d + 1] = image.Pixels[s + 1];
                output[d + 2] = image.Pixels[s + 2];
            }
        }

        return new RgbImage(cropWidth, cropHeight, output);
    }

    /// <summary>
    /// Rescales and normalises per the configuration into float32 CHW values (HF <c>rescale</c>, <c>normalize</c>,
    /// channels-first output).
    /// </summary>
    /// <param name="image">The RGB image (usually already resized and cropped).</param>
    /// <returns>3·H·W float32 values, channel-major.</returns>
    public float[] ToPixelArray(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        int plane = image.Width * image.Height;
        var values = new float[3L * plane];
        bool rescale = Config.DoRescale;
        bool normalize = Config.DoNormalize;
        double factor = Config.RescaleFactor;
        byte[] pixels = image.Pixels;
        for (int c = 0; c < 3; c++)
        {
            float m = mean[c];
            float s = std[c];
            int offset = c * plane;
            for (int i = 0; i < plane; i++)
            {
                byte v = pixels[(i * 3) + c];

                // rescale: image.astype(float64) * factor, then astype(float32).
                float x = rescale ? (float)(v * factor) : v;
                if (normalize)
                {
                    // normalize: float32 arrays throughout, so each operation rounds to float32.
                    x = (x - m) / s;
                }

                values[offset + i] = x;
            }
        }

        return values;
    }

    /// <summary>Rescales and normalises one image into a new float32 tensor [1, 3, H, W] (the caller disposes it).</summary>
    /// <param name="image">The RGB image (usually already resized and cropped).</param>
    /// <returns>The pixel values.</returns>
    public torch.Tensor ToPixelValues(RgbImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        return torch.tensor(ToPixelArray(image), [1, 3, image.Height, image.Width], torch.float32);
    }

    /// <summary>Runs resize, center crop, rescale and normalise (each as configured) on a decoded RGB image.</summary>
    /// <param name="image">The RGB image (for example from <see cref="Decode(string)"/>).</param>
    /// <param name="sourcePath">The file it came from, kept for error messages and overlays, or null.</param>
    /// <returns>The processed image.</returns>
    public ProcessedImage Process(RgbImage image, string? sourcePath = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        RgbImage current = image;
        if (Config.DoResize)
        {
            try
            {
                current = Resize(current);
            }
            catch (ClipImageException ex) when (ex.FilePath is null && sourcePath is not null)
            {
                throw new ClipImageException(sourcePath, ex.Message, ex);
            }
        }

        if (Config.DoCenterCrop)
        {
            current = CenterCrop(current);
        }

        return new ProcessedImage(current, ToPixelArray(current), image.Width, image.Height, sourcePath);
    }

    /// <summary>Decodes and processes one image file.</summary>
    /// <param name="path">The image file.</param>
    /// <returns>The processed image.</returns>
    /// <exception cref="ClipImageException">The file is missing or undecodable.</exception>
    public ProcessedImage Process(string path) => Process(Decode(path), path);

    /// <summary>
    /// Decodes and processes image files into HF's <c>pixel_values</c>: a new CPU float32 tensor [N, 3, H, W]
    /// (the caller disposes it).
    /// </summary>
    /// <param name="paths">At least one image file.</param>
    /// <param name="cancellationToken">Checked between images.</param>
    /// <returns>The batch.</returns>
    /// <exception cref="ClipImageException">A file is missing or undecodable, or the processed sizes differ.</exception>
    public torch.Tensor Preprocess(IReadOnlyList<string> paths, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var processed = new ProcessedImage[paths.Count];
        for (int i = 0; i < paths.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            processed[i] = Process(paths[i] ?? throw new ArgumentException($"path {i} is null", nameof(paths)));
        }

        return ProcessedImage.Stack(processed);
    }

    /// <summary>Processes decoded RGB images into a new CPU float32 tensor [N, 3, H, W] (the caller disposes it).</summary>
    /// <param name="images">At least one image.</param>
    /// <param name="cancellationToken">Checked between images.</param>
    /// <returns>The batch.</returns>
    /// <exception cref="ClipImageException">The processed sizes differ.</exception>
    public torch.Tensor Preprocess(IReadOnlyList<RgbImage> images, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(images);
        var processed = new ProcessedImage[images.Count];
        for (int i = 0; i < images.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            processed[i] = Process(images[i] ?? throw new ArgumentException($"image {i} is null", nameof(images)));
        }

        return ProcessedImage.Stack(processed);
    }

    private static int CropOrigin(int size, int crop)
    {
        if (size >= crop)
        {
            return (size - crop) / 2;
        }

        // HF pads to a crop-sized canvas with the image at pad = ceil((crop - size) / 2); its crop origin on the
        // canvas, floor((size - crop) / 2) + pad, is then always 0, i.e. source coordinate -pad.
        return -((crop - size + 1) / 2);
    }

    private static float[] ExpandChannels(IReadOnlyList<double> values) =>
        values.Count == 1 ? [(float)values[0], (float)values[0], (float)values[0]] : [(float)values[0], (float)values[1], (float)values[2]];

    private RgbImage ToRgb(DecodedImage decoded, string? name)
    {
        if (!Config.DoConvertRgb && decoded.Mode != PilImageMode.Rgb)
        {
            // HF skips convert_to_rgb and then cannot infer a channel axis for 1-, 2- or 4-band arrays.
            throw new ClipImageException(name, $"image is mode {decoded.Mode} and do_convert_rgb is false: only RGB images can be processed without conversion");
        }

        return decoded.ToRgb();
    }
}
