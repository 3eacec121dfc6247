using LlavaInterp.Hooks;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Hooks;

public sealed class HookTests
{
    private static Tensor Input(int seed = 1)
    {
        torch.manual_seed(seed);
        return torch.randn(2, 5, 8);
    }

    [Fact]
    public void HookNamesAreDiscoveredInModuleOrder()
    {
        using var model = new TinyResidualModel(8, 2);
        Assert.Equal(
            new[]
            {
                "hook_embed",
                "blocks.0.hook_resid_pre", "blocks.0.mlp.hook_pre", "blocks.0.hook_mlp_out", "blocks.0.hook_resid_post",
                "blocks.1.hook_resid_pre", "blocks.1.mlp.hook_pre", "blocks.1.hook_mlp_out", "blocks.1.hook_resid_post",
            },
            model.HookNames);
        Assert.Equal(1, model.HookDict["blocks.1.mlp.hook_pre"].Layer);
        Assert.Null(model.HookDict["hook_embed"].Layer);
        Assert.DoesNotContain(model.state_dict().Keys, k => k.Contains("hook", StringComparison.Ordinal));
    }

    [Fact]
    public void RunWithCacheRecordsActivationsThatMatchTheForward()
    {
        using var model = new TinyResidualModel(8, 2);
        using var x = Input();
        using var plain = model.call(new TinyInput(x));
        var (output, cache) = model.RunWithCache(new TinyInput(x));
        using (output)
        using (cache)
        {
            Assert.Equal(model.HookNames, cache.Names);
            TensorAssert.Close(plain, output, 0, 0, "output");
            TensorAssert.Close(plain, cache["blocks.1.hook_resid_post"], 0, 0, "last resid_post");
            TensorAssert.Close(x, cache["hook_embed"], 0, 0, "embed");
            using var expected = cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_mlp_out"];
            TensorAssert.Close(expected, cache["blocks.0.hook_resid_post"], 0, 0, "residual sum");
            using var stacked = cache.Stack("hook_resid_post");
            Assert.Equal(new long[] { 2, 2, 5, 8 }, stacked.shape);
        }
    }

    [Fact]
    public void RunWithCacheFiltersNamesMovesDeviceAndStopsEarly()
    {
        using var model = new TinyResidualModel(8, 3);
        using var x = Input();
        var (output, cache) = model.RunWithCache(new TinyInput(x), n => n.EndsWith("hook_resid_post", StringComparison.Ordinal), torch.CPU, stopAtLayer: 2);
        using (output)
        using (cache)
        {
            Assert.Equal(new[] { "blocks.0.hook_resid_post", "blocks.1.hook_resid_post" }, cache.Names);
            TensorAssert.Close(cache["blocks.1.hook_resid_post"], output, 0, 0, "stop output");
            Assert.Throws<KeyNotFoundException>(() => cache["blocks.2.hook_resid_post"]);
        }
    }

    [Fact]
    public void CachedTensorsOutliveTheForwardDisposeScope()
    {
        using var model = new TinyResidualModel(8, 1);
        using var x = Input();
        ActivationCache cache;
        using (torch.NewDisposeScope())
        {
            (_, cache) = model.RunWithCache(new TinyInput(x));
        }

        using (cache)
        {
            Assert.False(cache["blocks.0.hook_resid_post"].IsInvalid);
            Assert.Equal(new long[] { 2, 5, 8 }, cache["blocks.0.hook_resid_post"].shape);
        }
    }

    [Fact]
    public void ReplacingHookChangesDownstreamAndScopeEndsIt()
    {
        using var model = new TinyResidualModel(8, 2);
        using var x = Input();
        using var plain = model.call(new TinyInput(x));
        using var zeroed = model.RunWithHooks(new TinyInput(x), ("blocks.1.hook_mlp_out", (a, _) => torch.zeros_like(a)));
        using (var _ = model.Hooks(("blocks.1.hook_mlp_out", (a, _) => torch.zeros_like(a))))
        {
            using var inScope = model.call(new TinyInput(x));
            TensorAssert.Close(zeroed, inScope, 0, 0, "in scope");
        }

        var (o, cache) = model.RunWithCache(new TinyInput(x));
        using (o)
        using (cache)
        {
            TensorAssert.Close(cache["blocks.1.hook_resid_pre"], zeroed, 0, 0, "zeroed mlp_out leaves resid_pre");
            TensorAssert.Close(plain, o, 0, 0, "hook gone after scope");
        }
    }

