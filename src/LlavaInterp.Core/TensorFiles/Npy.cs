using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>
/// Reads NumPy <c>.npy</c> arrays (format versions 1.0, 2.0 and 3.0) into CPU tensors.
/// Supported: little-endian <c>&lt;f8 &lt;f4 &lt;f2 &lt;i8 &lt;i4 &lt;i2</c>, and <c>|i1 |u1 |b1</c>, in C order.
/// Fortran-ordered arrays (with more than one non-trivial dimension), big-endian data, object and structured dtypes
/// are rejected with a <see cref="TensorFileException"/>.
/// </summary>
public static class Npy
{
    /// <summary>Largest header accepted; real headers are a few hundred bytes.</summary>
    public const int MaxHeaderBytes = 1 << 20;

    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    // Read into the tensor in pieces no larger than this, so arrays over 2 GiB never need one span.
    private const long ChunkBytes = 1 << 20;

    /// <summary>Loads an <c>.npy</c> file.</summary>
    /// <param name="path">The file.</param>
    /// <returns>A new CPU tensor owned by the caller.</returns>
    /// <exception cref="TensorFileException">The file is missing, malformed, truncated or of an unsupported dtype/layout.</exception>
    public static torch.Tensor Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
        {
            throw new TensorFileException(path, null, "file not found.");
        }

        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            return Read(stream, path, null, stream.Length);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new TensorFileException(path, null, $"cannot be read: {ex.Message}", ex);
        }
    }

    /// <summary>Loads an <c>.npy</c> array from a stream positioned at its start (the stream is left open).</summary>
    /// <param name="stream">The stream.</param>
    /// <param name="sourceName">Names the source in error messages (a path, say); <c>&lt;stream&gt;</c> when omitted.</param>
    /// <returns>A new CPU tensor owned by the caller.</returns>
    /// <exception cref="TensorFileException">The data is malformed, truncated or of an unsupported dtype/layout.</exception>
    public static torch.Tensor Load(Stream stream, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        long? available = stream.CanSeek ? stream.Length - stream.Position : null;
        return Read(stream, sourceName ?? "<stream>", null, available);
    }

    /// <summary>Reads one array; errors name <paramref name="filePath"/> and, inside an archive, <paramref name="arrayName"/>.</summary>
    internal static torch.Tensor Read(Stream stream, string filePath, string? arrayName, long? available)
    {
        Span<byte> prefix = stackalloc byte[12];
        if (stream.ReadAtLeast(prefix[..8], 8, throwOnEndOfStream: false) < 8)
        {
            throw new TensorFileException(filePath, arrayName, "truncated: too short for the NPY magic and version.");
        }

        if (!prefix[..6].SequenceEqual(Magic))
        {
            throw new TensorFileException(filePath, arrayName, "not an NPY array (bad magic string).");
        }

        int major = prefix[6], minor = prefix[7];
        if (minor != 0 || major is < 1 or > 3)
        {
            throw new TensorFileException(filePath, arrayName, $"unsupported NPY format version {major}.{minor} (1.0, 2.0 and 3.0 are read).");
        }

        // Version 1.0 stores the header length in 2 bytes, 2.0 and 3.0 in 4.
        int lengthBytes = major == 1 ? 2 : 4;
        if (stream.ReadAtLeast(prefix.Slice(8, lengthBytes), lengthBytes, throwOnEndOfStream: false) < lengthBytes)
        {
            throw new TensorFileException(filePath, arrayName, "truncated: too short for the NPY header length.");
        }

        long headerLength = major == 1
            ? BinaryPrimitives.ReadUInt16LittleEndian(prefix[8..])
            : BinaryPrimitives.ReadUInt32LittleEndian(prefix[8..]);
        long prefixLength = 8 + lengthBytes;
        if (headerLength > MaxHeaderBytes)
        {
            throw new TensorFileException(filePath, arrayName, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit.");
        }

        if (available is long total && prefixLength + headerLength > total)
        {
            throw new TensorFileException(filePath, arrayName, $"truncated: header length {headerLength} runs past the end of the data ({total} bytes).");
        }

        var headerBytes = new byte[headerLength];
        if (stream.ReadAtLeast(headerBytes, headerBytes.Length, throwOnEndOfStream: false) < headerBytes.Length)
        {
            throw new TensorFileException(filePath, arrayName, "truncated inside the NPY header.");
        }

        string headerText;
        try
        {
            // 1.0 and 2.0 headers are latin-1; 3.0 allows UTF-8.
            headerText = major == 3 ? new UTF8Encoding(false, true).GetString(headerBytes) : Encoding.Latin1.GetString(headerBytes);
        }
        catch (DecoderFallbackException ex)
        {
            throw new TensorFileException(filePath, arrayName, "NPY 3.0 header is not valid UTF-8.", ex);
        }

        var header = ParseHeader(headerText, filePath, arrayName);
        long count = 1;
        long byteLength;
        try
        {
            foreach (long d in header.Shape)
            {
                count = checked(count * d);
            }

            byteLength = checked(count * header.ElementSize);
        }
        catch (OverflowException ex)
        {
            throw new TensorFileException(filePath, arrayName, "shape is too large.", ex);
        }

        if (available is long size && prefixLength + headerLength + byteLength > size)
        {
            throw new TensorFileException(filePath, arrayName,
                $"truncated: shape [{string.Join(", ", header.Shape)}] of {header.Descr} needs {byteLength} data bytes but only {size - prefixLength - headerLength} follow the header.");
        }

        var tensor = torch.empty(header.Shape, dtype: header.Type);
        try
        {
            ReadData(stream, tensor, count, header.ElementSize, filePath, arrayName);
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    private static void ReadData(Stream stream, torch.Tensor tensor, long count, int elementSize, string filePath, string? arrayName)
    {
        if (count == 0)
        {
            return;
        }

        using var flat = tensor.view(-1);
        long perChunk = Math.Max(1, ChunkBytes / elementSize);
        for (long start = 0; start < count; start += perChunk)
        {
            using var piece = flat.narrow(0, start, Math.Min(perChunk, count - start));
            var span = piece.bytes;
            if (stream.ReadAtLeast(span, span.Length, throwOnEndOfStream: false) < span.Length)
            {
                throw new TensorFileException(filePath, arrayName, $"truncated: the data ends before all {count} elements are read.");
            }
        }
    }

    private sealed record Header(string Descr, torch.ScalarType Type, int ElementSize, long[] Shape);

    private static Header ParseHeader(string text, string filePath, string? arrayName)
    {
        object? parsed;
        try
        {
            var parser = new LiteralParser(text);
            parsed = parser.ParseDocument();
        }
        catch (FormatException ex)
        {
            throw new TensorFileException(filePath, arrayName, $"NPY header is not a valid Python dict literal: {ex.Message}", ex);
        }

        if (parsed is not Dictionary<string, object?> dict)
        {
            throw new TensorFileException(filePath, arrayName, "NPY header is not a dict.");
        }

        // NumPy requires exactly these three keys.
        string[] expected = ["descr", "fortran_order", "shape"];
        if (dict.Count != expected.Length || !expected.All(dict.ContainsKey))
        {
            throw new TensorFileException(filePath, arrayName,
                $"NPY header must have exactly the keys descr, fortran_order and shape; found {string.Join(", ", dict.Keys)}.");
        }

        if (dict["descr"] is not string descr)
        {
            throw new TensorFileException(filePath, arrayName, "structured (record) dtypes are not supported; descr must be a simple type string.");
        }

        if (dict["fortran_order"] is not bool fortran)
        {
            throw new TensorFileException(filePath, arrayName, "fortran_order must be True or False.");
        }

        if (dict["shape"] is not List<object?> shapeItems)
        {
            throw new TensorFileException(filePath, arrayName, "shape must be a tuple of integers.");
        }

        var shape = new long[shapeItems.Count];
        for (int i = 0; i < shape.Length; i++)
        {
            if (shapeItems[i] is not long d || d < 0)
            {
                throw new TensorFileException(filePath, arrayName, "shape must be a tuple of non-negative integers.");
            }

            shape[i] = d;
        }

        var (type, size) = ParseDescr(descr, filePath, arrayName);

        // Fortran and C order coincide when at most one dimension is larger than 1.
        if (fortran && shape.Count(d => d > 1) > 1)
        {
            throw new TensorFileException(filePath, arrayName, $"Fortran-ordered arrays are not supported (shape [{string.Join(", ", shape)}]); save with C order.");
        }

        return new Header(descr, type, size, shape);
    }

    private static (torch.ScalarType Type, int Size) ParseDescr(string descr, string filePath, string? arrayName)
    {
        if (descr.Length < 2)
        {
            throw new TensorFileException(filePath, arrayName, $"unsupported dtype '{descr}'.");
        }

        char order = descr[0];
        string code = descr[1..];
        if (code.StartsWith('O'))
        {
            throw new TensorFileException(filePath, arrayName, $"object dtype '{descr}' holds pickled Python objects and is not supported.");
        }

        (torch.ScalarType Type, int Size)? known = code switch
        {
            "f8" => (torch.ScalarType.Float64, 8),
            "f4" => (torch.ScalarType.Float32, 4),
            "f2" => (torch.ScalarType.Float16, 2),
            "i8" => (torch.ScalarType.Int64, 8),
            "i4" => (torch.ScalarType.Int32, 4),
            "i2" => (torch.ScalarType.Int16, 2),
            "i1" => (torch.ScalarType.Int8, 1),
            "u1" => (torch.ScalarType.Byte, 1),
            "b1" => (torch.ScalarType.Bool, 1),
            _ => null,
        };
        if (known is not { } result || order is not ('<' or '>' or '|' or '='))
        {
            throw new TensorFileException(filePath, arrayName, $"unsupported dtype '{descr}'.");
        }

        if (result.Size > 1)
        {
            bool little = order == '<' || (order == '=' && BitConverter.IsLittleEndian);
            if (!little)
            {
                throw new TensorFileException(filePath, arrayName, $"dtype '{descr}' is not little-endian; only little-endian data is supported.");
            }
        }

        return result;
    }

    /// <summary>The subset of Python literal syntax NumPy writes in headers: dicts, tuples, lists, strings, ints, booleans, None.</summary>
    private ref struct LiteralParser
    {
        private readonly ReadOnlySpan<char> _text;
        private int _pos;

        public LiteralParser(string text)
        {
            _text = text;
            _pos = 0;
        }

        public object? ParseDocument()
        {
            var value = ParseValue(0);
            SkipSpace();
            if (_pos != _text.Length)
            {
                throw new FormatException($"unexpected '{_text[_pos]}' at {_pos} after the value.");
            }

            return value;
        }

        private object? ParseValue(int depth)
        {
            if (depth > 32)
            {
                throw new FormatException("nesting too deep.");
            }

            SkipSpace();
            if (_pos >= _text.Length)
            {
                throw new FormatException("unexpected end of header.");
            }

            char c = _text[_pos];
            switch (c)
            {
                case '{':
                    return ParseDict(depth);
                case '(':
                    return ParseSequence(')', depth);
                case '[':
                    return ParseSequence(']', depth);
                case '\'':
                case '"':
                    return ParseString();
            }

            if (c == '-' || char.IsAsciiDigit(c))
            {
                return ParseInteger();
            }

            if (char.IsAsciiLetter(c))
            {
                int start = _pos;
                while (_pos < _text.Length && char.IsAsciiLetterOrDigit(_text[_pos]))
                {
                    _pos++;
                }

                return _text[start.._pos] switch
                {
                    "True" => true,
                    "False" => false,
                    "None" => null,
                    var word => throw new FormatException($"unexpected name '{word.ToString()}' at {start}."),
                };
            }

            throw new FormatException($"unexpected '{c}' at {_pos}.");
        }

        private Dictionary<string, object?> ParseDict(int depth)
        {
            _pos++; // '{'
            var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
            while (true)
            {
                SkipSpace();
                if (Peek() == '}')
                {
                    _pos++;
                    return dict;
                }

                int keyAt = _pos;
                if (ParseValue(depth + 1) is not string key)
                {
                    throw new FormatException($"dict key at {keyAt} is not a string.");
                }

                SkipSpace();
                Expect(':');
                var value = ParseValue(depth + 1);
                if (!dict.TryAdd(key, value))
                {
                    throw new FormatException($"key '{key}' appears more than once.");
                }

                SkipSpace();
                if (Peek() == ',')
                {
                    _pos++;
                }
                else if (Peek() != '}')
                {
                    throw new FormatException($"expected ',' or '}}' at {_pos}.");
                }
            }
        }

        private List<object?> ParseSequence(char close, int depth)
        {
            _pos++; // '(' or '['
            var items = new List<object?>();
            while (true)
            {
                SkipSpace();
                if (Peek() == close)
                {
                    _pos++;
                    return items;
                }

                items.Add(ParseValue(depth + 1));
                SkipSpace();
                if (Peek() == ',')
                {
                    _pos++;
                }
                else if (Peek() != close)
                {
                    throw new FormatException($"expected ',' or '{close}' at {_pos}.");
                }
            }
        }

        private string ParseString()
        {
            char quote = _text[_pos++];
            var sb = new StringBuilder();
            while (true)
            {
                if (_pos >= _text.Length)
                {
                    throw new FormatException("unterminated string.");
                }

                char c = _text[_pos++];
                if (c == quote)
                {
                    return sb.ToString();
                }

                if (c == '\\')
                {
                    if (_pos >= _text.Length)
                    {
                        throw new FormatException("unterminated string.");
                    }

                    char e = _text[_pos++];
                    sb.Append(e switch
                    {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        _ => e,
                    });
                }
                else
                {
                    sb.Append(c);
                }
            }
        }

        private long ParseInteger()
        {
            int start = _pos;
            if (_text[_pos] == '-')
            {
                _pos++;
            }

            while (_pos < _text.Length && char.IsAsciiDigit(_text[_pos]))
            {
                _pos++;
            }

            var digits = _text[start.._pos];

            // Python 2 wrote long integers with an L suffix.
            if (_pos < _text.Length && _text[_pos] is 'L' or 'l')
            {
                _pos++;
            }

            if (!long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
            {
                throw new FormatException($"bad integer '{digits.ToString()}' at {start}.");
            }

            return value;
        }

        private void SkipSpace()
        {
            while (_pos < _text.Length && char.IsWhiteSpace(_text[_pos]))
            {
                _pos++;
            }
        }

        private readonly char Peek() => _pos < _text.Length ? _text[_pos] : '\0';

        private void Expect(char c)
        {
            if (Peek() != c)
            {
                throw new FormatException($"expected '{c}' at {_pos}.");
            }

            _pos++;
        }
    }
}
