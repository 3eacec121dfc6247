using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;

namespace LlavaInterp.Models.Clip;

/// <summary>HF <c>CLIPEncoder</c>: the stack of encoder layers (<c>layers.{i}</c>).</summary>
internal sealed class ClipEncoder : torch.nn.Module<torch.Tensor, torch.Tensor>
{
    [ComponentName(Name = "layers")]
    private readonly ModuleList<ClipEncoderLayer> _layers;

    private readonly IReadOnlyList<ClipEncoderLayer> _layerView;

    internal ClipEncoder(ClipVisionConfig config, string hookPrefix, torch.Device device, torch.ScalarType dtype)
        : base(nameof(ClipEncoder))
    {
        _layers = new ModuleList<ClipEncoderLayer>(
            Enumerable.Range(0, config.NumHiddenLayers).Select(i => new ClipEncoderLayer(config, hookPrefix, i, device, dtype)).ToArray());
        _layerView = _layers.AsReadOnly();
        RegisterComponents();
    }

    /// <summary>The encoder layers, in order.</summary>
    public IReadOnlyList<ClipEncoderLayer> Layers => _layerView;

    /// <summary>Runs every layer: [batch, pos, d_model] → [batch, pos, d_model].</summary>
    public override torch.Tensor forward(torch.Tensor hidden) => Run(hidden, _layers.Count, null);

    /// <summary>
    /// Runs layers <c>0 .. layerCount-1</c>. When <paramref name="hiddenStates"/> is given, each layer's output is
    /// appended to it. The results belong to the caller's dispose scope.
    /// </summary>
    internal torch.Tensor Run(torch.Tensor hidden, int layerCount, List<torch.Tensor>? hiddenStates)
    {
        var h = hidden;
        for (int i = 0; i < layerCount; i++)
        {
            // Each layer disposes its own intermediates; only its output reaches this scope.
            h = _layers[i].call(h);
            hiddenStates?.Add(h);
        }

        return h;
    }
}
