using System.Globalization;
using LlavaInterp.Hub;
using Spectre.Console;

namespace LlavaInterp.Samples;

/// <summary>
/// Progress of long work (weight loading, downloads, image folders, SAE training) on standard error. On a terminal it
/// is Spectre.Console's live progress bar; redirected (a log, a pipe, a test) it is at most five plain lines per phase
/// (<c>loading weights: 25% (40/160)</c> at 25, 50, 75 and 100%), so that logs stay short. Nothing goes to stdout.
/// </summary>
public sealed class CliProgress
{
    private readonly TextWriter _stderr;
    private readonly IAnsiConsole? _console;

    /// <summary>Progress on <paramref name="stderr"/>: live when <paramref name="live"/>, plain lines otherwise.</summary>
    public CliProgress(TextWriter stderr, bool live)
    {
        ArgumentNullException.ThrowIfNull(stderr);
        _stderr = stderr;
        _console = live
            ? AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(stderr), Interactive = InteractionSupport.Yes, Ansi = AnsiSupport.Detect })
            : null;
    }

    /// <summary>Whether the live display is used.</summary>
    public bool IsLive => _console is not null;

    /// <summary>
    /// Progress on <paramref name="stderr"/>, live only when it is the process's own stderr and that is a terminal:
    /// a captured writer or a redirected stream gets the plain lines.
    /// </summary>
    public static CliProgress For(TextWriter stderr) =>
        new(stderr, live: ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected);

    /// <summary>Starts a phase; report into it and dispose it when the work ends (a live bar is then removed).</summary>
    public ProgressPhase Begin(string label)
    {
        ArgumentNullException.ThrowIfNull(label);
        return new ProgressPhase(label, _stderr, _console);
    }

    /// <summary>Hub downloads, one phase per file (started by the file's first report, ended when it is complete).</summary>
    public IProgress<HubDownloadProgress> Downloads() => new DownloadPhases(this);

    private sealed class DownloadPhases(CliProgress owner) : IProgress<HubDownloadProgress>
    {
        private readonly Dictionary<string, ProgressPhase> _phases = new(StringComparer.Ordinal);

        public void Report(HubDownloadProgress value)
        {
            lock (_phases)
            {
                if (!_phases.TryGetValue(value.File, out var phase))
                {
                    string size = value.TotalBytes is long t ? string.Create(CultureInfo.InvariantCulture, $" ({t / 1e6:F1} MB)") : string.Empty;
                    phase = owner.Begin($"downloading {value.File}{size}");
                    _phases[value.File] = phase;
                }

                // An unknown size has no percentage: the phase shows only its start and its end.
                long total = value.TotalBytes ?? 0;
                phase.Report(value.BytesDone, total);
                if (total > 0 && value.BytesDone >= total)
                {
                    phase.Dispose();
                }
            }
        }
    }
}

/// <summary>One phase of <see cref="CliProgress"/>: thread-safe, reports synchronously so that plain lines stay in order.</summary>
public sealed class ProgressPhase : IProgress<(long Done, long Total)>, IDisposable
{
    private static readonly int[] Quarters = [25, 50, 75, 100];

    private readonly string _label;
    private readonly TextWriter _stderr;
    private readonly object _lock = new();
    private readonly TaskCompletionSource? _finished;
    private readonly Task? _display;
    private readonly ProgressTask? _task;
    private int _printed;
    private bool _disposed;

    internal ProgressPhase(string label, TextWriter stderr, IAnsiConsole? console)
    {
        _label = label;
        _stderr = stderr;
        if (console is null)
        {
            return;
        }

        // Spectre's live display runs inside a callback; it is kept open on its own thread until the phase is disposed,
        // so that the phase can be reported to from anywhere (a library's IProgress) instead of only inside a lambda.
        var started = new TaskCompletionSource<ProgressTask>(TaskCreationOptions.RunContinuationsAsynchronously);
        _finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finished = _finished;
        _display = Task.Run(() => console.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(label), maxValue: 1);
                task.IsIndeterminate = true;
                started.SetResult(task);
                finished.Task.Wait();
                task.StopTask();
            }));
        _task = started.Task.GetAwaiter().GetResult();
    }

    /// <summary>Reports <paramref name="value"/>.Done of .Total (a total of 0 or less is unknown).</summary>
    public void Report((long Done, long Total) value) => Report(value.Done, value.Total);

    /// <summary>
    /// Reports <paramref name="done"/> of <paramref name="total"/> (a total of 0 or less is unknown), with an optional
    /// <paramref name="detail"/> (e.g. the current loss) shown next to the bar and at the end of a plain line.
    /// </summary>
    public void Report(long done, long total, string? detail = null)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            if (_task is not null)
            {
                _task.IsIndeterminate = total <= 0;
                if (detail is not null)
                {
                    _task.Description = Markup.Escape($"{_label}  {detail}");
                }

                if (total > 0)
                {
                    _task.MaxValue = total;
                    _task.Value = Math.Clamp(done, 0, total);
                }

                return;
            }

            if (total <= 0)
            {
                return;
            }

            // Only the highest quarter crossed is printed: a jump from 10% to 100% is one line, not four.
            int percent = (int)Math.Clamp(done * 100 / total, 0, 100);
            int reached = Quarters.Count(q => percent >= q);
            if (reached > _printed)
            {
                _printed = reached;
                _stderr.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{_label}: {Quarters[reached - 1]}% ({done}/{total}){(detail is null ? string.Empty : "  " + detail)}"));
            }
        }
    }

    /// <summary>An <see cref="IProgress{T}"/> of a library's reports into this phase.</summary>
    public IProgress<T> As<T>(Func<T, (long Done, long Total)> describe)
    {
        ArgumentNullException.ThrowIfNull(describe);
        return new Adapter<T>(this, describe);
    }

    /// <summary>Ends the phase: a live bar is removed; plain output is left as it is.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        if (_finished is not null)
        {
            _finished.TrySetResult();
            _display!.GetAwaiter().GetResult();
        }
    }

    // Synchronous, unlike Progress<T>, which posts to the thread pool and would reorder the plain lines.
    private sealed class Adapter<T>(ProgressPhase phase, Func<T, (long Done, long Total)> describe) : IProgress<T>
    {
        public void Report(T value) => phase.Report(describe(value));
    }
}
