using LlavaInterp.Analysis;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using LlavaInterp.Sae.Training;
using LlavaInterp.Tests.Llava;
using LlavaInterp.Tests.Support;
using LlavaInterp.TensorFiles;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Tests.Sae.Training;

public sealed class ActivationStoreTests(TinyLlavaFixture tiny) : IClassFixture<TinyLlavaFixture>
{
    private static IEnumerable<Tensor> Chunks(int n, int rows) =>
        Enumerable.Range(0, n).Select(i => torch.arange(i * rows, (i + 1) * rows, dtype: ScalarType.Float32).unsqueeze(1).expand(rows, 3).contiguous());

    [Fact]
    public void ShuffleKeepsEveryRowOnceMixesAndIsSeeded()
    {
        var batches = ActivationStore.Shuffle(Chunks(10, 7), batchSize: 8, bufferRows: 32, seed: 4).ToList();
        var again = ActivationStore.Shuffle(Chunks(10, 7), batchSize: 8, bufferRows: 32, seed: 4).ToList();
        try
        {
            Assert.All(batches[..^1], b => Assert.Equal(new long[] { 8, 3 }, b.shape));
            var ids = batches.SelectMany(b => b[.., 0].data<float>().ToArray()).ToList();
            Assert.Equal(Enumerable.Range(0, 70).Select(i => (float)i), ids.Order());
            Assert.NotEqual(Enumerable.Range(0, 70).Select(i => (float)i), ids);
            Assert.Equal(ids, again.SelectMany(b => b[.., 0].data<float>().ToArray()));
        }
        finally
        {
            batches.Concat(again).ToList().ForEach(b => b.Dispose());
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => ActivationStore.Shuffle(Chunks(1, 2), 8, 15).ToList());
    }

    [Fact]
    public void ShardsRoundTripAndMissingShardsAreTyped()
    {
        using var dir = new TempDir();
        long written = ActivationStore.WriteShards(Chunks(5, 7), dir.Path, rowsPerShard: 10, hookName: "blocks.0.hook_resid_post");
        Assert.Equal(35, written);
        Assert.Equal(4, Directory.GetFiles(dir.Path, ActivationStore.ShardPattern).Length);
        var read = ActivationStore.ReadShards(dir.Path).ToList();
        try
        {
            Assert.Equal(new long[] { 10, 10, 10, 5 }, read.Select(t => t.shape[0]));
            var all = torch.cat(read, 0);
            Assert.Equal(Enumerable.Range(0, 35).Select(i => (float)i), all[.., 2].data<float>().ToArray());
        }
        finally
        {
            read.ForEach(t => t.Dispose());
        }

        using var empty = new TempDir();
        var ex = Assert.Throws<TensorFileException>(() => ActivationStore.ReadShards(empty.Path));
        Assert.Contains("shard", ex.Message);
    }

    [Fact]
    public void TensorsTheCallerMakesBetweenPromptsSurviveTheNextPrompt()
    {
        const string hook = "blocks.0.hook_resid_post";
        string text = Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("rendered_chat_template").GetString()!;
        var prompts = new[] { "gradient_rgb", "gray_l" }.Select(n => tiny.Model.Processor!.Prepare(text, [Fixture.Image(n)], raw: true)).ToList();
        try
        {
            var source = new LlavaActivationSource(tiny.Model, hook) { Tokens = ActivationTokens.Text };
            var kept = new List<Tensor>();
            foreach (var rows in source.Activations(prompts))
            {
                // Made while the iterator is suspended: it must stay the caller's, not the prompt's scope's.
                kept.Add(rows.sum());
                rows.Dispose();
            }

            Assert.Equal(2, kept.Count);
            Assert.All(kept, t => Assert.True(double.IsFinite(t.item<float>())));
            kept.ForEach(t => t.Dispose());
        }
        finally
        {
            prompts.ForEach(p => p.Dispose());
        }
    }

    [Fact]
    public void ShortRunOnTheTinyModelLowersTheLossAndReachesTheTargetL0()
    {
        const string hook = "blocks.1.hook_resid_post";
        string text = Fixture.Manifest.GetProperty("prompts").GetProperty("image_chat").GetProperty("rendered_chat_template").GetString()!;
        var prompts = new[] { "gradient_rgb", "gray_l", "rgba_alpha", "tiny_5x7" }.Select(n => tiny.Model.Processor!.Prepare(text, [Fixture.Image(n)], raw: true)).ToList();
        try
        {
            var source = new LlavaActivationSource(tiny.Model, hook) { Tokens = ActivationTokens.Both, ImageShare = 0.5, Seed = 1 };
            Assert.Equal(2, source.StopAtLayer);

            // Image-only rows are exactly the image positions of a full run's cache.
            var imageOnly = new LlavaActivationSource(tiny.Model, hook) { Tokens = ActivationTokens.Image };
            using (var rowsOfFirst = imageOnly.Activations(prompts.Take(1)).Single())
            {
                var (_, cache) = tiny.Model.RunWithCache(LlavaInput.From(prompts[0]), n => n == hook);
                using (cache)
                {
                    using var positions = torch.tensor(prompts[0].ImageTokenPositions.Select(p => (long)p).ToArray());
                    using var expected = cache[hook][0].index_select(0, positions);
                    TensorAssert.Close(expected, rowsOfFirst, 0, 0, "image rows vs full-run cache");
                }
            }

            using var dir = new TempDir();
            long rows = ActivationStore.WriteShards(source.Activations(prompts), dir.Path, rowsPerShard: 64, hookName: hook);
            Assert.True(rows > 0);
            int dIn = checked((int)ActivationStore.ReadShards(dir.Path).First().shape[1]);

            var options = new SaeTrainingOptions
            {
                DIn = dIn,
                DSae = dIn * 8,
                HookName = hook,
                HookLayer = 1,
                NormalizeActivations = true,
                L1Coefficient = 2.0,
                L1WarmUpSteps = 20,
                LearningRate = 5e-3,
                Seed = 3,
            };
            using var trainer = new SaeTrainer(options);
            IEnumerable<Tensor> Epochs()
            {
                for (int epoch = 0; epoch < 25; epoch++)
                {
                    foreach (var b in ActivationStore.Shuffle(ActivationStore.ReadShards(dir.Path), batchSize: 32, bufferRows: 128, seed: epoch))
                    {
                        yield return b;
                    }
                }
            }

            var reports = new List<TrainingProgress>();
            trainer.Train(Epochs(), progress: new Collect(reports));
            Assert.True(reports.Count > 50, $"only {reports.Count} steps ran.");
            double first = reports.Take(5).Average(r => r.MseLoss);
            double last = reports.TakeLast(5).Average(r => r.MseLoss);
            Assert.True(last < first / 2, $"reconstruction loss went from {first} to {last}.");
            double l0 = reports.TakeLast(5).Average(r => r.L0);
            Assert.True(l0 <= dIn / 2.0, $"final L0 {l0} is above the target {dIn / 2.0}.");

            trainer.Save(dir.File("sae"));
            using var sae = SparseAutoencoder.Load(dir.File("sae"));
            Assert.Equal(hook, sae.HookName);
        }
        finally
        {
            prompts.ForEach(p => p.Dispose());
        }
    }

    private sealed class Collect(List<TrainingProgress> into) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => into.Add(value);
    }
}
