namespace LlavaInterp.Hooks;

/// <summary>Thrown when a hook fails, returns an unusable tensor, or names a hook point that does not exist.</summary>
public sealed class HookException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="hookName">The hook point concerned.</param>
    /// <param name="message">What went wrong.</param>
    /// <param name="inner">The hook's own exception, if it threw.</param>
    public HookException(string hookName, string message, Exception? inner = null)
        : base($"hook '{hookName}': {message}", inner)
    {
        HookName = hookName;
    }

    /// <summary>The hook point concerned.</summary>
    public string HookName { get; }
}
