using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

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
