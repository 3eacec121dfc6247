using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using LlavaInterp.IO;
using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>
/// Writes safetensors files byte-compatible with the Python <c>safetensors</c> package (<c>save_file</c>):
/// tensors laid out by descending dtype rank then by name, compact header JSON with <c>__metadata__</c> first,
/// header padded with spaces to a multiple of 8 bytes.
/// </summary>
public static class SafetensorsWriter
{
    private const string StreamName = "<stream>";

    // Tensor data is written in pieces no larger than this, so tensors over 2 GiB never need one span.
    private const long ChunkBytes = 1 << 20;

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    /// <summary>
    /// Writes the tensors to <paramref name="path"/>. The data goes to a temporary file in the same folder that
    /// replaces <paramref name="path"/> only once everything is written, so an error or a cancellation never
    /// leaves a partial file (and leaves an existing file at <paramref name="path"/> untouched).
    /// </summary>
    /// <param name="path">The file to write.</param>
    /// <param name="tensors">Name and tensor pairs (any device, any layout); names must be unique.</param>
    /// <param name="metadata">
    /// The <c>__metadata__</c> map, written in its enumeration order; <see langword="null"/> writes no
    /// <c>__metadata__</c> entry (an empty map writes an empty one, as the Python package does).
    /// </param>
    /// <param name="progress">Receives the number of tensor data bytes written so far, after each tensor.</param>
    /// <param name="cancellationToken">Stops the write; the partial temporary file is removed.</param>
    /// <exception cref="TensorFileException">
    /// A name is repeated or reserved, a dtype has no safetensors name, a tensor cannot be read, or the file cannot be written.
    /// </exception>
    /// <exception cref="OperationCanceledException">The write was cancelled.</exception>
    public static void Save(
        string path,
        IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null,
        IProgress<long>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        path = Path.GetFullPath(path);

        // Everything that can be checked without writing is checked before the temporary file exists.
        var plan = Prepare(path, tensors, metadata);
        string folder = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(folder))
        {
            throw new TensorFileException(path, null, "the folder does not exist.");
        }

        try
        {
            AtomicFile.Write(path, stream => Write(path, plan, stream, progress, cancellationToken), flushToDisk: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new TensorFileException(path, null, $"cannot be written: {ex.Message}", ex);
        }
    }

    /// <summary>Writes the tensors in safetensors format to a stream (which is left open).</summary>
    /// <param name="stream">A writable stream.</param>
    /// <param name="tensors">Name and tensor pairs (any device, any layout); names must be unique.</param>
    /// <param name="metadata">The <c>__metadata__</c> map (see <see cref="Save(string, IEnumerable{KeyValuePair{string, torch.Tensor}}, IReadOnlyDictionary{string, string}?, IProgress{long}?, CancellationToken)"/>).</param>
    /// <param name="progress">Receives the number of tensor data bytes written so far, after each tensor.</param>
    /// <param name="cancellationToken">Stops the write (the stream then holds a partial file).</param>
    /// <exception cref="TensorFileException">A name is repeated or reserved, a dtype has no safetensors name, or a tensor cannot be read.</exception>
    public static void Save(
        Stream stream,
        IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata = null,
        IProgress<long>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(tensors);
        if (!stream.CanWrite)
        {
            throw new ArgumentException("The stream is not writable.", nameof(stream));
        }

        var plan = Prepare(StreamName, tensors, metadata);
        Write(StreamName, plan, stream, progress, cancellationToken);
    }

