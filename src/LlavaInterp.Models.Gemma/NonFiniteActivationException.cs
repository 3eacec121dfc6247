namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Thrown when a forward pass produced NaN or infinite logits. Names the first place the residual stream stopped being
/// finite (cheap to find: each block records a float32 checksum of its output on the device; they are read only after
/// the logits fail).
/// </summary>
public sealed class NonFiniteActivationException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="location">Where the first non-finite activation was seen: a hook point name, or <c>logits</c>.</param>
    /// <param name="layer">The block whose output was first non-finite; <see langword="null"/> for the embedding or the head.</param>
    /// <param name="message">What went wrong.</param>
    public NonFiniteActivationException(string location, int? layer, string message)
        : base(message)
    {
        Location = location;
        Layer = layer;
    }

    /// <summary>Hook point of the first non-finite activation (e.g. <c>blocks.2.hook_resid_post</c>), or <c>logits</c> when only the head produced it.</summary>
    public string Location { get; }

    /// <summary>The first block with a non-finite output, or <see langword="null"/> outside the blocks.</summary>
    public int? Layer { get; }
}