    [Fact]
    public void ModelHooksFireInEveryRunUntilReset()
    {
        using var model = new TinyResidualModel(8, 2);
        using var x = Input();
        int calls = 0;
        int permanentCalls = 0;
        using var handle = model.AddHook("blocks.0.hook_resid_post", (a, _) => { calls++; return a; });
        model.AddHook(n => n.EndsWith("hook_resid_pre", StringComparison.Ordinal), (a, _) => { permanentCalls++; return a; }, permanent: true);
        model.call(new TinyInput(x)).Dispose();
        model.call(new TinyInput(x)).Dispose();
        Assert.Equal(2, calls);
        Assert.Equal(4, permanentCalls);
        model.ResetHooks();
        model.call(new TinyInput(x)).Dispose();
        Assert.Equal(2, calls);
        Assert.Equal(6, permanentCalls);
        model.ResetHooks(includePermanent: true);
        model.call(new TinyInput(x)).Dispose();
        Assert.Equal(6, permanentCalls);
    }

    [Fact]
    public void DisposingAHandleRemovesOnlyThatHook()
    {
        using var model = new TinyResidualModel(8, 1);
        using var x = Input();
        int a = 0, b = 0;
        var ha = model.AddHook("hook_embed", (t, _) => { a++; return t; });
        using var hb = model.AddHook("hook_embed", (t, _) => { b++; return t; });
        ha.Dispose();
        model.call(new TinyInput(x)).Dispose();
        Assert.Equal((0, 1), (a, b));
    }

    [Fact]
    public void HookContextCarriesNameLayerAndPositionOffset()
    {
        using var model = new TinyResidualModel(8, 2);
        using var x = Input();
        var seen = new List<HookContext>();
        using var _ = model.Hooks(HookSpec.ForFilter(n => n.EndsWith("hook_resid_post", StringComparison.Ordinal), (a, ctx) => { seen.Add(ctx); return a; }));
        model.call(new TinyInput(x, PositionOffset: 7)).Dispose();
        Assert.Equal(new[] { "blocks.0.hook_resid_post", "blocks.1.hook_resid_post" }, seen.Select(c => c.Name));
        Assert.Equal(new int?[] { 0, 1 }, seen.Select(c => c.Layer));
        Assert.All(seen, c => Assert.Equal(7, c.PositionOffset));
        Assert.Equal(0, HookRun.PositionOffset);
    }

    [Fact]
    public void ThrowingHookIsWrappedWithItsNameAndLeavesNothingBehind()
    {
        using var model = new TinyResidualModel(8, 2);
        using var x = Input();
        using var plain = model.call(new TinyInput(x));
        var ex = Assert.Throws<HookException>(() => model.RunWithCache(new TinyInput(x), hooks: [("blocks.1.mlp.hook_pre", (a, _) => throw new InvalidOperationException("boom"))]));
        Assert.Equal("blocks.1.mlp.hook_pre", ex.HookName);
        Assert.Contains("boom", ex.Message, StringComparison.Ordinal);
        Assert.IsType<InvalidOperationException>(ex.InnerException);

        // No scoped hook survives: a plain run is unchanged and nothing is recorded anywhere.
        using var after = model.call(new TinyInput(x));
        TensorAssert.Close(plain, after, 0, 0, "after failure");
        Assert.All(model.HookDict.Values, p => Assert.False(p.HasModelHooks));
    }

