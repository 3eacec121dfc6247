using LlavaInterp.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Sae;

/// <summary>
/// Hook functions that steer a model: add a direction (e.g. <c>alpha·W_dec[f]</c>) to an activation, or clamp / ablate
/// SAE features through the SAE with the error term. Each works on activations [..., positions, d] at any hook point of
/// any hooked model; a <see cref="PositionSelector"/> limits it to absolute positions, resolved with
/// <see cref="HookContext.PositionOffset"/> so it also holds during KV-cached generation (every decoding step sees one
/// new position). Positions that are not selected are returned bit for bit.
/// <para>Directions are copied when the hook is made: later changes to the SAE do not affect it.</para>
/// </summary>
public static class Steering
{
    /// <summary><c>alpha·W_dec[feature]</c> [d_in] in the SAE's dtype: the decoder row only, no bias. The caller owns it.</summary>
    /// <exception cref="SaeException">The feature is out of range.</exception>
    public static Tensor FeatureVector(SparseAutoencoder sae, int feature, double alpha)
    {
        ArgumentNullException.ThrowIfNull(sae);
        using var row = sae.DecoderDirection(feature);
        return row.mul(alpha);
    }

    /// <summary>A hook that adds <paramref name="vector"/> at the selected positions (all when null).</summary>
    /// <param name="vector">[d] for activations [..., positions, d]; for per-head activations [..., positions, heads, d_head]
    /// either [heads, d_head] or [heads·d_head]. Copied.</param>
    /// <param name="positions">Absolute positions; null is every position.</param>
    public static HookFunction AddVector(Tensor vector, PositionSelector? positions = null)
    {
        ArgumentNullException.ThrowIfNull(vector);
        var direction = vector.detach().clone().DetachFromDisposeScope();
        var selector = positions ?? PositionSelector.All;
        return (x, ctx) =>
        {
            using var scope = torch.NewDisposeScope();
            var v = Fit(direction, x, ctx.Name);
            int posDim = (int)(x.dim() - v.dim() - 1);
            if (posDim < 0)
            {
                throw new HookException(ctx.Name, $"activation [{Shape(x)}] has no position dimension before a [{Shape(v)}] direction.");
            }

            var sel = Select(selector, ctx, x.shape[posDim]);
            if (sel is null)
            {
                return x;
            }

            var steered = x + v.to(x.dtype, x.device);
            var result = sel.Length == x.shape[posDim] ? steered : torch.where(Mask(sel, x, posDim, (int)v.dim()), steered, x);
            return result.MoveToOuterDisposeScope();
        };
    }

    /// <summary>A hook spec on <paramref name="hookName"/> that adds <paramref name="vector"/> (see <see cref="AddVector(Tensor, PositionSelector?)"/>).</summary>
    public static HookSpec AddVector(string hookName, Tensor vector, PositionSelector? positions = null) =>
        HookSpec.ForName(hookName, AddVector(vector, positions));

    /// <summary>Adds <c>alpha·W_dec[feature]</c> at the SAE's hook point (no bias), at the selected positions.</summary>
    /// <exception cref="SaeException">The feature is out of range.</exception>
    public static HookSpec AddFeature(SparseAutoencoder sae, int feature, double alpha, PositionSelector? positions = null) =>
        AddFeatures(sae, [(feature, alpha)], positions);

    /// <summary>Adds <c>Σ alpha_i·W_dec[f_i]</c> at the SAE's hook point, at the selected positions.</summary>
    /// <exception cref="SaeException">A feature is out of range.</exception>
    /// <exception cref="ArgumentException">No features.</exception>
    public static HookSpec AddFeatures(SparseAutoencoder sae, IEnumerable<(int Feature, double Alpha)> features, PositionSelector? positions = null)
    {
        ArgumentNullException.ThrowIfNull(sae);
        ArgumentNullException.ThrowIfNull(features);
        var list = features.ToList();
        if (list.Count == 0)
        {
            throw new ArgumentException("At least one feature is needed.", nameof(features));
        }

        using var scope = torch.NewDisposeScope();
        Tensor? sum = null;
        foreach (var (feature, alpha) in list)
        {
            var v = FeatureVector(sae, feature, alpha);
            sum = sum is null ? v : sum + v;
        }

        return HookSpec.ForName(sae.HookName, AddVector(sum!, positions));
    }

    /// <summary>
    /// Sets feature <paramref name="feature"/> to <paramref name="value"/> at the selected positions, through the SAE with
    /// the error term: <c>x + (value - acts[f])·W_dec[f]</c> (run-time normalization undone), so only that feature's
    /// contribution changes.
    /// </summary>
    /// <exception cref="SaeException">The feature is out of range.</exception>
    public static HookSpec ClampFeature(SparseAutoencoder sae, int feature, double value, PositionSelector? positions = null) =>
        ClampFeatures(sae, new Dictionary<int, double> { [feature] = value }, positions);

