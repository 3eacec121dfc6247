using LlavaInterp.Sae;
using System.Globalization;

namespace LlavaInterp.Analysis;

/// <summary>Which prompt positions feature activations are read at: <c>image|last|all|INDEX</c>.</summary>
public sealed record PromptPositions
{
    private PromptPositions(string kind, long index)
    {
        Kind = kind;
        Index = index;
    }

    /// <summary>Every <c>&lt;image&gt;</c> token (the research's choice: what the image makes the model represent).</summary>
    public static PromptPositions Image { get; } = new("image", 0);

    /// <summary>The last prompt token (where the model starts answering).</summary>
    public static PromptPositions Last { get; } = new("last", 0);

    /// <summary>Every prompt token.</summary>
    public static PromptPositions All { get; } = new("all", 0);

    /// <summary><c>image</c>, <c>last</c>, <c>all</c> or <c>index</c>.</summary>
    public string Kind { get; }

    /// <summary>The position for <c>index</c> (negative counts from the end).</summary>
    public long Index { get; }

    /// <summary>One position; negative counts from the end (-1 is the last token).</summary>
    public static PromptPositions At(long index) => new("index", index);

    /// <summary>Parses <c>image|last|all|INDEX</c>.</summary>
    /// <exception cref="ArgumentException">Anything else.</exception>
    public static PromptPositions Parse(string? value, string option = "--positions") => value switch
    {
        null or "image" => Image,
        "last" => Last,
        "all" => All,
        _ when long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long i) => At(i),
        _ => throw new ArgumentException($"{option} must be image, last, all or a token index, got '{value}'.", nameof(value)),
    };

    /// <summary>The selector for a prompt of <paramref name="length"/> tokens with these image-token positions.</summary>
    /// <exception cref="ArgumentException">No image tokens for <c>image</c>, or an index outside the prompt.</exception>
    public PositionSelector Resolve(int length, IReadOnlyList<int> imagePositions)
    {
        switch (Kind)
        {
            case "image":
                if (imagePositions.Count == 0)
                {
                    throw new ArgumentException("Positions 'image' need an image in the prompt; add an image or use last, all or a token index.", nameof(imagePositions));
                }

                return PositionSelector.At(imagePositions.Select(p => (long)p));
            case "last":
                return PositionSelector.Last;
            case "all":
                return PositionSelector.All;
            default:
                if (Index >= length || Index < -length)
                {
                    throw new ArgumentOutOfRangeException(nameof(length), $"Position {Index} is outside the prompt's {length} tokens.");
                }

                return PositionSelector.At(Index);
        }
    }

    /// <summary>Human-readable form for reports.</summary>
    public override string ToString() => Kind switch
    {
        "image" => "image tokens",
        "last" => "last prompt token",
        "all" => "all prompt tokens",
        _ => $"token {Index}",
    };
}

/// <summary>Parses and names <see cref="FeatureAggregation"/> values: <c>sum|mean|max</c>.</summary>
public static class Aggregations
{
    /// <summary>The aggregation named by <paramref name="value"/> (sum when null).</summary>
    /// <exception cref="ArgumentException">Not sum, mean or max.</exception>
    /// <param name="value">The name.</param>
    /// <param name="option">How the value is named in the error message.</param>
    public static FeatureAggregation Parse(string? value, string option = "--aggregate") => value switch
    {
        null or "sum" => FeatureAggregation.Sum,
        "mean" => FeatureAggregation.Mean,
        "max" => FeatureAggregation.Max,
        _ => throw new ArgumentException($"{option} must be sum, mean or max, got '{value}'.", nameof(value)),
    };

    /// <summary>The lower-case name.</summary>
    public static string Name(FeatureAggregation aggregation) => aggregation.ToString().ToLowerInvariant();
}
