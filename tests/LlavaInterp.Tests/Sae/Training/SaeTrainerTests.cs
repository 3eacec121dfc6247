using LlavaInterp.Sae;
using LlavaInterp.Sae.Training;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae.Training;

public sealed class SaeTrainerTests
{
    private static Tensor FixedBatch() => torch.tensor(
        new double[]
        {
            1.5, -0.5, 2.0,
            0.25, 3.0, -1.0,
            -2.0, 0.75, 0.5,
            4.0, 1.0, -3.0,
            0.1, -0.2, 0.3,
        },
        [5, 3],
        dtype: ScalarType.Float64);

    [Fact]
    public void TwoStandardStepsEqualTheHandWrittenLossClippingAndAdamUpdate()
    {
        var options = new SaeTrainingOptions
        {
            DIn = 3,
            DSae = 4,
            DType = "float64",
            ComputeDType = "float64",
            L1Coefficient = 0.5,
            L1WarmUpSteps = 2,
            LearningRate = 0.01,
            LrWarmUpSteps = 2,
            GradientClipNorm = 1.0,
            Seed = 7,
        };
        using var trainer = new SaeTrainer(options);
        using var x = FixedBatch();

        // Independent reference state: the initial weights and zero Adam moments.
        var p = new[] { trainer.WEnc, trainer.BEnc, trainer.WDec, trainer.BDec }.Select(t => t.detach().clone()).ToArray();
        var m = p.Select(t => torch.zeros_like(t)).ToArray();
        var v = p.Select(t => torch.zeros_like(t)).ToArray();
        double b1 = 0.9, b2 = 0.999, eps = 1e-8;

        for (int step = 0; step < 2; step++)
        {
            // SAELens schedules: L1 coefficient final·step/warm-up (0 then 0.25), learning rate lr·(step+1)/warm-up.
            double l1 = 0.5 * step / 2.0;
            double lr = 0.01 * (step + 1) / 2.0;
            var leaves = p.Select(t => t.clone().requires_grad_(true)).ToArray();
            var (wEnc, bEnc, wDec, bDec) = (leaves[0], leaves[1], leaves[2], leaves[3]);
            var f = torch.nn.functional.relu(((x - bDec).matmul(wEnc)) + bEnc);
            var recon = f.matmul(wDec) + bDec;
            var mse = (recon - x).pow(2).sum(1).mean();
            var rowNorms = wDec.pow(2).sum(1).sqrt();
            var loss = mse + (l1 * (f * rowNorms).abs().sum(1)).mean();
            var grads = torch.autograd.grad([loss], leaves);

            double total = Math.Sqrt(grads.Sum(g => g.pow(2).sum().item<double>()));
            double clip = Math.Min(1.0, 1.0 / (total + 1e-6));
            if (step == 0)
            {
                Assert.True(total > 1.0, $"the batch should exercise clipping (gradient norm {total}).");
            }

            var progress = trainer.Step(x);
            Assert.Equal(loss.item<double>(), progress.Loss, 12);
            Assert.Equal(mse.item<double>(), progress.MseLoss, 12);
            Assert.Equal(lr, progress.LearningRate, 15);
            Assert.Equal(l1, progress.SparsityCoefficient, 15);

            int t = step + 1;
            for (int i = 0; i < p.Length; i++)
            {
                var g = grads[i].detach() * clip;
                m[i] = (b1 * m[i]) + ((1 - b1) * g);
                v[i] = (b2 * v[i]) + ((1 - b2) * g * g);
                var mHat = m[i] / (1 - Math.Pow(b1, t));
                var vHat = v[i] / (1 - Math.Pow(b2, t));
                p[i] = p[i] - (lr * mHat / (vHat.sqrt() + eps));
            }

            var actual = new[] { trainer.WEnc, trainer.BEnc, trainer.WDec, trainer.BDec };
            for (int i = 0; i < p.Length; i++)
            {
                double diff = (actual[i].detach() - p[i]).abs().max().item<double>();
                Assert.True(diff < 1e-12, $"parameter {i} after step {step + 1} differs by {diff}.");
            }
        }
    }

