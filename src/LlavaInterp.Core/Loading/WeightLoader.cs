using LlavaInterp.TensorFiles;
using TorchSharp;

namespace LlavaInterp.Loading;

/// <summary>How far a weight load has got.</summary>
/// <param name="Loaded">Tensors loaded so far.</param>
/// <param name="Total">Tensors to load.</param>
/// <param name="Name">The checkpoint name of the tensor just loaded.</param>
public sealed record WeightLoadProgress(int Loaded, int Total, string Name);

/// <summary>What a (non-strict) load did.</summary>
/// <param name="Prefix">The prefix the module's names were looked up under.</param>
/// <param name="Loaded">Checkpoint names that were loaded into the module.</param>
/// <param name="Missing">Checkpoint names the module needed but the checkpoint lacks (always empty after a strict load).</param>
/// <param name="Unexpected">Checkpoint names under the prefix the module does not use (always empty after a strict load).</param>
public sealed record WeightLoadReport(string Prefix, IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected);

/// <summary>How loaded weights hold their values.</summary>
public enum WeightLoading
{
    /// <summary>
    /// A weight stored in the parameter's dtype (model on the CPU) is a copy-on-write view of the memory-mapped file:
    /// no copy, pages read on first use. The file must then stay as it is while the model lives: truncating or
    /// rewriting it in place kills the process with SIGBUS (as with Hugging Face's lazy safetensors loading).
    /// </summary>
    Mapped,

    /// <summary>
    /// Every weight is copied into the process's own memory during the load, and the file is no longer used once the
    /// load returns: for users who overwrite checkpoint files in place. Costs the model's size in RAM, read up front.
    /// </summary>
    Copied,
}