    /// <summary>The exact header bytes (8-byte length, then padded JSON) that would be written for these tensors.</summary>
    /// <param name="tensors">Name and tensor pairs; only dtypes and shapes are read.</param>
    /// <param name="metadata">The <c>__metadata__</c> map, or <see langword="null"/>.</param>
    public static byte[] BuildHeader(IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var plan = Prepare(StreamName, tensors, metadata);
        var result = new byte[8 + plan.Header.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(result, (ulong)plan.Header.Length);
        plan.Header.CopyTo(result, 8);
        return result;
    }

    private sealed record Item(string Name, byte[] NameUtf8, torch.Tensor Tensor, string DType, long[] Shape, long ByteLength);

    private sealed record Plan(byte[] Header, IReadOnlyList<Item> Items);

    private static Plan Prepare(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var items = new List<Item>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (name is null)
            {
                throw new TensorFileException(path, null, "a tensor name is null.");
            }

            if (tensor is null)
            {
                throw new TensorFileException(path, name, "the tensor is null.");
            }

            if (name == "__metadata__")
            {
                throw new TensorFileException(path, name, "'__metadata__' is reserved for the metadata map.");
            }

            if (!seen.Add(name))
            {
                throw new TensorFileException(path, name, "the name is given more than once.");
            }

            string dtype;
            long[] shape;
            try
            {
                dtype = SafetensorsDType.FromScalarType(tensor.dtype);
                shape = tensor.shape;
            }
            catch (NotSupportedException ex)
            {
                throw new TensorFileException(path, name, ex.Message, ex);
            }
            catch (Exception ex) when (ex is InvalidOperationException or ObjectDisposedException)
            {
                throw new TensorFileException(path, name, $"the tensor cannot be read: {ex.Message}", ex);
            }

            long byteLength;
            try
            {
                byteLength = SafetensorsDType.ElementSize(dtype);
                foreach (long d in shape)
                {
                    byteLength = checked(byteLength * d);
                }
            }
            catch (OverflowException ex)
            {
                throw new TensorFileException(path, name, "the tensor is too large.", ex);
            }

            items.Add(new Item(name, Utf8(path, name, name), tensor, dtype, shape, byteLength));
        }

        // Same order as the Rust crate: dtype rank descending, then name by bytes (Rust string order is UTF-8 byte order).
        items.Sort((a, b) =>
        {
            int byType = SafetensorsDType.SerializationRank(b.DType).CompareTo(SafetensorsDType.SerializationRank(a.DType));
            return byType != 0 ? byType : a.NameUtf8.AsSpan().SequenceCompareTo(b.NameUtf8);
        });

        var json = new StringBuilder();
        json.Append('{');
        bool first = true;
        if (metadata is not null)
        {
            json.Append("\"__metadata__\":{");
            bool firstMeta = true;
            foreach (var (key, value) in metadata)
            {
                if (key is null || value is null)
                {
                    throw new TensorFileException(path, null, "a __metadata__ key or value is null.");
                }

                if (!firstMeta)
                {
                    json.Append(',');
                }

                firstMeta = false;
                AppendString(json, key);
                json.Append(':');
                AppendString(json, value);
            }

            json.Append('}');
            first = false;
        }

        long offset = 0;
        foreach (var item in items)
        {
            if (!first)
            {
                json.Append(',');
            }

            first = false;
            AppendString(json, item.Name);
            json.Append(":{\"dtype\":\"").Append(item.DType).Append("\",\"shape\":[");
            for (int i = 0; i < item.Shape.Length; i++)
            {
                if (i > 0)
                {
                    json.Append(',');
                }

                json.Append(item.Shape[i].ToString(CultureInfo.InvariantCulture));
            }

            long end = checked(offset + item.ByteLength);
            json.Append("],\"data_offsets\":[")
                .Append(offset.ToString(CultureInfo.InvariantCulture)).Append(',')
                .Append(end.ToString(CultureInfo.InvariantCulture)).Append("]}");
            offset = end;
        }

        json.Append('}');
        byte[] text = Utf8(path, null, json.ToString());

        // Pad with spaces so the data area starts 8-byte aligned (the reference does the same).
        int padded = (text.Length + 7) / 8 * 8;
        if (padded > SafetensorsFile.MaxHeaderBytes)
        {
            throw new TensorFileException(path, null, $"the header would be {padded} bytes, over the {SafetensorsFile.MaxHeaderBytes}-byte limit readers accept.");
        }

        var header = new byte[padded];
        text.CopyTo(header, 0);
        header.AsSpan(text.Length).Fill((byte)' ');
        return new Plan(header, items);
    }

    private static void Write(string path, Plan plan, Stream stream, IProgress<long>? progress, CancellationToken cancellationToken)
    {
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)plan.Header.Length);
        stream.Write(length);
        stream.Write(plan.Header);
        long written = 0;
        foreach (var item in plan.Items)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                WriteData(stream, item, cancellationToken);
            }
            catch (Exception ex) when (ex is not (OperationCanceledException or IOException or TensorFileException))
            {
                throw new TensorFileException(path, item.Name, $"the tensor data cannot be read: {ex.Message}", ex);
            }

            written += item.ByteLength;
            progress?.Report(written);
        }
    }

    private static void WriteData(Stream stream, Item item, CancellationToken cancellationToken)
    {
        if (item.ByteLength == 0)
        {
            return;
        }

        using var scope = torch.NewDisposeScope();
        var tensor = item.Tensor;
        if (tensor.dtype != SafetensorsDType.ToScalarType(item.DType) || !tensor.shape.SequenceEqual(item.Shape))
        {
            throw new InvalidOperationException("the tensor changed between preparing the header and writing its data.");
        }

        var cpu = tensor.device_type == DeviceType.CPU ? tensor : tensor.cpu();
        var flat = cpu.contiguous().reshape(-1);
        long elementSize = SafetensorsDType.ElementSize(item.DType);
        long count = item.ByteLength / elementSize;
        long perChunk = Math.Max(1, ChunkBytes / elementSize);
        for (long start = 0; start < count; start += perChunk)
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var piece = flat.narrow(0, start, Math.Min(perChunk, count - start));
            stream.Write(piece.bytes);
        }
    }

    private static byte[] Utf8(string path, string? tensorName, string text)
    {
        try
        {
            return StrictUtf8.GetBytes(text);
        }
        catch (EncoderFallbackException ex)
        {
            throw new TensorFileException(path, tensorName, "a name or metadata string is not valid Unicode (lone surrogate).", ex);
        }
    }

    // serde_json's escaping: quote, backslash and control characters only; everything else is written as is.
    private static void AppendString(StringBuilder json, string value)
    {
        json.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"':
                    json.Append("\\\"");
                    break;
                case '\\':
                    json.Append("\\\\");
                    break;
                case '\b':
                    json.Append("\\b");
                    break;
                case '\f':
                    json.Append("\\f");
                    break;
                case '\n':
                    json.Append("\\n");
                    break;
                case '\r':
                    json.Append("\\r");
                    break;
                case '\t':
                    json.Append("\\t");
                    break;
                default:
                    if (c < 0x20)
                    {
                        json.Append("\\u00").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        json.Append(c);
                    }

                    break;
            }
        }

        json.Append('"');
    }
}
