using LlavaInterp.Hub;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Hub;

public sealed class HubOptionsTests
{
    private static Func<string, string?> Env(params (string Key, string Value)[] vars)
    {
        var map = vars.ToDictionary(v => v.Key, v => v.Value);
        return k => map.GetValueOrDefault(k);
    }

    [Fact]
    public void Defaults_FollowHuggingfaceHub()
    {
        var o = HubOptions.FromEnvironment(Env(("HOME", "/home/u")));
        Assert.Equal(Path.Combine("/home/u", ".cache", "huggingface", "hub"), o.CacheDir);
        Assert.Equal("https://huggingface.co", o.Endpoint);
        Assert.False(o.Offline);
        Assert.Equal(TimeSpan.FromSeconds(10), o.Timeout);
    }

    [Fact]
    public void CacheDir_Precedence()
    {
        Assert.Equal("/c/hub-cache", HubOptions.FromEnvironment(Env(("HOME", "/h"), ("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c/hub-cache"))).CacheDir);
        Assert.Equal(Path.Combine("/hf", "hub"), HubOptions.FromEnvironment(Env(("HOME", "/h"), ("HF_HOME", "/hf"))).CacheDir);
        Assert.Equal(Path.Combine("/x", "huggingface", "hub"), HubOptions.FromEnvironment(Env(("HOME", "/h"), ("XDG_CACHE_HOME", "/x"))).CacheDir);
        Assert.Equal(Path.Combine("/h", "hfh", "hub"), HubOptions.FromEnvironment(Env(("HOME", "/h"), ("HF_HOME", "~/hfh"))).CacheDir);
    }

    [Fact]
    public void Endpoint_TrailingSlashTrimmed()
    {
        Assert.Equal("https://mirror.example/hf", HubOptions.FromEnvironment(Env(("HF_ENDPOINT", "https://mirror.example/hf/"))).Endpoint);
    }

    [Fact]
    public void Token_FromVariableThenTokenFile()
    {
        using var home = new TempDir();
        File.WriteAllText(home.File("token"), "hf_from_file\n");

        Assert.Equal("hf_env", HubOptions.FromEnvironment(Env(("HF_HOME", home.Path), ("HF_TOKEN", "hf_env"))).Token);
        Assert.Equal("hf_from_file", HubOptions.FromEnvironment(Env(("HF_HOME", home.Path))).Token);
        Assert.Equal("hf_from_file", HubOptions.FromEnvironment(Env(("HF_HOME", "/nowhere"), ("HF_TOKEN_PATH", home.File("token")))).Token);
        Assert.Null(HubOptions.FromEnvironment(Env(("HF_HOME", Path.Combine(home.Path, "empty")))).Token);
    }

    [Theory]
    [InlineData("1", true)]
    [InlineData("true", true)]
    [InlineData("YES", true)]
    [InlineData("On", true)]
    [InlineData("0", false)]
    [InlineData("false", false)]
    [InlineData("", false)]
    public void Offline_TruthyValues(string value, bool expected)
    {
        Assert.Equal(expected, HubOptions.FromEnvironment(Env(("HF_HUB_OFFLINE", value))).Offline);
    }

    [Fact]
    public void Offline_TransformersVariableOnlyWhenHubVariableUnset()
    {
        Assert.True(HubOptions.FromEnvironment(Env(("TRANSFORMERS_OFFLINE", "1"))).Offline);
        Assert.False(HubOptions.FromEnvironment(Env(("HF_HUB_OFFLINE", "0"), ("TRANSFORMERS_OFFLINE", "1"))).Offline);
    }

    [Fact]
    public void Timeout_FromVariables()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), HubOptions.FromEnvironment(Env(("HF_HUB_DOWNLOAD_TIMEOUT", "30"))).Timeout);
    }
}
