using LlavaInterp.Models.Gemma;
using static TorchSharp.torch;

namespace LlavaInterp.Llava;

/// <summary>One forward pass of <see cref="HookedLlava"/>.</summary>
public sealed record LlavaInput
{
    /// <summary>Token ids [batch, pos] with every <c>&lt;image&gt;</c> already expanded to the image-token count.</summary>
    public required Tensor InputIds { get; init; }

    /// <summary>Images [n_images, 3, H, W] in placeholder order (row by row), or null for text only / decode steps.</summary>
    public Tensor? PixelValues { get; init; }

    /// <summary>1 for real tokens, 0 for left padding, over cached + new positions [batch, past + pos]; null: all ones.</summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>Position ids [batch, pos]; null derives them from the mask (HF generate's rule) or the cache length.</summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>KV cache to read and extend; null runs without one.</summary>
    public GemmaKvCache? Cache { get; init; }

    /// <summary>Run language-model blocks 0 .. n-1 only and return the residual stream (no logits).</summary>
    public int? StopAtLayer { get; init; }

    /// <summary>Compute logits (ignored when stopping early). Default true.</summary>
    public bool ComputeLogits { get; init; } = true;

    /// <summary>Only compute logits for the last k positions (0 = all).</summary>
    public int LogitsToKeep { get; init; }

    /// <summary>Check the logits for NaN/infinity and name the first non-finite stream (see <see cref="GemmaInput.CheckFinite"/>); off by default.</summary>
    public bool CheckFinite { get; init; }

    /// <summary>The input for a prepared prompt.</summary>
    public static LlavaInput From(LlavaPrompt prompt) =>
        new() { InputIds = prompt.InputIds, PixelValues = prompt.PixelValues, AttentionMask = prompt.AttentionMask };

    /// <summary>The input for a prepared batch.</summary>
    public static LlavaInput From(LlavaBatch batch) =>
        new() { InputIds = batch.InputIds, PixelValues = batch.PixelValues, AttentionMask = batch.AttentionMask };
}
