using LlavaInterp.Configuration;
using LlavaInterp.Sae;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using Microsoft.Extensions.Logging;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae;

public sealed class SaeLoadTests(ITestOutputHelper output)
{
    internal static Dictionary<string, Tensor> RandomWeights(int dIn, int dSae, int seed, params string[] extra)
    {
        var g = new torch.Generator((ulong)(seed));
        var w = new Dictionary<string, Tensor>
        {
            ["W_enc"] = torch.randn(dIn, dSae, generator: g) * 0.5,
            ["W_dec"] = torch.randn(dSae, dIn, generator: g) * 0.5,
            ["b_enc"] = torch.randn(dSae, generator: g) * 0.1,
            ["b_dec"] = torch.randn(dIn, generator: g) * 0.1,
        };
        foreach (var name in extra)
        {
            w[name] = name == "r_mag" ? torch.randn(dSae, generator: g) * 0.2 : torch.rand(dSae, generator: g) * 0.5;
        }

        return w;
    }

    internal static string WriteSae(TempDir dir, string name, string cfgJson, IReadOnlyDictionary<string, Tensor> tensors)
    {
        string folder = Path.Combine(dir.Path, name);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "cfg.json"), cfgJson);
        SafetensorsWriter.Save(Path.Combine(folder, "sae_weights.safetensors"), tensors);
        return folder;
    }

    private static string Cfg(int dIn, int dSae, string extra = "", string hook = "blocks.1.hook_resid_post") =>
        $$"""{"d_in": {{dIn}}, "d_sae": {{dSae}}, "hook_name": "{{hook}}", "hook_layer": 1, "dtype": "float32"{{extra}}}""";

    [Fact]
    public void GemmaScopeJumpReluMatchesGolden()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SparseAutoencoder.LoadGemmaScope(SaeFixture.GemmaScopeNpz, "blocks.3.hook_resid_post");
        Assert.Equal(SaeArchitecture.JumpRelu, sae.Architecture);
        Assert.Equal(3, sae.HookLayer);
        Assert.False(sae.Config.ApplyBDecToInput);
        Assert.Equal(64, sae.DIn);
        Assert.Equal(128, sae.DSae);
        Assert.NotNull(sae.Threshold);

        var x = Fixture.Load("sae.jumprelu.input");
        var (pre, acts) = sae.EncodeWithPre(x);
        double dPre = TensorAssert.Close(Fixture.Load("sae.jumprelu.hidden_pre"), pre, what: "hidden_pre");
        double dActs = TensorAssert.Close(Fixture.Load("sae.jumprelu.feature_acts"), acts, what: "feature_acts");
        double dRec = TensorAssert.Close(Fixture.Load("sae.jumprelu.reconstruction"), sae.Decode(acts), what: "reconstruction");
        TensorAssert.Close(Fixture.Load("sae.jumprelu.reconstruction"), sae.Forward(x), what: "forward");
        output.WriteLine($"JumpReLU max|diff|: hidden_pre {dPre:E2}, feature_acts {dActs:E2}, reconstruction {dRec:E2}");

        // The threshold matters: these pairs are positive but not above threshold, so a plain ReLU would keep them.
        long belowThreshold = pre.gt(0).logical_and(pre.le(sae.Threshold!)).sum().item<long>();
        Assert.Equal(Fixture.Manifest.GetProperty("sae").GetProperty("jumprelu_gemmascope").GetProperty("n_positive_but_below_threshold").GetInt64(), belowThreshold);
        Assert.Equal(0L, acts.masked_select(pre.le(sae.Threshold!)).ne(0).sum().item<long>());
    }

    [Fact]
    public void GemmaScopeLoadsFromFolderAndHonoursOptions()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SparseAutoencoder.LoadGemmaScope(Path.GetDirectoryName(SaeFixture.GemmaScopeNpz)!, "blocks.3.hook_resid_post", new SaeLoadOptions { DType = ScalarType.Float64 }, modelName: "tiny");
        Assert.Equal(ScalarType.Float64, sae.DType);
        Assert.Equal("tiny", sae.Config.ModelName);
        var acts = sae.Encode(Fixture.Load("sae.jumprelu.input"));
        Assert.Equal(ScalarType.Float64, acts.dtype);
        TensorAssert.Close(Fixture.Load("sae.jumprelu.feature_acts"), acts, what: "float64 feature_acts");
    }

    [Fact]
    public void JumpReluThresholdIsStrict()
    {
        using var scope = torch.NewDisposeScope();
        var w = new Dictionary<string, Tensor>
        {
            ["W_enc"] = torch.eye(2),
            ["W_dec"] = torch.eye(2),
            ["b_enc"] = torch.zeros(2),
            ["b_dec"] = torch.zeros(2),
            ["threshold"] = torch.tensor(new[] { 0.5f, 0.25f }),
        };
        var cfg = SaeConfig.Parse("""{"architecture": "jumprelu", "d_in": 2, "d_sae": 2, "hook_name": "blocks.0.hook_resid_post", "apply_b_dec_to_input": false}""", "t");
        using var sae = SparseAutoencoder.FromTensors(cfg, w);
        var acts = sae.Encode(torch.tensor(new[] { 0.5f, 0.3f }));
        Assert.Equal([0f, 0.3f], acts.data<float>().ToArray());
    }

    [Fact]
    public void GemmaScopeErrorsNameTheArray()
    {
        using var dir = new TempDir();
        Assert.Throws<TensorFileException>(() => SparseAutoencoder.LoadGemmaScope(dir.File("params.npz"), "blocks.3.hook_resid_post"));

        // An archive without a threshold cannot be a JumpReLU SAE.
        string path = dir.File("partial.npz");
        using (var zip = System.IO.Compression.ZipFile.Open(path, System.IO.Compression.ZipArchiveMode.Create))
        using (var orig = System.IO.Compression.ZipFile.OpenRead(SaeFixture.GemmaScopeNpz))
        {
            foreach (var e in orig.Entries.Where(e => e.FullName != "threshold.npy"))
            {
                using var from = e.Open();
                using var to = zip.CreateEntry(e.FullName).Open();
                from.CopyTo(to);
            }
        }

        var ex = Assert.Throws<TensorFileException>(() => SparseAutoencoder.LoadGemmaScope(path, "blocks.3.hook_resid_post"));
        Assert.Equal("threshold", ex.TensorName);
    }

    [Theory]
    [InlineData("(3000000000, 0)", "W_enc")]
    [InlineData("(0, 16)", "W_enc")]
    [InlineData("(64, 0)", "W_enc")]
    [InlineData("(64, 256, 1)", "W_enc")]
    public void GemmaScopeDimensionsOutOfRangeNameFileAndArray(string shape, string array)
    {
        using var dir = new TempDir();
        string path = dir.File("params.npz");
        using (var zip = System.IO.Compression.ZipFile.Open(path, System.IO.Compression.ZipArchiveMode.Create))
        using (var orig = System.IO.Compression.ZipFile.OpenRead(SaeFixture.GemmaScopeNpz))
        {
            foreach (var e in orig.Entries)
            {
                using var to = zip.CreateEntry(e.FullName).Open();
                if (e.FullName == array + ".npy")
                {
                    // Zero elements need no data, so only the dimensions can be wrong.
                    bool empty = shape.Contains(" 0)", StringComparison.Ordinal) || shape.StartsWith("(0", StringComparison.Ordinal);
                    to.Write(LlavaInterp.Tests.TensorFiles.RawFiles.NpyBytes($"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}", empty ? [] : new byte[64 * 256 * 4]));
                }
                else
                {
                    using var from = e.Open();
                    from.CopyTo(to);
                }
            }
        }

        var ex = Assert.Throws<TensorFileException>(() => SparseAutoencoder.LoadGemmaScope(path, "blocks.3.hook_resid_post"));
        Assert.Equal(array, ex.TensorName);
        Assert.Equal(path, ex.FilePath);
    }

    [Fact]
    public void WrongInputWidthNamesHookAndSizes()
    {
        using var scope = torch.NewDisposeScope();
        using var sae = SparseAutoencoder.Load(SaeFixture.StandardFolder);
        var ex = Assert.Throws<SaeException>(() => sae.Encode(torch.zeros(1, 5, 63)));
        Assert.Equal("blocks.2.hook_resid_post", ex.HookName);
        Assert.Contains("63", ex.Message);
        Assert.Contains("64", ex.Message);
        Assert.Contains("blocks.2.hook_resid_post", ex.Message);
        Assert.Throws<SaeException>(() => sae.Forward(torch.zeros(64, 1)));
        Assert.Throws<SaeException>(() => sae.Encode(torch.tensor(1f)));
        var dec = Assert.Throws<SaeException>(() => sae.Decode(torch.zeros(3, 255)));
        Assert.Contains("256", dec.Message);
        Assert.Throws<SaeException>(() => sae.DecoderDirection(256));
        Assert.Throws<SaeException>(() => sae.DecoderDirection(-1));
    }

    [Fact]
    public void WeightFileErrorsNameFileAndTensor()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var w = RandomWeights(8, 16, 1);

        var wrongShape = new Dictionary<string, Tensor>(w) { ["W_dec"] = torch.zeros(16, 9) };
        string f1 = WriteSae(dir, "shape", Cfg(8, 16), wrongShape);
        var ex1 = Assert.Throws<TensorFileException>(() => SparseAutoencoder.Load(f1));
        Assert.Equal("W_dec", ex1.TensorName);
        Assert.Contains("[16, 9]", ex1.Message);
        Assert.EndsWith("sae_weights.safetensors", ex1.FilePath);

        var missing = new Dictionary<string, Tensor>(w);
        missing.Remove("b_enc");
        string f2 = WriteSae(dir, "missing", Cfg(8, 16), missing);
        Assert.Equal("b_enc", Assert.Throws<TensorFileException>(() => SparseAutoencoder.Load(f2)).TensorName);

        string f3 = WriteSae(dir, "jumprelu-no-threshold", Cfg(8, 16, ", \"architecture\": \"jumprelu\""), w);
        Assert.Equal("threshold", Assert.Throws<TensorFileException>(() => SparseAutoencoder.Load(f3)).TensorName);

        string f4 = Path.Combine(dir.Path, "no-weights");
        Directory.CreateDirectory(f4);
        File.WriteAllText(Path.Combine(f4, "cfg.json"), Cfg(8, 16));
        Assert.Contains("not found", Assert.Throws<TensorFileException>(() => SparseAutoencoder.Load(f4)).Message);

        string f5 = WriteSae(dir, "bad-cfg", "{\"d_in\": 8,", w);
        Assert.Throws<ConfigException>(() => SparseAutoencoder.Load(f5));
    }

    [Fact]
    public void LegacyScalingFactorIsDroppedWhenAllOnesAndUsedOtherwise()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var w = RandomWeights(8, 16, 2);
        string ones = WriteSae(dir, "ones", Cfg(8, 16), new Dictionary<string, Tensor>(w) { ["scaling_factor"] = torch.ones(16) });
        using (var sae = SparseAutoencoder.Load(ones))
        {
            Assert.False(sae.Config.FinetuningScalingFactor);
        }

        var scale = torch.linspace(0.5, 2.0, 16);
        string notOnes = WriteSae(dir, "not-ones", Cfg(8, 16), new Dictionary<string, Tensor>(w) { ["scaling_factor"] = scale });
        Assert.Equal("scaling_factor", Assert.Throws<TensorFileException>(() => SparseAutoencoder.Load(notOnes)).TensorName);

        string finetuned = WriteSae(dir, "finetuned", Cfg(8, 16, ", \"finetuning_scaling_factor\": true"), new Dictionary<string, Tensor>(w) { ["scaling_factor"] = scale });
        using var ft = SparseAutoencoder.Load(finetuned);
        var x = torch.randn(3, 8, generator: new torch.Generator((ulong)(5)));
        var acts = ft.Encode(x);
        var expected = (acts * scale).matmul(w["W_dec"]) + w["b_dec"];
        TensorAssert.Close(expected, ft.Decode(acts), atol: 1e-6, rtol: 1e-6, what: "fine-tuning scale");
    }

    [Fact]
    public void ScalingFactorIsFoldedIntoWeights()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var w = RandomWeights(8, 16, 3);
        const double s = 0.25;
        string plain = WriteSae(dir, "plain", Cfg(8, 16), w);
        string scaled = WriteSae(dir, "scaled", Cfg(8, 16, ", \"normalize_activations\": \"expected_average_only_in\""), w);
        using var reference = SparseAutoencoder.Load(plain);
        using var folded = SparseAutoencoder.Load(scaled, new SaeLoadOptions { NormScalingFactor = s });

        Assert.Equal("none", folded.Config.NormalizeActivations);
        TensorAssert.Close(w["W_enc"] * s, folded.WEnc, atol: 0, rtol: 0, what: "W_enc·s");
        TensorAssert.Close(w["W_dec"] / s, folded.WDec, atol: 0, rtol: 0, what: "W_dec/s");
        TensorAssert.Close(w["b_dec"] / s, folded.BDec, atol: 0, rtol: 0, what: "b_dec/s");
        TensorAssert.Close(w["b_enc"], folded.BEnc, atol: 0, rtol: 0, what: "b_enc");

        // The folded SAE on raw activations equals the original on scaled activations, rescaled back.
        var x = torch.randn(4, 8, generator: new torch.Generator((ulong)(9))) * 10;
        TensorAssert.Close(reference.Encode(x * s), folded.Encode(x), atol: 1e-5, rtol: 1e-5, what: "acts");
        TensorAssert.Close(reference.Forward(x * s) / s, folded.Forward(x), atol: 1e-5, rtol: 1e-5, what: "reconstruction");

        // A run-time normalization cannot take a constant factor.
        string runtime = WriteSae(dir, "runtime", Cfg(8, 16, ", \"normalize_activations\": \"constant_norm_rescale\""), w);
        Assert.Throws<SaeException>(() => SparseAutoencoder.Load(runtime, new SaeLoadOptions { NormScalingFactor = s }));
        Assert.Throws<ArgumentOutOfRangeException>(() => reference.FoldActivationNormScalingFactor(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => reference.FoldActivationNormScalingFactor(double.NaN));
    }

    [Fact]
    public void ReleaseOptionsFoldTheTableFactorForLegacyConfigs()
    {
        using var scope = torch.NewDisposeScope();
        using var dir = new TempDir();
        var w = RandomWeights(8, 16, 4);
        // An old-style cfg.json as the 2024 Gemma-2b SAEs have it: hook_point keys and a boolean normalize_activations.
        string folder = WriteSae(dir, "gemma_2b_blocks.12.hook_resid_post_16384",
            """{"d_in": 8, "d_sae": 16, "hook_point": "blocks.12.hook_resid_post", "hook_point_layer": 12, "normalize_activations": true, "dtype": "float32"}""", w);
        using var sae = SparseAutoencoder.Load(folder, SaeLoadOptions.ForRelease("gemma-2b-res-jb", "blocks.12.hook_resid_post"));
        Assert.Equal("blocks.12.hook_resid_post", sae.HookName);
        Assert.Equal(12, sae.HookLayer);
        Assert.Equal("gemma-2b/12-res-jb", sae.Config.NeuronpediaId);
        Assert.Equal("none", sae.Config.NormalizeActivations);
        TensorAssert.Close(w["W_enc"] * 0.21381938399317255, sae.WEnc, atol: 0, rtol: 0, what: "W_enc folded");

        // Without a known factor the SAE is used unfolded, with a warning (as SAELens does).
        var logger = new ListLogger();
        using var unfolded = SparseAutoencoder.Load(folder, new SaeLoadOptions { Logger = logger });
        Assert.Equal("expected_average_only_in", unfolded.Config.NormalizeActivations);
        TensorAssert.Close(w["W_enc"], unfolded.WEnc, atol: 0, rtol: 0, what: "W_enc unfolded");
        Assert.Contains(logger.Messages, m => m.Contains("expected_average_only_in", StringComparison.Ordinal));

        // Release overrides reach the config.
        using var it = SparseAutoencoder.Load(folder, SaeLoadOptions.ForRelease("gemma-2b-it-res-jb", "blocks.12.hook_resid_post"));
        Assert.Equal("Skylion007/openwebtext", it.Config.DatasetPath);
        Assert.Equal("gemma-2b-it/12-res-jb", it.Config.NeuronpediaId);
    }

    [Fact]
    public void ReleaseTableMatchesSaeLens()
    {
        var r = SaeReleases.Get("gemma-2b-res-jb");
        Assert.Equal("jbloom/Gemma-2b-Residual-Stream-SAEs", r.RepoId);
        var e = r.Get("blocks.12.hook_resid_post");
        Assert.Equal("gemma_2b_blocks.12.hook_resid_post_16384", e.Path);
        Assert.Equal(0.21381938399317255, e.NormScalingFactor);
        Assert.Equal("gemma_2b_blocks.12.hook_resid_post_16384/cfg.json", e.FilePath(SparseAutoencoder.ConfigFileName));
        Assert.Null(r.Get("blocks.6.hook_resid_post").NormScalingFactor);
        Assert.Equal("jbloom/Gemma-2b-IT-Residual-Stream-SAEs", SaeReleases.Gemma2bItResJb.RepoId);
        Assert.Equal("gemma_2b_it_blocks.12.hook_resid_post_16384", SaeReleases.Gemma2bItResJb.Get("blocks.12.hook_resid_post").Path);
        Assert.Equal(0.21381938399317255, SaeReleases.NormScalingFactor("gemma-2b-res-jb", "blocks.12.hook_resid_post"));
        Assert.Contains("gemma-2b-res-jb", Assert.Throws<SaeException>(() => SaeReleases.Get("nope")).Message);
        Assert.Contains("blocks.12.hook_resid_post", Assert.Throws<SaeException>(() => r.Get("blocks.99.hook_resid_post")).Message);
        Assert.Throws<SaeException>(() => SaeLoadOptions.ForRelease("gemma-2b-res-jb", "blocks.1.hook_resid_post"));
    }

    [Fact]
    public void TopKKeepsTheKLargestThroughRelu()
    {
        using var scope = torch.NewDisposeScope();
        var w = RandomWeights(8, 32, 6);
        var cfg = SaeConfig.Parse("""{"architecture": "topk", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}, "d_in": 8, "d_sae": 32, "hook_name": "blocks.0.hook_resid_post"}""", "t");
        using var sae = SparseAutoencoder.FromTensors(cfg, w);
        Assert.Equal(SaeArchitecture.TopK, sae.Architecture);
        Assert.Equal(3, sae.K);
        var x = torch.randn(50, 8, generator: new torch.Generator((ulong)(7)));
        var (pre, acts) = sae.EncodeWithPre(x);
        TensorAssert.Close((x - w["b_dec"]).matmul(w["W_enc"]) + w["b_enc"], pre, atol: 1e-5, rtol: 1e-5, what: "pre");
        Assert.True(acts.ne(0).sum(1).le(3).all().item<bool>());
        var (values, indices) = pre.topk(3);
        var expected = torch.zeros_like(pre).scatter(1, indices, torch.nn.functional.relu(values));
        TensorAssert.Close(expected, acts, atol: 0, rtol: 0, what: "topk acts");
    }

    [Fact]
    public void GatedSaeFollowsSaeLensFormula()
    {
        using var scope = torch.NewDisposeScope();
        var w = RandomWeights(8, 16, 8, "b_gate", "r_mag", "b_mag");
        w.Remove("b_enc");
        var cfg = SaeConfig.Parse("""{"architecture": "gated", "d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post"}""", "t");
        using var sae = SparseAutoencoder.FromTensors(cfg, w);
        var x = torch.randn(20, 8, generator: new torch.Generator((ulong)(3)));
        var saeIn = x - w["b_dec"];
        var gate = (saeIn.matmul(w["W_enc"]) + w["b_gate"]).gt(0).to(ScalarType.Float32);
        var mag = saeIn.matmul(w["W_enc"] * w["r_mag"].exp()) + w["b_mag"];
        var (pre, acts) = sae.EncodeWithPre(x);
        TensorAssert.Close(mag, pre, atol: 1e-5, rtol: 1e-5, what: "magnitude pre");
        TensorAssert.Close(gate * torch.nn.functional.relu(mag), acts, atol: 1e-5, rtol: 1e-5, what: "gated acts");
    }

    [Fact]
    public void RunTimeNormalizationsFollowSaeLens()
    {
        using var scope = torch.NewDisposeScope();
        var w = RandomWeights(8, 16, 10);
        var x = torch.randn(6, 8, generator: new torch.Generator((ulong)(11))) * 7;

        var cnr = SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "normalize_activations": "constant_norm_rescale"}""", "t");
        using (var sae = SparseAutoencoder.FromTensors(cnr, w))
        {
            var coeff = Math.Sqrt(8) / x.norm(-1, keepdim: true);
            var acts = torch.nn.functional.relu(((x * coeff) - w["b_dec"]).matmul(w["W_enc"]) + w["b_enc"]);
            TensorAssert.Close(acts, sae.Encode(x), atol: 1e-5, rtol: 1e-5, what: "cnr acts");
            TensorAssert.Close((acts.matmul(w["W_dec"]) + w["b_dec"]) / coeff, sae.Forward(x), atol: 1e-5, rtol: 1e-5, what: "cnr recons");
            TensorAssert.Close(sae.Forward(x), sae.Decode(sae.Encode(x), x), atol: 0, rtol: 0, what: "decode with input");
            Assert.True(sae.DecodeNeedsInput);
            Assert.Throws<SaeException>(() => sae.Decode(acts));
        }

        var ln = SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.hook_resid_post", "normalize_activations": "layer_norm"}""", "t");
        using (var sae = SparseAutoencoder.FromTensors(ln, w))
        {
            var mu = x.mean([-1L], keepdim: true);
            var centered = x - mu;
            var std = centered.std(-1, true, true);
            var acts = torch.nn.functional.relu(((centered / (std + 1e-5)) - w["b_dec"]).matmul(w["W_enc"]) + w["b_enc"]);
            TensorAssert.Close(acts, sae.Encode(x), atol: 1e-5, rtol: 1e-5, what: "ln acts");
            TensorAssert.Close(((acts.matmul(w["W_dec"]) + w["b_dec"]) * std) + mu, sae.Forward(x), atol: 1e-5, rtol: 1e-5, what: "ln recons");
        }
    }

    [Fact]
    public void FoldDecoderNormKeepsReconstructions()
    {
        using var scope = torch.NewDisposeScope();
        var x = torch.randn(10, 64, generator: new torch.Generator((ulong)(12))) * 20;
        using var sae = SparseAutoencoder.LoadGemmaScope(SaeFixture.GemmaScopeNpz, "blocks.3.hook_resid_post");
        var before = sae.Forward(x);
        var actsBefore = sae.Encode(x);
        var norms = sae.WDec.norm(1);
        sae.FoldDecoderNorm();
        TensorAssert.Close(torch.ones(128), sae.WDec.norm(1), atol: 1e-5, rtol: 0, what: "unit rows");
        TensorAssert.Close(before, sae.Forward(x), atol: 1e-4, rtol: 1e-4, what: "reconstruction");
        TensorAssert.Close(actsBefore * norms, sae.Encode(x), atol: 1e-4, rtol: 1e-4, what: "acts scale with norms");
    }

    [Fact]
    public void HookZInputsAreFlattenedAndRestored()
    {
        using var scope = torch.NewDisposeScope();
        var w = RandomWeights(8, 16, 13);
        var cfg = SaeConfig.Parse("""{"d_in": 8, "d_sae": 16, "hook_name": "blocks.0.attn.hook_z"}""", "t");
        using var sae = SparseAutoencoder.FromTensors(cfg, w);
        var z = torch.randn(2, 5, 2, 4, generator: new torch.Generator((ulong)(1)));
        var recons = sae.Forward(z);
        Assert.Equal(z.shape, recons.shape);
        TensorAssert.Close(sae.Forward(z.reshape(2, 5, 8)).reshape(2, 5, 2, 4), recons, atol: 0, rtol: 0, what: "hook_z");
        Assert.Equal([2L, 5L, 16L], sae.Encode(z).shape);
    }

    [Fact]
    public void InputsAreCastToTheSaeDtypeAndWeightsSurviveCallerScopes()
    {
        SparseAutoencoder sae;
        using (var scope = torch.NewDisposeScope())
        {
            sae = SparseAutoencoder.Load(SaeFixture.StandardFolder, new SaeLoadOptions { DType = ScalarType.Float64 });
        }

        using (sae)
        using (var scope = torch.NewDisposeScope())
        {
            var x = Fixture.Load("sae.standard.input");
            var acts = sae.Encode(x);
            Assert.Equal(ScalarType.Float64, acts.dtype);
            TensorAssert.Close(Fixture.Load("sae.standard.feature_acts"), acts, what: "float64 feature_acts");
        }

        Assert.Throws<ObjectDisposedException>(() => sae.WDec);
        Assert.Throws<ObjectDisposedException>(() => sae.Encode(torch.zeros(64)));
    }
}
