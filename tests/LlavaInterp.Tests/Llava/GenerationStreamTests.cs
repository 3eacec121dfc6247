using LlavaInterp.Hooks;
using LlavaInterp.Llava;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Llava;

/// <summary>Streaming generation: runs only while the caller reads, in the caller's hook scope, and reports its failures.</summary>
public sealed class GenerationStreamTests(TinyLlavaFixture tiny) : IClassFixture<TinyLlavaFixture>
{
    private const string Probe = "blocks.0.hook_resid_post";

    // No stop token: the budget alone would end these runs, far later than the tests stop reading.
    private static readonly GenerationOptions Long = GenerationOptions.Greedy with { MaxNewTokens = 400, StopTokenIds = [] };

    private HookedLlava Model => tiny.Model;

    [Fact]
    public async Task BreakingOutOfTheStreamStopsGeneration()
    {
        using var prompt = tiny.ImageChatPrompt();
        int forwards = 0;
        using var counter = Model.AddHook(Probe, (a, _) => { Interlocked.Increment(ref forwards); return a; });
        int pieces = 0;
        await foreach (var piece in Model.GenerateStreamAsync(prompt, Long))
        {
            if (++pieces == 3)
            {
                break;
            }
        }

        int atBreak = Volatile.Read(ref forwards);
        await Task.Delay(300);
        Assert.Equal(atBreak, Volatile.Read(ref forwards));
        Assert.InRange(atBreak, 1, 50);
    }

    [Fact]
    public async Task HooksOfTheCallersScopeFireOnEveryStepAsInGenerate()
    {
        using var prompt = tiny.ImageChatPrompt();
        var options = GenerationOptions.Greedy with { MaxNewTokens = 6 };
        var expected = new List<long>();
        using (Model.Hooks((Probe, (a, ctx) => { expected.Add(ctx.PositionOffset); return a; })))
        {
            Model.Generate(prompt, options);
        }

        var seen = new List<long>();
        using (Model.Hooks((Probe, (a, ctx) => { seen.Add(ctx.PositionOffset); return a; })))
        {
            await foreach (var _ in Model.GenerateStreamAsync(prompt, options))
            {
            }
        }

        Assert.Equal(expected, seen);
    }

    [Fact]
    public async Task AScopeTheCallerOpensMidStreamAppliesToTheFollowingSteps()
    {
        using var prompt = tiny.ImageChatPrompt();
        int late = 0;
        IDisposable? scope = null;
        int pieces = 0;
        try
        {
            await foreach (var _ in Model.GenerateStreamAsync(prompt, Long))
            {
                if (++pieces == 2)
                {
                    scope = Model.Hooks((Probe, (a, _) => { late++; return a; }));
                }
                else if (pieces == 5)
                {
                    break;
                }
            }
        }
        finally
        {
            scope?.Dispose();
        }

        Assert.InRange(late, 3, 50);
    }

    [Fact]
    public async Task AFailingStepReachesTheCaller()
    {
        using var prompt = tiny.ImageChatPrompt();
        int calls = 0;
        using var failing = Model.Hooks((Probe, (a, _) => ++calls == 4 ? throw new InvalidOperationException("step four") : a));
        var ex = await Assert.ThrowsAsync<HookException>(async () =>
        {
            await foreach (var _ in Model.GenerateStreamAsync(prompt, Long))
            {
            }
        });
        Assert.Equal(Probe, ex.HookName);
        Assert.Contains("step four", ex.Message, StringComparison.Ordinal);
        Assert.Equal(4, calls);
    }

    [Fact]
    public async Task CancellationStopsGenerationBeforeTheNextStep()
    {
        using var prompt = tiny.ImageChatPrompt();
        int forwards = 0;
        using var counter = Model.AddHook(Probe, (a, _) => { Interlocked.Increment(ref forwards); return a; });
        using var cts = new CancellationTokenSource();
        int pieces = 0;
        int atCancel = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in Model.GenerateStreamAsync(prompt, Long, cts.Token))
            {
                if (++pieces == 2)
                {
                    atCancel = Volatile.Read(ref forwards);
                    cts.Cancel();
                }
            }
        });
        await Task.Delay(300);
        Assert.Equal(atCancel, Volatile.Read(ref forwards));
    }
}
