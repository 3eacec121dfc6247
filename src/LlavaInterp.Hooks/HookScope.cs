using System.Collections.Immutable;

namespace LlavaInterp.Hooks;

/// <summary>
/// Hooks that belong to one async flow (a <c>using</c> scope, <c>RunWithHooks</c>, <c>RunWithCache</c>).
/// They live in an <see cref="AsyncLocal{T}"/>, so a run on another thread never sees them.
/// </summary>
internal static class HookScope
{
    private static readonly AsyncLocal<ImmutableDictionary<HookPoint, ImmutableArray<HookFunction>>?> Current = new();
    private static int _activeScopes;

    /// <summary>Number of scopes open in the whole process; zero lets hook points skip the lookup.</summary>
    public static bool AnyActive => Volatile.Read(ref _activeScopes) != 0;

    public static ImmutableArray<HookFunction> HooksFor(HookPoint point)
    {
        var table = Current.Value;
        return table is not null && table.TryGetValue(point, out var hooks) ? hooks : ImmutableArray<HookFunction>.Empty;
    }

    public static IDisposable Push(IEnumerable<(HookPoint Point, HookFunction Hook)> hooks)
    {
        var previous = Current.Value;
        var builder = (previous ?? ImmutableDictionary<HookPoint, ImmutableArray<HookFunction>>.Empty).ToBuilder();
        foreach (var (point, hook) in hooks)
        {
            builder[point] = builder.TryGetValue(point, out var existing) ? existing.Add(hook) : [hook];
        }

        Current.Value = builder.ToImmutable();
        Interlocked.Increment(ref _activeScopes);
        return new Frame(previous);
    }

    private sealed class Frame(ImmutableDictionary<HookPoint, ImmutableArray<HookFunction>>? previous) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                Current.Value = previous;
                Interlocked.Decrement(ref _activeScopes);
            }
        }
    }
}
