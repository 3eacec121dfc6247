using LlavaInterp.Samples;

namespace LlavaInterp.Cli;

/// <summary>Checks shared by the commands, done before a model is loaded so that mistakes fail fast.</summary>
internal static class CommandInputs
{
    /// <summary>Fails when an image file does not exist.</summary>
    public static IReadOnlyList<string> ExistingImages(IReadOnlyList<string> images)
    {
        foreach (var image in images)
        {
            if (Directory.Exists(image))
            {
                throw new CliUsageException($"--image '{image}' is a folder; pass image files (or --image-dir for features).");
            }

            if (!File.Exists(image))
            {
                throw new CliUsageException($"image '{image}' not found.");
            }
        }

        return images;
    }

    /// <summary>Fails when the output file's folder does not exist or the path is a folder.</summary>
    public static string OutputFile(string path, string option)
    {
        if (Directory.Exists(path))
        {
            throw new CliUsageException($"{option} '{path}' is a folder; give a file name.");
        }

        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is null || !Directory.Exists(folder))
        {
            throw new CliUsageException($"{option} '{path}': the folder '{folder}' does not exist.");
        }

        return path;
    }

    /// <summary>A value that must be at least <paramref name="min"/>.</summary>
    public static int AtLeast(int? value, int fallback, int min, string option) =>
        (value ?? fallback) is int v && v >= min ? v : throw new CliUsageException($"{option} must be at least {min}, got {value}.");
}
