using System.Collections;
using System.Diagnostics.CodeAnalysis;
using System.IO.Compression;
using TorchSharp;

namespace LlavaInterp.TensorFiles;

/// <summary>Reads NumPy <c>.npz</c> archives (as written by <c>numpy.savez</c> / <c>savez_compressed</c>).</summary>
public static class Npz
{
    /// <summary>Loads every array of an <c>.npz</c> archive; see <see cref="NpzFile.Open(string)"/>.</summary>
    /// <param name="path">The archive.</param>
    /// <returns>The arrays; dispose to free them.</returns>
    /// <exception cref="TensorFileException">The archive or one of its arrays is missing, malformed or unsupported.</exception>
    public static NpzFile Load(string path) => NpzFile.Open(path);
}

/// <summary>
/// The arrays of one <c>.npz</c> archive, loaded on open into CPU tensors that this object owns
/// (dispose it to free them; clone a tensor to keep it longer). Keys are the member names without <c>.npy</c>,
/// as NumPy presents them. Stored and deflate-compressed members are read.
/// </summary>
public sealed class NpzFile : IReadOnlyDictionary<string, torch.Tensor>, IDisposable
{
    private readonly Dictionary<string, torch.Tensor> _arrays;
    private bool _disposed;

    private NpzFile(string path, Dictionary<string, torch.Tensor> arrays, IReadOnlyList<string> names)
    {
        FilePath = path;
        _arrays = arrays;
        Names = names;
    }

    /// <summary>The archive's full path.</summary>
    public string FilePath { get; }

    /// <summary>Array names in archive order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <inheritdoc/>
    public int Count => _arrays.Count;

    /// <inheritdoc/>
    public IEnumerable<string> Keys => Names;

    /// <inheritdoc/>
    public IEnumerable<torch.Tensor> Values => Names.Select(n => this[n]);

    /// <summary>The array of that name (owned by this object: do not dispose it).</summary>
    /// <exception cref="TensorFileException">No array of that name (the message lists the names there are).</exception>
    public torch.Tensor this[string key]
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _arrays.TryGetValue(key, out var t)
                ? t
                : throw new TensorFileException(FilePath, key, $"no such array in the archive (it has: {string.Join(", ", Names)}).");
        }
    }

    /// <summary>Opens an archive and loads each <c>*.npy</c> member (other members are ignored).</summary>
    /// <param name="path">The archive.</param>
    /// <exception cref="TensorFileException">
    /// The file is missing or not a zip archive, a member is corrupt, truncated, repeated, or an NPY array of an
    /// unsupported dtype or layout. The message names the file and the array.
    /// </exception>
    public static NpzFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        path = Path.GetFullPath(path);
        if (!File.Exists(path))
        {
            throw new TensorFileException(path, null, "file not found.");
        }

        var arrays = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        var names = new List<string>();
        string? current = null;
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            using var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: false);
            foreach (var entry in zip.Entries)
            {
                if (!entry.FullName.EndsWith(".npy", StringComparison.Ordinal))
                {
                    continue;
                }

                current = entry.FullName[..^4];
                if (arrays.ContainsKey(current))
                {
                    throw new TensorFileException(path, current, "appears more than once in the archive.");
                }

                using var member = entry.Open();
                var tensor = Npy.Read(member, path, current, entry.Length);

                // The archive owns its arrays, whatever dispose scope the caller is in.
                tensor.DetachFromDisposeScope();
                arrays.Add(current, tensor);
                names.Add(current);
                current = null;
            }
        }
        catch (Exception ex)
        {
            foreach (var t in arrays.Values)
            {
                t.Dispose();
            }

            var wrapped = ex switch
            {
                TensorFileException => null,
                InvalidDataException when current is null => new TensorFileException(path, null, $"not a valid zip archive: {ex.Message}", ex),
                InvalidDataException => new TensorFileException(path, current, $"archive member is corrupt or uses an unsupported compression method: {ex.Message}", ex),
                IOException or UnauthorizedAccessException => new TensorFileException(path, current, $"cannot be read: {ex.Message}", ex),
                _ => null,
            };
            if (wrapped is null)
            {
                throw;
            }

            throw wrapped;
        }

        return new NpzFile(path, arrays, names);
    }

    /// <inheritdoc/>
    public bool ContainsKey(string key) => _arrays.ContainsKey(key);

    /// <inheritdoc/>
    public bool TryGetValue(string key, [MaybeNullWhen(false)] out torch.Tensor value)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _arrays.TryGetValue(key, out value);
    }

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, torch.Tensor>> GetEnumerator()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return Names.Select(n => new KeyValuePair<string, torch.Tensor>(n, _arrays[n])).GetEnumerator();
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Disposes every array.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var t in _arrays.Values)
        {
            t.Dispose();
        }
    }
}
