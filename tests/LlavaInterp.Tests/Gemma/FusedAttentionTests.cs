using LlavaInterp.Models.Gemma;
using LlavaInterp.Tests.Support;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Gemma;

/// <summary>The fused attention path (no pattern hooks) and the eager one (a pattern hook present) agree.</summary>
public sealed class FusedAttentionTests
{
    [Fact]
    public void FusedAndEagerAttentionGiveTheSameLogitsAndHookZStillFires()
    {
        using var scope = NewDisposeScope();
        using var model = TinyGemma.Load();
        using var noGrad = no_grad();
        int zCalls = 0;
        Tensor fused;
        using (model.AddHook("blocks.0.attn.hook_z", (x, _) => { zCalls++; return x; }))
        {
            using var output = model.call(GemmaInput.FromIds(TinyGemma.TextIds));
            fused = output.Logits!.clone();
        }

        Assert.Equal(1, zCalls);
        int patternCalls = 0;
        Tensor eager;
        using (model.AddHook(n => n.EndsWith("attn.hook_pattern", StringComparison.Ordinal), (x, _) => { patternCalls++; return x; }))
        {
            using var output = model.call(GemmaInput.FromIds(TinyGemma.TextIds));
            eager = output.Logits!.clone();
        }

        Assert.Equal(model.Config.NumHiddenLayers, patternCalls);
        TensorAssert.Close(eager, fused, what: "fused vs eager logits");
    }
}
