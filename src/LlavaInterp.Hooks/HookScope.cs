using System.Collections.Frozen;
using System.Collections.Immutable;

namespace LlavaInterp.Hooks;

/// <summary>
/// Hooks that belong to one async flow (a <c>using</c> scope, <c>RunWithHooks</c>, <c>RunWithCache</c>).
/// The flow holds a chain of frames in an <see cref="AsyncLocal{T}"/>, innermost first, so a run on another thread never
/// sees them. Each frame holds only its own hooks and a disposed flag that every flow sharing the frame reads: disposing
/// a scope removes exactly its hooks, whatever the order scopes are disposed in, and in child flows that inherited it too.
/// </summary>
internal static class HookScope
{
    private static readonly AsyncLocal<Frame?> Current = new();
    private static int _openScopes;

    /// <summary>Number of scopes open in the whole process; zero lets hook points skip the lookup.</summary>
    public static bool AnyActive => Volatile.Read(ref _openScopes) != 0;

    /// <summary>The hooks of open scopes of the calling flow at that point, outermost scope's first.</summary>
    public static ImmutableArray<HookFunction> HooksFor(HookPoint point)
    {
        var only = ImmutableArray<HookFunction>.Empty;
        List<ImmutableArray<HookFunction>>? several = null;
        for (var frame = Current.Value; frame is not null; frame = frame.Parent)
        {
            if (frame.IsDisposed || !frame.Hooks.TryGetValue(point, out var hooks))
            {
                continue;
            }

            if (only.IsEmpty && several is null)
            {
                only = hooks;
                continue;
            }

            several ??= [only];
            several.Add(hooks);
        }

        if (several is null)
        {
            return only;
        }

        // Collected innermost first; the outer scope's hooks run first.
        several.Reverse();
        return several.SelectMany(h => h).ToImmutableArray();
    }

    public static IDisposable Push(IEnumerable<(HookPoint Point, HookFunction Hook)> hooks)
    {
        var own = new Dictionary<HookPoint, ImmutableArray<HookFunction>>();
        foreach (var (point, hook) in hooks)
        {
            own[point] = own.TryGetValue(point, out var existing) ? existing.Add(hook) : [hook];
        }

        if (own.Count == 0)
        {
            // Nothing to fire: keep the process-wide fast path untouched.
            return Empty.Instance;
        }

        var frame = new Frame(own.ToFrozenDictionary(), LiveHead(Current.Value));
        Current.Value = frame;
        Interlocked.Increment(ref _openScopes);
        return frame;
    }

    private static Frame? LiveHead(Frame? frame)
    {
        while (frame is { IsDisposed: true })
        {
            frame = frame.Parent;
        }

        return frame;
    }

    private sealed class Frame(FrozenDictionary<HookPoint, ImmutableArray<HookFunction>> hooks, Frame? parent) : IDisposable
    {
        private int _disposed;

        public FrozenDictionary<HookPoint, ImmutableArray<HookFunction>> Hooks { get; } = hooks;

        public Frame? Parent { get; } = parent;

        public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            Interlocked.Decrement(ref _openScopes);

            // The flag already hides the hooks everywhere; trimming disposed frames off this flow's head only keeps
            // the chain short (other flows trim theirs when they push or dispose).
            var head = Current.Value;
            var live = LiveHead(head);
            if (!ReferenceEquals(head, live))
            {
                Current.Value = live;
            }
        }
    }

    private sealed class Empty : IDisposable
    {
        public static readonly Empty Instance = new();

        public void Dispose()
        {
        }
    }
}
