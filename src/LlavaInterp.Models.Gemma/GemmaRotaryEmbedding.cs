using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// RoPE tables as HF 4.46 <c>GemmaRotaryEmbedding</c>: <c>inv_freq[i] = 1 / theta^(2i/head_dim)</c> in float32,
/// <c>freqs = position · inv_freq</c>, <c>emb = cat(freqs, freqs)</c>, cos/sin in float32. The caller casts them to
/// the model dtype. <c>inv_freq</c> is a non-persistent buffer: no state-dict key.
/// </summary>
internal sealed class GemmaRotaryEmbedding : nn.Module<Tensor, (Tensor Cos, Tensor Sin)>
{
    // Named so that RegisterComponents (which TorchSharp also runs when the module is registered as a child)
    // recognises the non-persistent buffer registered below instead of adding the field as a persistent one.
    [ComponentName(Name = "inv_freq")]
    private readonly Tensor _invFreq;

    /// <summary>Creates the table generator.</summary>
    /// <param name="headDim">Rotated width (the whole head; must be even).</param>
    /// <param name="theta">RoPE base (<c>rope_theta</c>).</param>
    /// <param name="device">Device of the buffer.</param>
    public GemmaRotaryEmbedding(int headDim, double theta, Device device)
        : base(nameof(GemmaRotaryEmbedding))
    {
        HeadDim = headDim;
        Theta = theta;
        if (device.type == DeviceType.META)
        {
            _invFreq = empty([headDim / 2], ScalarType.Float32, device).DetachFromDisposeScope();
        }
        else
        {
            using var scope = NewDisposeScope();
            // HF: 1.0 / (base ** (arange(0, dim, 2, int64).float() / dim)), all in float32.
            var exponent = arange(0L, headDim, 2L, ScalarType.Int64).to(ScalarType.Float32) / (double)headDim;
            var powers = full_like(exponent, theta).pow(exponent);
            _invFreq = powers.reciprocal().to(device).DetachFromDisposeScope();
        }

        register_buffer("inv_freq", _invFreq, persistent: false);
    }

    /// <summary>Rotated width.</summary>
    public int HeadDim { get; }

    /// <summary>RoPE base.</summary>
    public double Theta { get; }

    /// <summary>The inverse frequencies [head_dim/2], float32.</summary>
    public Tensor InvFreq => _invFreq;

    /// <summary>Computes cos and sin for the given positions.</summary>
    /// <param name="input">Position ids [batch, pos] (integers).</param>
    /// <returns>cos and sin, each [batch, pos, head_dim] float32.</returns>
    public override (Tensor Cos, Tensor Sin) forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var freqs = input.to(ScalarType.Float32).unsqueeze(-1) * _invFreq.to(input.device);
        var emb = cat([freqs, freqs], -1);
        var cos = emb.cos();
        var sin = emb.sin();
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }
}
