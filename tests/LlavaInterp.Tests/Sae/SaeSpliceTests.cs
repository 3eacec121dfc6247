using LlavaInterp.Analysis;
using LlavaInterp.Hooks;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Hooks;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

public sealed class SaeSpliceTests(ITestOutputHelper output)
{
    private const string Hook = "blocks.1.hook_resid_post";

    private static TinyResidualModel Model() => new(64, nLayers: 2, seed: 7);

    private static TinyInput Input() => new(Fixture.Load("sae.standard.input"));

    [Fact]
    public void SpliceWithErrorTermLeavesTheModelOutputUnchanged()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        using var splice = sae.Splice();
        Assert.True(splice.UseErrorTerm);
        var baseline = model.call(Input());

        using (splice.AttachTo(model))
        {
            var attached = model.call(Input());
            TensorAssert.Close(baseline, attached, atol: 0, rtol: 0, what: "attached splice");
        }

        TensorAssert.Close(baseline, model.RunWithHooks(Input(), splice.Spec), atol: 0, rtol: 0, what: "scoped splice");

        // The splice really ran: without the error term the output differs.
        splice.UseErrorTerm = false;
        var replaced = model.RunWithHooks(Input(), splice.Spec);
        Assert.True(SaeFixture.MaxAbs(baseline, replaced) > 1e-2);
    }

    [Fact]
    public void TheSaeIsAHookedModuleWithSaeLensHookPoints()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        var x = Fixture.Load("sae.standard.input");
        Assert.Equal(
            [$"{Hook}.hook_sae_input", $"{Hook}.hook_sae_acts_pre", $"{Hook}.hook_sae_acts_post", $"{Hook}.hook_sae_recons", $"{Hook}.hook_sae_error", $"{Hook}.hook_sae_output"],
            sae.HookNames);

        // sae.call(x) is SAELens's forward: the reconstruction, recorded at every hook point it passes.
        var (output, cache) = sae.RunWithCache(x);
        using (cache)
        {
            TensorAssert.Close(Fixture.Load("sae.standard.feature_acts"), cache[$"{Hook}.hook_sae_acts_post"], what: "acts_post vs golden");
            TensorAssert.Close(Fixture.Load("sae.standard.hidden_pre"), cache[$"{Hook}.hook_sae_acts_pre"], what: "acts_pre vs golden");
            TensorAssert.Close(sae.Forward(x), output, atol: 0, rtol: 0, what: "forward = reconstruction");
            TensorAssert.Close(output, cache[$"{Hook}.hook_sae_output"], atol: 0, rtol: 0, what: "output hook");
            Assert.False(cache.ContainsKey($"{Hook}.hook_sae_error"));
        }

        // Encode fires the encode hooks: an ablation at acts_post shows in what Encode returns.
        using (sae.Hooks(($"{Hook}.hook_sae_acts_post", (a, _) => torch.zeros_like(a))))
        {
            Assert.Equal(0.0, sae.Encode(x).abs().sum().item<float>());
        }

        // With the error term and no hook, the SAE gives its input back.
        sae.UseErrorTerm = true;
        TensorAssert.Close(x, sae.call(x), atol: 0, rtol: 0, what: "error term, no hook");
    }

    [Fact]
    public void AnInPlaceEditOfTheSaeInputChangesOnlyTheSaePath()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        using var splice = sae.Splice();
        var x = Fixture.Load("sae.standard.input");
        var original = x.clone();
        Tensor edited;
        using (splice.Hooks(($"{Hook}.hook_sae_input", (a, _) => a.mul_(0.5))))
        {
            edited = splice.call(x);
        }

        // The caller's activation is untouched, and the output is recons(x/2) + (x - recons(x)).
        TensorAssert.Close(original, x, atol: 0, rtol: 0, what: "input not edited in place");
        var expected = sae.Forward(x * 0.5) + (x - sae.Forward(x));
        TensorAssert.Close(expected, edited, atol: 1e-5, rtol: 1e-5, what: "edited input through the splice");
    }

    [Fact]
    public void SpliceWithoutErrorTermReplacesTheActivationByTheReconstruction()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        using var splice = sae.Splice(useErrorTerm: false);
        var (_, clean) = model.RunWithCache(Input(), n => n == Hook);
        using (clean)
        {
            var (outputTensor, cache) = model.RunWithCache(Input(), n => n == Hook, hooks: [splice.Spec]);
            using (cache)
            {
                var expected = sae.Forward(clean[Hook]);
                TensorAssert.Close(expected, cache[Hook], atol: 0, rtol: 0, what: "resid_post = reconstruction");
                TensorAssert.Close(expected, outputTensor, atol: 0, rtol: 0, what: "model output");
            }
        }
    }

    [Fact]
    public void RunWithCacheRecordsTheSaeHookPoints()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        using var splice = sae.Splice();
        var baseline = model.call(Input());
        var (outputTensor, cache) = splice.RunWithCache(model, Input());
        using (cache)
        {
            TensorAssert.Close(baseline, outputTensor, atol: 0, rtol: 0, what: "output");
            foreach (var suffix in new[] { SaeSplice.InputHook, SaeSplice.ActsPreHook, SaeSplice.ActsPostHook, SaeSplice.ReconsHook, SaeSplice.ErrorHook, SaeSplice.OutputHook })
            {
                Assert.True(cache.ContainsKey($"{Hook}.{suffix}"), suffix);
            }

            Assert.True(cache.ContainsKey("blocks.0.hook_resid_post"));
            var (pre, acts) = sae.EncodeWithPre(cache[$"{Hook}.hook_sae_input"]);
            TensorAssert.Close(cache[Hook], cache[$"{Hook}.hook_sae_input"], atol: 0, rtol: 0, what: "sae input = activation");
            TensorAssert.Close(pre, cache[$"{Hook}.hook_sae_acts_pre"], atol: 0, rtol: 0, what: "acts_pre");
            TensorAssert.Close(acts, cache[$"{Hook}.hook_sae_acts_post"], atol: 0, rtol: 0, what: "acts_post");
            TensorAssert.Close(sae.Decode(acts), cache[$"{Hook}.hook_sae_recons"], atol: 0, rtol: 0, what: "recons");
            TensorAssert.Close(cache[Hook] - sae.Decode(acts), cache[$"{Hook}.hook_sae_error"], atol: 0, rtol: 0, what: "error");
            TensorAssert.Close(cache[Hook], cache[$"{Hook}.hook_sae_output"], atol: 0, rtol: 0, what: "output");
        }
    }

    [Fact]
    public void EditingFeaturesInSpliceChangesOnlyTheirContribution()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        using var splice = sae.Splice();
        var (baseline, clean) = model.RunWithCache(Input(), n => n == Hook);
        using (clean)
        {
            var x = clean[Hook];
            var acts = sae.Encode(x);
            int feature = FeatureActivations.TopK(acts, PositionSelector.All, FeatureAggregation.Sum, 1)[0].Index;
            var af = acts.select(-1, feature).unsqueeze(-1);
            var expected = x - (af * sae.WDec[feature]);

            // An in-place edit through a scoped hook on the splice's own hook point.
            Tensor edited;
            using (splice.Hooks(HookSpec.ForName(splice.Name(SaeSplice.ActsPostHook), (a, _) =>
            {
                a.select(-1, feature).zero_();
                return a;
            })))
            {
                edited = model.RunWithHooks(Input(), splice.Spec);
            }

            double d = TensorAssert.Close(expected, edited, atol: 1e-4, rtol: 1e-5, what: "ablation through splice");
            Assert.True(SaeFixture.MaxAbs(baseline, edited) > 1e-2);

            // The same ablation as a steering hook (no splice): x + (0 - a_f)·W_dec[f].
            var steered = model.RunWithHooks(Input(), Steering.AblateFeature(sae, feature));
            double d2 = TensorAssert.Close(expected, steered, atol: 1e-5, rtol: 1e-6, what: "Steering.AblateFeature");
            output.WriteLine($"ablating feature {feature}: splice vs x - a·W_dec max|diff| {d:E2}; steering {d2:E2}");

            // A model-level hook on the splice (new tensor instead of in-place) gives the same result, and is removable.
            using (splice.AddHook(splice.Name(SaeSplice.ActsPostHook), (a, _) => a.index_fill(-1, torch.tensor(new long[] { feature }), 0)))
            {
                TensorAssert.Close(edited, model.RunWithHooks(Input(), splice.Spec), atol: 0, rtol: 0, what: "model-level splice hook");
            }

            TensorAssert.Close(baseline, model.RunWithHooks(Input(), splice.Spec), atol: 0, rtol: 0, what: "after removing the hook");
        }
    }

    [Fact]
    public void ErrorHookAndOutputHookAreApplied()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        using var splice = sae.Splice();
        var (_, clean) = model.RunWithCache(Input(), n => n == Hook);
        using (clean)
        {
            var x = clean[Hook];
            Tensor zeroError;
            using (splice.Hooks(HookSpec.ForName(splice.Name(SaeSplice.ErrorHook), (e, _) => torch.zeros_like(e))))
            {
                zeroError = model.RunWithHooks(Input(), splice.Spec);
            }

            TensorAssert.Close(sae.Forward(x), zeroError, atol: 1e-5, rtol: 1e-6, what: "zeroed error = reconstruction");

            Tensor doubled;
            using (splice.Hooks(HookSpec.ForName(splice.Name(SaeSplice.OutputHook), (o, _) => o * 2)))
            {
                doubled = model.RunWithHooks(Input(), splice.Spec);
            }

            TensorAssert.Close(x * 2, doubled, atol: 0, rtol: 0, what: "output hook");
        }
    }

    [Fact]
    public void SpliceHooksSeeTheModelsPositionOffsetAndLayer()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var sae = SaeFixture.StandardAt(Hook, 1);
        using var splice = sae.Splice();
        HookContext? seen = null;
        using (splice.Hooks(HookSpec.ForName(splice.Name(SaeSplice.ActsPostHook), (a, ctx) =>
        {
            seen = ctx;
            return a;
        })))
        {
            model.RunWithHooks(new TinyInput(Fixture.Load("sae.standard.input").narrow(1, 34, 1), PositionOffset: 35), splice.Spec);
        }

        Assert.NotNull(seen);
        Assert.Equal(35, seen!.PositionOffset);
        Assert.Equal(1, seen.Layer);
        Assert.Equal($"{Hook}.hook_sae_acts_post", seen.Name);
    }

    [Fact]
    public void SpliceErrorsAreClear()
    {
        using var scope = torch.NewDisposeScope();
        using var model = Model();
        using var wrongHook = SaeFixture.StandardAt("blocks.7.hook_resid_post", 7);
        using var splice = wrongHook.Splice();
        Assert.Throws<HookException>(() => splice.AttachTo(model));

        // An SAE of another width at an existing hook point: the run fails naming the hook and both sizes.
        using var narrow = SparseAutoencoder.FromTensors(
            SaeConfig.Parse("""{"d_in": 32, "d_sae": 16, "hook_name": "blocks.1.hook_resid_post"}""", "t"),
            SaeLoadTests.RandomWeights(32, 16, 1));
        using var narrowSplice = narrow.Splice();
        var ex = Assert.Throws<HookException>(() => model.RunWithHooks(Input(), narrowSplice.Spec));
        var inner = Assert.IsType<SaeException>(ex.InnerException);
        Assert.Contains("64", inner.Message);
        Assert.Contains("32", inner.Message);
        Assert.Equal(Hook, inner.HookName);
    }
}
