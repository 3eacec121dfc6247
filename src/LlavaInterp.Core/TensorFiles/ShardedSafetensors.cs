using System.Text.Json;
using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>
/// A checkpoint split over several safetensors files, described by a Hugging Face
/// <c>model.safetensors.index.json</c> (<c>{"metadata": {...}, "weight_map": {tensor: shard file}}</c>).
/// Every shard is opened (and validated) once, on open; tensors are memory-mapped as by <see cref="SafetensorsFile"/>.
/// </summary>
public sealed class ShardedSafetensors : ITensorSource
{
    private readonly Dictionary<string, SafetensorsFile> _byTensor;
    private readonly IReadOnlyList<SafetensorsFile> _shards;
    private bool _disposed;

    private ShardedSafetensors(string indexPath, Dictionary<string, SafetensorsFile> byTensor, IReadOnlyList<SafetensorsFile> shards, IReadOnlyDictionary<string, string> weightMap)
    {
        IndexPath = indexPath;
        _byTensor = byTensor;
        _shards = shards;
        WeightMap = weightMap;
        Names = byTensor.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();
    }

    /// <summary>The index file's full path.</summary>
    public string IndexPath { get; }

    /// <summary>The index's <c>weight_map</c>: tensor name to shard file name (relative to the index's folder).</summary>
    public IReadOnlyDictionary<string, string> WeightMap { get; }

    /// <summary>The opened shards, in the order their names first appear in the <c>weight_map</c>.</summary>
    public IReadOnlyList<SafetensorsFile> Shards => _shards;

    /// <inheritdoc/>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Opens an index file and every shard it names.</summary>
    /// <param name="indexPath">Path of <c>model.safetensors.index.json</c> (or any index of that format).</param>
    /// <exception cref="TensorFileException">
    /// The index is missing or not valid JSON of that shape, a shard is missing or invalid, or a tensor listed in the
    /// <c>weight_map</c> is not in its shard.
    /// </exception>
    public static ShardedSafetensors Open(string indexPath)
    {
        ArgumentNullException.ThrowIfNull(indexPath);
        indexPath = Path.GetFullPath(indexPath);
        var weightMap = ReadWeightMap(indexPath);
        string folder = Path.GetDirectoryName(indexPath)!;

        var shardsByFile = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        var shards = new List<SafetensorsFile>();
        var byTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var (tensor, shardName) in weightMap)
            {
                if (!shardsByFile.TryGetValue(shardName, out var shard))
                {
                    string shardPath = Path.GetFullPath(Path.Combine(folder, shardName));
                    if (!File.Exists(shardPath))
                    {
                        throw new TensorFileException(indexPath, tensor, $"shard file '{shardName}' does not exist (looked for {shardPath}).");
                    }

                    shard = SafetensorsFile.Open(shardPath);
                    shardsByFile.Add(shardName, shard);
                    shards.Add(shard);
                }

                if (!shard.Contains(tensor))
                {
                    throw new TensorFileException(shard.FilePath, tensor, $"listed in the weight_map of {indexPath} but not present in shard '{shardName}'.");
                }

                byTensor.Add(tensor, shard);
            }
        }
        catch
        {
            foreach (var shard in shards)
            {
                shard.Dispose();
            }

            throw;
        }

        return new ShardedSafetensors(indexPath, byTensor, shards, weightMap);
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        if (!File.Exists(indexPath))
        {
            throw new TensorFileException(indexPath, null, "index file not found.");
        }

        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(indexPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new TensorFileException(indexPath, null, $"cannot be read: {ex.Message}", ex);
        }

        using var doc = HeaderJson.Parse(bytes, indexPath, "index");
        return HeaderJson.Read(indexPath, "index", () => ReadWeightMap(indexPath, doc));
    }

    private static Dictionary<string, string> ReadWeightMap(string indexPath, JsonDocument doc)
    {
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new TensorFileException(indexPath, null, "index is not a JSON object.");
        }

        JsonElement? weightMapElement = null;
        foreach (var property in doc.RootElement.EnumerateObject())
        {
            if (property.Name == "weight_map")
            {
                if (weightMapElement is not null)
                {
                    throw new TensorFileException(indexPath, null, "'weight_map' appears more than once.");
                }

                weightMapElement = property.Value;
            }
        }

        if (weightMapElement is not { ValueKind: JsonValueKind.Object } map)
        {
            throw new TensorFileException(indexPath, null, "index has no 'weight_map' object.");
        }

        var weightMap = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in map.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String || string.IsNullOrEmpty(entry.Value.GetString()))
            {
                throw new TensorFileException(indexPath, entry.Name, "weight_map value must be a shard file name.");
            }

            HeaderJson.Name(indexPath, entry.Name, "tensor name");
            string shard = HeaderJson.Name(indexPath, entry.Value.GetString()!, "shard file name");

            // Shards live next to the index: no folders, no absolute paths, no way out of the folder.
            if (shard != Path.GetFileName(shard) || shard is "." or ".." || shard.Contains('/') || shard.Contains('\\'))
            {
                throw new TensorFileException(indexPath, entry.Name, $"shard '{shard}' must be a plain file name in the index's folder.");
            }

            if (!weightMap.TryAdd(entry.Name, shard))
            {
                throw new TensorFileException(indexPath, entry.Name, "appears more than once in the weight_map.");
            }
        }

        return weightMap;
    }

    /// <inheritdoc/>
    public bool Contains(string name) => _byTensor.ContainsKey(name);

    /// <inheritdoc/>
    public TensorEntry GetEntry(string name) =>
        _byTensor.TryGetValue(name, out var shard) ? shard.GetEntry(name) : throw new TensorFileException(IndexPath, name, "no such tensor in the weight_map.");

    /// <inheritdoc/>
    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _byTensor.TryGetValue(name, out var shard)
            ? shard.Load(name, dtype, device)
            : throw new TensorFileException(IndexPath, name, "no such tensor in the weight_map.");
    }

    /// <summary>Closes every shard. Tensors already loaded keep their own reference to the mapped storage.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var shard in _shards)
        {
            shard.Dispose();
        }
    }
}
