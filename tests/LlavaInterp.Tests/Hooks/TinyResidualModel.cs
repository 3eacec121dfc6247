using LlavaInterp.Hooks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Hooks;

/// <summary>Input of <see cref="TinyResidualModel"/>.</summary>
public sealed record TinyInput(Tensor X, int? StopAtLayer = null, long PositionOffset = 0);

/// <summary>
/// A small residual MLP stack with TransformerLens-style hook names, used to test and benchmark the hooks core
/// without any model knowledge: resid_post = resid_pre + W2·relu(W1·resid_pre).
/// </summary>
public sealed class TinyResidualModel : HookedRootModule<TinyInput, Tensor>
{
    private readonly HookPoint hook_embed;
    private readonly ModuleList<TinyBlock> blocks;

    public TinyResidualModel(int dModel, int nLayers, int seed = 0)
        : base(nameof(TinyResidualModel))
    {
        torch.manual_seed(seed);
        hook_embed = new HookPoint("hook_embed");
        blocks = new ModuleList<TinyBlock>(Enumerable.Range(0, nLayers).Select(i => new TinyBlock(i, dModel)).ToArray());
        RegisterComponents();
        SetupHooks();
    }

    public override Tensor forward(TinyInput input)
    {
        using var scope = torch.NewDisposeScope();
        using var offset = HookRun.EnterPositionOffset(input.PositionOffset);
        using var noGrad = torch.no_grad();
        var h = hook_embed.call(input.X);
        int stop = input.StopAtLayer ?? blocks.Count;
        for (int i = 0; i < stop; i++)
        {
            h = blocks[i].call(h);
        }

        return h.MoveToOuterDisposeScope();
    }

    protected override TinyInput WithStopAtLayer(TinyInput input, int stopAtLayer) => input with { StopAtLayer = stopAtLayer };
}

/// <summary>One residual MLP block.</summary>
public sealed class TinyBlock : nn.Module<Tensor, Tensor>
{
    private readonly HookPoint hook_resid_pre;
    private readonly HookPoint hook_mlp_pre;
    private readonly HookPoint hook_mlp_out;
    private readonly HookPoint hook_resid_post;
    private readonly Linear fc1;
    private readonly Linear fc2;

    public TinyBlock(int layer, int dModel)
        : base($"block{layer}")
    {
        hook_resid_pre = new HookPoint($"blocks.{layer}.hook_resid_pre", layer);
        hook_mlp_pre = new HookPoint($"blocks.{layer}.mlp.hook_pre", layer);
        hook_mlp_out = new HookPoint($"blocks.{layer}.hook_mlp_out", layer);
        hook_resid_post = new HookPoint($"blocks.{layer}.hook_resid_post", layer);
        fc1 = nn.Linear(dModel, 4 * dModel);
        fc2 = nn.Linear(4 * dModel, dModel);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = hook_resid_pre.call(x);
        var pre = hook_mlp_pre.call(fc1.call(x));
        var mlpOut = hook_mlp_out.call(fc2.call(nn.functional.relu(pre)));
        return hook_resid_post.call(x + mlpOut);
    }
}
