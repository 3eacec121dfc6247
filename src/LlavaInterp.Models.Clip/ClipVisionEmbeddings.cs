using LlavaInterp.Nn;
using LlavaInterp.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// HF <c>CLIPVisionEmbeddings</c>: patch convolution (no bias), flattened row-major (token 1 + r·cols + c), a learned
/// CLS token in front, plus the learned position table. Input pixels [batch, channels, H, W] are cast to the compute
/// dtype first (HF casts them to the weight dtype, which is the compute dtype unless weights are stored narrower).
/// Weights stored narrower are cast to the compute dtype at their use.
/// </summary>
internal sealed class ClipVisionEmbeddings : torch.nn.Module<torch.Tensor, torch.Tensor>
{
    [ComponentName(Name = "class_embedding")]
    private readonly Parameter _classEmbedding;

    [ComponentName(Name = "patch_embedding")]
    private readonly CastPatchConv2d _patchEmbedding;

    // [batch, patches, d_model]: conv output flattened row-major, before CLS and positions.
    [ComponentName(Name = "hook_patch_embed")]
    private readonly HookPoint _hookPatchEmbed;

    [ComponentName(Name = "position_embedding")]
    private readonly ClipPositionEmbedding _positionEmbedding;

    private readonly torch.ScalarType _computeDType;

    internal ClipVisionEmbeddings(ClipVisionConfig config, string hookPrefix, torch.Device device, torch.ScalarType dtype, torch.ScalarType computeDType)
        : base(nameof(ClipVisionEmbeddings))
    {
        _computeDType = computeDType;
        _classEmbedding = EmptyModules.Parameter(dtype, device, config.HiddenSize);
        _patchEmbedding = new CastPatchConv2d(config.NumChannels, config.HiddenSize, config.PatchSize, dtype, device);
        _hookPatchEmbed = new HookPoint(hookPrefix + "hook_patch_embed");
        _positionEmbedding = new ClipPositionEmbedding(config.NumPositions, config.HiddenSize, device, dtype);
        RegisterComponents();
    }

    /// <summary>The CLS token embedding [d_model].</summary>
    public Parameter ClassEmbedding => _classEmbedding;

    /// <summary>The patch convolution (weight [d_model, channels, patch, patch], no bias).</summary>
    public CastPatchConv2d PatchEmbedding => _patchEmbedding;

    /// <summary>The position table [num_positions, d_model].</summary>
    public ClipPositionEmbedding PositionEmbedding => _positionEmbedding;

    /// <summary>Pixels [batch, channels, H, W] → embeddings [batch, 1 + patches, d_model] (before <c>pre_layrnorm</c>).</summary>
    public override torch.Tensor forward(torch.Tensor pixelValues)
    {
        using var scope = torch.NewDisposeScope();
        var weight = _patchEmbedding.Weight;
        var pixels = pixelValues.to(_computeDType, weight.device);
        var conv = _patchEmbedding.call(pixels);                       // [batch, d_model, rows, cols]
        var patches = _hookPatchEmbed.call(conv.flatten(2).transpose(1, 2)); // [batch, rows*cols, d_model]
        long batch = patches.shape[0];
        var cls = WeightCast.To(_classEmbedding, patches.dtype).expand(batch, 1, -1);
        var tokens = torch.cat([cls, patches], dim: 1);
        if (tokens.shape[1] != _positionEmbedding.Weight.shape[0])
        {
            throw new ArgumentException($"the image gives {tokens.shape[1]} tokens but the model has {_positionEmbedding.Weight.shape[0]} position embeddings.", nameof(pixelValues));
        }

        // Position ids are 0..num_positions-1, so the lookup is the whole table, broadcast over the batch.
        return (tokens + WeightCast.To(_positionEmbedding.Weight, tokens.dtype)).MoveToOuterDisposeScope();
    }
}
