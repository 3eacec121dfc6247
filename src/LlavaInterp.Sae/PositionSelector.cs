namespace LlavaInterp.Sae;

/// <summary>
/// Which token positions an operation applies to, in absolute positions of the sequence (position 0 is the first
/// prompt token). A hook sees its activation one chunk at a time: the whole prompt (offset 0), then one token per
/// KV-cached decoding step (offset = tokens already cached). <see cref="Resolve"/> maps the selection onto a chunk, so
/// the same selector works for a full forward and for cached generation.
/// </summary>
public sealed class PositionSelector
{
    private enum Kind
    {
        All,
        Last,
        Set,
        Range,
    }

    private readonly Kind _kind;
    private readonly long[] _positions;
    private readonly long _start;
    private readonly long _end;

    private PositionSelector(Kind kind, long[] positions, long start, long end, string description)
    {
        _kind = kind;
        _positions = positions;
        _start = start;
        _end = end;
        Description = description;
    }

    /// <summary>Every position.</summary>
    public static PositionSelector All { get; } = new(Kind.All, [], 0, long.MaxValue, "all positions");

    /// <summary>The last position of the tensor (of each chunk during cached generation: every new token).</summary>
    public static PositionSelector Last { get; } = new(Kind.Last, [], 0, 0, "the last position");

    /// <summary>How the selection was made, for messages.</summary>
    public string Description { get; }

    /// <summary>Whether every position is selected.</summary>
    public bool IsAll => _kind == Kind.All;

    /// <summary>
    /// These absolute positions (e.g. the <c>&lt;image&gt;</c> token positions). A negative value counts from the end of
    /// the tensor or chunk (-1 is its last position).
    /// </summary>
    /// <exception cref="ArgumentException">No positions were given.</exception>
    public static PositionSelector At(params long[] positions) => At((IEnumerable<long>)positions);

    /// <inheritdoc cref="At(long[])"/>
    public static PositionSelector At(IEnumerable<long> positions)
    {
        ArgumentNullException.ThrowIfNull(positions);
        var set = positions.Distinct().OrderBy(p => p).ToArray();
        if (set.Length == 0)
        {
            throw new ArgumentException("At least one position is needed.", nameof(positions));
        }

        string shown = set.Length <= 8 ? string.Join(", ", set) : $"{string.Join(", ", set.Take(8))}, ... ({set.Length} positions)";
        return new PositionSelector(Kind.Set, set, 0, 0, $"positions [{shown}]");
    }

    /// <summary>The absolute positions where <paramref name="mask"/> is true (positions past its end are not selected).</summary>
    /// <exception cref="ArgumentException">The mask selects nothing.</exception>
    public static PositionSelector FromMask(IReadOnlyList<bool> mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        return At(Enumerable.Range(0, mask.Count).Where(i => mask[i]).Select(i => (long)i));
    }

    /// <summary>
    /// Absolute positions ≥ <paramref name="start"/>: with <c>start</c> = prompt length, only generated tokens.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="start"/> is negative.</exception>
    public static PositionSelector From(long start)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        return new PositionSelector(Kind.Range, [], start, long.MaxValue, $"positions >= {start}");
    }

    /// <summary>Absolute positions in [<paramref name="start"/>, <paramref name="end"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative start or end before start.</exception>
    public static PositionSelector Range(long start, long end)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfLessThan(end, start);
        return new PositionSelector(Kind.Range, [], start, end, $"positions [{start}, {end})");
    }

    /// <summary>
    /// The selected positions of a chunk of <paramref name="length"/> positions that starts at absolute position
    /// <paramref name="offset"/>, as ascending chunk-relative indices.
    /// </summary>
    public long[] Resolve(long offset, long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        switch (_kind)
        {
            case Kind.All:
                return Iota(0, length);
            case Kind.Last:
                return length == 0 ? [] : [length - 1];
            case Kind.Range:
            {
                long from = Math.Max(_start, offset) - offset;
                long to = Math.Min(_end == long.MaxValue ? long.MaxValue : _end, offset + length) - offset;
                return to > from ? Iota(from, to) : [];
            }

            default:
                return _positions
                    .Select(p => p < 0 ? length + p : p - offset)
                    .Where(i => i >= 0 && i < length)
                    .Distinct()
                    .OrderBy(i => i)
                    .ToArray();
        }
    }

    /// <inheritdoc/>
    public override string ToString() => Description;

    private static long[] Iota(long from, long to)
    {
        var result = new long[to - from];
        for (long i = 0; i < result.LongLength; i++)
        {
            result[i] = from + i;
        }

        return result;
    }
}
