using LlavaInterp.Configuration;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Sae;

public sealed class SaeConfigTests
{
    private const string Minimal = """{"d_in": 8, "d_sae": 16, "hook_name": "blocks.3.hook_resid_post", "hook_layer": 3}""";

    [Fact]
    public void MissingKeysGetSaeLensDefaults()
    {
        var c = SaeConfig.Parse(Minimal, "test");
        Assert.Equal("standard", c.Architecture);
        Assert.Equal("relu", c.ActivationFn);
        Assert.True(c.ApplyBDecToInput);
        Assert.True(c.PrependBos);
        Assert.True(c.DatasetTrustRemoteCode);
        Assert.False(c.FinetuningScalingFactor);
        Assert.Equal("none", c.NormalizeActivations);
        Assert.Equal("float32", c.DType);
        Assert.Equal("cpu", c.Device);
        Assert.Null(c.NeuronpediaId);
        Assert.Null(c.ExtraKeys);
    }

    [Fact]
    public void OldKeysAreUpgradedAndUnknownKeysKept()
    {
        var c = SaeConfig.Parse(
            """
            {"d_in": 2048, "d_sae": 16384, "hook_point": "blocks.12.hook_resid_post", "hook_point_layer": 12,
             "hook_point_head_index": null, "activation_fn": "relu", "normalize_activations": true,
             "lr": 0.0004, "l1_coefficient": 8, "wandb_project": "x"}
            """,
            "old-cfg.json");
        Assert.Equal("blocks.12.hook_resid_post", c.HookName);
        Assert.Equal(12, c.HookLayer);
        Assert.Null(c.HookHeadIndex);
        Assert.Equal("relu", c.ActivationFn);
        Assert.Equal("expected_average_only_in", c.NormalizeActivations);
        Assert.NotNull(c.ExtraKeys);
        Assert.Equal(["l1_coefficient", "lr", "wandb_project"], c.ExtraKeys!.Keys.Order().ToArray());
        Assert.Equal(0.0004, c.ExtraKeys["lr"].GetDouble());
        Assert.DoesNotContain("hook_point", c.ExtraKeys.Keys);

        Assert.Equal("none", SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_point": "blocks.1.hook_resid_pre", "normalize_activations": false}""", "t").NormalizeActivations);
        Assert.Equal("none", SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.1.hook_resid_pre", "normalize_activations": null}""", "t").NormalizeActivations);
    }

    [Fact]
    public void NewKeyWinsOverOldKeyAndLayerIsReadFromHookName()
    {
        var c = SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_point": "blocks.1.hook_resid_pre", "hook_name": "blocks.7.hook_mlp_out"}""", "t");
        Assert.Equal("blocks.7.hook_mlp_out", c.HookName);
        Assert.Equal(7, c.HookLayer);
    }

    [Fact]
    public void TopKReadsKFromKwargsOrTopLevel()
    {
        var a = SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "architecture": "topk", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 4}}""", "t");
        Assert.True(a.IsTopK);
        Assert.Equal(4, a.TopK);
        var b = SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "architecture": "topk", "k": 5}""", "t");
        Assert.Equal(5, b.TopK);
    }

    [Theory]
    [InlineData("""{"d_sae": 16, "hook_name": "blocks.0.hook_resid_post"}""", "d_in")]
    [InlineData("""{"d_in": 8, "hook_name": "blocks.0.hook_resid_post"}""", "d_sae")]
    [InlineData("""{"d_in": 8, "d_sae": 16}""", "hook_name")]
    [InlineData("""{"d_in": 0, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post"}""", "d_in")]
    [InlineData("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "architecture": "crosscoder"}""", "architecture")]
    [InlineData("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "activation_fn_str": "gelu"}""", "activation_fn_str")]
    [InlineData("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "normalize_activations": "whiten"}""", "normalize_activations")]
    [InlineData("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "dtype": "int8"}""", "dtype")]
    [InlineData("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "architecture": "topk"}""", "activation_fn_kwargs.k")]
    [InlineData("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 17}}""", "activation_fn_kwargs.k")]
    [InlineData("""{"d_in": 8, "d_sae": 16, "hook_name": "hook_embed"}""", "hook_layer")]
    public void InvalidConfigNamesTheKey(string json, string key)
    {
        var ex = Assert.Throws<ConfigException>(() => SaeConfig.Parse(json, "bad-cfg.json"));
        Assert.Equal(key, ex.Key);
        Assert.Equal("bad-cfg.json", ex.SourcePath);
        Assert.Contains(key, ex.Message);
    }

    [Fact]
    public void WrongValueTypeNamesThePath()
    {
        var ex = Assert.Throws<ConfigException>(() => SaeConfig.Parse("""{"d_in": "sixty-four", "d_sae": 16, "hook_name": "blocks.0.hook_resid_post"}""", "bad-cfg.json"));
        Assert.Contains("d_in", ex.Key);
    }

    [Theory]
    [InlineData("{ not json")]
    [InlineData("[1, 2]")]
    [InlineData("null")]
    public void MalformedJsonIsAConfigException(string json)
    {
        var ex = Assert.Throws<ConfigException>(() => SaeConfig.Parse(json, "bad-cfg.json"));
        Assert.StartsWith("bad-cfg.json", ex.Message);
    }

    [Fact]
    public void MissingFolderOrFileIsAConfigException()
    {
        using var dir = new TempDir();
        var ex = Assert.Throws<ConfigException>(() => SparseAutoencoder.Load(dir.File("nowhere")));
        Assert.EndsWith("cfg.json", ex.SourcePath);
        Assert.Contains("not found", ex.Message);
    }

    [Fact]
    public void ConfigRoundTripsThroughJson()
    {
        var c = SaeConfig.Load(Path.Combine(SaeFixture.StandardFolder, "cfg.json"));
        string json = c.ToJson();
        Assert.DoesNotContain("\"k\"", json);
        Assert.Contains("\"hook_name\": \"blocks.2.hook_resid_post\"", json);
        var again = SaeConfig.Parse(json, "roundtrip");
        Assert.Equal(c.HookName, again.HookName);
        Assert.Equal(c.DSae, again.DSae);
        Assert.Equal(c.NeuronpediaId, again.NeuronpediaId);
        Assert.Equal(c.SeqposSlice, again.SeqposSlice);
        Assert.Equal(c.ExtraKeys?.Keys.Order(), again.ExtraKeys?.Keys.Order());
    }
}
