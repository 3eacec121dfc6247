using LlavaInterp.Configuration;
using LlavaInterp.Hub;
using LlavaInterp.Sae;
using LlavaInterp.Tests.Cli;
using LlavaInterp.Tests.Hub;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

/// <summary>SAELens 6.x cfg.json (metadata under "meta"), batchtopk, and the release table (pretrained_saes.yaml, typos).</summary>
public sealed class SaeLensFormatTests
{
    // The fixture SAE's cfg.json as SAELens 6 SAEConfig.to_dict writes it: architecture fields at the top, the run's
    // metadata (SAEMetadata) nested under "meta".
    private const string V6Standard = """
        {"d_in": 64, "d_sae": 256, "dtype": "float32", "device": "cpu", "apply_b_dec_to_input": true,
         "normalize_activations": "none", "reshape_activations": "none",
         "meta": {"model_name": "tiny-llava-gemma", "hook_name": "blocks.2.hook_resid_post", "model_class_name": "HookedTransformer",
                  "hook_layer": null, "hook_head_index": null, "model_from_pretrained_kwargs": {}, "prepend_bos": true,
                  "exclude_special_tokens": false, "neuronpedia_id": "tiny-llava-gemma/2-res-tiny256", "context_size": 128,
                  "seqpos_slice": [null], "dataset_path": "synthetic/tiny-llava-gemma-captions",
                  "sae_lens_version": "6.12.1", "sae_lens_training_version": "6.12.1"},
         "architecture": "standard"}
        """;

    [Fact]
    public void V6ConfigReadsLikeTheFlatLegacyOne()
    {
        var legacy = SaeConfig.Load(Path.Combine(CliRun.SaeDir, "cfg.json"));
        var v6 = SaeConfig.Parse(V6Standard, "v6/cfg.json");
        Assert.Equal(legacy.HookName, v6.HookName);
        Assert.Equal(2, v6.HookLayer); // meta.hook_layer is null: read from the hook name
        Assert.Equal(legacy.ModelName, v6.ModelName);
        Assert.Equal(legacy.NeuronpediaSource, v6.NeuronpediaSource);
        Assert.Equal(legacy.ContextSize, v6.ContextSize);
        Assert.Equal(legacy.DatasetPath, v6.DatasetPath);
        Assert.Equal((legacy.DIn, legacy.DSae, legacy.Architecture), (v6.DIn, v6.DSae, v6.Architecture));

        // A 6.x folder loads and encodes exactly like the legacy one.
        using var dir = new TempDir();
        File.WriteAllText(dir.File("cfg.json"), V6Standard);
        File.Copy(Path.Combine(CliRun.SaeDir, "sae_weights.safetensors"), dir.File("sae_weights.safetensors"));
        using var scope = NewDisposeScope();
        using var a = SparseAutoencoder.Load(CliRun.SaeDir);
        using var b = SparseAutoencoder.Load(dir.Path);
        var x = randn(3, 64, generator: new Generator(7));
        TensorAssert.Close(a.Encode(x), b.Encode(x), atol: 0, rtol: 0, what: "encode");
    }

    [Fact]
    public void TopKV6HasKAtTheTopAndUnsupportedOptionsAreNamed()
    {
        string topk = V6Standard.Replace("\"architecture\": \"standard\"", "\"architecture\": \"topk\", \"k\": 8, \"rescale_acts_by_decoder_norm\": false", StringComparison.Ordinal);
        Assert.Equal(8, SaeConfig.Parse(topk, "cfg.json").TopK);
        Assert.True(SaeConfig.Parse(topk, "cfg.json").IsTopK);

        var rescale = Assert.Throws<ConfigException>(() => SaeConfig.Parse(topk.Replace("\"rescale_acts_by_decoder_norm\": false", "\"rescale_acts_by_decoder_norm\": true", StringComparison.Ordinal), "cfg.json"));
        Assert.Equal("rescale_acts_by_decoder_norm", rescale.Key);
        var reshape = Assert.Throws<ConfigException>(() => SaeConfig.Parse(V6Standard.Replace("\"reshape_activations\": \"none\"", "\"reshape_activations\": \"hook_z\"", StringComparison.Ordinal), "cfg.json"));
        Assert.Equal("reshape_activations", reshape.Key);
    }

