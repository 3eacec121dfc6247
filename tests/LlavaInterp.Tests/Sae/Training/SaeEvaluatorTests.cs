using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Sae.Training;
using LlavaInterp.Tests.Llava;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae.Training;

public sealed class SaeEvaluatorTests(TinyLlavaFixture tiny) : IClassFixture<TinyLlavaFixture>
{
    private static SparseAutoencoder Sae(int dIn, Tensor wEnc, Tensor wDec, string hook) =>
        SparseAutoencoder.FromTensors(
            new SaeConfig { DIn = dIn, DSae = (int)wEnc.shape[1], HookName = hook, HookLayer = 1, ApplyBDecToInput = false },
            new Dictionary<string, Tensor>
            {
                ["W_enc"] = wEnc,
                ["W_dec"] = wDec,
                ["b_enc"] = torch.zeros(wEnc.shape[1]),
                ["b_dec"] = torch.zeros(dIn),
            });

    [Fact]
    public void MetricsOfAnIdentityReluSaeMatchTheHandComputation()
    {
        // acts = relu(x), recon = relu(x): x = [[1, -2], [3, 4]] → squared errors [[0, 4], [0, 0]]; batch mean [2, 1],
        // squared deviations sum to 20; rows have 1 and 2 active features; feature 3 never fires.
        using var eye = torch.tensor(new float[] { 1, 0, 0, 0, 1, 0 }, [2, 3]);
        using var sae = Sae(2, eye, eye.t().contiguous(), "blocks.1.hook_resid_post");
        using var x = torch.tensor(new float[] { 1, -2, 3, 4 }, [2, 2]);
        var e = SaeEvaluator.Evaluate(sae, [x]);
        Assert.Equal(2, e.Tokens);
        Assert.Equal(1.0, e.Mse, 12);
        Assert.Equal(1 - (4.0 / 20.0), e.ExplainedVariance, 12);
        Assert.Equal(1.5, e.L0, 12);
        Assert.Equal(1, e.DeadFeatures);
        Assert.Equal(1.0 / 3, e.DeadFraction, 12);
    }

    [Fact]
    public void ALosslessSaeRecoversTheWholeCeLossOnTheTinyModel()
    {
        const string hook = "blocks.1.hook_resid_post";
        int d = tiny.Model.Config.TextConfig.HiddenSize;
        // W_enc = [I, −I], W_dec = [I; −I]: relu(x) − relu(−x) = x, an exact reconstruction.
        using var eye = torch.eye(d);
        using var wEnc = torch.cat([eye, -eye], 1);
        using var wDec = torch.cat([eye, -eye], 0);
        using var sae = Sae(d, wEnc, wDec, hook);
        using var prompt = tiny.ImageChatPrompt();
        double NextTokenCe(LlavaInput input, LlavaInterp.Models.Gemma.GemmaOutput output)
        {
            var logits = output.Logits!;
            var targets = input.InputIds[.., 1..];
            var logp = torch.nn.functional.log_softmax(logits[.., ..^1], -1);
            return -logp.gather(-1, targets.unsqueeze(-1)).mean().item<float>();
        }

        var ce = SaeEvaluator.CeLoss(tiny.Model, sae, [LlavaInput.From(prompt)], NextTokenCe);
        // The fixture is random, so ablation may even help; it only has to change the loss for the ratio to mean something.
        Assert.True(Math.Abs(ce.ZeroAblationLoss - ce.CleanLoss) > 0.01, $"zero ablation should change the loss: {ce}.");
        Assert.Equal(ce.CleanLoss, ce.SaeLoss, 4);
        Assert.InRange(ce.Recovered, 0.999, 1.001);

        using var zeroSae = Sae(d, torch.zeros(d, 4), torch.zeros(4, d), hook);
        var none = SaeEvaluator.CeLoss(tiny.Model, zeroSae, [LlavaInput.From(prompt)], NextTokenCe);
        Assert.Equal(0.0, none.Recovered, 6);
        var ex = Assert.Throws<SaeException>(() => SaeEvaluator.CeLoss(tiny.Model, Sae(2, torch.zeros(2, 2), torch.zeros(2, 2), "nope"), [LlavaInput.From(prompt)], NextTokenCe));
        Assert.Contains("nope", ex.Message);
    }
}
