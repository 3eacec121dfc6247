using System.Text.Json;
using System.Text.Json.Nodes;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;
using static LlavaInterp.Tests.TensorFiles.RawFiles;

namespace LlavaInterp.Tests.TensorFiles;

public sealed class ShardedCheckpointTests
{
    private static TempDir CopyOfShardedModel()
    {
        var dir = new TempDir();
        foreach (var file in Directory.EnumerateFiles(Fixture.ShardedModelDir))
        {
            if (file.EndsWith(".safetensors", StringComparison.Ordinal) || file.EndsWith(".index.json", StringComparison.Ordinal))
            {
                File.Copy(file, dir.File(Path.GetFileName(file)));
            }
        }

        return dir;
    }

    private static void EditWeightMap(TempDir dir, Action<JsonObject> edit)
    {
        string index = dir.File(Checkpoint.IndexFileName);
        var root = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
        edit(root["weight_map"]!.AsObject());
        File.WriteAllText(index, root.ToJsonString());
    }

    [Fact]
    public void SingleAndShardedCheckpointsHoldTheSameTensorsBitForBit()
    {
        using var single = Checkpoint.Open(Fixture.ModelDir);
        using var sharded = Checkpoint.Open(Fixture.ShardedModelDir);
        Assert.IsType<SafetensorsFile>(single);
        var shardedSource = Assert.IsType<ShardedSafetensors>(sharded);
        Assert.Equal(5, shardedSource.Shards.Count);

        var manifest = Fixture.Manifest.GetProperty("checkpoint").GetProperty("tensors");
        var expectedNames = manifest.EnumerateObject().Select(p => p.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();
        Assert.Equal(expectedNames, single.Names);
        Assert.Equal(expectedNames, sharded.Names);

        foreach (var name in single.Names)
        {
            var a = single.GetEntry(name);
            var b = sharded.GetEntry(name);
            Assert.Equal(a.DType, b.DType);
            Assert.Equal(a.Shape, b.Shape);
            Assert.Equal(manifest.GetProperty(name).GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()), b.Shape);
            Assert.Equal(Path.Combine(Fixture.ShardedModelDir, shardedSource.WeightMap[name]), b.FilePath);
            using var ta = single.Load(name);
            using var tb = sharded.Load(name);
            Assert.Equal(TensorBytes.ToBytes(ta), TensorBytes.ToBytes(tb));
        }
    }

    [Fact]
    public void ShardedLoadConvertsAndRejectsUnknownNames()
    {
        using var sharded = ShardedSafetensors.Open(Path.Combine(Fixture.ShardedModelDir, Checkpoint.IndexFileName));
        using var t = sharded.Load("multi_modal_projector.linear_1.bias", torch.ScalarType.Float64);
        Assert.Equal(torch.ScalarType.Float64, t.dtype);
        Assert.True(sharded.Contains("multi_modal_projector.linear_1.bias"));
        Assert.False(sharded.Contains("language_model.lm_head.weight"));
        AssertThrows(() => sharded.Load("language_model.lm_head.weight"), sharded.IndexPath, "language_model.lm_head.weight", "no such tensor");
        AssertThrows(() => sharded.GetEntry("nope"), sharded.IndexPath, "nope", "no such tensor");
    }

