namespace LlavaInterp.Tests.Support;

/// <summary>A temporary folder removed on dispose.</summary>
public sealed class TempDir : IDisposable
{
    /// <summary>Creates a fresh folder under the system temp path.</summary>
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "llavainterp-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    /// <summary>A fresh folder holding a copy of <paramref name="folder"/> (sub-folders included).</summary>
    public static TempDir CopyOf(string folder)
    {
        var dir = new TempDir();
        foreach (string f in Directory.GetFiles(folder, "*", SearchOption.AllDirectories))
        {
            string dest = System.IO.Path.Combine(dir.Path, System.IO.Path.GetRelativePath(folder, f));
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(dest)!);
            System.IO.File.Copy(f, dest);
        }

        return dir;
    }

    /// <summary>The folder.</summary>
    public string Path { get; }

    /// <summary>A path inside the folder.</summary>
    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <inheritdoc/>
    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
