using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Key/value cache for KV-cached decoding: per layer, the keys (after RoPE) and values of every position seen so far,
/// [batch, kv_heads, positions, head_dim], plus the 2-D attention mask of those positions when one was given.
/// Pass the same instance in <see cref="GemmaInput.Cache"/> on every step; each forward appends its new positions in
/// place. The cache owns its tensors (dispose it). Not thread-safe.
/// </summary>
/// <remarks>
/// Storage grows by doubling, so one decode step copies nothing but the new position. A forward pass writes its
/// positions past <see cref="Length"/> and only commits them (advances <see cref="Length"/>) when it completes, so a
/// forward that throws (e.g. from a hook) leaves the cache as it was.
/// </remarks>
public sealed class GemmaKvCache : IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;
    private Tensor? _mask;
    private bool _disposed;

    /// <summary>Creates an empty cache.</summary>
    /// <param name="numLayers">Number of decoder layers of the model it serves.</param>
    /// <param name="initialCapacity">Positions to allocate on first use (more are allocated as needed).</param>
    public GemmaKvCache(int numLayers, long initialCapacity = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numLayers);
        ArgumentOutOfRangeException.ThrowIfNegative(initialCapacity);
        NumLayers = numLayers;
        InitialCapacity = initialCapacity;
        _keys = new Tensor?[numLayers];
        _values = new Tensor?[numLayers];
    }

    /// <summary>Number of layers.</summary>
    public int NumLayers { get; }

    /// <summary>Positions allocated on first use.</summary>
    public long InitialCapacity { get; }

    /// <summary>Number of cached positions (committed by completed forward passes).</summary>
    public long Length { get; private set; }

    /// <summary>Batch size of the cached sequences, or 0 while empty.</summary>
    public long BatchSize => Length == 0 ? 0 : _keys[0]!.shape[0];

    /// <summary>
    /// The attention mask of the cached positions [batch, <see cref="Length"/>] (int64, 1 = attend), or
    /// <see langword="null"/> when no pass gave one (all positions attended). A later pass without a mask extends it
    /// with ones.
    /// </summary>
    public Tensor? AttentionMask => _mask;

    /// <summary>Cached keys of one layer, after RoPE: a view [batch, kv_heads, <see cref="Length"/>, head_dim].</summary>
    /// <exception cref="InvalidOperationException">The cache is empty.</exception>
    public Tensor Keys(int layer) => View(_keys, layer);

    /// <summary>Cached values of one layer: a view [batch, kv_heads, <see cref="Length"/>, head_dim].</summary>
    /// <exception cref="InvalidOperationException">The cache is empty.</exception>
    public Tensor Values(int layer) => View(_values, layer);

    /// <summary>Drops every position from <paramref name="length"/> on (e.g. to re-run from a shared prefix).</summary>
    public void Truncate(long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Length = length;
        if (_mask is not null)
        {
            var kept = _mask.narrow(1, 0, length).clone().DetachFromDisposeScope();
            _mask.Dispose();
            _mask = kept;
        }

        if (length == 0)
        {
            Reset();
        }
    }

    /// <summary>Empties the cache and frees its storage.</summary>
    public void Reset()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        FreeStorage();
        Length = 0;
    }

    /// <summary>Frees the cached tensors.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        FreeStorage();
    }

    /// <summary>
    /// Writes one layer's new keys/values [batch, kv_heads, new, head_dim] after the committed positions and returns
    /// views of all positions [batch, kv_heads, <see cref="Length"/> + new, head_dim] (owned by the caller's scope).
    /// </summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long needed = Length + keys.shape[2];
        Ensure(_keys, layer, keys, needed);
        Ensure(_values, layer, values, needed);
        var k = _keys[layer]!;
        var v = _values[layer]!;
        using (var slot = k.narrow(2, Length, keys.shape[2]))
        {
            slot.copy_(keys);
        }

        using (var slot = v.narrow(2, Length, values.shape[2]))
        {
            slot.copy_(values);
        }

        return (k.narrow(2, 0, needed), v.narrow(2, 0, needed));
    }

    /// <summary>Checks that a forward pass of this batch size and model can use the cache.</summary>
    internal void CheckCompatible(long batch, int numLayers)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (numLayers != NumLayers)
        {
            throw new ArgumentException($"The KV cache was made for {NumLayers} layers but the model has {numLayers}.", "input");
        }

        if (Length > 0 && BatchSize != batch)
        {
            throw new ArgumentException($"The KV cache holds a batch of {BatchSize} sequences but the input has {batch}.", "input");
        }
    }

    /// <summary>Commits the positions the last forward pass wrote; stores the full 2-D mask when there is one.</summary>
    internal void Commit(long newPositions, Tensor? fullMask)
    {
        Length += newPositions;
        var old = _mask;
        _mask = fullMask?.to(ScalarType.Int64).clone().DetachFromDisposeScope();
        old?.Dispose();
    }

    private Tensor View(Tensor?[] store, int layer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, NumLayers);
        var t = store[layer];
        if (t is null || Length == 0)
        {
            throw new InvalidOperationException("The KV cache is empty.");
        }

        return t.narrow(2, 0, Length);
    }

    private void Ensure(Tensor?[] store, int layer, Tensor like, long needed)
    {
        var current = store[layer];
        if (current is not null)
        {
            bool matches = current.shape[0] == like.shape[0] && current.shape[1] == like.shape[1] && current.shape[3] == like.shape[3]
                && current.dtype == like.dtype && current.device_type == like.device_type && current.device_index == like.device_index;
            if (!matches && Length == 0)
            {
                // Storage left by an aborted pass or a reset-free reuse: nothing committed, start over.
                current.Dispose();
                store[layer] = null;
                current = null;
            }
            else if (!matches)
            {
                throw new ArgumentException(
                    $"Layer {layer}: new keys/values [{string.Join(", ", like.shape)}] {like.dtype} on {like.device} do not match the cache "
                    + $"[{string.Join(", ", current.shape)}] {current.dtype} on {current.device}.");
            }

            if (current is not null && current.shape[2] >= needed)
            {
                return;
            }
        }

        long capacity = Math.Max(needed, Math.Max(InitialCapacity, 2 * (current?.shape[2] ?? 0)));
        var grown = empty([like.shape[0], like.shape[1], capacity, like.shape[3]], like.dtype, like.device).DetachFromDisposeScope();
        if (current is not null && Length > 0)
        {
            using var dst = grown.narrow(2, 0, Length);
            using var src = current.narrow(2, 0, Length);
            dst.copy_(src);
        }

        current?.Dispose();
        store[layer] = grown;
    }

    private void FreeStorage()
    {
        for (int i = 0; i < NumLayers; i++)
        {
            _keys[i]?.Dispose();
            _values[i]?.Dispose();
            _keys[i] = null;
            _values[i] = null;
        }

        _mask?.Dispose();
        _mask = null;
    }
}