    [Fact]
    public void JumpReluThresholdGradientIsTheStraightThroughEstimate()
    {
        // One Adam step moves each parameter by about lr·sign(gradient) (first step, tiny ε): the sign of the
        // log-threshold update must match SAELens's rectangle-kernel estimate, written out here by hand.
        var options = new SaeTrainingOptions
        {
            Architecture = SaeTrainingArchitecture.JumpRelu,
            DIn = 3,
            DSae = 4,
            DType = "float64",
            ComputeDType = "float64",
            L0Coefficient = 0.3,
            JumpReluBandwidth = 2.0,
            JumpReluInitThreshold = 0.5,
            GradientClipNorm = 0,
            LearningRate = 1e-3,
            Seed = 3,
        };
        using var trainer = new SaeTrainer(options);
        using var x = FixedBatch();
        var wEnc = trainer.WEnc.detach().clone();
        var bEnc = trainer.BEnc.detach().clone();
        var wDec = trainer.WDec.detach().clone();
        var bDec = trainer.BDec.detach().clone();
        var logT = trainer.LogThreshold!.detach().clone();

        var theta = logT.exp();
        var pre = (x - bDec).matmul(wEnc) + bEnc;
        var mask = pre.gt(theta).to(ScalarType.Float64);
        var f = pre * mask;
        var recon = f.matmul(wDec) + bDec;
        long n = x.shape[0];
        var dLdF = 2.0 * (recon - x).matmul(wDec.t()) / n;
        var z = (pre - theta) / 2.0;
        var rect = z.gt(-0.5).logical_and(z.lt(0.5)).to(ScalarType.Float64);
        var dTheta = (-(theta / 2.0) * rect * dLdF).sum(0L) + (0.3 * (-(1.0 / 2.0)) * rect).sum(0L) / n;
        var dLogT = dTheta * theta;
        Assert.True(dLogT.abs().gt(1e-6).any().item<bool>(), "the fixture batch should put some pre-activations inside the kernel.");

        trainer.Step(x);
        var moved = trainer.LogThreshold!.detach() - logT;
        // Adam's first step is −lr·g/(|g|+ε): exactly determined by the hand gradient.
        var expected = -1e-3 * dLogT / (dLogT.abs() + 1e-8);
        double diff = (moved - expected).abs().max().item<double>();
        Assert.True(diff < 1e-12, $"log-threshold update differs from the straight-through estimate by {diff}.");
    }

    [Theory]
    [InlineData(SaeTrainingArchitecture.Standard)]
    [InlineData(SaeTrainingArchitecture.TopK)]
    public void RecoversAPlantedSparseDictionary(SaeTrainingArchitecture architecture)
    {
        const int dIn = 16, nTrue = 24, dSae = 32, batch = 256, steps = 400, active = 3;
        var gen = new Generator(123);
        using var truth = torch.randn([nTrue, dIn], generator: gen);
        truth.div_(truth.norm(1, keepdim: true));
        IEnumerable<Tensor> Batches()
        {
            for (int s = 0; s < steps; s++)
            {
                using var scope = torch.NewDisposeScope();
                // Each activation is a sum of `active` planted directions with magnitudes in [1, 2).
                var idx = torch.rand([batch, nTrue], generator: gen).argsort(1)[.., ..active];
                var mags = torch.zeros([batch, nTrue]).scatter_(1, idx, torch.rand([batch, active], generator: gen) + 1.0);
                yield return mags.matmul(truth).MoveToOuterDisposeScope();
            }
        }

        var options = new SaeTrainingOptions
        {
            Architecture = architecture,
            DIn = dIn,
            DSae = dSae,
            K = active,
            L1Coefficient = 0.3,
            L1WarmUpSteps = 50,
            LearningRate = 1e-2,
            LrWarmUpSteps = 50,
            LrDecaySteps = 100,
            TotalSteps = steps,
            DeadFeatureWindow = 100,
            Seed = 1,
        };
        using var trainer = new SaeTrainer(options);
        var last = trainer.Train(Batches());
        Assert.NotNull(last);
        using var dec = trainer.WDec.detach();
        using var unitDec = dec / dec.norm(1, keepdim: true);
        using var best = truth.matmul(unitDec.t()).max(1).values;
        double recovered = best.ge(0.9).to(ScalarType.Float64).mean().item<double>();
        Assert.True(recovered >= 0.9, $"{architecture}: only {recovered:P0} of planted directions recovered (cos ≥ 0.9); final {last}.");
        Assert.True(last!.ExplainedVariance > 0.9, $"{architecture}: explained variance {last.ExplainedVariance}.");
    }

