using System.Globalization;
using System.Runtime.CompilerServices;
using LlavaInterp.TensorFiles;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Sae.Training;

/// <summary>
/// Streams activation rows [n, d_in] into shuffled training batches through a bounded mixing buffer (as SAELens's
/// activations store: fill the buffer, shuffle it, hand out half, refill), and writes/reads activations as
/// safetensors shards so training can run without the model. Memory stays bounded by the buffer plus one incoming chunk.
/// </summary>
public static class ActivationStore
{
    /// <summary>The tensor name inside each shard.</summary>
    public const string ShardTensorName = "activations";

    /// <summary>The shard file name pattern (<c>shard_00000.safetensors</c>, ...).</summary>
    public const string ShardPattern = "shard_*.safetensors";

    /// <summary>
    /// Re-batches and shuffles <paramref name="chunks"/> (each [..., d_in], e.g. one prompt's activations) into batches
    /// of <paramref name="batchSize"/> rows. The chunks are disposed once copied; the caller disposes each yielded batch
    /// (<see cref="SaeTrainer.Train"/> does). The last batch may be smaller.
    /// </summary>
    /// <param name="chunks">Activation chunks.</param>
    /// <param name="batchSize">Rows per yielded batch.</param>
    /// <param name="bufferRows">Mixing buffer capacity in rows (at least 2 batches).</param>
    /// <param name="seed">Seed of the shuffle.</param>
    /// <param name="cancellationToken">Stops between chunks.</param>
    /// <exception cref="SaeException">Chunks disagree on d_in.</exception>
    public static IEnumerable<Tensor> Shuffle(IEnumerable<Tensor> chunks, int batchSize, int bufferRows, long seed = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(chunks);
        var buffer = new MixingBuffer(batchSize, bufferRows, seed);
        try
        {
            foreach (var chunk in chunks)
            {
                cancellationToken.ThrowIfCancellationRequested();
                foreach (var b in buffer.Add(chunk))
                {
                    yield return b;
                }
            }

            foreach (var b in buffer.Drain())
            {
                yield return b;
            }
        }
        finally
        {
            buffer.Dispose();
        }
    }

    /// <summary>As <see cref="Shuffle"/>, over an asynchronous stream of chunks (e.g. a model running prompts).</summary>
    /// <param name="chunks">Activation chunks.</param>
    /// <param name="batchSize">Rows per yielded batch.</param>
    /// <param name="bufferRows">Mixing buffer capacity in rows.</param>
    /// <param name="seed">Seed of the shuffle.</param>
    /// <param name="cancellationToken">Stops between chunks.</param>
    public static async IAsyncEnumerable<Tensor> ShuffleAsync(IAsyncEnumerable<Tensor> chunks, int batchSize, int bufferRows, long seed = 0, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(chunks);
        using var buffer = new MixingBuffer(batchSize, bufferRows, seed);
        await foreach (var chunk in chunks.WithCancellation(cancellationToken).ConfigureAwait(false))
        {
            foreach (var b in buffer.Add(chunk))
            {
                yield return b;
            }
        }

        foreach (var b in buffer.Drain())
        {
            yield return b;
        }
    }