    [Fact]
    public void MissingShardFileIsRejectedNamingIndexAndShard()
    {
        using var dir = CopyOfShardedModel();
        File.Delete(dir.File("model-00003-of-00005.safetensors"));
        var ex = AssertThrows(() => Checkpoint.Open(dir.Path).Dispose(), dir.File(Checkpoint.IndexFileName), null, "model-00003-of-00005.safetensors");
        Assert.Contains("does not exist", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TensorMissingFromItsShardIsRejectedNamingTensorAndShard()
    {
        using var dir = CopyOfShardedModel();
        const string tensor = "multi_modal_projector.linear_1.bias";
        string wrongShard = "model-00005-of-00005.safetensors";
        using (var check = SafetensorsFile.Open(dir.File(wrongShard)))
        {
            Assert.False(check.Contains(tensor));
        }

        EditWeightMap(dir, map => map[tensor] = wrongShard);
        var ex = AssertThrows(() => Checkpoint.Open(dir.Path).Dispose(), dir.File(wrongShard), tensor, "not present in shard");
        Assert.Contains(wrongShard, ex.Message, StringComparison.Ordinal);
        Assert.Contains(Checkpoint.IndexFileName, ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"weight_map\": {\"a\": \"x.safetensors\"", "not valid JSON")]
    [InlineData("[1, 2]", "not a JSON object")]
    [InlineData("{\"metadata\": {}}", "no 'weight_map'")]
    [InlineData("{\"weight_map\": []}", "no 'weight_map'")]
    [InlineData("{\"weight_map\": {\"a\": 3}}", "shard file name")]
    [InlineData("{\"weight_map\": {\"a\": \"../model.safetensors\"}}", "plain file name")]
    [InlineData("{\"weight_map\": {\"a\": \"/tmp/model.safetensors\"}}", "plain file name")]
    [InlineData("{\"weight_map\": {\"a\": \"x.safetensors\", \"a\": \"y.safetensors\"}}", "more than once")]
    [InlineData("{\"weight_map\": {}, \"weight_map\": {}}", "more than once")]
    public void BadIndexIsRejected(string json, string fragment)
    {
        using var dir = new TempDir();
        string index = dir.File(Checkpoint.IndexFileName);
        File.WriteAllText(index, json);
        AssertThrows(() => ShardedSafetensors.Open(index).Dispose(), index, null, fragment);
    }

    [Fact]
    public void MissingIndexIsRejected()
    {
        using var dir = new TempDir();
        string index = dir.File(Checkpoint.IndexFileName);
        AssertThrows(() => ShardedSafetensors.Open(index).Dispose(), index, null, "not found");
    }

    [Fact]
    public void IndexWinsOverOtherFiles()
    {
        using var dir = CopyOfShardedModel();
        File.Copy(Path.Combine(Fixture.ModelDir, "model.safetensors"), dir.File("model.safetensors"));
        using var source = Checkpoint.Open(dir.Path);
        Assert.IsType<ShardedSafetensors>(source);
    }

    [Fact]
    public void ModelSafetensorsIsPreferredOverOtherSingleFiles()
    {
        using var dir = new TempDir();
        File.Copy(Path.Combine(Fixture.ModelDir, "model.safetensors"), dir.File("model.safetensors"));
        WriteSafetensors(dir, "other.safetensors", """{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", F32(1));
        using var source = Checkpoint.Open(dir.Path);
        var file = Assert.IsType<SafetensorsFile>(source);
        Assert.Equal(dir.File("model.safetensors"), file.FilePath);
    }

    [Fact]
    public void TheOnlySafetensorsFileIsUsed()
    {
        using var dir = new TempDir();
        string path = WriteSafetensors(dir, "weights.safetensors", """{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", F32(9));
        File.WriteAllText(dir.File("config.json"), "{}");
        using var source = Checkpoint.Open(dir.Path);
        Assert.Equal(path, Assert.IsType<SafetensorsFile>(source).FilePath);
        using var x = source.Load("x");
        Assert.Equal(9f, x[0].item<float>());
    }

    [Fact]
    public void SeveralSafetensorsFilesWithoutIndexAreRejected()
    {
        using var dir = new TempDir();
        WriteSafetensors(dir, "a.safetensors", "{}", []);
        WriteSafetensors(dir, "b.safetensors", "{}", []);
        var ex = AssertThrows(() => Checkpoint.Open(dir.Path).Dispose(), dir.Path, null, "no model.safetensors.index.json");
        Assert.Contains("a.safetensors", ex.Message, StringComparison.Ordinal);
        Assert.Contains("b.safetensors", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void FolderWithoutWeightsIsRejected()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir.File("config.json"), "{}");
        AssertThrows(() => Checkpoint.Open(dir.Path).Dispose(), dir.Path, null, "no safetensors weights");
    }

    [Fact]
    public void MissingFolderIsRejected()
    {
        using var dir = new TempDir();
        string missing = dir.File("nope");
        AssertThrows(() => Checkpoint.Open(missing).Dispose(), missing, null, "not found");
    }

    [Fact]
    public void InvalidShardIsRejectedNamingTheShard()
    {
        using var dir = CopyOfShardedModel();
        string shard = dir.File("model-00002-of-00005.safetensors");
        File.WriteAllBytes(shard, File.ReadAllBytes(shard).AsSpan(0, 1000).ToArray());
        var ex = Assert.Throws<TensorFileException>(() => Checkpoint.Open(dir.Path).Dispose());
        Assert.Equal(shard, ex.FilePath);
    }
}