    [Theory]
    [InlineData(SaeTrainingArchitecture.Standard)]
    [InlineData(SaeTrainingArchitecture.TopK)]
    [InlineData(SaeTrainingArchitecture.JumpRelu)]
    public void SavedFolderLoadsAndEncodesTheSame(SaeTrainingArchitecture architecture)
    {
        var options = new SaeTrainingOptions
        {
            Architecture = architecture,
            DIn = 8,
            DSae = 16,
            K = 4,
            NormalizeActivations = true,
            HookName = "blocks.1.hook_resid_post",
            HookLayer = 1,
            LearningRate = 1e-2,
            JumpReluInitThreshold = 0.05,
            Seed = 5,
        };
        var gen = new Generator(9);
        using var trainer = new SaeTrainer(options);
        for (int i = 0; i < 20; i++)
        {
            using var b = torch.randn([64, 8], generator: gen) * 7.0;
            trainer.Step(b);
        }

        Assert.NotEqual(1.0, trainer.NormScalingFactor);
        using var dir = new TempDir();
        trainer.Save(dir.Path);
        using var sae = SparseAutoencoder.Load(dir.Path);
        Assert.Equal(options.HookName, sae.HookName);
        Assert.Equal("none", sae.Config.NormalizeActivations);
        using var x = torch.randn([2, 10, 8], generator: gen) * 7.0;
        using var expected = trainer.Encode(x);
        using var actual = sae.Encode(x);
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.gt(0).any().item<bool>(), "the trained SAE should have active features.");
        TensorAssert.Close(expected, actual, 1e-5, 1e-4);
        using var sparsity = LlavaInterp.TensorFiles.SafetensorsFile.Open(dir.File(SparseAutoencoder.SparsityFileName));
        Assert.Equal(new long[] { 16 }, sparsity.GetEntry("sparsity").Shape);
    }

    [Fact]
    public void CheckpointResumeContinuesBitForBit()
    {
        var options = new SaeTrainingOptions { DIn = 6, DSae = 12, L1Coefficient = 0.1, L1WarmUpSteps = 4, LrWarmUpSteps = 3, NormalizeActivations = true, Seed = 11 };
        var data = Enumerable.Range(0, 10).Select(i => torch.randn([32, 6], generator: new Generator((ulong)(100 + i)))).ToList();
        try
        {
            using var straight = new SaeTrainer(options);
            foreach (var b in data)
            {
                straight.Step(b);
            }

            using var dir = new TempDir();
            using (var first = new SaeTrainer(options))
            {
                foreach (var b in data.Take(5))
                {
                    first.Step(b);
                }

                first.SaveCheckpoint(dir.Path);
            }

            using var resumed = SaeTrainer.Resume(dir.Path);
            Assert.Equal(5, resumed.StepCount);
            foreach (var b in data.Skip(5))
            {
                resumed.Step(b);
            }

            Assert.True(straight.WEnc.eq(resumed.WEnc).all().item<bool>());
            Assert.True(straight.WDec.eq(resumed.WDec).all().item<bool>());
            Assert.True(straight.BDec.eq(resumed.BDec).all().item<bool>());
            Assert.Equal(straight.Tokens, resumed.Tokens);
        }
        finally
        {
            data.ForEach(t => t.Dispose());
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(6)]
    public void DeadFeaturesAreResampledTowardsBadlyReconstructedInputs(int resampleEvery)
    {
        var options = new SaeTrainingOptions { DIn = 8, DSae = 16, Seed = 5, LearningRate = 1e-6, DeadFeatureWindow = 2, ResampleDeadFeaturesEvery = resampleEvery };
        using var trainer = new SaeTrainer(options);
        long[] killed = [0, 3, 7, 12];
        using (torch.no_grad())
        {
            using var index = torch.tensor(killed);
            trainer.BEnc.index_fill_(0, index, -1e4);
        }

        using var gen = new Generator(9, torch.CPU);
        using var batch = torch.randn([64, 8], generator: gen);
        for (int i = 0; i < 6; i++)
        {
            trainer.Step(batch);
        }

        using var acts = trainer.Encode(batch);
        using var firedPerFeature = acts.gt(0).sum(0L);
        if (resampleEvery == 0)
        {
            Assert.Equal(0, trainer.ResampledFeatureCount);
            Assert.All(killed, f => Assert.Equal(0, firedPerFeature[f].item<long>()));
            return;
        }

        Assert.Equal(killed.Length, trainer.ResampledFeatureCount);
        using var centred = batch - trainer.BDec.detach();
        using var unitRows = centred / centred.norm(1, keepdim: true);
        foreach (long f in killed)
        {
            Assert.Equal(0.0, trainer.BEnc[f].item<float>());
            using var dec = trainer.WDec[f].detach();
            using var enc = trainer.WEnc[.., (int)f].detach();
            // Decoder row and encoder column both point at one of the batch's inputs (minus b_dec) ...
            using var cosines = unitRows.matmul(dec / dec.norm());
            Assert.True(cosines.max().item<float>() > 0.9999f, $"feature {f}: best cosine {cosines.max().item<float>()}");
            using var encCos = (enc / enc.norm()).dot(dec / dec.norm());
            Assert.True(encCos.item<float>() > 0.9999f);
            // ... so the feature fires again.
            Assert.True(firedPerFeature[f].item<long>() > 0, $"feature {f} still dead");
        }
    }

    [Fact]
    public void SameSeedSameWeightsAndBadBatchesAreTyped()
    {
        var options = new SaeTrainingOptions { DIn = 4, DSae = 8, Seed = 2 };
        using var a = new SaeTrainer(options);
        using var b = new SaeTrainer(options);
        using var c = new SaeTrainer(options with { Seed = 3 });
        Assert.True(a.WDec.eq(b.WDec).all().item<bool>());
        Assert.False(a.WDec.eq(c.WDec).all().item<bool>());
        using var wrong = torch.zeros(3, 5);
        var ex = Assert.Throws<SaeException>(() => a.Step(wrong));
        Assert.Contains("[3, 5]", ex.Message);
        Assert.Throws<SaeException>(() => new SaeTrainer(options with { DSae = 0 }));
    }

    [Fact]
    public void TrainHonoursCancellationAndReportsProgress()
    {
        var options = new SaeTrainingOptions { DIn = 4, DSae = 8 };
        using var trainer = new SaeTrainer(options);
        using var cts = new CancellationTokenSource();
        var reports = new List<TrainingProgress>();
        var progress = new SyncProgress(p =>
        {
            reports.Add(p);
            if (p.Step == 3)
            {
                cts.Cancel();
            }
        });
        IEnumerable<Tensor> Batches()
        {
            while (true)
            {
                yield return torch.randn(16, 4);
            }
        }

        Assert.Throws<OperationCanceledException>(() => trainer.Train(Batches(), progress: progress, cancellationToken: cts.Token));
        Assert.Equal(3, trainer.StepCount);
        Assert.Equal(new long[] { 1, 2, 3 }, reports.Select(r => r.Step));
        Assert.All(reports, r => Assert.InRange(r.DeadFraction, 0, 1));
    }

    private sealed class SyncProgress(Action<TrainingProgress> action) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => action(value);
    }
}
