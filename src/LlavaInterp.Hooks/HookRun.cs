namespace LlavaInterp.Hooks;

/// <summary>
/// Per-thread state of the forward pass in progress, which hook contexts report. A model sets it for the duration
/// of its forward; forwards are synchronous, so a thread-static with save/restore is exact and cheap.
/// </summary>
public static class HookRun
{
    [ThreadStatic]
    private static long _positionOffset;

    /// <summary>Absolute position of the first token of the forward pass running on this thread.</summary>
    public static long PositionOffset => _positionOffset;

    /// <summary>Sets the position offset until the returned value is disposed (restores the previous one).</summary>
    public static Restore EnterPositionOffset(long offset)
    {
        var previous = _positionOffset;
        _positionOffset = offset;
        return new Restore(previous);
    }

    /// <summary>Restores the previous position offset on dispose.</summary>
    public readonly struct Restore : IDisposable
    {
        private readonly long _previous;

        internal Restore(long previous) => _previous = previous;

        /// <inheritdoc/>
        public void Dispose() => _positionOffset = _previous;
    }
}
