using System.Text;
using System.Text.Json;
using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>
/// One safetensors file: the header is parsed and validated on open; tensor data is memory-mapped
/// (<c>torch.from_file</c>, copy-on-write) and never read into managed memory.
/// </summary>
public sealed class SafetensorsFile : ITensorSource
{
    /// <summary>Largest header accepted (the Python package uses the same 100 MB bound).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private readonly Dictionary<string, TensorEntry> _entries;
    private readonly Dictionary<torch.ScalarType, torch.Tensor> _maps = new();
    private readonly object _mapLock = new();
    private bool _disposed;

    private SafetensorsFile(string path, long dataStart, long fileLength, Dictionary<string, TensorEntry> entries, IReadOnlyList<string> names, IReadOnlyDictionary<string, string> metadata)
    {
        FileLength = fileLength;
        FilePath = path;
        DataStart = dataStart;
        _entries = entries;
        Names = names;
        Metadata = metadata;
    }

    /// <summary>The file's path.</summary>
    public string FilePath { get; }

    /// <summary>Absolute byte offset where the data area starts (8 + header length).</summary>
    public long DataStart { get; }

    /// <summary>
    /// Size of the file in bytes, measured through the open stream: for a symbolic link (the hub cache's snapshot
    /// entries) that is the target's size, which <c>FileInfo.Length</c> would not give.
    /// </summary>
    public long FileLength { get; }

    /// <summary>The <c>__metadata__</c> string map (empty when absent), enumerated in file order.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <inheritdoc/>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Every tensor's entry by name.</summary>
    public IReadOnlyDictionary<string, TensorEntry> Entries => _entries;

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <exception cref="TensorFileException">The file is missing, truncated or its header is invalid.</exception>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
        {
            throw new TensorFileException(path, null, "file not found.");
        }

        try
        {
            return OpenValidated(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new TensorFileException(path, null, $"cannot be read: {ex.Message}", ex);
        }
    }

    private static SafetensorsFile OpenValidated(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = stream.Length;
        if (fileLength < 8)
        {
            throw new TensorFileException(path, null, $"truncated: {fileLength} bytes, fewer than the 8-byte header length.");
        }

        Span<byte> lengthBytes = stackalloc byte[8];
        stream.ReadExactly(lengthBytes);
        ulong headerLength = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (headerLength > MaxHeaderBytes)
        {
            throw new TensorFileException(path, null, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit.");
        }

        if ((long)headerLength > fileLength - 8)
        {
            throw new TensorFileException(path, null, $"header length {headerLength} runs past the end of the file ({fileLength} bytes).");
        }

        var header = new byte[headerLength];
        stream.ReadExactly(header);
        long dataStart = 8 + (long)headerLength;
        return Parse(path, header, dataStart, fileLength);
    }

    private static SafetensorsFile Parse(string path, byte[] header, long dataStart, long fileLength)
    {
        using var doc = HeaderJson.Parse(header, path, "header");
        return HeaderJson.Read(path, "header", () => Parse(path, doc, dataStart, fileLength));
    }

    private static SafetensorsFile Parse(string path, JsonDocument doc, long dataStart, long fileLength)
    {
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new TensorFileException(path, null, "header is not a JSON object.");
        }

        var entries = new Dictionary<string, TensorEntry>(StringComparer.Ordinal);

        // Insertion order is file order, so a re-save writes the metadata keys as they were.
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        bool sawMetadata = false;
        long dataLength = fileLength - dataStart;

        // JsonDocument keeps repeated keys (and TryGetProperty would silently pick one), so every
        // object is enumerated and a repeated key is an error, as in the Rust reader (serde).
        foreach (var property in doc.RootElement.EnumerateObject())
        {
            if (property.Name == "__metadata__")
            {
                if (sawMetadata)
                {
                    throw new TensorFileException(path, null, "__metadata__ appears more than once in the header.");
                }

                sawMetadata = true;
                if (property.Value.ValueKind == JsonValueKind.Null)
                {
                    continue;
                }

                if (property.Value.ValueKind != JsonValueKind.Object)
                {
                    throw new TensorFileException(path, null, "__metadata__ is not an object of strings.");
                }

                foreach (var m in property.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String)
                    {
                        throw new TensorFileException(path, null, $"__metadata__ value '{m.Name}' is not a string.");
                    }

                    if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
                    {
                        throw new TensorFileException(path, null, $"__metadata__ key '{m.Name}' appears more than once.");
                    }
                }

                continue;
            }

            HeaderJson.Name(path, property.Name, "tensor name");
            if (entries.ContainsKey(property.Name))
            {
                throw new TensorFileException(path, property.Name, "appears more than once in the header.");
            }

            entries.Add(property.Name, ParseEntry(path, property, dataStart, dataLength));
        }

        // Spans must not overlap (sorted by start, each must end before the next begins).
        var ordered = entries.Values.OrderBy(e => e.Begin).ThenBy(e => e.End).ToList();
        for (int i = 1; i < ordered.Count; i++)
        {
            if (ordered[i].Begin < ordered[i - 1].End)
            {
                throw new TensorFileException(path, ordered[i].Name, $"data span overlaps tensor '{ordered[i - 1].Name}'.");
            }
        }

