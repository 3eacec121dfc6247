using LlavaInterp.Sae;
namespace LlavaInterp.Analysis;

/// <summary>A class of an ImageNet-style folder: its name (the sub-folder's) and the images used for it.</summary>
/// <param name="Name">The class name.</param>
/// <param name="Images">Image paths, sorted by file name.</param>
public sealed record ImageClass(string Name, IReadOnlyList<string> Images);

/// <summary>
/// Finds images in folders. An ImageNet-style folder has one sub-folder per class holding that class's images
/// (<c>pizza/001.jpg</c>, <c>golden retriever/…</c>). Order is by ordinal name everywhere, so runs are reproducible.
/// </summary>
public static class ImageFolder
{
    /// <summary>File extensions read as images (case-insensitive).</summary>
    public static IReadOnlySet<string> Extensions { get; } = new HashSet<string>(StringComparer.OrdinalIgnoreCase)
    {
        ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
    };

    /// <summary>Whether the file name has an image extension.</summary>
    public static bool IsImage(string path) => Extensions.Contains(Path.GetExtension(path));

    /// <summary>The images directly inside <paramref name="folder"/>, sorted by name.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    public static IReadOnlyList<string> ImagesIn(string folder)
    {
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Image folder '{folder}' does not exist.");
        }

        return Directory.EnumerateFiles(folder).Where(IsImage).Order(StringComparer.Ordinal).ToArray();
    }

    /// <summary>Whether the folder has class sub-folders (ImageNet layout) rather than images only.</summary>
    public static bool HasClassFolders(string folder) =>
        Directory.Exists(folder) && Directory.EnumerateDirectories(folder).Any(d => !IsHidden(d));

    /// <summary>
    /// The classes of an ImageNet-style folder with the first <paramref name="perClass"/> images of each (all when null).
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="ArgumentException">It has no class folders, a class has no image, or <paramref name="perClass"/> is below 1.</exception>
    public static IReadOnlyList<ImageClass> Classes(string folder, int? perClass = null)
    {
        if (!Directory.Exists(folder))
        {
            throw new DirectoryNotFoundException($"Image folder '{folder}' does not exist.");
        }

        if (perClass is < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(perClass), perClass, $"The number of images per class must be at least 1, got {perClass}.");
        }

        var classes = new List<ImageClass>();
        foreach (var dir in Directory.EnumerateDirectories(folder).Where(d => !IsHidden(d)).Order(StringComparer.Ordinal))
        {
            var images = ImagesIn(dir);
            if (images.Count == 0)
            {
                throw new ArgumentException($"Class folder '{dir}' holds no image ({string.Join(", ", Extensions)}).", nameof(folder));
            }

            classes.Add(new ImageClass(Path.GetFileName(dir), perClass is int n ? images.Take(n).ToArray() : images));
        }

        if (classes.Count == 0)
        {
            throw new ArgumentException($"'{folder}' has no class sub-folders (expected DIR/<class>/<image>).", nameof(folder));
        }

        return classes;
    }

    private static bool IsHidden(string dir) => Path.GetFileName(dir).StartsWith('.');
}
