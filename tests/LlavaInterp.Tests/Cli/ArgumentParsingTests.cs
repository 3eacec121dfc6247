using LlavaInterp.Analysis;
using LlavaInterp.Cli;
using LlavaInterp.Samples;

namespace LlavaInterp.Tests.Cli;

public sealed class ArgumentParsingTests
{
    [Fact]
    public void MultiValueOptionsTakeEveryFollowingValueAndRepeat()
    {
        var a = CliArgs.Parse(["--image", "a.png", "b.png", "--raw", "--image=c.png", "--prompt", "hi", "--steer", "1=-2"], new HashSet<string> { "raw" }, new HashSet<string> { "image", "steer" }, new HashSet<string> { "prompt" });
        Assert.Equal(["a.png", "b.png", "c.png"], a.All("image"));
        Assert.Equal(["1=-2"], a.All("steer"));
        Assert.True(a.Flag("raw"));
        Assert.Equal("hi", a.Required("prompt"));

        // A single-valued option takes one value, and only once.
        Assert.Throws<CliUsageException>(() => CliArgs.Parse(["--prompt", "a", "b"], new HashSet<string>(), new HashSet<string>(), new HashSet<string> { "prompt" }));
        var twice = CliArgs.Parse(["--prompt", "a", "--prompt", "b"], new HashSet<string>(), new HashSet<string>(), new HashSet<string> { "prompt" });
        Assert.Throws<CliUsageException>(() => twice.Optional("prompt"));
        Assert.Throws<CliUsageException>(() => CliArgs.Parse(["--image"], new HashSet<string>(), new HashSet<string> { "image" }, new HashSet<string>()));
    }

    [Fact]
    public void UnknownOptionIsReportedOnOneLineWithTheClosestKnownOne()
    {
        var ex = Assert.Throws<CliUsageException>(() => CliArgs.Parse(["--promt", "hi"], new HashSet<string> { "raw" }, new HashSet<string> { "image" }, new HashSet<string> { "prompt", "model" }));
        Assert.Contains("--promt", ex.Message, StringComparison.Ordinal);
        Assert.Contains("--prompt", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("\n", ex.Message, StringComparison.Ordinal);

        // A prompt may look like a response file or bundled short options: it is a value, not parsed further.
        Assert.Equal(["@notes.txt"], CliArgs.Parse(["--prompt", "@notes.txt"], new HashSet<string>(), new HashSet<string>(), new HashSet<string> { "prompt" }).All("prompt"));
    }

    [Fact]
    public void HookGlobsMatchWholeNamesWithStars()
    {
        Assert.True(new HookGlob("blocks.*.hook_resid_post").IsMatch("blocks.12.hook_resid_post"));
        Assert.False(new HookGlob("blocks.*.hook_resid_post").IsMatch("vision.blocks.1.hook_resid_post"));
        Assert.True(new HookGlob("*hook_resid_post").IsMatch("vision.blocks.1.hook_resid_post"));
        Assert.False(new HookGlob("blocks.1.hook_resid_post").IsMatch("blocks.11.hook_resid_post"));
        Assert.False(new HookGlob("blocks.1?hook").IsMatch("blocks.1.hook"));
        Assert.True(new HookGlob("*").IsMatch("hook_image_features"));

        string[] names = ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "hook_image_features"];
        Assert.Equal(2, HookGlob.ParseAll(["blocks.0.*,hook_image_features"], names).Count);
        Assert.Throws<CliUsageException>(() => HookGlob.ParseAll(["blocks.0.*", "blocks.9.*"], names));
    }

    [Fact]
    public void SteeringEditsParse()
    {
        var e = SteeringEdits.Parse(["4501=-4", "12=2.5e-1"], ["7=3"], ["9", "9"]);
        Assert.Equal([(4501, -4.0), (12, 0.25)], e.Steer);
        Assert.Equal(3.0, e.Clamp[7]);
        Assert.Equal([9], e.Ablate);
        Assert.Equal("steer 4501×-4, steer 12×0.25, clamp 7=3, ablate 9", e.ToString());
        Assert.True(SteeringEdits.Parse([], [], []).IsEmpty);
        Assert.Throws<CliUsageException>(() => SteeringEdits.Parse(["4501"], [], []));
        Assert.Throws<CliUsageException>(() => SteeringEdits.Parse(["-1=2"], [], []));
        Assert.Throws<CliUsageException>(() => SteeringEdits.Parse(["1=x"], [], []));
        Assert.Throws<CliUsageException>(() => SteeringEdits.Parse([], ["1=2", "1=3"], []));
    }

    [Fact]
    public void PositionsParseAndResolve()
    {
        Assert.Same(PromptPositions.Image, PromptPositions.Parse(null));
        Assert.Equal([3L, 4L], PromptPositions.Parse("image").Resolve(10, [3, 4]).Resolve(0, 10));
        Assert.Equal([9L], PromptPositions.Parse("last").Resolve(10, []).Resolve(0, 10));
        Assert.Equal(10, PromptPositions.Parse("all").Resolve(10, []).Resolve(0, 10).Length);
        Assert.Equal([8L], PromptPositions.Parse("-2").Resolve(10, []).Resolve(0, 10));
        Assert.Equal([5L], PromptPositions.Parse("5").Resolve(10, []).Resolve(0, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => PromptPositions.Parse("10").Resolve(10, []));
        Assert.Throws<ArgumentException>(() => PromptPositions.Parse("image").Resolve(10, []));
        Assert.Throws<ArgumentException>(() => PromptPositions.Parse("first"));
    }
}