    /// <summary>
    /// Writes activation chunks to <paramref name="folder"/> as shards of at most <paramref name="rowsPerShard"/> rows
    /// (<c>shard_00000.safetensors</c>, tensor <see cref="ShardTensorName"/> [rows, d_in]; metadata hook name and row
    /// count). Each shard file appears whole or not at all. Chunks are disposed once copied.
    /// </summary>
    /// <param name="chunks">Activation chunks [..., d_in].</param>
    /// <param name="folder">The output folder (created if missing).</param>
    /// <param name="rowsPerShard">Rows per shard.</param>
    /// <param name="hookName">Recorded in each shard's metadata.</param>
    /// <param name="dtype">Stored dtype; null keeps the chunks' dtype.</param>
    /// <param name="cancellationToken">Stops between chunks; written shards stay.</param>
    /// <returns>The number of rows written.</returns>
    public static long WriteShards(IEnumerable<Tensor> chunks, string folder, int rowsPerShard, string? hookName = null, ScalarType? dtype = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(chunks);
        ArgumentNullException.ThrowIfNull(folder);
        ArgumentOutOfRangeException.ThrowIfLessThan(rowsPerShard, 1);
        Directory.CreateDirectory(folder);
        var pending = new List<Tensor>();
        long pendingRows = 0;
        long total = 0;
        int shard = 0;
        void Flush(bool all)
        {
            while (pendingRows >= rowsPerShard || (all && pendingRows > 0))
            {
                using var scope = torch.NewDisposeScope();
                var joined = torch.cat(pending, 0);
                long take = Math.Min(rowsPerShard, pendingRows);
                var rows = joined[..(int)take].contiguous();
                var meta = new Dictionary<string, string>(StringComparer.Ordinal)
                {
                    ["hook_name"] = hookName ?? string.Empty,
                    ["rows"] = take.ToString(CultureInfo.InvariantCulture),
                };
                SafetensorsWriter.Save(Path.Combine(folder, $"shard_{shard:D5}.safetensors"), [new(ShardTensorName, rows)], meta, cancellationToken: cancellationToken);
                shard++;
                total += take;
                foreach (var t in pending)
                {
                    t.Dispose();
                }

                pending.Clear();
                pendingRows -= take;
                if (pendingRows > 0)
                {
                    pending.Add(joined[(int)take..].clone().DetachFromDisposeScope());
                }
            }
        }

        try
        {
            long dIn = -1;
            foreach (var chunk in chunks)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using (chunk)
                {
                    dIn = dIn < 0 ? chunk.shape[^1] : dIn;
                    if (chunk.shape[^1] != dIn)
                    {
                        throw new SaeException(hookName, $"activation chunk has width {chunk.shape[^1]}; earlier chunks have {dIn}.");
                    }

                    using var flat = chunk.detach().reshape(-1, dIn);
                    var copy = (dtype is { } d ? flat.to(d) : flat).cpu().clone().DetachFromDisposeScope();
                    pending.Add(copy);
                    pendingRows += copy.shape[0];
                }

                Flush(all: false);
            }

            Flush(all: true);
            return total;
        }
        finally
        {
            foreach (var t in pending)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>Reads the shards of <paramref name="folder"/> in order, one tensor [rows, d_in] per shard (the caller disposes each).</summary>
    /// <param name="folder">A folder written by <see cref="WriteShards"/>.</param>
    /// <param name="dtype">The dtype to load as; null keeps the stored one.</param>
    /// <param name="device">Where to load; null is the CPU.</param>
    /// <exception cref="TensorFileException">The folder has no shards, or a shard is malformed or lacks <see cref="ShardTensorName"/>.</exception>
    public static IEnumerable<Tensor> ReadShards(string folder, ScalarType? dtype = null, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var files = Directory.Exists(folder) ? Directory.GetFiles(folder, ShardPattern).Order(StringComparer.Ordinal).ToArray() : [];
        if (files.Length == 0)
        {
            throw new TensorFileException(folder, null, $"holds no activation shards ({ShardPattern}).");
        }

        return Read(files, dtype, device);
    }

    private static IEnumerable<Tensor> Read(string[] files, ScalarType? dtype, Device? device)
    {
        foreach (var path in files)
        {
            Tensor t;
            using (var file = SafetensorsFile.Open(path))
            {
                if (!file.Contains(ShardTensorName))
                {
                    throw new TensorFileException(path, ShardTensorName, "is missing: not an activation shard.");
                }

                t = file.Load(ShardTensorName, dtype, device);
            }

            yield return t;
        }
    }

    /// <summary>The bounded mixing buffer behind <see cref="Shuffle"/>.</summary>
    private sealed class MixingBuffer : IDisposable
    {
        private readonly int _batchSize;
        private readonly int _capacity;
        private readonly Generator _generator;
        private Tensor? _rows;
        private long _count;

        public MixingBuffer(int batchSize, int capacity, long seed)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
            if (capacity < 2 * batchSize)
            {
                throw new ArgumentOutOfRangeException(nameof(capacity), capacity, $"The buffer must hold at least two batches ({2 * batchSize} rows).");
            }

            _batchSize = batchSize;
            _capacity = capacity;
            _generator = new Generator(unchecked((ulong)seed), torch.CPU);
        }

        public IEnumerable<Tensor> Add(Tensor chunk)
        {
            var output = new List<Tensor>();
            using (chunk)
            using (var scope = torch.NewDisposeScope())
            {
                var flat = chunk.detach().reshape(-1, chunk.shape[^1]);
                if (_rows is null)
                {
                    _rows = torch.empty([_capacity, flat.shape[1]], dtype: flat.dtype, device: flat.device).DetachFromDisposeScope();
                }
                else if (flat.shape[1] != _rows.shape[1])
                {
                    throw new SaeException(null, $"activation chunk has width {flat.shape[1]}; earlier chunks have {_rows.shape[1]}.");
                }

                long offset = 0;
                while (offset < flat.shape[0])
                {
                    long take = Math.Min(flat.shape[0] - offset, _capacity - _count);
                    _rows[(int)_count..(int)(_count + take)].copy_(flat[(int)offset..(int)(offset + take)]);
                    _count += take;
                    offset += take;
                    if (_count == _capacity)
                    {
                        // Full: shuffle, hand out half (whole batches), keep the rest mixed with what comes next.
                        Permute();
                        long emit = _capacity / 2 / _batchSize * _batchSize;
                        for (long s = 0; s < emit; s += _batchSize)
                        {
                            output.Add(_rows[(int)s..(int)(s + _batchSize)].clone().DetachFromDisposeScope());
                        }

                        var rest = _rows[(int)emit..(int)_count].clone();
                        _rows[..(int)(_count - emit)].copy_(rest);
                        _count -= emit;
                    }
                }
            }

            return output;
        }

        public IEnumerable<Tensor> Drain()
        {
            if (_rows is null || _count == 0)
            {
                yield break;
            }

            Permute();
            for (long s = 0; s < _count; s += _batchSize)
            {
                yield return _rows[(int)s..(int)Math.Min(s + _batchSize, _count)].clone();
            }

            _count = 0;
        }

        public void Dispose()
        {
            _rows?.Dispose();
            _generator.Dispose();
        }

        private void Permute()
        {
            using var scope = torch.NewDisposeScope();
            var perm = torch.randperm(_count, generator: _generator).to(_rows!.device);
            var head = _rows[..(int)_count];
            head.copy_(head.index_select(0, perm));
        }
    }
}
