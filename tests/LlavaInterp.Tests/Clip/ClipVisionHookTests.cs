using LlavaInterp.Hooks;
using LlavaInterp.Models.Clip;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.Clip;

public sealed class ClipVisionHookTests
{

    // Every hook point of a block, in the order the forward pass reaches it.
    private static readonly string[] ExecutionOrder =
    [
        "hook_resid_pre",
        "ln1.hook_normalized",
        "attn.hook_q",
        "attn.hook_k",
        "attn.hook_v",
        "attn.hook_attn_scores",
        "attn.hook_pattern",
        "attn.hook_z",
        "hook_attn_out",
        "hook_resid_mid",
        "ln2.hook_normalized",
        "mlp.hook_pre",
        "mlp.hook_post",
        "hook_mlp_out",
        "hook_resid_post",
    ];


    [Fact]
    public void HookNamesAreTheGoldenList()
    {
        using var model = new HookedClipVisionModel(TinyClip.Config(), device: torch.device("meta"));

        // Hook points come out in execution order (PyTorch's pre-order module walk).
        var expected = new List<string> { "vision.hook_patch_embed", "vision.hook_embed", "vision.ln_pre.hook_normalized" };
        for (int i = 0; i < 3; i++)
        {
            expected.AddRange(ExecutionOrder.Select(h => $"vision.blocks.{i}.{h}"));
        }

        expected.Add("vision.ln_post.hook_normalized");
        Assert.Equal(expected, model.HookNames);
        Assert.Equal(2, model.GetHookPoint("vision.blocks.2.attn.hook_pattern").Layer);
        Assert.Null(model.GetHookPoint("vision.hook_embed").Layer);
    }

    [Fact]
    public void HookPrefixIsConfigurable()
    {
        using var model = new HookedClipVisionModel(TinyClip.Config(), hookPrefix: "", device: torch.device("meta"));

        Assert.Equal("hook_patch_embed", model.HookNames[0]);
        Assert.Contains("blocks.1.attn.hook_z", model.HookNames);
        Assert.Throws<ArgumentException>(() => new HookedClipVisionModel(TinyClip.Config(), hookPrefix: "vision", device: torch.device("meta")));
    }

    [Fact]
    public void HookShapesFollowTheDocumentedLayout()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        var pixels = torch.cat([TinyClip.Pixels(), TinyClip.Pixels()], 0);
        using var cache = TinyClip.Cache(model, pixels: pixels);

