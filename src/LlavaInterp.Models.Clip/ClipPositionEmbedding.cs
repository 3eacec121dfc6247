using LlavaInterp.Nn;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace LlavaInterp.Models.Clip;

/// <summary>
/// The learned position table (HF <c>nn.Embedding(num_positions, hidden_size)</c>, state-dict key <c>weight</c>).
/// Built from <c>torch.empty</c> rather than <c>nn.Embedding</c>, which allocates and initialises on the CPU even for
/// the meta device.
/// </summary>
internal sealed class ClipPositionEmbedding : torch.nn.Module<torch.Tensor, torch.Tensor>
{
    [ComponentName(Name = "weight")]
    private readonly Parameter _weight;

    internal ClipPositionEmbedding(long numPositions, long width, torch.Device device, torch.ScalarType dtype)
        : base(nameof(ClipPositionEmbedding))
    {
        _weight = EmptyModules.Parameter(dtype, device, numPositions, width);
        RegisterComponents();
    }

    /// <summary>The table [num_positions, d_model].</summary>
    public Parameter Weight => _weight;

    /// <summary>Looks up rows: position ids [...] → [..., d_model].</summary>
    public override torch.Tensor forward(torch.Tensor positionIds)
    {
        using var flat = positionIds.reshape(-1);
        using var rows = _weight.index_select(0, flat);
        return rows.reshape([.. positionIds.shape, _weight.shape[1]]);
    }
}
