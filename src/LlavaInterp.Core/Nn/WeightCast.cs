using static TorchSharp.torch;

namespace LlavaInterp.Nn;

/// <summary>
/// Weights used in a wider dtype than they are stored in (bfloat16 storage, float32 compute): each weight is cast to the
/// activation's dtype at its use and the copy is dropped right after. When the dtypes already match nothing is cast or
/// copied, so a model whose storage and compute dtypes agree pays nothing for this.
/// </summary>
public static class WeightCast
{
    // A cast weight larger than this (in elements) is cast and multiplied in row blocks: Gemma-2b's tied 256000 x 2048
    // unembedding would otherwise need a transient 2 GB float32 copy, more than the memory bfloat16 storage saves.
    private const long MaxCastElements = 1L << 24;

    /// <summary>
    /// <paramref name="weight"/> in <paramref name="dtype"/>: the tensor itself when it already is (never dispose it
    /// then), otherwise a new copy that belongs to the current dispose scope.
    /// </summary>
    public static Tensor To(Tensor weight, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(weight);
        return weight.dtype == dtype ? weight : weight.to(dtype);
    }

    /// <summary>
    /// <c>linear(input, weight, bias)</c> with the weight and bias cast to the input's dtype when they differ from it;
    /// the casts are disposed before this returns. Large weights are cast block by block of output rows.
    /// </summary>
    /// <param name="input">[..., in].</param>
    /// <param name="weight">[out, in].</param>
    /// <param name="bias">[out] or <see langword="null"/>.</param>
    /// <returns>[..., out] in the input's dtype.</returns>
    public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(weight);
        var dtype = input.dtype;
        if (weight.dtype == dtype && (bias is null || bias.dtype == dtype))
        {
            return nn.functional.linear(input, weight, bias);
        }

        using var scope = NewDisposeScope();
        long rows = weight.shape[0];
        long block = Math.Max(1, MaxCastElements / Math.Max(1, weight.shape[1]));
        if (rows <= block)
        {
            return nn.functional.linear(input, weight.to(dtype), bias?.to(dtype)).MoveToOuterDisposeScope();
        }

        var parts = new List<Tensor>();
        for (long start = 0; start < rows; start += block)
        {
            long length = Math.Min(block, rows - start);
            using var inner = NewDisposeScope();
            var part = nn.functional.linear(input, weight.narrow(0, start, length).to(dtype), bias?.narrow(0, start, length).to(dtype));
            parts.Add(part.MoveToOuterDisposeScope());
        }

        return cat(parts, -1).MoveToOuterDisposeScope();
    }
}
