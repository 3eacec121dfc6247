using LlavaInterp.Loading;
using LlavaInterp.Models.Gemma;
using LlavaInterp.TensorFiles;

namespace LlavaInterp.Llava;

/// <summary>
/// Where a LLaVA checkpoint keeps each part. transformers ≤ 4.51 (the 4.46 layout) saves <c>vision_tower.…</c>,
/// <c>multi_modal_projector.…</c> and <c>language_model.model.…</c> + <c>language_model.lm_head.weight</c>; newer
/// versions nest everything under <c>model.</c> (<c>model.language_model.layers.N…</c>) with a top-level
/// <c>lm_head.weight</c>. The LLaVA layer owns this knowledge and hands each model its prefixes.
/// </summary>
/// <param name="VisionPrefix">Prefix of the CLIP vision tower's tensors.</param>
/// <param name="ProjectorPrefix">Prefix of the projector's tensors.</param>
/// <param name="Text">Where the Gemma decoder's tensors are.</param>
public sealed record LlavaCheckpointLayout(string VisionPrefix, string ProjectorPrefix, GemmaWeightLayout Text)
{
    /// <summary>The transformers 4.46 layout: <c>language_model.model.layers.N…</c>, <c>language_model.lm_head.weight</c>.</summary>
    public static LlavaCheckpointLayout Legacy { get; } = new("vision_tower.", "multi_modal_projector.", GemmaWeightLayout.FromPrefix("language_model."));

    /// <summary>The newer layout: <c>model.vision_tower.…</c>, <c>model.language_model.layers.N…</c>, top-level <c>lm_head.weight</c>.</summary>
    public static LlavaCheckpointLayout Nested { get; } = new(
        "model.vision_tower.",
        "model.multi_modal_projector.",
        new GemmaWeightLayout("model.language_model.", "lm_head.weight", ["model.language_model.", "lm_head."]));

    /// <summary>Recognises the layout from where the token embedding is stored.</summary>
    /// <exception cref="WeightLoadException">No LLaVA language-model embedding under either layout's name.</exception>
    public static LlavaCheckpointLayout Detect(ITensorSource source)
    {
        ArgumentNullException.ThrowIfNull(source);
        foreach (var layout in new[] { Nested, Legacy })
        {
            if (source.Contains(layout.Text.DecoderPrefix + "embed_tokens.weight"))
            {
                return layout;
            }
        }

        throw new WeightLoadException(
            WeightLoader.SourceName(source),
            $"no LLaVA language-model token embedding found (looked for '{Nested.Text.DecoderPrefix}embed_tokens.weight' "
            + $"and '{Legacy.Text.DecoderPrefix}embed_tokens.weight').");
    }

    /// <summary>Whether a checkpoint name belongs to one of the three parts.</summary>
    public bool InScope(string key) =>
        key.StartsWith(VisionPrefix, StringComparison.Ordinal) || key.StartsWith(ProjectorPrefix, StringComparison.Ordinal) || Text.InScope(key);
}
