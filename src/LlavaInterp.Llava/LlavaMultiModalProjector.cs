using LlavaInterp.Nn;
using TorchSharp;
using TorchSharp.Modules;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LlavaInterp.Llava;

/// <summary>
/// LLaVA's two-layer MLP projector (HF <c>LlavaMultiModalProjector</c>): <c>linear_2(act(linear_1(x)))</c>, vision
/// width → text width → text width.
/// </summary>
public sealed class LlavaMultiModalProjector : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "linear_1")]
    private readonly CastLinear _linear1;

    [ComponentName(Name = "linear_2")]
    private readonly CastLinear _linear2;

    private readonly Func<Tensor, Tensor> _act;

    /// <summary>Builds the projector for a configuration.</summary>
    public LlavaMultiModalProjector(LlavaConfig config, ScalarType dtype, Device device)
        : base("multi_modal_projector")
    {
        long vision = config.VisionConfig.HiddenSize;
        long text = config.TextConfig.HiddenSize;
        _linear1 = new CastLinear(vision, text, config.MultimodalProjectorBias, dtype, device);
        _linear2 = new CastLinear(text, text, config.MultimodalProjectorBias, dtype, device);
        _act = Activation.Get(config.ProjectorHiddenAct, nameof(LlavaConfig), "projector_hidden_act").Apply;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        return _linear2.call(_act(_linear1.call(input))).MoveToOuterDisposeScope();
    }
}