        Assert.Equal([2L, 16, 32], cache["vision.hook_patch_embed"].shape);
        Assert.Equal([2L, 17, 32], cache["vision.hook_embed"].shape);
        Assert.Equal([2L, 17, 32], cache["vision.ln_pre.hook_normalized"].shape);
        Assert.Equal([2L, 17, 4, 8], cache["vision.blocks.1.attn.hook_q"].shape);
        Assert.Equal([2L, 17, 4, 8], cache["vision.blocks.1.attn.hook_k"].shape);
        Assert.Equal([2L, 17, 4, 8], cache["vision.blocks.1.attn.hook_v"].shape);
        Assert.Equal([2L, 4, 17, 17], cache["vision.blocks.1.attn.hook_attn_scores"].shape);
        Assert.Equal([2L, 4, 17, 17], cache["vision.blocks.1.attn.hook_pattern"].shape);
        Assert.Equal([2L, 17, 4, 8], cache["vision.blocks.1.attn.hook_z"].shape);
        Assert.Equal([2L, 17, 64], cache["vision.blocks.1.mlp.hook_pre"].shape);
        Assert.Equal([2L, 17, 64], cache["vision.blocks.1.mlp.hook_post"].shape);
        Assert.Equal([2L, 17, 32], cache["vision.blocks.1.hook_mlp_out"].shape);
        Assert.Equal([2L, 32], cache["vision.ln_post.hook_normalized"].shape);
    }

    [Fact]
    public void AttentionHooksComposeAsDocumented()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        using var cache = TinyClip.Cache(model);

        var attn = model.VisionModel.Encoder.Layers[1].SelfAttn;
        var mlp = model.VisionModel.Encoder.Layers[1].Mlp;
        string b = "vision.blocks.1.";
        var ln1 = cache[b + "ln1.hook_normalized"];

        // hook_q is the unscaled projection per head; scores are (q · head_dim^-0.5)·kᵀ; pattern their softmax.
        var q = attn.QProj.call(ln1).view(1, 17, 4, 8);
        TensorAssert.Close(q, cache[b + "attn.hook_q"], atol: 1e-6, rtol: 0, what: "hook_q");
        var scores = torch.matmul((cache[b + "attn.hook_q"] * Math.Pow(8, -0.5)).transpose(1, 2), cache[b + "attn.hook_k"].permute(0, 2, 3, 1));
        TensorAssert.Close(scores, cache[b + "attn.hook_attn_scores"], atol: 1e-5, rtol: 0, what: "scores");
        TensorAssert.Close(torch.softmax(scores, -1), cache[b + "attn.hook_pattern"], atol: 1e-6, rtol: 0, what: "pattern");

        // z is pattern·v per head in [batch, pos, head, d_head]; out_proj of z is attn_out.
        var z = torch.matmul(cache[b + "attn.hook_pattern"], cache[b + "attn.hook_v"].transpose(1, 2)).transpose(1, 2);
        TensorAssert.Close(z, cache[b + "attn.hook_z"], atol: 1e-6, rtol: 0, what: "hook_z");
        TensorAssert.Close(attn.OutProj.call(z.reshape(1, 17, 32)), cache[b + "hook_attn_out"], atol: 1e-6, rtol: 0, what: "attn_out");

        // mlp.hook_post is quick_gelu(mlp.hook_pre).
        var pre = cache[b + "mlp.hook_pre"];
        TensorAssert.Close(pre * torch.sigmoid(pre * 1.702), cache[b + "mlp.hook_post"], atol: 1e-6, rtol: 0, what: "quick_gelu");
        TensorAssert.Close(mlp.Fc2.call(cache[b + "mlp.hook_post"]), cache[b + "hook_mlp_out"], atol: 1e-6, rtol: 0, what: "mlp_out");
    }

    [Fact]
    public void AHookCanAblateAndPassThrough()
    {
        using var scope = torch.NewDisposeScope();
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        var input = new ClipVisionInput(TinyClip.Pixels());

        using var clean = model.call(input);
        using var passed = model.RunWithHooks(input, ("vision.blocks.1.hook_attn_out", (x, ctx) => x));
        TensorAssert.Close(clean.LastHiddenState, passed.LastHiddenState, atol: 0, rtol: 0, what: "pass-through");

        var contexts = new List<HookContext>();
        using var ablated = model.RunWithHooks(input, ("vision.blocks.1.hook_attn_out", (x, ctx) =>
        {
            contexts.Add(ctx);
            return torch.zeros_like(x);
        }));
        Assert.Single(contexts);
        Assert.Equal(1, contexts[0].Layer);
        Assert.Equal(0, contexts[0].PositionOffset);
        Assert.True((clean.LastHiddenState - ablated.LastHiddenState).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void PatchingInAnOutsideTensorLeavesItOwnedByTheCaller()
    {
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        using var pixels = TinyClip.Pixels();
        using var patch = torch.ones(1, 17, 32);

        // The last layer's output is replaced by a tensor the test owns; disposing the output must not dispose it.
        using (var result = model.RunWithHooks(new ClipVisionInput(pixels) { OutputHiddenStates = true }, ("vision.blocks.2.hook_resid_post", (x, ctx) => patch)))
        {
            Assert.Equal(17 * 32, result.LastHiddenState.sum().item<float>());
            Assert.Equal(17 * 32, result.HiddenStates![3].sum().item<float>());
        }

        Assert.False(patch.IsInvalid);
        Assert.Equal(17 * 32, patch.sum().item<float>());
    }

    [Fact]
    public void DisposingTheOutputDisposesEachTensorOnce()
    {
        using var model = TinyClip.Load();
        using var _ = torch.no_grad();
        using var pixels = TinyClip.Pixels();

        // No dispose scope here: the output alone owns its tensors (LastHiddenState is also HiddenStates[^1]).
        var result = model.call(new ClipVisionInput(pixels) { OutputHiddenStates = true });
        Assert.False(result.LastHiddenState.IsInvalid);
        result.Dispose();
        result.Dispose();

        Assert.True(result.LastHiddenState.IsInvalid);
        Assert.True(result.PooledOutput!.IsInvalid);
        Assert.All(result.HiddenStates!, t => Assert.True(t.IsInvalid));
    }
}