    [Fact]
    public void BatchTopKRunsAsJumpReluWithItsGlobalThreshold()
    {
        string cfgJson = V6Standard.Replace("\"architecture\": \"standard\"", "\"architecture\": \"batchtopk\", \"k\": 12.5, \"topk_threshold_lr\": 0.01", StringComparison.Ordinal);
        var cfg = SaeConfig.Parse(cfgJson, "cfg.json");
        Assert.False(cfg.IsTopK); // its k is a batch average used in training only

        using var scope = NewDisposeScope();
        using var standard = SparseAutoencoder.Load(CliRun.SaeDir);
        const double t = 0.05;
        var tensors = new Dictionary<string, Tensor>
        {
            ["W_enc"] = standard.WEnc, ["W_dec"] = standard.WDec, ["b_enc"] = standard.BEnc, ["b_dec"] = standard.BDec,
            ["topk_threshold"] = tensor(t, dtype: ScalarType.Float64),
        };
        using var sae = SparseAutoencoder.FromTensors(cfg, tensors);
        Assert.Equal(SaeArchitecture.JumpRelu, sae.Architecture);
        TensorAssert.Close(full(256, t, dtype: ScalarType.Float32), sae.Threshold!, atol: 0, rtol: 0, what: "threshold");

        // SAELens JumpReLU encode: pre = (x - b_dec) W_enc + b_enc; acts = relu(pre) * (pre > threshold).
        var x = randn(5, 64, generator: new Generator(3));
        var pre = (x - standard.BDec).matmul(standard.WEnc) + standard.BEnc;
        var expected = nn.functional.relu(pre) * pre.gt(t).to(pre.dtype);
        TensorAssert.Close(expected, sae.Encode(x), atol: 0, rtol: 0, what: "batchtopk encode");
    }

    // An excerpt of SAELens's pretrained_saes.yaml in its real layout (older files nest everything under SAE_LOOKUP).
    internal const string Yaml = """
        # comment line
        SAE_LOOKUP:
          tiny-res-test:
            repo_id: someone/tiny-saes
            model: tiny-llava-gemma
            conversion_func:
            links:
              model: https://example.invalid/model   # trailing comment
              dashboards: https://example.invalid/np
            config_overrides:
              dataset_path: Skylion007/openwebtext
            saes:
              - id: blocks.2.hook_resid_post
                path: layer2
                variance_explained: 0.9
                l0: 12.0
                neuronpedia: tiny-llava-gemma/2-res-tiny256
                norm_scaling_factor: 1.5
              - id: "blocks.3.hook_resid_post"
                path: 'layer3'
          gemma-2-2b-res-matryoshka-dc:
            repo_id: chanind/gemma-2-2b-batch-topk-matryoshka-saes-w-32k-l0-40
            model: gemma-2-2b
            conversion_func: null
            saes:
            - id: blocks.0.hook_resid_post
              path: blocks.0.hook_resid_post
              neuronpedia: gemma-2-2b/0-matryoshka-res-dc
        """;

