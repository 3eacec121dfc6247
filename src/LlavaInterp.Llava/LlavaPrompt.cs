using LlavaInterp.Models.Clip;
using static TorchSharp.torch;

namespace LlavaInterp.Llava;

/// <summary>A prompt ready for the model: ids with expanded image tokens, attention mask, pixel values.</summary>
public sealed class LlavaPrompt : IDisposable
{
    internal LlavaPrompt(string text, IReadOnlyList<int> ids, IReadOnlyList<int> imageTokenPositions, IReadOnlyList<ProcessedImage> images, Tensor? pixelValues)
    {
        Text = text;
        Ids = ids;
        ImageTokenPositions = imageTokenPositions;
        Images = images;
        InputIds = tensor(ids.Select(i => (long)i).ToArray(), dtype: ScalarType.Int64).unsqueeze(0);
        AttentionMask = ones_like(InputIds);
        PixelValues = pixelValues;
    }

    /// <summary>The text that was tokenized (the rendered chat turn, or the raw text).</summary>
    public string Text { get; }

    /// <summary>The token ids.</summary>
    public IReadOnlyList<int> Ids { get; }

    /// <summary>Positions of the image tokens, image after image.</summary>
    public IReadOnlyList<int> ImageTokenPositions { get; }

    /// <summary>The processed images (resized and cropped RGB, for drawing feature maps).</summary>
    public IReadOnlyList<ProcessedImage> Images { get; }

    /// <summary>Token ids [1, T] (int64).</summary>
    public Tensor InputIds { get; }

    /// <summary>Attention mask [1, T] of ones (int64).</summary>
    public Tensor AttentionMask { get; }

    /// <summary>Pixel values [n_images, 3, H, W], or null without images.</summary>
    public Tensor? PixelValues { get; }

    /// <inheritdoc/>
    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask.Dispose();
        PixelValues?.Dispose();
    }
}

/// <summary>Several prompts left-padded into one batch.</summary>
public sealed class LlavaBatch : IDisposable
{
    internal LlavaBatch(IReadOnlyList<LlavaPrompt> prompts, int padTokenId)
    {
        Prompts = prompts;
        int length = prompts.Max(p => p.Ids.Count);
        var ids = new long[prompts.Count * length];
        var mask = new long[prompts.Count * length];
        var positions = new List<IReadOnlyList<int>>();
        for (int row = 0; row < prompts.Count; row++)
        {
            var p = prompts[row];
            int pad = length - p.Ids.Count;
            for (int i = 0; i < length; i++)
            {
                ids[(row * length) + i] = i < pad ? padTokenId : p.Ids[i - pad];
                mask[(row * length) + i] = i < pad ? 0 : 1;
            }

            positions.Add(p.ImageTokenPositions.Select(x => x + pad).ToList());
        }

        InputIds = tensor(ids, [prompts.Count, length], ScalarType.Int64);
        AttentionMask = tensor(mask, [prompts.Count, length], ScalarType.Int64);
        var pixels = prompts.Where(p => p.PixelValues is not null).Select(p => p.PixelValues!).ToArray();
        PixelValues = pixels.Length == 0 ? null : cat(pixels, 0);
        ImageTokenPositions = positions;
    }

    /// <summary>The prompts, in row order.</summary>
    public IReadOnlyList<LlavaPrompt> Prompts { get; }

    /// <summary>Left-padded token ids [batch, T].</summary>
    public Tensor InputIds { get; }

    /// <summary>0 on padding, 1 elsewhere [batch, T].</summary>
    public Tensor AttentionMask { get; }

    /// <summary>All images of all rows, row by row [n_images, 3, H, W], or null.</summary>
    public Tensor? PixelValues { get; }

    /// <summary>Image-token positions of each row, in padded coordinates.</summary>
    public IReadOnlyList<IReadOnlyList<int>> ImageTokenPositions { get; }

    /// <inheritdoc/>
    public void Dispose()
    {
        InputIds.Dispose();
        AttentionMask.Dispose();
        PixelValues?.Dispose();
        foreach (var p in Prompts)
        {
            p.Dispose();
        }
    }
}
