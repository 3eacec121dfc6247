namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Thrown before a run whose sequence would need more positions than the model's <c>max_position_embeddings</c>: the
/// model was never trained past it, so its output there is not meaningful even where RoPE could compute it.
/// </summary>
public sealed class ContextLengthException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="length">Positions the run needs.</param>
    /// <param name="maxPositionEmbeddings">The model's <c>max_position_embeddings</c>.</param>
    /// <param name="what">What needs them, e.g. "the prompt (35 tokens) plus MaxNewTokens (600)".</param>
    public ContextLengthException(long length, int maxPositionEmbeddings, string what)
        : base($"{what}: {length} positions, more than max_position_embeddings = {maxPositionEmbeddings}.")
    {
        Length = length;
        MaxPositionEmbeddings = maxPositionEmbeddings;
    }

    /// <summary>Positions the run needs.</summary>
    public long Length { get; }

    /// <summary>The model's <c>max_position_embeddings</c>.</summary>
    public int MaxPositionEmbeddings { get; }

    /// <summary>Throws when <paramref name="length"/> exceeds <paramref name="maxPositionEmbeddings"/>.</summary>
    /// <exception cref="ContextLengthException">It does.</exception>
    public static void ThrowIfExceeded(long length, int maxPositionEmbeddings, Func<string> what)
    {
        ArgumentNullException.ThrowIfNull(what);
        if (length > maxPositionEmbeddings)
        {
            throw new ContextLengthException(length, maxPositionEmbeddings, what());
        }
    }
}
