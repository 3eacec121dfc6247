using TorchSharp;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// One image after <see cref="ClipImageProcessor"/>: the RGB pixels the model sees (after resize and center crop,
/// before rescale/normalise; use it to draw overlays that line up with the patch grid) and its float32 pixel
/// values in CHW order. Holds no tensors.
/// </summary>
public sealed class ProcessedImage
{
    /// <summary>Creates a processed image.</summary>
    /// <param name="image">The resized and cropped RGB image.</param>
    /// <param name="pixelValues">float32 CHW values, 3·height·width of them.</param>
    /// <param name="originalWidth">Width of the decoded image before resizing.</param>
    /// <param name="originalHeight">Height of the decoded image before resizing.</param>
    /// <param name="sourcePath">The file the image came from, or null.</param>
    public ProcessedImage(RgbImage image, float[] pixelValues, int originalWidth, int originalHeight, string? sourcePath = null)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(pixelValues);
        if (pixelValues.LongLength != (long)image.Width * image.Height * 3)
        {
            throw new ArgumentException($"expected {(long)image.Width * image.Height * 3} pixel values for a {image.Width}x{image.Height} image, got {pixelValues.LongLength}", nameof(pixelValues));
        }

        Image = image;
        PixelValues = pixelValues;
        OriginalWidth = originalWidth;
        OriginalHeight = originalHeight;
        SourcePath = sourcePath;
    }

    /// <summary>The RGB image after resize and center crop (the HF <c>cropped</c> stage).</summary>
    public RgbImage Image { get; }

    /// <summary>float32 pixel values in CHW order (one image of HF's <c>pixel_values</c>).</summary>
    public float[] PixelValues { get; }

    /// <summary>Width of the decoded image before resizing.</summary>
    public int OriginalWidth { get; }

    /// <summary>Height of the decoded image before resizing.</summary>
    public int OriginalHeight { get; }

    /// <summary>The source file, or null for in-memory input.</summary>
    public string? SourcePath { get; }

    /// <summary>Height of <see cref="PixelValues"/>.</summary>
    public int Height => Image.Height;

    /// <summary>Width of <see cref="PixelValues"/>.</summary>
    public int Width => Image.Width;

    /// <summary>The pixel values as a new CPU float32 tensor [1, 3, H, W] (the caller disposes it).</summary>
    public torch.Tensor ToTensor() => torch.tensor(PixelValues, [1, 3, Height, Width], torch.float32);

    /// <summary>Stacks processed images into a new CPU float32 tensor [N, 3, H, W] (the caller disposes it).</summary>
    /// <param name="images">At least one image; all must have the same size.</param>
    /// <returns>The batch.</returns>
    /// <exception cref="ClipImageException">The images differ in size (possible when center crop is off).</exception>
    public static torch.Tensor Stack(IReadOnlyList<ProcessedImage> images)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Count == 0)
        {
            throw new ArgumentException("at least one image is required", nameof(images));
        }

        int h = images[0].Height;
        int w = images[0].Width;
        long per = 3L * h * w;
        var data = new float[per * images.Count];
        for (int i = 0; i < images.Count; i++)
        {
            ProcessedImage image = images[i] ?? throw new ArgumentException($"image {i} is null", nameof(images));
            if (image.Height != h || image.Width != w)
            {
                throw new ClipImageException(image.SourcePath, $"cannot batch a {image.Width}x{image.Height} image with {w}x{h} images (enable center crop or resize to a fixed size)");
            }

            Array.Copy(image.PixelValues, 0, data, per * i, per);
        }

        return torch.tensor(data, [images.Count, 3, h, w], torch.float32);
    }
}
