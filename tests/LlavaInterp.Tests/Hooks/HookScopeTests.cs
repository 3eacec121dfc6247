using LlavaInterp.Hooks;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Hooks;

/// <summary>Scoped hooks stay exact whatever order scopes are disposed in, and never reach another flow.</summary>
public sealed class HookScopeTests : IDisposable
{
    private readonly TinyResidualModel model = new(8, 1);
    private readonly Tensor x = Input();
    private readonly Counters c = new();

    public void Dispose()
    {
        x.Dispose();
        model.Dispose();
    }

    private static Tensor Input()
    {
        torch.manual_seed(3);
        return torch.randn(1, 3, 8);
    }

    private void Run() => model.call(new TinyInput(x)).Dispose();

    private sealed class Counters
    {
        public int A;
        public int B;

        public HookSpec CountA(string name) => (name, (x, _) => { Interlocked.Increment(ref A); return x; });

        public HookSpec CountB(string name) => (name, (x, _) => { Interlocked.Increment(ref B); return x; });
    }

    [Fact]
    public void ScopesDisposedOutOfOrderLeaveExactlyTheOpenOnes()
    {
        var s1 = model.Hooks(c.CountA("hook_embed"));
        var s2 = model.Hooks(c.CountB("hook_embed"));
        s1.Dispose();
        Run();
        Assert.Equal((0, 1), (c.A, c.B));

        s2.Dispose();

        // Another scope open in this flow makes hook points look the table up: the disposed ones must not come back.
        using (model.Hooks(("blocks.0.hook_resid_post", (t, _) => t)))
        {
            Run();
        }

        Run();
        Assert.Equal((0, 1), (c.A, c.B));
    }

    [Fact]
    public async Task ScopesDisposedOutOfOrderDoNotComeBackWhileAnotherThreadHoldsAScope()
    {
        var s1 = model.Hooks(c.CountA("hook_embed"));
        var s2 = model.Hooks(c.CountB("hook_embed"));
        s1.Dispose();
        s2.Dispose();

        using var opened = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var other = Task.Run(() =>
        {
            using (model.Hooks(("blocks.0.hook_resid_post", (t, _) => t)))
            {
                opened.Set();
                release.Wait();
            }
        });
        opened.Wait();
        try
        {
            Run();
        }
        finally
        {
            release.Set();
            await other;
        }

        Assert.Equal((0, 0), (c.A, c.B));
    }

    [Fact]
    public async Task AChildFlowStopsSeeingAScopeOnceItIsDisposed()
    {
        using var disposed = new ManualResetEventSlim();
        Task child;
        using (model.Hooks(c.CountA("hook_embed")))
        {
            // The child inherits the flow's scopes when it starts, and runs after the scope has ended.
            child = Task.Run(() =>
            {
                disposed.Wait();
                Run();
            });
        }

        disposed.Set();
        await child;
        Assert.Equal(0, c.A);
    }

    [Fact]
    public async Task DisposingAScopeTwiceOrFromAnotherThreadIsHarmless()
    {
        using var outer = model.Hooks(c.CountA("hook_embed"));
        var inner = model.Hooks(c.CountB("hook_embed"));
        await Task.Run(inner.Dispose);
        inner.Dispose();
        Run();
        Assert.Equal((1, 0), (c.A, c.B));
    }

    [Fact]
    public void NestedScopesFireOuterFirstAndUnwindInOrder()
    {
        var order = new List<string>();
        using (model.Hooks(("hook_embed", (t, _) => { order.Add("outer"); return t; })))
        {
            using (model.Hooks(("hook_embed", (t, _) => { order.Add("inner"); return t; })))
            {
                Run();
            }

            Run();
        }

        Run();
        Assert.Equal(new[] { "outer", "inner", "outer" }, order);
    }
}