        var names = entries.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();
        return new SafetensorsFile(path, dataStart, fileLength, entries, names, metadata);
    }

    private static TensorEntry ParseEntry(string path, JsonProperty property, long dataStart, long dataLength)
    {
        string name = property.Name;
        var value = property.Value;
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new TensorFileException(path, name, "entry must be an object with 'dtype', 'shape' and 'data_offsets'.");
        }

        JsonElement? dtypeField = null, shapeField = null, offsetsField = null;
        foreach (var field in value.EnumerateObject())
        {
            // Unknown fields are ignored (as serde does); repeated known ones are ambiguous.
            ref JsonElement? slot = ref dtypeField;
            switch (field.Name)
            {
                case "dtype":
                    break;
                case "shape":
                    slot = ref shapeField;
                    break;
                case "data_offsets":
                    slot = ref offsetsField;
                    break;
                default:
                    continue;
            }

            if (slot is not null)
            {
                throw new TensorFileException(path, name, $"field '{field.Name}' appears more than once.");
            }

            slot = field.Value;
        }

        if (dtypeField is not { ValueKind: JsonValueKind.String } dtypeEl
            || shapeField is not { ValueKind: JsonValueKind.Array } shapeEl
            || offsetsField is not { ValueKind: JsonValueKind.Array } offEl)
        {
            throw new TensorFileException(path, name, "entry must be an object with 'dtype' (string), 'shape' (list) and 'data_offsets' (list).");
        }

        string dtype = dtypeEl.GetString()!;
        if (!SafetensorsDType.IsKnown(dtype))
        {
            throw new TensorFileException(path, name, $"unknown dtype '{dtype}'.");
        }

        var shape = new List<long>();
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim) || dim < 0)
            {
                throw new TensorFileException(path, name, "shape must be a list of non-negative integers.");
            }

            shape.Add(dim);
        }

        var offsets = offEl.EnumerateArray().ToList();
        long begin = 0, end = 0;
        if (offsets.Count != 2
            || offsets[0].ValueKind != JsonValueKind.Number || !offsets[0].TryGetInt64(out begin)
            || offsets[1].ValueKind != JsonValueKind.Number || !offsets[1].TryGetInt64(out end)
            || begin < 0 || end < begin)
        {
            throw new TensorFileException(path, name, "data_offsets must be [begin, end] with 0 <= begin <= end.");
        }

        if (end > dataLength)
        {
            throw new TensorFileException(path, name, $"data_offsets [{begin}, {end}] run past the end of the data area ({dataLength} bytes): file truncated?");
        }

        long count = 1;
        try
        {
            foreach (long dim in shape)
            {
                count = checked(count * dim);
            }

            long expected = checked(count * SafetensorsDType.ElementSize(dtype));
            if (expected != end - begin)
            {
                throw new TensorFileException(path, name, $"shape [{string.Join(", ", shape)}] of {dtype} needs {expected} bytes but data_offsets span {end - begin}.");
            }
        }
        catch (OverflowException)
        {
            throw new TensorFileException(path, name, "shape is too large.");
        }

        return new TensorEntry(name, dtype, shape, path, dataStart + begin, dataStart + end);
    }

    /// <inheritdoc/>
    public bool Contains(string name) => _entries.ContainsKey(name);

    /// <inheritdoc/>
    public TensorEntry GetEntry(string name) =>
        _entries.TryGetValue(name, out var e) ? e : throw new TensorFileException(FilePath, name, "no such tensor in the file.");

    /// <inheritdoc/>
    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var entry = GetEntry(name);
        var type = SafetensorsDType.ToScalarType(entry.DType);
        int size = SafetensorsDType.ElementSize(entry.DType);
        var shape = entry.Shape.ToArray();
        torch.Tensor result;
        if (entry.Begin % size == 0 && entry.ElementCount > 0)
        {
            var map = GetMap(type, size);
            using var flat = map.narrow(0, entry.Begin / size, entry.ElementCount);
            result = flat.view(shape);
        }
        else
        {
            // Unaligned (or empty) entries cannot be a typed view of the mapping: copy their bytes.
            result = ReadCopy(entry, type, shape);
        }

        if ((dtype is null || dtype == type) && (device is null || device.type == DeviceType.CPU))
        {
            return result;
        }

        using (result)
        {
            return result.to(dtype ?? type, device ?? torch.CPU);
        }
    }

    private torch.Tensor GetMap(torch.ScalarType type, int size)
    {
        lock (_mapLock)
        {
            if (!_maps.TryGetValue(type, out var map))
            {
                map = torch.from_file(FilePath, shared: false, size: FileLength / size, dtype: type);

                // The mapping lives as long as this file, not as long as the caller's dispose scope.
                map.DetachFromDisposeScope();
                _maps[type] = map;
            }

            return map;
        }
    }

    private torch.Tensor ReadCopy(TensorEntry entry, torch.ScalarType type, long[] shape)
    {
        var bytes = new byte[entry.ByteLength];
        using (var stream = new FileStream(FilePath, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            stream.Position = entry.Begin;
            stream.ReadExactly(bytes);
        }

        return TensorBytes.FromBytes(bytes, type, shape);
    }

    /// <summary>Releases the file mappings. Tensors already loaded keep their own reference to the mapped storage.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        lock (_mapLock)
        {
            foreach (var map in _maps.Values)
            {
                map.Dispose();
            }

            _maps.Clear();
        }
    }
}