    /// <summary>Sets several features at once (see <see cref="ClampFeature"/>): <c>x + (new_acts - acts)·W_dec</c>.</summary>
    /// <exception cref="SaeException">A feature is out of range.</exception>
    /// <exception cref="ArgumentException">No features.</exception>
    public static HookSpec ClampFeatures(SparseAutoencoder sae, IReadOnlyDictionary<int, double> values, PositionSelector? positions = null)
    {
        ArgumentNullException.ThrowIfNull(sae);
        ArgumentNullException.ThrowIfNull(values);
        if (values.Count == 0)
        {
            throw new ArgumentException("At least one feature is needed.", nameof(values));
        }

        foreach (var f in values.Keys)
        {
            sae.CheckFeature(f);
        }

        var targets = values.OrderBy(kv => kv.Key).ToArray();
        var selector = positions ?? PositionSelector.All;
        return HookSpec.ForName(sae.HookName, (x, ctx) =>
        {
            using var scope = torch.NewDisposeScope();
            var flat = sae.Prepare(x, out var shape);
            if (flat.dim() < 2)
            {
                throw new SaeException(ctx.Name, $"activation [{Shape(x)}] has no position dimension.");
            }

            var sel = Select(selector, ctx, flat.shape[^2]);
            if (sel is null)
            {
                return x;
            }

            var encoded = sae.EncodeFlat(flat, fire: false);
            var (norm, acts) = (encoded.Norm, encoded.Acts);
            Tensor? delta = null;
            foreach (var (feature, value) in targets)
            {
                using var current = acts.select(-1, feature);
                var change = sae.FeatureDelta(value - current, feature, norm);
                delta = delta is null ? change : delta + change;
            }

            var edited = flat + delta!;
            var result = sel.Length == flat.shape[^2] ? edited : torch.where(Mask(sel, flat, (int)flat.dim() - 2, 1), edited, flat);
            result = SparseAutoencoder.Unflatten(result, shape);
            if (result.dtype != x.dtype || result.device != x.device)
            {
                result = result.to(x.dtype, x.device);
            }

            return result.MoveToOuterDisposeScope();
        });
    }

    /// <summary>Sets feature <paramref name="feature"/> to zero at the selected positions (see <see cref="ClampFeature"/>).</summary>
    /// <exception cref="SaeException">The feature is out of range.</exception>
    public static HookSpec AblateFeature(SparseAutoencoder sae, int feature, PositionSelector? positions = null) =>
        ClampFeature(sae, feature, 0.0, positions);

    /// <summary>Sets several features to zero at the selected positions.</summary>
    /// <exception cref="SaeException">A feature is out of range.</exception>
    /// <exception cref="ArgumentException">No features.</exception>
    public static HookSpec AblateFeatures(SparseAutoencoder sae, IEnumerable<int> features, PositionSelector? positions = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        return ClampFeatures(sae, features.Distinct().ToDictionary(f => f, _ => 0.0), positions);
    }

    private static long[]? Select(PositionSelector selector, HookContext ctx, long length)
    {
        if (selector.IsAll)
        {
            return length == 0 ? null : PositionSelector.All.Resolve(0, length);
        }

        var sel = selector.Resolve(ctx.PositionOffset, length);
        return sel.Length == 0 ? null : sel;
    }

    // A boolean mask that is true at the selected positions of dimension posDim, broadcastable against the activation.
    private static Tensor Mask(long[] selected, Tensor x, int posDim, int trailingDims)
    {
        var mask = torch.zeros(x.shape[posDim], dtype: ScalarType.Bool, device: x.device);
        mask.index_fill_(0, torch.tensor(selected, device: x.device), true);
        return mask.reshape([x.shape[posDim], .. Enumerable.Repeat(1L, trailingDims)]);
    }

    // The direction shaped to the activation's trailing dimensions ([d], or [heads, d_head] for per-head activations).
    private static Tensor Fit(Tensor direction, Tensor x, string hook)
    {
        int n = (int)direction.dim();
        if (x.dim() > n && x.shape[^n..].SequenceEqual(direction.shape))
        {
            return direction;
        }

        if (n == 1 && x.dim() >= 3 && x.shape[^2] * x.shape[^1] == direction.shape[0])
        {
            return direction.reshape(x.shape[^2], x.shape[^1]);
        }

        throw new HookException(hook, $"steering direction [{Shape(direction)}] does not fit activation [{Shape(x)}].");
    }

    private static string Shape(Tensor t) => string.Join(", ", t.shape);
}
