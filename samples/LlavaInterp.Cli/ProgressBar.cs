namespace LlavaInterp.Cli;

/// <summary>A one-line text progress bar on standard error; silent when stderr is redirected to a non-terminal.</summary>
public sealed class ProgressBar<T>(TextWriter output, Func<T, (long Done, long Total, string Label)> describe, bool enabled) : IProgress<T>
{
    private readonly object _lock = new();
    private int _lastLength;

    /// <inheritdoc/>
    public void Report(T value)
    {
        if (!enabled)
        {
            return;
        }

        var (done, total, label) = describe(value);
        const int width = 30;
        int filled = total <= 0 ? 0 : (int)Math.Clamp(done * width / total, 0, width);
        string line = $"\r[{new string('#', filled)}{new string('.', width - filled)}] {done}/{total} {label}";
        lock (_lock)
        {
            output.Write(line.PadRight(_lastLength));
            _lastLength = line.Length;
            if (done >= total)
            {
                output.WriteLine();
                _lastLength = 0;
            }
        }
    }
}
