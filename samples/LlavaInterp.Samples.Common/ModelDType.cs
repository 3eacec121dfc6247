using TorchSharp;

namespace LlavaInterp.Samples;

/// <summary>A <c>--dtype</c> value: how the model's weights are stored and in which dtype it computes.</summary>
/// <param name="Storage">Parameter dtype (<c>LlavaLoadOptions.DType</c>).</param>
/// <param name="Compute">Compute dtype, or <see langword="null"/> for <paramref name="Storage"/> (<c>LlavaLoadOptions.ComputeDType</c>).</param>
/// <param name="Auto">Let the load's probe choose the compute dtype (<c>LlavaLoadOptions.AutoComputeDType</c>).</param>
public readonly record struct ModelDType(torch.ScalarType Storage, torch.ScalarType? Compute = null, bool Auto = false)
{
    /// <summary>Float32 storage and compute, the default (Hugging Face's float32 numbers).</summary>
    public static ModelDType Float32 => new(torch.ScalarType.Float32);
}
