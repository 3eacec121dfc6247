using LlavaInterp.Llava;
using LlavaInterp.Models.Gemma;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.Gemma;

/// <summary>The language model of the tiny-llava-gemma fixture, loaded as the golden run did (float32, CPU).</summary>
internal static class TinyGemma
{
    public static string CheckpointPath => Path.Combine(Fixture.ModelDir, "model.safetensors");

    public static GemmaConfig Config => LlavaConfig.Load(Path.Combine(Fixture.ModelDir, "config.json")).TextConfig;

    /// <summary>
    /// Writes the fixture's language model as a standalone Gemma folder (its <c>text_config</c> as <c>config.json</c>,
    /// the decoder tensors under the standalone names) into <paramref name="folder"/>.
    /// </summary>
    public static void WriteStandaloneFolder(string folder)
    {
        using (var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixture.ModelDir, "config.json"))))
        {
            File.WriteAllText(Path.Combine(folder, "config.json"), doc.RootElement.GetProperty("text_config").GetRawText());
        }

        using var file = SafetensorsFile.Open(CheckpointPath);
        using var source = MemoryTensorSource.From(file, n => n.StartsWith("language_model.", StringComparison.Ordinal) ? n["language_model.".Length..] : null);
        SafetensorsWriter.Save(Path.Combine(folder, "model.safetensors"), source.Names.Select(n => new KeyValuePair<string, torch.Tensor>(n, source.Load(n))));
    }

    /// <summary>A fresh model with its own mapping of the checkpoint (tests may edit its weights).</summary>
    public static HookedGemma Load(torch.ScalarType dtype = torch.ScalarType.Float32)
    {
        var model = new HookedGemma(Config, dtype);
        using var source = SafetensorsFile.Open(CheckpointPath);
        model.LoadWeights(source, "language_model.");
        return model;
    }

    public static torch.Tensor TextIds => Fixture.Load("prompt.text_chat.input_ids");

    public static torch.Tensor ImageEmbeds => Fixture.Load("lm.image_chat.inputs_embeds");

    /// <summary>Index helper: golden[i] of a stacked golden tensor.</summary>
    public static torch.Tensor Slice(string key, long index) => Fixture.Load(key)[index];

    /// <summary>Greedy KV-cached decoding as HF generate(do_sample=False): returns new ids [b, steps] and per-step logits [steps, b, vocab].</summary>
    public static (torch.Tensor NewIds, torch.Tensor StepLogits) Greedy(HookedGemma model, GemmaInput prompt, int steps)
    {
        using var cache = model.CreateCache();
        var ids = new List<torch.Tensor>();
        var logits = new List<torch.Tensor>();
        var input = prompt with { Cache = cache, LogitsToKeep = 1 };
        for (int step = 0; step < steps; step++)
        {
            using var output = model.call(input);
            var last = output.Logits!.select(1, -1).clone();
            var next = last.argmax(-1);
            logits.Add(last);
            ids.Add(next);
            input = new GemmaInput { InputIds = next.unsqueeze(1), Cache = cache, LogitsToKeep = 1 };
        }

        return (torch.stack(ids, 1), torch.stack(logits));
    }
}

/// <summary>An in-memory checkpoint for loader tests.</summary>
internal sealed class MemoryTensorSource : ITensorSource
{
    private readonly Dictionary<string, torch.Tensor> _tensors;

    public MemoryTensorSource(IEnumerable<KeyValuePair<string, torch.Tensor>> tensors)
    {
        _tensors = new Dictionary<string, torch.Tensor>(tensors, StringComparer.Ordinal);
    }

    /// <summary>Every tensor of a safetensors file, renamed by <paramref name="rename"/> (null drops it).</summary>
    public static MemoryTensorSource From(ITensorSource source, Func<string, string?> rename)
    {
        var pairs = new List<KeyValuePair<string, torch.Tensor>>();
        foreach (var name in source.Names)
        {
            if (rename(name) is { } newName)
            {
                pairs.Add(new(newName, source.Load(name)));
            }
        }

        return new MemoryTensorSource(pairs);
    }

    public IReadOnlyList<string> Names => _tensors.Keys.OrderBy(n => n, StringComparer.Ordinal).ToList();

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorEntry GetEntry(string name)
    {
        var t = _tensors[name];
        string dtype = t.dtype switch
        {
            torch.ScalarType.Float32 => "F32",
            torch.ScalarType.BFloat16 => "BF16",
            torch.ScalarType.Float16 => "F16",
            torch.ScalarType.Int64 => "I64",
            _ => throw new NotSupportedException(t.dtype.ToString()),
        };
        return new TensorEntry(name, dtype, t.shape, "memory", 0, t.numel() * t.element_size());
    }

    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null) =>
        _tensors[name].to(dtype ?? _tensors[name].dtype, device ?? torch.CPU).clone();

    public void Set(string name, torch.Tensor value) => _tensors[name] = value;

    public void Remove(string name) => _tensors.Remove(name);

    public void Dispose()
    {
        foreach (var t in _tensors.Values)
        {
            t.Dispose();
        }
    }
}