/// <summary>
/// Fills a module's state dict (parameters and persistent buffers) from a checkpoint. Everything is checked before
/// anything is loaded, so a failed load leaves the module untouched.
/// </summary>
/// <remarks>
/// Weights load by memory map without extra copies: a checkpoint tensor whose dtype and device (CPU) equal the
/// parameter's becomes the parameter's storage (<c>Tensor.set_</c>), a copy-on-write view of the mapped file; other
/// tensors are converted into the parameter's existing memory (<c>copy_</c>). The parameter objects themselves are kept,
/// so state-dict keys, <c>named_parameters()</c>, <c>requires_grad</c> and any reference to a parameter stay valid.
/// Side effect of sharing: models loaded from the same <see cref="ITensorSource"/> instance share the mapped pages, so
/// editing one model's weights in place shows in the other (never in the file). Load from separate instances, or
/// <c>clone()</c> a weight before editing it, to keep models apart. The mapping outlives the source: it can be disposed.
/// A mapped file must not be truncated or rewritten in place while a model uses it (SIGBUS); <see cref="WeightLoading.Copied"/>
/// copies every weight into memory instead.
/// </remarks>
public static class WeightLoader
{
    /// <summary>Loads a checkpoint into a module: module key <c>k</c> is read from checkpoint tensor <c>prefix + k</c>.</summary>
    /// <param name="module">The module; its parameters must live on a real device (not <c>meta</c>).</param>
    /// <param name="source">The checkpoint.</param>
    /// <param name="prefix">Prepended to every state-dict key to find the checkpoint tensor, e.g. <c>vision_tower.</c>.</param>
    /// <param name="strict">When true, missing and unexpected tensors are an error; otherwise they are reported and skipped.
    /// Shape and dtype mismatches are always an error.</param>
    /// <param name="ownsName">Which checkpoint names under <paramref name="prefix"/> (given without it) belong to this module and
    /// so count as unexpected when unused; <see langword="null"/> claims every name under the prefix. Lets a module that is one
    /// part of a larger checkpoint (e.g. the vision half of a full CLIP checkpoint) ignore its siblings.</param>
    /// <param name="sourceName">How to name the checkpoint in errors; defaults to <see cref="SourceName"/>.</param>
    /// <param name="progress">Reports each loaded tensor.</param>
    /// <param name="cancellationToken">Checked between tensors; a cancelled load leaves the module partly filled.</param>
    /// <param name="loading">Map the file (default) or copy every weight into memory (see <see cref="WeightLoading"/>).</param>
    /// <returns>What was loaded, missing and unused.</returns>
    /// <exception cref="WeightLoadException">Shapes or dtypes differ, or (strict) tensors are missing or unexpected.</exception>
    /// <exception cref="InvalidOperationException">The module lives on the meta device.</exception>
    /// <exception cref="TensorFileException">The checkpoint cannot be read.</exception>
    public static WeightLoadReport Load(
        torch.nn.Module module,
        ITensorSource source,
        string prefix = "",
        bool strict = true,
        Func<string, bool>? ownsName = null,
        string? sourceName = null,
        IProgress<WeightLoadProgress>? progress = null,
        CancellationToken cancellationToken = default,
        WeightLoading loading = WeightLoading.Mapped)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        return Load(module, source, WeightNaming.FromPrefix(prefix, ownsName), strict, sourceName, progress, cancellationToken, loading);
    }

    /// <summary>Loads a checkpoint into a module, finding each state-dict key's tensor through <paramref name="naming"/>.</summary>
    /// <param name="module">The module; its parameters must live on a real device (not <c>meta</c>).</param>
    /// <param name="source">The checkpoint.</param>
    /// <param name="naming">Maps state-dict keys to checkpoint names and says which checkpoint names are the module's.</param>
    /// <param name="strict">When true, missing and unexpected tensors are an error; otherwise they are reported and skipped.
    /// Shape and dtype mismatches are always an error.</param>
    /// <param name="sourceName">How to name the checkpoint in errors; defaults to <see cref="SourceName"/>.</param>
    /// <param name="progress">Reports each loaded tensor.</param>
    /// <param name="cancellationToken">Checked between tensors; a cancelled load leaves the module partly filled.</param>
    /// <param name="loading">Map the file (default) or copy every weight into memory (see <see cref="WeightLoading"/>).</param>
    /// <returns>What was loaded, missing and unused.</returns>
    /// <exception cref="WeightLoadException">Shapes or dtypes differ, or (strict) tensors are missing or unexpected.</exception>
    /// <exception cref="InvalidOperationException">The module lives on the meta device.</exception>
    /// <exception cref="TensorFileException">The checkpoint cannot be read.</exception>
    public static WeightLoadReport Load(
        torch.nn.Module module,
        ITensorSource source,
        WeightNaming naming,
        bool strict = true,
        string? sourceName = null,
        IProgress<WeightLoadProgress>? progress = null,
        CancellationToken cancellationToken = default,
        WeightLoading loading = WeightLoading.Mapped)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(naming);
        sourceName ??= SourceName(source);

        // state_dict hands back the module's own parameter/buffer tensors: filling them fills the module.
        var targets = module.state_dict();
        var onMeta = targets.FirstOrDefault(t => t.Value.device_type == DeviceType.META);
        if (onMeta.Value is not null)
        {
            throw new InvalidOperationException($"{sourceName}: cannot load '{naming.CheckpointName(onMeta.Key)}': the module was built on the meta device (shapes only). Build it on a real device to load weights.");
        }

        var claimed = new HashSet<string>(StringComparer.Ordinal);
        var missing = new List<string>();
        var shapeMismatches = new List<WeightShapeMismatch>();
        var dtypeMismatches = new List<WeightDTypeMismatch>();
        var plan = new List<(string Checkpoint, torch.Tensor Target)>();
        foreach (var (key, target) in targets)
        {
            string name = naming.CheckpointName(key);
            claimed.Add(name);
            if (!source.Contains(name))
            {
                missing.Add(name);
                continue;
            }

            var entry = source.GetEntry(name);
            if (!entry.Shape.SequenceEqual(target.shape))
            {
                shapeMismatches.Add(new WeightShapeMismatch(name, target.shape, entry.Shape));
            }
            else if (!SafetensorsDType.IsKnown(entry.DType) || Kind(SafetensorsDType.ToScalarType(entry.DType)) != Kind(target.dtype))
            {
                dtypeMismatches.Add(new WeightDTypeMismatch(name, target.dtype, entry.DType));
            }
            else
            {
                plan.Add((name, target));
            }
        }

        var unexpected = source.Names.Where(n => !claimed.Contains(n) && naming.Owns(n)).ToList();
        if (shapeMismatches.Count > 0 || dtypeMismatches.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
        {
            throw new WeightLoadException(sourceName, naming.Prefix, missing, unexpected, shapeMismatches, dtypeMismatches);
        }

        using (torch.no_grad())
        {
            for (int i = 0; i < plan.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var (name, target) = plan[i];
                using (var tensor = source.Load(name))
                {
                    Fill(target, tensor, loading);
                }

                progress?.Report(new WeightLoadProgress(i + 1, plan.Count, name));
            }
        }

        return new WeightLoadReport(naming.Prefix, plan.Select(p => p.Checkpoint).ToList(), missing, unexpected);
    }

    /// <summary>How a checkpoint is named in load errors: its file path, a sharded checkpoint's index file, or the source's type.</summary>
    public static string SourceName(ITensorSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return source switch
        {
            SafetensorsFile file => file.FilePath,
            ShardedSafetensors sharded => sharded.IndexPath,
            _ => source.GetType().Name,
        };
    }

    /// <summary>
    /// Loads one tensor from a source as <paramref name="loading"/> says: as <see cref="ITensorSource.Load"/> gives it
    /// (a view of the mapped file when nothing is converted), or in memory of its own that the file no longer backs.
    /// </summary>
    /// <param name="source">The tensor file.</param>
    /// <param name="name">The tensor.</param>
    /// <param name="dtype">Convert to this dtype; <see langword="null"/> keeps the stored one.</param>
    /// <param name="device">Move to this device; <see langword="null"/> keeps the CPU.</param>
    /// <param name="loading">Mapped or copied.</param>
    /// <returns>A tensor the caller owns.</returns>
    public static torch.Tensor LoadTensor(ITensorSource source, string name, torch.ScalarType? dtype, torch.Device? device, WeightLoading loading)
    {
        ArgumentNullException.ThrowIfNull(source);
        var tensor = source.Load(name, dtype, device);
        var stored = SafetensorsDType.ToScalarType(source.GetEntry(name).DType);

        // A converted or moved tensor is already in memory of its own; only an unconverted CPU load can be a file view.
        if (loading == WeightLoading.Mapped || tensor.dtype != stored || tensor.device_type != DeviceType.CPU)
        {
            return tensor;
        }

        using (tensor)
        {
            return tensor.clone();
        }
    }

    // Same dtype and device, mapped: the parameter takes the loaded tensor's storage (for a safetensors file, the mapped
    // pages), nothing is copied. Otherwise the stored values are converted into the parameter's own memory.
    private static void Fill(torch.Tensor target, torch.Tensor tensor, WeightLoading loading)
    {
        if (loading == WeightLoading.Mapped && tensor.dtype == target.dtype && tensor.device_type == target.device_type && tensor.device_index == target.device_index)
        {
            // In-place ops return the tensor itself in this TorchSharp; dispose only a distinct wrapper.
            var result = target.set_(tensor);
            if (!ReferenceEquals(result, target))
            {
                result.Dispose();
            }
        }
        else
        {
            target.copy_(tensor);
        }
    }

    private static int Kind(torch.ScalarType type) => type switch
    {
        torch.ScalarType.Bool => 0,
        torch.ScalarType.Float16 or torch.ScalarType.BFloat16 or torch.ScalarType.Float32 or torch.ScalarType.Float64 => 2,
        torch.ScalarType.ComplexFloat32 or torch.ScalarType.ComplexFloat64 => 3,
        _ => 1,
    };
}
