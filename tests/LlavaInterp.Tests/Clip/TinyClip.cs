using LlavaInterp.Hooks;
using LlavaInterp.Models.Clip;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Support;
using TorchSharp;

namespace LlavaInterp.Tests.Clip;

/// <summary>The fixture's vision tower, built and loaded the way LLaVA will (prefix <c>vision_tower.</c>).</summary>
internal static class TinyClip
{
    public const string Prefix = "vision_tower.";

    public static string ConfigPath => System.IO.Path.Combine(Fixture.ModelDir, "config.json");

    public static string WeightsPath => System.IO.Path.Combine(Fixture.ModelDir, "model.safetensors");

    public static ClipVisionConfig Config() => ClipVisionConfig.Load(ConfigPath);

    public static HookedClipVisionModel Load(torch.ScalarType dtype = torch.ScalarType.Float32, string hookPrefix = HookedClipVisionModel.DefaultHookPrefix)
    {
        var model = new HookedClipVisionModel(Config(), hookPrefix, dtype: dtype);
        using var file = SafetensorsFile.Open(WeightsPath);
        model.LoadWeights(file, Prefix);
        model.eval();
        return model;
    }

    /// <summary>Runs the model once and returns the activations at the hook points the filter accepts (all when null).</summary>
    public static ActivationCache Cache(HookedClipVisionModel model, Func<string, bool>? filter = null, torch.Tensor? pixels = null)
    {
        var (output, cache) = model.RunWithCache(new ClipVisionInput(pixels ?? Pixels()), filter);
        output.Dispose();
        return cache;
    }

    /// <summary>The image_chat prompt's pixels [1,3,32,32].</summary>
    public static torch.Tensor Pixels() => Fixture.Load("prompt.image_chat.pixel_values");
}

/// <summary>An in-memory checkpoint, for load tests that need missing, extra or reshaped tensors.</summary>
internal sealed class DictionaryTensorSource : ITensorSource
{
    private readonly Dictionary<string, torch.Tensor> _tensors;

    public DictionaryTensorSource(Dictionary<string, torch.Tensor> tensors) => _tensors = tensors;

    /// <summary>Every tensor of a safetensors file, renamed by <paramref name="rename"/> (null drops it).</summary>
    public static DictionaryTensorSource FromFile(string path, Func<string, string?> rename)
    {
        using var file = SafetensorsFile.Open(path);
        var tensors = new Dictionary<string, torch.Tensor>(StringComparer.Ordinal);
        foreach (var name in file.Names)
        {
            if (rename(name) is string newName)
            {
                tensors[newName] = file.Load(name).clone().DetachFromDisposeScope();
            }
        }

        return new DictionaryTensorSource(tensors);
    }

    public Dictionary<string, torch.Tensor> Tensors => _tensors;

    public IReadOnlyList<string> Names => _tensors.Keys.ToList();

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public TensorEntry GetEntry(string name)
    {
        var t = _tensors.TryGetValue(name, out var x) ? x : throw new TensorFileException("<memory>", name, "no such tensor.");
        return new TensorEntry(name, SafetensorsDType.FromScalarType(t.dtype), t.shape, "<memory>", 0, t.numel() * t.element_size());
    }

    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        var t = _tensors.TryGetValue(name, out var x) ? x : throw new TensorFileException("<memory>", name, "no such tensor.");
        return t.to(dtype ?? t.dtype, device ?? torch.CPU, copy: true);
    }

    public void Dispose()
    {
        foreach (var t in _tensors.Values)
        {
            t.Dispose();
        }
    }
}
