using System.Text;

namespace LlavaInterp.IO;

/// <summary>
/// Writes a file through a temporary file in the same folder that is renamed over the target only once it is
/// complete, so readers see the old file or the new one, and a failure (an exception, a cancellation) leaves neither
/// a partial target nor the temporary file.
/// </summary>
/// <remarks>The target's folder must exist. The temporary file is hidden (<c>.{name}.{guid}.tmp</c>) and unique per call.</remarks>
public static class AtomicFile
{
    private static readonly UTF8Encoding Utf8NoBom = new(false);

    /// <summary>Writes <paramref name="path"/> with <paramref name="write"/>, which gets a new, empty stream.</summary>
    /// <param name="path">The target; replaced if it exists.</param>
    /// <param name="write">Writes the content; an exception from it leaves the target untouched.</param>
    /// <param name="flushToDisk">Flush to the device before the rename (for files costly to lose in a power cut).</param>
    public static void Write(string path, Action<Stream> write, bool flushToDisk = false)
    {
        ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
        string temp = TempPathFor(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk);
            }

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Asynchronous <see cref="Write"/>.</summary>
    /// <param name="path">The target; replaced if it exists.</param>
    /// <param name="write">Writes the content; an exception from it (or a cancellation) leaves the target untouched.</param>
    /// <param name="cancellationToken">Checked once more before the rename.</param>
    public static async Task WriteAsync(string path, Func<Stream, CancellationToken, Task> write, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
        string temp = TempPathFor(full);
        try
        {
            var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
            await using (stream.ConfigureAwait(false))
            {
                await write(stream, cancellationToken).ConfigureAwait(false);
                await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            }

            cancellationToken.ThrowIfCancellationRequested();
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Writes <paramref name="content"/> as UTF-8 without a byte-order mark.</summary>
    public static void WriteAllText(string path, string content)
    {
        ArgumentNullException.ThrowIfNull(content);
        Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, Utf8NoBom, leaveOpen: true);
            writer.Write(content);
        });
    }

    /// <summary>Asynchronous <see cref="WriteAllText"/>.</summary>
    public static Task WriteAllTextAsync(string path, string content, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(content);
        return WriteAsync(path, async (stream, ct) =>
        {
            var writer = new StreamWriter(stream, Utf8NoBom, leaveOpen: true);
            await using (writer.ConfigureAwait(false))
            {
                await writer.WriteAsync(content.AsMemory(), ct).ConfigureAwait(false);
            }
        }, cancellationToken);
    }

    /// <summary>Copies <paramref name="source"/> to <paramref name="destination"/> so that a half-copied file never appears.</summary>
    public static void Copy(string source, string destination)
    {
        ArgumentNullException.ThrowIfNull(source);
        Write(destination, target =>
        {
            using var input = File.OpenRead(source);
            input.CopyTo(target);
        });
    }

    private static string TempPathFor(string full)
    {
        string folder = Path.GetDirectoryName(full) ?? throw new ArgumentException($"'{full}' has no folder.", nameof(full));
        return Path.Combine(folder, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
    }

    private static void TryDelete(string file)
    {
        try
        {
            File.Delete(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: the original error is the one to report.
        }
    }
}
