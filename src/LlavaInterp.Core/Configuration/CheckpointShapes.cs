using System.Globalization;
using LlavaInterp.Loading;
using LlavaInterp.TensorFiles;

namespace LlavaInterp.Configuration;

/// <summary>
/// One dimension of a tensor as a configuration implies it: the product of one or more configuration values,
/// computed in overflow-checked <see cref="long"/> arithmetic.
/// </summary>
public sealed record ConfigDim
{
    private ConfigDim(IReadOnlyList<(string Key, long Value)> factors, long? size, long offset, string? formula = null)
    {
        Factors = factors;
        Size = size;
        Offset = offset;
        Formula = formula;
    }

    /// <summary>How a <see cref="Derived"/> dimension is computed; <see langword="null"/> for a plain product.</summary>
    public string? Formula { get; }

    /// <summary>The configuration keys and values whose product (plus <see cref="Offset"/>) is the dimension.</summary>
    public IReadOnlyList<(string Key, long Value)> Factors { get; }

    /// <summary>Added to the product (e.g. the CLS token on top of the patches).</summary>
    public long Offset { get; }

    /// <summary>The dimension, or <see langword="null"/> when the product overflows a <see cref="long"/> (it can then match no stored tensor).</summary>
    public long? Size { get; }

    /// <summary>A dimension equal to one configuration value.</summary>
    public static ConfigDim Of(string key, long value) => Product((key, value));

    /// <summary>A dimension equal to the product of configuration values, plus <paramref name="offset"/>.</summary>
    public static ConfigDim Product(long offset, params (string Key, long Value)[] factors)
    {
        ArgumentNullException.ThrowIfNull(factors);
        long? size;
        try
        {
            long product = 1;
            foreach (var (_, value) in factors)
            {
                product = checked(product * value);
            }

            size = checked(product + offset);
        }
        catch (OverflowException)
        {
            size = null;
        }

        return new ConfigDim(factors, size, offset);
    }

    /// <summary>A dimension equal to the product of configuration values.</summary>
    public static ConfigDim Product(params (string Key, long Value)[] factors) => Product(0, factors);

    /// <summary>
    /// A dimension computed from a configuration value by another rule than a product (e.g. patches of an image), blamed
    /// on <paramref name="key"/>; <paramref name="size"/> is <see langword="null"/> when it overflows.
    /// </summary>
    public static ConfigDim Derived(string key, long? size, string formula) => new([(key, size ?? 0)], size, 0, formula);

    /// <inheritdoc/>
    public override string ToString()
    {
        if (Formula is not null)
        {
            return Formula;
        }

        string product = string.Join(" × ", Factors.Select(f => $"{f.Key} {f.Value}"));
        return Offset == 0 ? product : $"{product} + {Offset}";
    }
}

/// <summary>A tensor a configuration implies: its checkpoint name and the configuration behind each dimension.</summary>
/// <param name="Name">The checkpoint name (with the layout's prefix).</param>
/// <param name="Shape">Each dimension.</param>
public sealed record ConfigTensor(string Name, IReadOnlyList<ConfigDim> Shape);

