using System.Text;
using LlavaInterp.IO;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.IO;

public sealed class AtomicFileTests
{
    [Fact]
    public void WriteAllText_CreatesOrReplacesTheTarget_Utf8WithoutBom_NoTempLeft()
    {
        using var dir = new TempDir();
        string path = dir.File("out.txt");
        AtomicFile.WriteAllText(path, "first");
        AtomicFile.WriteAllText(path, "zweite Zeile é");
        Assert.Equal(Encoding.UTF8.GetBytes("zweite Zeile é"), File.ReadAllBytes(path));
        Assert.Equal(["out.txt"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Write_FailureMidWrite_KeepsTheOldTargetAndLeavesNoTempFile()
    {
        using var dir = new TempDir();
        string path = dir.File("data.bin");
        File.WriteAllText(path, "old");
        var e = Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[100_000]);
            throw new InvalidOperationException("disk on fire");
        }));
        Assert.Equal("disk on fire", e.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal(["data.bin"], Directory.GetFiles(dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Write_FailureMidWrite_WithoutTarget_LeavesNothing()
    {
        using var dir = new TempDir();
        string path = dir.File("new.bin");
        Assert.Throws<IOException>(() => AtomicFile.Write(path, stream =>
        {
            stream.WriteByte(1);
            throw new IOException("short write");
        }));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public async Task WriteAsync_CancelledMidWrite_LeavesNoPartialTargetAndNoTempFile()
    {
        using var dir = new TempDir();
        string path = dir.File("async.txt");
        using var cts = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => AtomicFile.WriteAsync(path, async (stream, ct) =>
        {
            await stream.WriteAsync(new byte[10], ct);
            await cts.CancelAsync();
            await stream.WriteAsync(new byte[10], ct);
        }, cts.Token));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));

        await AtomicFile.WriteAllTextAsync(path, "done");
        Assert.Equal("done", await File.ReadAllTextAsync(path));
        Assert.Single(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void Copy_MissingSource_LeavesNoTarget_ExistingSourceIsCopied()
    {
        using var dir = new TempDir();
        Assert.Throws<FileNotFoundException>(() => AtomicFile.Copy(dir.File("missing"), dir.File("copy")));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));

        File.WriteAllBytes(dir.File("src"), [1, 2, 3]);
        AtomicFile.Copy(dir.File("src"), dir.File("copy"));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(dir.File("copy")));
        Assert.Equal(2, Directory.GetFileSystemEntries(dir.Path).Length);
    }

    [Fact]
    public void Write_MissingFolder_ThrowsWithoutCreatingIt()
    {
        using var dir = new TempDir();
        string path = Path.Combine(dir.Path, "no", "such", "file.txt");
        Assert.Throws<DirectoryNotFoundException>(() => AtomicFile.WriteAllText(path, "x"));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }
}
