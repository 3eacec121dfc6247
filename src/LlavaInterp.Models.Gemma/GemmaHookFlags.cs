namespace LlavaInterp.Models.Gemma;

/// <summary>
/// TransformerLens's optional hook points (<c>use_attn_result</c>, <c>use_attn_in</c>, <c>use_split_qkv_input</c>,
/// <c>use_hook_mlp_in</c>): off by default because each adds work to every forward. One instance is shared by the
/// decoder's layers and switched at run time through <see cref="HookedGemma"/>.
/// </summary>
internal sealed class GemmaHookFlags
{
    /// <summary><c>blocks.{i}.attn.hook_result</c> [batch, pos, heads, hidden]: each head's output after <c>o_proj</c>.</summary>
    public volatile bool UseAttnResult;

    /// <summary><c>blocks.{i}.hook_attn_in</c> [batch, pos, heads, hidden]: the attention input copied per head.</summary>
    public volatile bool UseAttnIn;

    /// <summary><c>blocks.{i}.hook_q_input</c>/<c>hook_k_input</c>/<c>hook_v_input</c>: separate per-head inputs of Q, K and V.</summary>
    public volatile bool UseSplitQkvInput;

    /// <summary><c>blocks.{i}.hook_mlp_in</c> [batch, pos, hidden]: the MLP's input (a copy of resid_mid).</summary>
    public volatile bool UseHookMlpIn;
}
