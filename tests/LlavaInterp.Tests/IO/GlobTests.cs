using LlavaInterp.IO;

namespace LlavaInterp.Tests.IO;

public sealed class GlobTests
{
    [Theory]
    [InlineData("*.json", "config.json", true)]
    [InlineData("*.json", "sub/config.json", true)] // fnmatch's '*' crosses '/'
    [InlineData("*.json", "config.json.bak", false)]
    [InlineData("model-?????-of-?????.safetensors", "model-00001-of-00002.safetensors", true)]
    [InlineData("model-?????-of-?????.safetensors", "model-0001-of-00002.safetensors", false)]
    [InlineData("tokenizer.[jm]*", "tokenizer.json", true)]
    [InlineData("tokenizer.[jm]*", "tokenizer.model", true)]
    [InlineData("tokenizer.[!jm]*", "tokenizer.model", false)]
    [InlineData("tokenizer.[!jm]*", "tokenizer.txt", true)]
    [InlineData("[]x]", "]", true)]
    [InlineData("a[b", "a[b", true)] // an unclosed '[' is literal
    [InlineData("a.b", "axb", false)] // '.' is literal, not a regex dot
    [InlineData("a+b(c)", "a+b(c)", true)]
    public void Fnmatch(string pattern, string text, bool expected) =>
        Assert.Equal(expected, new Glob(pattern).IsMatch(text));

    [Theory]
    [InlineData("blocks.*.hook_resid_post", "blocks.12.hook_resid_post", true)]
    [InlineData("blocks.*.hook_resid_post", "vision.blocks.1.hook_resid_post", false)]
    [InlineData("blocks.1?hook", "blocks.1.hook", false)] // '?' is literal here
    [InlineData("blocks.1?hook", "blocks.1?hook", true)]
    [InlineData("x[0]*", "x[0]y", true)]
    [InlineData("*", "", true)]
    public void StarOnly(string pattern, string text, bool expected) =>
        Assert.Equal(expected, new Glob(pattern, GlobSyntax.StarOnly).IsMatch(text));

    [Fact]
    public void HasWildcard() =>
        Assert.Equal([true, true, true, false], new[] { "*.json", "a?", "[ab]", "config.json" }.Select(Glob.HasWildcard));
}
