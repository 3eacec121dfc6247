using TorchSharp;

namespace LlavaInterp.Hooks;

/// <summary>
/// A model's short activation names, as TransformerLens's <c>utils.get_act_name</c>: <c>("resid_post", 12)</c> → the
/// full hook name of that model. Models implement it; the hooks layer itself knows no model's names.
/// </summary>
public interface IActNameResolver
{
    /// <summary>The full hook name for a short name and layer (a full name is returned unchanged).</summary>
    /// <param name="name">Short name (<c>resid_post</c>, <c>q</c>, <c>pattern</c>, <c>post</c>, <c>embed</c>…) or a full hook name.</param>
    /// <param name="layer">The block, for per-block names.</param>
    /// <param name="layerType">Disambiguates as in TransformerLens: <c>attn</c>, <c>mlp</c>, <c>ln1</c>, <c>ln2</c>, <c>ln_final</c>.</param>
    /// <returns>The hook name.</returns>
    /// <exception cref="ArgumentException">The name is unknown or needs a layer.</exception>
    string GetActName(string name, int? layer = null, string? layerType = null);
}

/// <summary>
/// Which hook points to record, given the ways TransformerLens accepts <c>names_filter</c>: one name, a list of names,
/// or a predicate. Implicit conversions let any of them be passed where a filter is expected.
/// </summary>
public readonly struct NamesFilter
{
    private readonly Func<string, bool>? _predicate;

    /// <summary>Creates a filter from a predicate.</summary>
    /// <param name="predicate">True for hook names to record.</param>
    public NamesFilter(Func<string, bool> predicate) => _predicate = predicate ?? throw new ArgumentNullException(nameof(predicate));

    /// <summary>The filter as a predicate; the default filter records everything.</summary>
    public Func<string, bool> Predicate => _predicate ?? (_ => true);

    /// <summary>Exactly one hook name.</summary>
    public static implicit operator NamesFilter(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return new NamesFilter(n => string.Equals(n, name, StringComparison.Ordinal));
    }

    /// <summary>Any of the listed hook names.</summary>
    public static implicit operator NamesFilter(string[] names) => FromNames(names);

    /// <summary>Any of the listed hook names.</summary>
    public static implicit operator NamesFilter(List<string> names) => FromNames(names);

    /// <summary>A predicate over hook names.</summary>
    public static implicit operator NamesFilter(Func<string, bool> predicate) => new(predicate);

    /// <summary>Any of the listed hook names.</summary>
    /// <param name="names">The names.</param>
    public static NamesFilter FromNames(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var set = new HashSet<string>(names, StringComparer.Ordinal);
        return new NamesFilter(set.Contains);
    }
}

/// <summary>TransformerLens-style conveniences on hooked models.</summary>
public static class HookedModelExtensions
{
    /// <summary>
    /// <c>RunWithCache</c> with a TransformerLens-style names filter: one hook name, a list, or a predicate.
    /// </summary>
    public static (TOutput Output, ActivationCache Cache) RunWithCache<TInput, TOutput>(
        this HookedRootModule<TInput, TOutput> model, TInput input, NamesFilter names, torch.Device? device = null, int? stopAtLayer = null,
        IEnumerable<HookSpec>? hooks = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.RunWithCache(input, names.Predicate, device, stopAtLayer, hooks);
    }
}
