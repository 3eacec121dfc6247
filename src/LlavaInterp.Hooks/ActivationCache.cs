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

    /// <summary>
    /// The model's short-name resolver (TransformerLens <c>get_act_name</c>), set by the model that filled the cache;
    /// used by <see cref="this[string, int]"/>.
    /// </summary>
    public Func<string, int?, string?, string>? Naming { get; set; }

    /// <summary>TransformerLens's <c>cache["resid_post", 12]</c>: the activation of a short name at a layer.</summary>
    /// <param name="name">Short name, e.g. <c>resid_post</c>, <c>pattern</c>, <c>post</c>.</param>
    /// <param name="layer">The block.</param>
    /// <exception cref="InvalidOperationException">The cache has no <see cref="Naming"/> (it was not filled by a model that names its hooks).</exception>
    /// <exception cref="KeyNotFoundException">Nothing was recorded under the resolved name.</exception>
    public torch.Tensor this[string name, int layer] =>
        this[(Naming ?? throw new InvalidOperationException(
            $"This cache cannot resolve ('{name}', {layer}): it has no Naming (set by the model in RunWithCache); use the full hook name."))(name, layer, null)];

    /// <inheritdoc/>
    public bool ContainsKey(string key) => _tensors.ContainsKey(key);

    /// <inheritdoc/>
    public bool TryGetValue(string key, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out torch.Tensor value) => _tensors.TryGetValue(key, out value);

    /// <summary>
    /// Stacks the activation of every block's hook with this name suffix (e.g. <c>hook_resid_post</c>) along a new
    /// leading dimension, in block order: [layers, ...]. A block hook is named <c>{prefix}{container}.{layer}.{suffix}</c>
    /// (the model decides the container's name, e.g. <c>blocks</c>); <paramref name="prefix"/> selects the tower
    /// (<c>""</c> for the top-level model, <c>"vision."</c> for a nested one). Layers are taken from 0 up to the first gap.
    /// </summary>
    public torch.Tensor Stack(string hookSuffix, string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(hookSuffix);
        ArgumentNullException.ThrowIfNull(prefix);
        ObjectDisposedException.ThrowIf(_disposed, this);
        var byLayer = new Dictionary<int, string>();
        string tail = "." + hookSuffix;
        foreach (var name in _order)
        {
            // {prefix}{container}.{layer}{tail}: exactly one dot-free container segment after the prefix.
            if (!name.StartsWith(prefix, StringComparison.Ordinal) || !name.EndsWith(tail, StringComparison.Ordinal) || name.Length <= prefix.Length + tail.Length)
            {
                continue;
            }

            var middle = name.AsSpan(prefix.Length, name.Length - prefix.Length - tail.Length);
            int dot = middle.IndexOf('.');
            if (dot > 0 && middle[(dot + 1)..].IndexOf('.') < 0
                && int.TryParse(middle[(dot + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int layer))
            {
                byLayer.TryAdd(layer, name);
            }
        }

        var names = new List<string>();
        while (byLayer.TryGetValue(names.Count, out var name))
        {
            names.Add(name);
        }

        if (names.Count == 0)
        {
            throw new KeyNotFoundException($"The cache holds no '{prefix}<blocks>.N{tail}' activations.");
        }

        return torch.stack(names.Select(n => _tensors[n]).ToArray());
    }

    /// <summary>Whether activations keep their leading batch dimension (false after <see cref="RemoveBatchDim"/>).</summary>
    public bool HasBatchDim { get; private set; } = true;

    /// <summary>
    /// TransformerLens <c>remove_batch_dim</c>: drops the leading batch dimension of every activation, in place. Only
    /// for a cache of a single-example run.
    /// </summary>
    /// <exception cref="InvalidOperationException">Already removed, or an activation's batch size is not 1 (the message names it); nothing is changed then.</exception>
    public void RemoveBatchDim()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!HasBatchDim)
        {
            throw new InvalidOperationException("The batch dimension was already removed from this cache.");
        }

        foreach (var name in _order)
        {
            var t = _tensors[name];
            if (t.dim() == 0 || t.shape[0] != 1)
            {
                throw new InvalidOperationException($"RemoveBatchDim needs batch size 1, but '{name}' has shape [{string.Join(", ", t.shape)}].");
            }
        }

        foreach (var name in _order)
        {
            var old = _tensors[name];
            _tensors[name] = old.squeeze(0).contiguous();
            old.Dispose();
        }

        HasBatchDim = false;
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
