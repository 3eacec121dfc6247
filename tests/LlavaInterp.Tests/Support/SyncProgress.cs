namespace LlavaInterp.Tests.Support;

/// <summary>Reports on the calling thread, in order (Progress&lt;T&gt; posts to the thread pool); serialised, since downloads report from several threads.</summary>
public sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    private readonly Lock _lock = new();

    /// <inheritdoc/>
    public void Report(T value)
    {
        lock (_lock)
        {
            report(value);
        }
    }
}
