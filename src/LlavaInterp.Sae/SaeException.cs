namespace LlavaInterp.Sae;

/// <summary>
/// Thrown when a sparse autoencoder is used with input it cannot take (wrong size, wrong shape, unknown feature)
/// or is built from inconsistent parts. File problems are reported as
/// <see cref="LlavaInterp.Configuration.ConfigException"/> (<c>cfg.json</c>) or
/// <see cref="LlavaInterp.TensorFiles.TensorFileException"/> (weights).
/// </summary>
public sealed class SaeException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="hookName">The hook point the SAE reads (or the hook that fired), if known.</param>
    /// <param name="message">What went wrong.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public SaeException(string? hookName, string message, Exception? inner = null)
        : base(hookName is null ? message : $"SAE at '{hookName}': {message}", inner)
    {
        HookName = hookName;
    }

    /// <summary>The hook point concerned, if known.</summary>
    public string? HookName { get; }
}
