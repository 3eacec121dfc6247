using System.Runtime.InteropServices;

namespace LlavaInterp.Samples;

/// <summary>
/// Ctrl+C (SIGINT) and SIGTERM as a cancellation of the run: the first signal cancels <see cref="Token"/> and the program
/// winds down (output files are written to a temporary name and moved into place, so none is left half-written), then
/// exits with <see cref="ErrorReporting.Cancelled"/> and one line on stderr. A second signal, or one that comes after
/// <see cref="Finish"/>, takes the default action (the process ends at once, as killed by that signal).
/// </summary>
/// <remarks>
/// <c>Console.CancelKeyPress</c> with a <c>using</c> token source raced the program's end: a Ctrl+C in the last moments
/// cancelled an already disposed source, printed an <see cref="ObjectDisposedException"/> stack trace and exited 0.
/// Here the source is never disposed (it has no timer or linked token to release) and the state is locked.
/// </remarks>
public sealed class CancelSignals : IDisposable
{
    private readonly CancellationTokenSource _cts = new();
    private readonly List<PosixSignalRegistration> _registrations = [];
    private readonly object _lock = new();
    private int _signals;
    private bool _finished;

    private CancelSignals()
    {
    }

    /// <summary>Cancelled by the first signal.</summary>
    public CancellationToken Token => _cts.Token;

    /// <summary>Whether a signal cancelled the run.</summary>
    public bool Cancelled
    {
        get
        {
            lock (_lock)
            {
                return _signals > 0;
            }
        }
    }

    /// <summary>Handles SIGINT and SIGTERM from now on.</summary>
    public static CancelSignals Register()
    {
        var signals = new CancelSignals();
        foreach (var signal in new[] { PosixSignal.SIGINT, PosixSignal.SIGTERM })
        {
            signals._registrations.Add(PosixSignalRegistration.Create(signal, context => signals.OnSignal(context)));
        }

        return signals;
    }

    /// <summary>Signals that nobody delivers (for tests): <see cref="OnSignal"/> stands in for them.</summary>
    public static CancelSignals Unregistered() => new();

    /// <summary>
    /// What a delivered signal does. Returns whether the signal was taken as a cancellation (the default action, ending
    /// the process, is then suppressed).
    /// </summary>
    /// <param name="context">The signal, or null when called without one (tests).</param>
    public bool OnSignal(PosixSignalContext? context)
    {
        lock (_lock)
        {
            if (_finished || ++_signals > 1)
            {
                return false;
            }

            if (context is not null)
            {
                context.Cancel = true;
            }
        }

        // Outside the lock: cancellation callbacks run here and may take their time.
        _cts.Cancel();
        return true;
    }

    /// <summary>
    /// The program's exit code: <paramref name="code"/>, or <see cref="ErrorReporting.Cancelled"/> (with a line on
    /// <paramref name="stderr"/> unless the run already reported it) when a signal came during the run, even one the run
    /// finished without noticing. Signals after this take their default action.
    /// </summary>
    /// <param name="code">The run's exit code.</param>
    /// <param name="stderr">Where the cancellation line goes.</param>
    /// <param name="program">The program's name, the line's prefix.</param>
    public int Finish(int code, TextWriter stderr, string program)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        bool cancelled;
        lock (_lock)
        {
            _finished = true;
            cancelled = _signals > 0;
        }

        if (!cancelled || code == ErrorReporting.Cancelled)
        {
            return code;
        }

        stderr.WriteLine($"{program}: cancelled.");
        return ErrorReporting.Cancelled;
    }

    /// <summary>Stops handling the signals (they take their default action again).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _finished = true;
        }

        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        _registrations.Clear();
    }
}