    [Fact]
    public void HookReturningWrongShapeOrUnknownNameIsATypedError()
    {
        using var model = new TinyResidualModel(8, 1);
        using var x = Input();
        var shape = Assert.Throws<HookException>(() => model.RunWithHooks(new TinyInput(x), ("blocks.0.hook_mlp_out", (a, _) => a[.., 0])));
        Assert.Equal("blocks.0.hook_mlp_out", shape.HookName);
        Assert.Contains("shape", shape.Message, StringComparison.Ordinal);
        var unknown = Assert.Throws<HookException>(() => model.AddHook("blocks.9.hook_resid_post", (a, _) => a));
        Assert.Equal("blocks.9.hook_resid_post", unknown.HookName);
        Assert.Throws<HookException>(() => model.AddHook("hook_embed", (a, _) => a, HookDirection.Backward));
    }

    [Fact]
    public void HookReturningAnotherDTypeOrDeviceIsATypedError()
    {
        using var model = new TinyResidualModel(8, 1);
        using var x = Input();
        var dtype = Assert.Throws<HookException>(() => model.RunWithHooks(new TinyInput(x), ("blocks.0.hook_mlp_out", (a, _) => a.to(ScalarType.Float64))));
        Assert.Equal("blocks.0.hook_mlp_out", dtype.HookName);
        Assert.Contains("Float64", dtype.Message, StringComparison.Ordinal);
        Assert.Contains("Float32", dtype.Message, StringComparison.Ordinal);
        var meta = Assert.Throws<HookException>(() => model.RunWithHooks(new TinyInput(x), ("blocks.0.hook_mlp_out", (a, _) => torch.empty_like(a, device: torch.META))));
        Assert.Contains("device", meta.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ScopedHooksBelongToTheirAsyncFlowOnly()
    {
        using var model = new TinyResidualModel(8, 2);
        using var x = Input();
        using var plain = model.call(new TinyInput(x));
        using var doubled = model.RunWithHooks(new TinyInput(x), ("blocks.0.hook_mlp_out", (a, _) => a * 2));
        using var zeroed = model.RunWithHooks(new TinyInput(x), ("blocks.0.hook_mlp_out", (a, _) => a * 0));

        using var barrier = new Barrier(3);
        Tensor RunIn(HookFunction? hook)
        {
            using var scope = hook is null ? null : model.Hooks(("blocks.0.hook_mlp_out", hook));
            barrier.SignalAndWait();
            Tensor last = model.call(new TinyInput(x));
            for (int i = 0; i < 20; i++)
            {
                last.Dispose();
                last = model.call(new TinyInput(x));
            }

            return last;
        }

        var t1 = Task.Run(() => RunIn((a, _) => a * 2));
        var t2 = Task.Run(() => RunIn((a, _) => a * 0));
        var t3 = Task.Run(() => RunIn(null));
        var results = await Task.WhenAll(t1, t2, t3);
        TensorAssert.Close(doubled, results[0], 0, 0, "thread with doubling hook");
        TensorAssert.Close(zeroed, results[1], 0, 0, "thread with zeroing hook");
        TensorAssert.Close(plain, results[2], 0, 0, "thread without hooks");
        foreach (var r in results)
        {
            r.Dispose();
        }
    }

    [Fact]
    public async Task ScopeFlowsAcrossAwait()
    {
        using var model = new TinyResidualModel(8, 1);
        using var x = Input();
        int calls = 0;
        using (model.Hooks(("hook_embed", (a, _) => { calls++; return a; })))
        {
            await Task.Yield();
            await Task.Run(() => model.call(new TinyInput(x)).Dispose());
        }

        model.call(new TinyInput(x)).Dispose();
        Assert.Equal(1, calls);
    }

    [Fact]
    public void CacheSavesToSafetensorsByHookName()
    {
        using var model = new TinyResidualModel(8, 2);
        using var x = Input();
        using var dir = new TempDir();
        var (output, cache) = model.RunWithCache(new TinyInput(x));
        using (output)
        using (cache)
        {
            cache.Save(dir.File("cache.safetensors"));
            using var file = LlavaInterp.TensorFiles.SafetensorsFile.Open(dir.File("cache.safetensors"));
            Assert.Equal(cache.Names.OrderBy(n => n, StringComparer.Ordinal), file.Names);
            foreach (var name in cache.Names)
            {
                using var loaded = file.Load(name);
                TensorAssert.Close(cache[name], loaded, 0, 0, name);
            }
        }
    }
}