    [Fact]
    public void PretrainedSaesYamlFillsTheReleaseTable()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("pretrained_saes.yaml"), Yaml);
        var read = SaeReleases.LoadPretrainedSaesYaml(dir.File("pretrained_saes.yaml"));
        Assert.Equal(["tiny-res-test", "gemma-2-2b-res-matryoshka-dc"], read.Select(r => r.Release));

        var tiny = SaeReleases.Get("tiny-res-test");
        Assert.Equal(("someone/tiny-saes", "tiny-llava-gemma"), (tiny.RepoId, tiny.Model));
        Assert.Equal("Skylion007/openwebtext", tiny.ConfigOverrides!["dataset_path"]);
        Assert.Equal(new SaeReleaseEntry("blocks.2.hook_resid_post", "layer2", "tiny-llava-gemma/2-res-tiny256", 1.5), tiny.Get("blocks.2.hook_resid_post"));
        Assert.Equal(new SaeReleaseEntry("blocks.3.hook_resid_post", "layer3"), tiny.Get("blocks.3.hook_resid_post"));
        var m = SaeReleases.Get("gemma-2-2b-res-matryoshka-dc").Get("blocks.0.hook_resid_post");
        Assert.Equal("gemma-2-2b/0-matryoshka-res-dc", m.NeuronpediaId);

        // Releases at the top level (current files) read the same.
        var flat = string.Join('\n', Yaml.Split('\n').Where(l => !l.StartsWith("SAE_LOOKUP", StringComparison.Ordinal)).Select(l => l.StartsWith("  ", StringComparison.Ordinal) ? l[2..] : l));
        File.WriteAllText(dir.File("flat.yaml"), flat);
        Assert.Equal(read, SaeReleases.LoadPretrainedSaesYaml(dir.File("flat.yaml")), new ReleaseComparer());

        File.WriteAllText(dir.File("bad.yaml"), "r:\n  saes:\n    - path: x\n");
        var bad = Assert.Throws<SaeException>(() => SaeReleases.LoadPretrainedSaesYaml(dir.File("bad.yaml")));
        Assert.Contains("bad.yaml", bad.Message);
        Assert.Contains("line", bad.Message);

        // Empty ids (found by the fuzz suite: an ArgumentException from the registry before).
        foreach (var text in new[] { "\"\":\n  repo_id: a/b\n", "r:\n  repo_id: \"\"\n", "r:\n  repo_id: a/b\n  saes:\n    - id: \"\"\n      path: x\n" })
        {
            File.WriteAllText(dir.File("empty.yaml"), text);
            Assert.Contains("empty.yaml", Assert.Throws<SaeException>(() => SaeReleases.LoadPretrainedSaesYaml(dir.File("empty.yaml"))).Message);
        }
    }

    [Fact]
    public async Task UserReleasesLoadFromTheHubAndTyposSuggestTheRelease()
    {
        SaeReleases.Register(new SaeRelease("tiny-user-release", "someone/user-saes", "tiny-llava-gemma",
            [new SaeReleaseEntry("blocks.2.hook_resid_post", "layer2", "tiny-llava-gemma/2-res-tiny256")]));
        using var server = new FakeHubServer("someone/user-saes", FakeHubServer.FilesOf(CliRun.SaeDir, "layer2/"));
        using var cache = new TempDir();
        var hub = new HubOptions { CacheDir = cache.Path, Endpoint = server.Url, Timeout = TimeSpan.FromSeconds(5) };
        using (var sae = await SparseAutoencoder.FromPretrainedAsync("tiny-user-release", "blocks.2.hook_resid_post", hub: hub))
        {
            Assert.Equal("blocks.2.hook_resid_post", sae.HookName);
        }

        int before = server.Requests.Count;
        var typo = await Assert.ThrowsAsync<ArgumentException>(() => SparseAutoencoder.FromPretrainedAsync("gemma-2b-res-jbb", "blocks.12.hook_resid_post", hub: hub));
        Assert.Contains("unknown SAE release 'gemma-2b-res-jbb', did you mean 'gemma-2b-res-jb'", typo.Message);
        var oneString = await Assert.ThrowsAsync<ArgumentException>(() => SparseAutoencoder.FromPretrainedAsync("gemma-2b-res-jn/blocks.12.hook_resid_post", hub: hub));
        Assert.Contains("did you mean 'gemma-2b-res-jb'", oneString.Message);
        Assert.Equal(before, server.Requests.Count); // a typo never reaches the network

        Assert.Contains("Did you mean 'gemma-2b-res-jb'", Assert.Throws<SaeException>(() => SaeReleases.Get("Gemma-2b-res-jb")).Message);
        Assert.Contains("Did you mean 'blocks.12.hook_resid_post'", Assert.Throws<SaeException>(() => SaeReleases.Gemma2bResJb.Get("blocks.12.hook_resid_pst")).Message);

        // A local folder with an SAE id works like a release with one.
        using var local = await SparseAutoencoder.FromPretrainedAsync(Path.GetDirectoryName(CliRun.SaeDir)!, Path.GetFileName(CliRun.SaeDir));
        Assert.Equal("blocks.2.hook_resid_post", local.HookName);
    }

    private sealed class ReleaseComparer : IEqualityComparer<SaeRelease>
    {
        public bool Equals(SaeRelease? x, SaeRelease? y) =>
            x!.Release == y!.Release && x.RepoId == y.RepoId && x.Model == y.Model && x.Saes.SequenceEqual(y.Saes)
            && (x.ConfigOverrides ?? new Dictionary<string, string>()).OrderBy(k => k.Key).SequenceEqual((y.ConfigOverrides ?? new Dictionary<string, string>()).OrderBy(k => k.Key));

        public int GetHashCode(SaeRelease obj) => obj.Release.GetHashCode(StringComparison.Ordinal);
    }
}
