namespace LlavaInterp.TensorFiles;

/// <summary>Opens the weights of a Hugging Face model folder, single-file or sharded.</summary>
public static class Checkpoint
{
    /// <summary>The index file name Hugging Face uses for sharded safetensors checkpoints.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>The file name Hugging Face uses for single-file safetensors checkpoints.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>
    /// Opens the weights in <paramref name="folder"/>: <c>model.safetensors.index.json</c> if present (sharded),
    /// else <c>model.safetensors</c>, else the folder's only <c>*.safetensors</c> file.
    /// </summary>
    /// <param name="folder">The model folder.</param>
    /// <returns>The checkpoint; dispose it to release the file mappings.</returns>
    /// <exception cref="TensorFileException">
    /// The folder is missing, holds no safetensors weights, holds several without an index, or the chosen file is invalid.
    /// </exception>
    public static ITensorSource Open(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        folder = Path.GetFullPath(folder);
        if (!Directory.Exists(folder))
        {
            throw new TensorFileException(folder, null, "model folder not found.");
        }

        string index = Path.Combine(folder, IndexFileName);
        if (File.Exists(index))
        {
            return ShardedSafetensors.Open(index);
        }

        string single = Path.Combine(folder, SingleFileName);
        if (File.Exists(single))
        {
            return SafetensorsFile.Open(single);
        }

        var candidates = Directory.EnumerateFiles(folder, "*.safetensors", SearchOption.TopDirectoryOnly)
            .Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal))
            .OrderBy(f => f, StringComparer.Ordinal)
            .ToList();
        return candidates.Count switch
        {
            1 => SafetensorsFile.Open(candidates[0]),
            0 => throw new TensorFileException(folder, null, $"no safetensors weights: neither {IndexFileName}, {SingleFileName} nor any *.safetensors file."),
            _ => throw new TensorFileException(folder, null,
                $"{candidates.Count} *.safetensors files ({string.Join(", ", candidates.Select(Path.GetFileName))}) but no {IndexFileName} saying how they combine."),
        };
    }
}