/// <summary>
/// Checks a configuration against a checkpoint's headers before a model is built, so that a size that does not match
/// the weights (or that would not fit in memory at all) is a <see cref="ConfigException"/> naming the file and the key,
/// not an allocation of gigabytes, a native allocator error or an integer overflow. Only tensor headers are read.
/// </summary>
public static class CheckpointShapes
{
    /// <summary>
    /// The layer indices stored under <paramref name="layersPrefix"/> (names <c>{layersPrefix}{i}.…</c>), in order.
    /// </summary>
    /// <param name="source">The checkpoint.</param>
    /// <param name="layersPrefix">E.g. <c>model.layers.</c>.</param>
    public static IReadOnlyList<int> StoredLayers(ITensorSource source, string layersPrefix)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(layersPrefix);
        var indices = new SortedSet<int>();
        foreach (var name in source.Names)
        {
            if (!name.StartsWith(layersPrefix, StringComparison.Ordinal))
            {
                continue;
            }

            int dot = name.IndexOf('.', layersPrefix.Length);
            var digits = dot < 0 ? name.AsSpan(layersPrefix.Length) : name.AsSpan(layersPrefix.Length, dot - layersPrefix.Length);
            if (digits.Length > 0 && digits[0] is >= '0' and <= '9'
                && int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int index))
            {
                indices.Add(index);
            }
        }

        return indices.ToList();
    }

    /// <summary>
    /// Checks a configured layer count against the layers the checkpoint stores. Strict loading needs them equal; a
    /// non-strict load tolerates missing tensors and unused layers, but never more layers than the checkpoint has
    /// (they would be allocated and left uninitialised, and a wrong count could ask for any amount of memory).
    /// </summary>
    /// <param name="source">The checkpoint.</param>
    /// <param name="layersPrefix">Prefix of the layers' names, e.g. <c>model.layers.</c>.</param>
    /// <param name="configured">The configured count.</param>
    /// <param name="configSource">The configuration file, for the error.</param>
    /// <param name="key">The configuration key, for the error.</param>
    /// <param name="strict">Whether the load is strict.</param>
    /// <returns>The layer indices stored.</returns>
    /// <exception cref="ConfigException">The counts do not agree.</exception>
    public static IReadOnlyList<int> CheckLayerCount(ITensorSource source, string layersPrefix, long configured, string configSource, string key, bool strict)
    {
        var stored = StoredLayers(source, layersPrefix);
        long storedCount = stored.Count == 0 ? 0 : stored[^1] + 1L;
        if (configured > storedCount || (strict && configured != storedCount))
        {
            string stores = storedCount == 0 ? $"no layer under '{layersPrefix}'" : $"{storedCount} ({layersPrefix}0 … {layersPrefix}{storedCount - 1})";
            throw new ConfigException(configSource, key, $"{configured} layers configured, but {WeightLoader.SourceName(source)} stores {stores}.");
        }

        return stored;
    }

    /// <summary>
    /// Checks a layered model's configuration: <see cref="CheckLayerCount"/>, then <see cref="Check"/> on the tensors
    /// <paramref name="expected"/> lists for the layers stored.
    /// </summary>
    /// <param name="source">The checkpoint.</param>
    /// <param name="layersPrefix">Prefix of the layers' names, e.g. <c>model.layers.</c>.</param>
    /// <param name="configuredLayers">The configured layer count.</param>
    /// <param name="layersKey">The key of the layer count.</param>
    /// <param name="expected">The tensors the configuration implies, given the layer indices to list.</param>
    /// <param name="configSource">The configuration file, for the error.</param>
    /// <param name="strict">Whether the load is strict.</param>
    /// <exception cref="ConfigException">The layer count or a dimension does not match the checkpoint.</exception>
    public static void CheckLayered(ITensorSource source, string layersPrefix, long configuredLayers, string layersKey, Func<IReadOnlyList<int>, IEnumerable<ConfigTensor>> expected, string configSource, bool strict)
    {
        ArgumentNullException.ThrowIfNull(expected);
        var layers = CheckLayerCount(source, layersPrefix, configuredLayers, configSource, layersKey, strict);
        Check(source, expected(layers), configSource);
    }

    /// <summary>
    /// Checks every expected tensor the checkpoint stores against the stored header shape (absent tensors are left to the
    /// weight loader, which reports them as missing). A dimension that differs is blamed on the configuration key that
    /// explains it: dimensions of one key are compared first, so a product is only blamed once its single factors agree;
    /// within a product, a key whose value the stored size implies (the other factors dividing it) is named.
    /// </summary>
    /// <param name="source">The checkpoint.</param>
    /// <param name="expected">The tensors the configuration implies.</param>
    /// <param name="configSource">The configuration file, for the error.</param>
    /// <exception cref="ConfigException">A stored dimension differs from the configured one.</exception>
    /// <exception cref="WeightLoadException">A stored tensor has another rank than the model's (the checkpoint is at fault).</exception>
    public static void Check(ITensorSource source, IEnumerable<ConfigTensor> expected, string configSource)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(configSource);
        var present = new List<(ConfigTensor Tensor, TensorEntry Entry)>();
        foreach (var tensor in expected)
        {
            if (!source.Contains(tensor.Name))
            {
                continue;
            }

            var entry = source.GetEntry(tensor.Name);
            if (entry.Shape.Count != tensor.Shape.Count)
            {
                var wanted = tensor.Shape.Select(d => d.Size ?? -1).ToList();
                throw new WeightLoadException(WeightLoader.SourceName(source), string.Empty, [], [], [new WeightShapeMismatch(tensor.Name, wanted, entry.Shape)]);
            }

            present.Add((tensor, entry));
        }

        foreach (bool single in new[] { true, false })
        {
            foreach (var (tensor, entry) in present)
            {
                for (int i = 0; i < tensor.Shape.Count; i++)
                {
                    var dim = tensor.Shape[i];
                    if ((dim.Factors.Count == 1) == single && dim.Size != entry.Shape[i])
                    {
                        throw Mismatch(source, configSource, tensor, i, entry.Shape[i]);
                    }
                }
            }
        }
    }

    private static ConfigException Mismatch(ITensorSource source, string configSource, ConfigTensor tensor, int axis, long stored)
    {
        var dim = tensor.Shape[axis];
        var implied = new List<(string Key, long Value)>();
        for (int f = 0; f < dim.Factors.Count && dim.Formula is null; f++)
        {
            long others = 1;
            bool fits = true;
            for (int g = 0; g < dim.Factors.Count && fits; g++)
            {
                if (g != f)
                {
                    fits = dim.Factors[g].Value > 0 && !Overflows(ref others, dim.Factors[g].Value);
                }
            }

            long rest = stored - dim.Offset;
            if (fits && rest > 0 && rest % others == 0)
            {
                implied.Add((dim.Factors[f].Key, rest / others));
            }
        }

        string key = implied.Count > 0 ? implied[0].Key : dim.Factors[0].Key;
        string size = dim.Size is long s ? s.ToString(CultureInfo.InvariantCulture) : "more than a 64-bit integer holds";
        string hint = implied.Count switch
        {
            0 => string.Empty,
            1 => $" (the checkpoint implies {implied[0].Key} = {implied[0].Value})",
            _ => $" (the checkpoint implies {string.Join(" or ", implied.Select(i => $"{i.Key} = {i.Value}"))})",
        };
        return new ConfigException(
            configSource,
            key,
            $"{dim} gives dimension {axis} of '{tensor.Name}' as {size}, but {WeightLoader.SourceName(source)} stores [{string.Join(", ", SourceShape(source, tensor.Name))}]{hint}.");
    }

    private static IReadOnlyList<long> SourceShape(ITensorSource source, string name) => source.GetEntry(name).Shape;

    private static bool Overflows(ref long product, long value)
    {
        try
        {
            product = checked(product * value);
            return false;
        }
        catch (OverflowException)
        {
            return true;
        }
    }
}
