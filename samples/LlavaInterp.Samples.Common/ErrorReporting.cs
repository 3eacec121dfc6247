namespace LlavaInterp.Samples;

/// <summary>
/// Runs a program's body and turns every failure into one line on stderr and an exit code: 2 for a bad command line
/// (<see cref="CliUsageException"/>), 130 when cancelled, 1 for anything else.
/// </summary>
public static class ErrorReporting
{
    /// <summary>Exit code of a bad command line.</summary>
    public const int UsageError = 2;

    /// <summary>Exit code of a failed run.</summary>
    public const int Failure = 1;

    /// <summary>Exit code of a cancelled run.</summary>
    public const int Cancelled = 130;

    /// <summary>Runs <paramref name="body"/>; errors are printed as <c>{program}: …</c>.</summary>
    public static async Task<int> RunAsync(string program, TextWriter stderr, CancellationToken ct, Func<Task<int>> body)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        ArgumentNullException.ThrowIfNull(body);
        try
        {
            return await body().ConfigureAwait(false);
        }
        catch (CliUsageException ex)
        {
            stderr.WriteLine($"{program}: {Sources.OneLine(ex.Message)}");
            return UsageError;
        }
        catch (Exception ex) when (ct.IsCancellationRequested && ex is OperationCanceledException or ObjectDisposedException)
        {
            // A cancellation can surface as a disposed object in code the token stopped midway: it is the cancellation.
            stderr.WriteLine($"{program}: cancelled.");
            return Cancelled;
        }
        catch (Exception ex)
        {
            stderr.WriteLine($"{program}: {Sources.OneLine(Describe(ex))}");
            return Failure;
        }
    }

    // Library exceptions already name the file, tensor, key or hook; anything else is unexpected and says its type.
    private static string Describe(Exception ex)
    {
        var e = ex is AggregateException { InnerExceptions.Count: 1 } agg ? agg.InnerExceptions[0] : ex;
        string ns = e.GetType().Namespace ?? string.Empty;
        bool expected = ns.StartsWith("LlavaInterp", StringComparison.Ordinal) || ns.StartsWith("System.IO", StringComparison.Ordinal)
            || ns.StartsWith("System.Text.Json", StringComparison.Ordinal) || ns.StartsWith("System.Net", StringComparison.Ordinal)
            || e is ArgumentException or UnauthorizedAccessException or NotSupportedException or InvalidOperationException;
        return expected ? $"error: {e.Message}" : $"error ({e.GetType().Name}): {e.Message}";
    }
}
