using static TorchSharp.torch;

namespace LlavaInterp.Nn;

/// <summary>
/// Weights used in a wider dtype than they are stored in (bfloat16 storage, float32 compute): each weight is cast to the
/// activation's dtype at its use and the copy is dropped right after. When the dtypes already match nothing is cast or
/// copied, so a model whose storage and compute dtypes agree pays nothing for this.
/// </summary>
public static class WeightCast
{
    // A cast weight is cast and multiplied in blocks of output rows, so no full-size float32 copy of it ever exists
    // (Gemma-2b's tied 256000 x 2048 unembedding would need 2 GB). Measured at Gemma-2b width (docs/performance.md):
    // for a decode step (few input rows, memory-bound) 1 M-element blocks, whose float32 copy is still in cache when
    // the product reads it, took 0.23 s, 16 M-element blocks 1.7 s and 256 K-element ones 0.34-0.68 s (more calls); a
    // prefill (GEMM-bound) took the same with 4 M and 16 M, and 4 M keeps the per-thread buffer at 16 MB.
    private const long FewRows = 16;
    private const long FewRowsBlockElements = 1L << 20;
    private const long ManyRowsBlockElements = 1L << 22;

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
    /// the casts are disposed before this returns. Weights are cast block by block of output rows (sized by how many
    /// input rows there are) and the blocks' products concatenated.
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
        long inputRows = input.numel() / Math.Max(1, input.shape[^1]);
        long maxElements = inputRows <= FewRows ? FewRowsBlockElements : ManyRowsBlockElements;
        long block = Math.Max(1, maxElements / Math.Max(1, weight.shape[1]));
        // A product autograd may differentiate keeps its weight block: it must not be a buffer the next block overwrites.
        bool reuse = !(is_grad_enabled() && input.requires_grad);
        long columns = weight.shape[1];
        var parts = new List<Tensor>();
        for (long start = 0; start < rows; start += block)
        {
            long length = Math.Min(block, rows - start);
            using var inner = NewDisposeScope();
            var stored = weight.narrow(0, start, length);
            var cast = reuse ? Scratch(length * columns, dtype, input.device).view(length, columns).copy_(stored) : stored.to(dtype);
            var part = nn.functional.linear(input, cast, bias?.narrow(0, start, length).to(dtype));
            parts.Add(part.MoveToOuterDisposeScope());
        }

        return (parts.Count == 1 ? parts[0] : cat(parts, -1)).MoveToOuterDisposeScope();
    }

    // One cast buffer per thread, kept between calls: a fresh 4-16 MB allocation per block was sometimes served by
    // new pages, and first-touch page faults on this VM (~0.44 GB/s) made a bf16-storage/fp32-compute decode step
    // take 1.2-1.4 s instead of 0.2 s. At most ManyRowsBlockElements elements (16 MB of float32) per thread.
    [ThreadStatic]
    private static Tensor? t_scratch;

    private static Tensor Scratch(long elements, ScalarType dtype, Device device)
    {
        var scratch = t_scratch;
        if (scratch is null || scratch.IsInvalid || scratch.numel() < elements || scratch.dtype != dtype
            || scratch.device_type != device.type || scratch.device_index != device.index)
        {
            scratch?.Dispose();
            long size = Math.Max(elements, Math.Min(ManyRowsBlockElements, 1L << 20));
            scratch = empty(size, dtype, device).DetachFromDisposeScope();
            t_scratch = scratch;
        }

        return scratch.narrow(0, 0, elements);
    }
}
