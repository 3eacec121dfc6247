using LlavaInterp.TensorFiles;
using TorchSharp;

namespace LlavaInterp.Loading;

/// <summary>How far a weight load has got.</summary>
/// <param name="Loaded">Tensors copied so far.</param>
/// <param name="Total">Tensors to copy.</param>
/// <param name="Name">The checkpoint name of the tensor just copied.</param>
public sealed record WeightLoadProgress(int Loaded, int Total, string Name);

/// <summary>What a (non-strict) load did.</summary>
/// <param name="Prefix">The prefix the module's names were looked up under.</param>
/// <param name="Loaded">Checkpoint names that were copied into the module.</param>
/// <param name="Missing">Checkpoint names the module needed but the checkpoint lacks (always empty after a strict load).</param>
/// <param name="Unexpected">Checkpoint names under the prefix the module does not use (always empty after a strict load).</param>
public sealed record WeightLoadReport(string Prefix, IReadOnlyList<string> Loaded, IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected);

/// <summary>
/// Fills a module's state dict (parameters and persistent buffers) from a checkpoint: module key <c>k</c> is read from
/// checkpoint tensor <c>prefix + k</c>. Everything is checked before anything is copied, so a failed load leaves the
/// module untouched.
/// </summary>
public static class WeightLoader
{
    /// <summary>Loads a checkpoint into a module.</summary>
    /// <param name="module">The module; its parameters must live on a real device (not <c>meta</c>).</param>
    /// <param name="source">The checkpoint.</param>
    /// <param name="prefix">Prepended to every state-dict key to find the checkpoint tensor, e.g. <c>vision_tower.</c>.</param>
    /// <param name="strict">When true, missing and unexpected tensors are an error; otherwise they are reported and skipped.
    /// Shape mismatches are always an error.</param>
    /// <param name="ownsName">Which checkpoint names under <paramref name="prefix"/> (given without it) belong to this module and
    /// so count as unexpected when unused; <see langword="null"/> claims every name under the prefix. Lets a module that is one
    /// part of a larger checkpoint (e.g. the vision half of a full CLIP checkpoint) ignore its siblings.</param>
    /// <param name="sourceName">How to name the checkpoint in errors; defaults to its file path where known.</param>
    /// <param name="progress">Reports each copied tensor.</param>
    /// <param name="cancellationToken">Checked between tensors; a cancelled load leaves the module partly filled.</param>
    /// <returns>What was loaded, missing and unused.</returns>
    /// <exception cref="WeightLoadException">Shapes differ, or (strict) tensors are missing or unexpected.</exception>
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
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(prefix);
        sourceName ??= source switch
        {
            SafetensorsFile file => file.FilePath,
            ShardedSafetensors sharded => sharded.IndexPath,
            _ => source.GetType().Name,
        };

        // state_dict hands back the module's own parameter/buffer tensors: copying into them fills the module.
        var targets = module.state_dict();
        var missing = new List<string>();
        var mismatches = new List<WeightShapeMismatch>();
        var plan = new List<(string Checkpoint, torch.Tensor Target)>();
        foreach (var (key, target) in targets)
        {
            string name = prefix + key;
            if (!source.Contains(name))
            {
                missing.Add(name);
                continue;
            }

            var entry = source.GetEntry(name);
            if (!entry.Shape.SequenceEqual(target.shape))
            {
                mismatches.Add(new WeightShapeMismatch(name, target.shape, entry.Shape));
                continue;
            }

            plan.Add((name, target));
        }

        var unexpected = source.Names
            .Where(n => n.StartsWith(prefix, StringComparison.Ordinal))
            .Where(n => !targets.ContainsKey(n[prefix.Length..]) && (ownsName?.Invoke(n[prefix.Length..]) ?? true))
            .ToList();

        if (mismatches.Count > 0 || (strict && (missing.Count > 0 || unexpected.Count > 0)))
        {
            throw new WeightLoadException(sourceName, prefix, missing, unexpected, mismatches);
        }

        var onMeta = plan.FirstOrDefault(p => p.Target.device.type == DeviceType.META);
        if (onMeta.Target is not null)
        {
            throw new InvalidOperationException($"cannot load '{onMeta.Checkpoint}': the module was built on the meta device (shapes only). Build it on a real device to load weights.");
        }

        // Copy into the existing parameters (dtype/device converted by copy_) rather than swapping in the memory-mapped
        // tensors: the module keeps its own dtype and device and the checkpoint file can be closed afterwards.
        using (torch.no_grad())
        {
            for (int i = 0; i < plan.Count; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var (name, target) = plan[i];
                using (var tensor = source.Load(name))
                {
                    target.copy_(tensor);
                }

                progress?.Report(new WeightLoadProgress(i + 1, plan.Count, name));
            }
        }

        return new WeightLoadReport(prefix, plan.Select(p => p.Checkpoint).ToList(), missing, unexpected);
    }

    /// <summary>
    /// The first candidate prefix under which the checkpoint holds a tensor whose name starts with
    /// <c>candidate + marker</c>, or <see langword="null"/> when none does. Used to accept several checkpoint layouts
    /// (e.g. <c>vision_tower.</c> and the newer <c>model.vision_tower.</c>).
    /// </summary>
    public static string? FindPrefix(ITensorSource source, string marker, IEnumerable<string> candidates)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(candidates);
        foreach (var candidate in candidates)
        {
            string start = candidate + marker;
            if (source.Names.Any(n => n.StartsWith(start, StringComparison.Ordinal)))
            {
                return candidate;
            }
        }

        return null;
    }
}
