using LlavaInterp.Hooks;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

/// <summary>Input of <see cref="SaeTestModel"/>: activations [batch, positions, d] and the chunk's absolute start.</summary>
public sealed record SaeModelInput(Tensor X, long PositionOffset = 0);

/// <summary>
/// A residual MLP stack with TransformerLens hook names (blocks.{i}.hook_resid_pre / hook_resid_post), position-wise
/// (no attention), so a sequence run in chunks with position offsets gives the same activations as one full run.
/// </summary>
public sealed class SaeTestModel : HookedRootModule<SaeModelInput, Tensor>
{
    private readonly ModuleList<SaeTestBlock> blocks;

    public SaeTestModel(int dModel, int nLayers = 2, int seed = 7)
        : base(nameof(SaeTestModel))
    {
        torch.manual_seed(seed);
        blocks = new ModuleList<SaeTestBlock>(Enumerable.Range(0, nLayers).Select(i => new SaeTestBlock(i, dModel)).ToArray());
        RegisterComponents();
        SetupHooks();
    }

    public override Tensor forward(SaeModelInput input)
    {
        using var scope = torch.NewDisposeScope();
        using var offset = HookRun.EnterPositionOffset(input.PositionOffset);
        using var noGrad = torch.no_grad();
        var h = input.X;
        foreach (var block in blocks)
        {
            h = block.call(h);
        }

        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>resid_post = resid_pre + fc2(relu(fc1(resid_pre))).</summary>
public sealed class SaeTestBlock : nn.Module<Tensor, Tensor>
{
    private readonly HookPoint hook_resid_pre;
    private readonly HookPoint hook_resid_post;
    private readonly Linear fc1;
    private readonly Linear fc2;

    public SaeTestBlock(int layer, int dModel)
        : base($"block{layer}")
    {
        hook_resid_pre = new HookPoint($"blocks.{layer}.hook_resid_pre", layer);
        hook_resid_post = new HookPoint($"blocks.{layer}.hook_resid_post", layer);
        fc1 = nn.Linear(dModel, 2 * dModel);
        fc2 = nn.Linear(2 * dModel, dModel);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = hook_resid_pre.call(x);
        return hook_resid_post.call(x + fc2.call(nn.functional.relu(fc1.call(x))));
    }
}

/// <summary>Shared fixture paths and values for the SAE tests.</summary>
public static class SaeFixture
{
    public static string StandardFolder => Fixture.Path("sae", "standard-L2");

    public static string GemmaScopeNpz => Fixture.Path("sae", "gemmascope-L3", "params.npz");

    public static string ExplanationsFile => Fixture.Path("sae", "explanations_tiny-llava-gemma_2-res-tiny256.json");

    /// <summary>prompts.image_chat.image_token_positions.</summary>
    public static long[] ImagePositions =>
        Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("image_token_positions").EnumerateArray().Select(e => e.GetInt64()).ToArray();

    /// <summary>The golden standard SAE re-pointed at another hook (same weights), for the tiny test model.</summary>
    public static SparseAutoencoder StandardAt(string hookName, int layer)
    {
        var config = SaeConfig.Load(Path.Combine(StandardFolder, "cfg.json")) with { HookName = hookName, HookLayer = layer };
        using var file = LlavaInterp.TensorFiles.SafetensorsFile.Open(Path.Combine(StandardFolder, "sae_weights.safetensors"));
        var tensors = file.Names.ToDictionary(n => n, n => file.Load(n));
        try
        {
            return SparseAutoencoder.FromTensors(config, tensors);
        }
        finally
        {
            foreach (var t in tensors.Values)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>Max |a - b|.</summary>
    public static double MaxAbs(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        return (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();
    }
}
