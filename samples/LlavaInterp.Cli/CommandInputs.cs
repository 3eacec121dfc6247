using System.Globalization;
using LlavaInterp.Analysis;
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

    /// <summary>The option names of <see cref="HeatmapStyle(CliArgs)"/>.</summary>
    public static readonly string[] HeatmapOptions = ["colormap", "range"];

    /// <summary>
    /// The heatmap's look from <c>--colormap jet|viridis|hot|gray</c> (default jet) and <c>--range MIN:MAX</c> (the values
    /// drawn as the scale's ends; either side may be left empty for the map's own minimum or maximum).
    /// </summary>
    public static HeatmapStyle HeatmapStyle(CliArgs a)
    {
        var colormap = a.Optional("colormap") switch
        {
            null or "jet" => Colormap.Jet,
            "viridis" => Colormap.Viridis,
            "hot" => Colormap.Hot,
            "gray" => Colormap.Gray,
            var other => throw new CliUsageException($"--colormap must be jet, viridis, hot or gray, got '{other}'."),
        };
        var style = new HeatmapStyle { Colormap = colormap };
        if (a.Optional("range") is not { } range)
        {
            return style;
        }

        // Exactly one colon; a minus belongs to its number, so "-2:-1" is -2 to -1.
        string[] parts = range.Split(':');
        if (parts.Length != 2)
        {
            throw new CliUsageException($"--range expects MIN:MAX (e.g. 0:50, or 0: for a fixed minimum only), got '{range}'.");
        }

        double? min = End(parts[0], range);
        double? max = End(parts[1], range);
        if (min is double lo && max is double hi && !(lo < hi))
        {
            throw new CliUsageException($"--range needs MIN below MAX, got '{range}'.");
        }

        return style with { Min = min, Max = max };
    }

    private static double? End(string text, string range)
    {
        if (text.Length == 0)
        {
            return null;
        }

        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
            ? v
            : throw new CliUsageException($"--range expects MIN:MAX with finite numbers, got '{range}'.");
    }

    /// <summary>A value that must be at least <paramref name="min"/>.</summary>
    public static int AtLeast(int? value, int fallback, int min, string option) =>
        (value ?? fallback) is int v && v >= min ? v : throw new CliUsageException($"{option} must be at least {min}, got {value}.");
}
