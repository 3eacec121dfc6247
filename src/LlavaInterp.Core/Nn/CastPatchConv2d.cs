using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Nn;

/// <summary>
/// A patch embedding: <c>nn.Conv2d(in, out, kernel, stride: kernel, bias: false)</c> whose weight may be stored in a
/// narrower dtype than the input, cast to the input's dtype at each call. State-dict key <c>weight</c>
/// [out, in, kernel, kernel], uninitialised until loaded.
/// </summary>
public sealed class CastPatchConv2d : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Parameter _weight;

    private readonly long[] _stride;

    /// <summary>Creates the convolution with an uninitialised weight.</summary>
    /// <param name="inChannels">Input channels.</param>
    /// <param name="outChannels">Output channels.</param>
    /// <param name="kernel">Kernel size, also the stride (non-overlapping patches).</param>
    /// <param name="dtype">Storage dtype of the weight.</param>
    /// <param name="device">Parameter device.</param>
    public CastPatchConv2d(long inChannels, long outChannels, long kernel, ScalarType dtype, Device device)
        : base(nameof(CastPatchConv2d))
    {
        _stride = [kernel, kernel];
        _weight = EmptyModules.Parameter(dtype, device, outChannels, inChannels, kernel, kernel);
        RegisterComponents();
    }

    /// <summary>The weight [out, in, kernel, kernel] in its storage dtype.</summary>
    public Parameter Weight => _weight;

    /// <summary>[batch, in, H, W] → [batch, out, H / kernel, W / kernel] in the input's dtype.</summary>
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (_weight.dtype == input.dtype)
        {
            return nn.functional.conv2d(input, _weight, null, _stride, null, null, 1);
        }

        using var scope = NewDisposeScope();
        return nn.functional.conv2d(input, _weight.to(input.dtype), null, _stride, null, null, 1).MoveToOuterDisposeScope();
    }
}
