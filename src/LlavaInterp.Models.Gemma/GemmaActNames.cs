using System.Globalization;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// TransformerLens's <c>utils.get_act_name</c> for the Gemma hook points: short names and a layer to
/// <c>blocks.{layer}.…</c> names. Attention names (<c>q</c>, <c>k</c>, <c>v</c>, <c>z</c>, <c>rot_q</c>, <c>rot_k</c>,
/// <c>attn_scores</c>, <c>pattern</c>, <c>result</c>) live under <c>attn</c>; MLP names (<c>pre</c>, <c>pre_linear</c>,
/// <c>post</c>) under <c>mlp</c>; <c>scale</c>/<c>normalized</c> under <c>ln1</c>, <c>ln2</c> or <c>ln_final</c> (the
/// layer type says which); the residual names (<c>resid_pre</c>, <c>resid_mid</c>, <c>resid_post</c>, <c>attn_out</c>,
/// <c>mlp_out</c>, <c>attn_in</c>, <c>q_input</c>, <c>k_input</c>, <c>v_input</c>, <c>mlp_in</c>) directly in the block.
/// TransformerLens's aliases <c>a</c> (pattern), <c>attn</c> (pattern), <c>attn_logits</c> (attn_scores) and
/// <c>mlp_pre</c>/<c>mlp_post</c> are accepted.
/// </summary>
public static class GemmaActNames
{
    private static readonly Dictionary<string, string> Aliases = new(StringComparer.Ordinal)
    {
        ["a"] = "pattern",
        ["attn"] = "pattern",
        ["attn_logits"] = "attn_scores",
        ["key"] = "k",
        ["query"] = "q",
        ["value"] = "v",
        ["mlp_pre"] = "pre",
        ["mlp_mid"] = "mid",
        ["mlp_post"] = "post",
    };

    private static readonly HashSet<string> AttnNames = new(StringComparer.Ordinal) { "q", "k", "v", "z", "rot_q", "rot_k", "attn_scores", "pattern", "result" };

    private static readonly HashSet<string> MlpNames = new(StringComparer.Ordinal) { "pre", "pre_linear", "post", "mid" };

    private static readonly HashSet<string> BlockNames = new(StringComparer.Ordinal)
    {
        "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "attn_in", "q_input", "k_input", "v_input", "mlp_in",
    };

    /// <summary>The full hook name (see the class summary); a name containing a dot is returned unchanged.</summary>
    /// <param name="name">Short name or full hook name.</param>
    /// <param name="layer">The block, for per-block names.</param>
    /// <param name="layerType"><c>attn</c>, <c>mlp</c>, <c>ln1</c>, <c>ln2</c> or <c>ln_final</c>, where a name needs it.</param>
    /// <exception cref="ArgumentException">Unknown name, or a per-block name without a layer.</exception>
    public static string GetActName(string name, int? layer = null, string? layerType = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (name.Contains('.', StringComparison.Ordinal) || name.StartsWith("hook_", StringComparison.Ordinal))
        {
            return name;
        }

        string n = Aliases.GetValueOrDefault(name, name);
        if (n is "embed")
        {
            return "hook_embed";
        }

        if (n is "scale" or "normalized")
        {
            string ln = layerType ?? (layer is null ? "ln_final" : throw new ArgumentException($"'{name}' at a layer needs a layer type, ln1 or ln2.", nameof(layerType)));
            if (ln == "ln_final")
            {
                return $"ln_final.hook_{n}";
            }

            return $"blocks.{Layer(name, layer)}.{ln}.hook_{n}";
        }

        string block = $"blocks.{Layer(name, layer)}";
        if (AttnNames.Contains(n))
        {
            return $"{block}.attn.hook_{n}";
        }

        if (MlpNames.Contains(n))
        {
            return $"{block}.mlp.hook_{n}";
        }

        if (BlockNames.Contains(n))
        {
            return $"{block}.hook_{n}";
        }

        throw new ArgumentException($"'{name}' is not a TransformerLens activation name of Gemma.", nameof(name));
    }

    private static string Layer(string name, int? layer) =>
        layer is int l && l >= 0
            ? l.ToString(CultureInfo.InvariantCulture)
            : throw new ArgumentException($"'{name}' is a per-block activation: give its layer.", nameof(layer));
}
