using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>A read-only set of named tensors backed by one or more files (a checkpoint).</summary>
public interface ITensorSource : IDisposable
{
    /// <summary>Names of every tensor, in a stable order.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>Whether a tensor of that name exists.</summary>
    bool Contains(string name);

    /// <summary>Describes one tensor without loading it.</summary>
    /// <exception cref="TensorFileException">No tensor of that name.</exception>
    TensorEntry GetEntry(string name);

    /// <summary>
    /// Loads one tensor. Without a dtype or device change, the tensor shares the memory-mapped file pages
    /// (copy-on-write) instead of copying them.
    /// </summary>
    /// <param name="name">Tensor name.</param>
    /// <param name="dtype">Convert to this dtype; <see langword="null"/> keeps the stored one.</param>
    /// <param name="device">Move to this device; <see langword="null"/> keeps the CPU.</param>
    torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null);
}
