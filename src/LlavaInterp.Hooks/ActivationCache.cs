using System.Collections;
using LlavaInterp.TensorFiles;
using TorchSharp;

namespace LlavaInterp.Hooks;

/// <summary>
/// Activations recorded by <c>RunWithCache</c>: hook name → tensor (detached, on the requested device).
/// The cache owns its tensors and disposes them; it holds no reference to the model.
/// </summary>
public sealed class ActivationCache : IReadOnlyDictionary<string, torch.Tensor>, IDisposable
{
    private readonly Dictionary<string, torch.Tensor> _tensors = new(StringComparer.Ordinal);
    private readonly List<string> _order = new();
    private bool _disposed;

    /// <summary>Hook names in the order their activations were recorded.</summary>
    public IReadOnlyList<string> Names => _order;

    /// <inheritdoc/>
    public int Count => _tensors.Count;

    /// <inheritdoc/>
    public IEnumerable<string> Keys => _order;

    /// <inheritdoc/>
    public IEnumerable<torch.Tensor> Values => _order.Select(n => _tensors[n]);

    /// <summary>The activation recorded at a hook point.</summary>
    /// <exception cref="KeyNotFoundException">Nothing was recorded under that name (the message lists what was).</exception>
    public torch.Tensor this[string name]
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_tensors.TryGetValue(name, out var t))
            {
                return t;
            }

            throw new KeyNotFoundException($"The cache holds no activation for hook '{name}'. Recorded: {string.Join(", ", _order.Take(20))}{(_order.Count > 20 ? ", ..." : string.Empty)}.");
        }
    }

    /// <inheritdoc/>
    public bool ContainsKey(string key) => _tensors.ContainsKey(key);

    /// <inheritdoc/>
    public bool TryGetValue(string key, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out torch.Tensor value) => _tensors.TryGetValue(key, out value);

    /// <summary>
    /// Stacks the activation of every block's hook with this name suffix (e.g. <c>hook_resid_post</c>) along a new
    /// leading dimension, in block order: [layers, ...]. <paramref name="prefix"/> selects the tower (<c>""</c> for the
    /// language model, <c>"vision."</c> for the vision tower).
    /// </summary>
    public torch.Tensor Stack(string hookSuffix, string prefix = "")
    {
        var names = new List<string>();
        for (int layer = 0; ; layer++)
        {
            string name = $"{prefix}blocks.{layer}.{hookSuffix}";
            if (!_tensors.ContainsKey(name))
            {
                break;
            }

            names.Add(name);
        }

        if (names.Count == 0)
        {
            throw new KeyNotFoundException($"The cache holds no '{prefix}blocks.N.{hookSuffix}' activations.");
        }

        return torch.stack(names.Select(n => _tensors[n]).ToArray());
    }

    /// <summary>Adds (or replaces) an activation; the cache takes ownership of <paramref name="tensor"/>.</summary>
    public void Add(string name, torch.Tensor tensor)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_tensors.TryGetValue(name, out var old))
        {
            old.Dispose();
        }
        else
        {
            _order.Add(name);
        }

        _tensors[name] = tensor;
    }

    /// <summary>
    /// Writes every cached activation to a safetensors file, named by hook name. The file is written to a temporary
    /// name and moved into place, so a failure never leaves a partial file.
    /// </summary>
    /// <param name="path">Output file.</param>
    /// <param name="metadata">Optional <c>__metadata__</c> strings.</param>
    /// <param name="cancellationToken">Cancels the write (nothing is left behind).</param>
    public void Save(string path, IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        SafetensorsWriter.Save(path, this, metadata, cancellationToken: cancellationToken);
    }

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, torch.Tensor>> GetEnumerator() =>
        _order.Select(n => new KeyValuePair<string, torch.Tensor>(n, _tensors[n])).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Disposes every cached tensor.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        foreach (var t in _tensors.Values)
        {
            t.Dispose();
        }

        _tensors.Clear();
        _order.Clear();
    }
}
