using System.Globalization;
using LlavaInterp.Hub;
using Spectre.Console;

namespace LlavaInterp.Samples;

/// <summary>
/// Progress of long work (weight loading, downloads, image folders, SAE training) on standard error. On a terminal it
/// is Spectre.Console's live progress display, one bar per running phase; redirected (a log, a pipe, a test) it is at
/// most four plain lines per phase (<c>loading weights: 25% (40/160)</c> at 25, 50, 75 and 100%; one
/// <c>label ...</c> line when the total is unknown), so that logs stay short. Nothing goes to stdout.
/// </summary>
public sealed class CliProgress
{
    private readonly TextWriter _stderr;
    private readonly IAnsiConsole? _console;
    private readonly object _gate = new();
    private ProgressContext? _context;
    private TaskCompletionSource? _end;
    private Task? _display;
    private int _running;

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

    /// <summary>Starts a phase; report into it and dispose it when the work ends (its live bar is then removed).</summary>
    public ProgressPhase Begin(string label)
    {
        ArgumentNullException.ThrowIfNull(label);
        return new ProgressPhase(this, label, _stderr);
    }

    /// <summary>
    /// Hub downloads, one phase per file: started by the file's first report, ended when it is complete or, for a
    /// file of unknown size, when the returned object is disposed.
    /// </summary>
    public DownloadProgress Downloads() => new(this);

    // Spectre allows one live display at a time, and it runs inside a callback. Phases nest (downloads happen while
    // "loading weights" runs), so they share one display, kept open on its own thread while any phase is running.
    internal ProgressTask? StartLive(string label)
    {
        if (_console is null)
        {
            return null;
        }

        lock (_gate)
        {
            if (_context is null)
            {
                var started = new TaskCompletionSource<ProgressContext>(TaskCreationOptions.RunContinuationsAsynchronously);
                var end = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                _end = end;
                _display = Task.Run(() => _console.Progress()
                    .AutoClear(true)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                    .Start(ctx =>
                    {
                        started.SetResult(ctx);
                        end.Task.Wait();
                    }));
                _context = started.Task.GetAwaiter().GetResult();
            }

            _running++;
            var task = _context.AddTask(Markup.Escape(label), maxValue: 1);
            task.IsIndeterminate = true;
            return task;
        }
    }

    internal void StopLive(ProgressTask task)
    {
        lock (_gate)
        {
            task.StopTask();
            if (--_running == 0)
            {
                // Waited for under the lock, so that a phase begun meanwhile starts a new display only once this one
                // has ended; the display thread takes none of this class's locks, so this cannot deadlock.
                _end!.TrySetResult();
                _display!.GetAwaiter().GetResult();
                _context = null;
                _end = null;
                _display = null;
            }
        }
    }
}

/// <summary>Download progress of hub files into a <see cref="CliProgress"/>, one phase per file.</summary>
public sealed class DownloadProgress : IProgress<HubDownloadProgress>, IDisposable
{
    private readonly CliProgress _owner;
    private readonly Dictionary<string, ProgressPhase> _phases = new(StringComparer.Ordinal);

    internal DownloadProgress(CliProgress owner) => _owner = owner;

    /// <inheritdoc/>
    public void Report(HubDownloadProgress value)
    {
        ArgumentNullException.ThrowIfNull(value);
        lock (_phases)
        {
            if (!_phases.TryGetValue(value.File, out var phase))
            {
                string size = value.TotalBytes is long t ? string.Create(CultureInfo.InvariantCulture, $" ({t / 1e6:F1} MB)") : string.Empty;
                phase = _owner.Begin($"downloading {value.File}{size}");
                _phases[value.File] = phase;
            }

            long total = value.TotalBytes ?? 0;
            phase.Report(value.BytesDone, total);
            if (total > 0 && value.BytesDone >= total)
            {
                phase.Dispose();
            }
        }
    }

    /// <summary>Ends the phases still open (files of unknown size, or a download that failed).</summary>
    public void Dispose()
    {
        lock (_phases)
        {
            foreach (var phase in _phases.Values)
            {
                phase.Dispose();
            }
        }
    }
}

/// <summary>One phase of <see cref="CliProgress"/>: thread-safe, reports synchronously so that plain lines stay in order.</summary>
public sealed class ProgressPhase : IProgress<(long Done, long Total)>, IDisposable
{
    private static readonly int[] Quarters = [25, 50, 75, 100];

    private readonly CliProgress _owner;
    private readonly string _label;
    private readonly TextWriter _stderr;
    private readonly object _lock = new();
    private readonly ProgressTask? _task;
    private int _printed;
    private bool _announced;
    private bool _disposed;

    internal ProgressPhase(CliProgress owner, string label, TextWriter stderr)
    {
        _owner = owner;
        _label = label;
        _stderr = stderr;
        _task = owner.StartLive(label);
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
                // No percentage to give: one line says the work is under way.
                if (!_announced && _printed == 0)
                {
                    _announced = true;
                    _stderr.WriteLine($"{_label} ...");
                }

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

    /// <summary>Ends the phase: its live bar is removed; plain output is left as it is.</summary>
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

        if (_task is not null)
        {
            _owner.StopLive(_task);
        }
    }

    // Synchronous, unlike Progress<T>, which posts to the thread pool and would reorder the plain lines.
    private sealed class Adapter<T>(ProgressPhase phase, Func<T, (long Done, long Total)> describe) : IProgress<T>
    {
        public void Report(T value) => phase.Report(describe(value));
    }
}
