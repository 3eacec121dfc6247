using System.Text.Json;
using LlavaInterp.TensorFiles;
using TorchSharp;

namespace LlavaInterp.Tests.Support;

/// <summary>Paths and golden tensors of the tiny-llava-gemma fixture (HF transformers 4.46.3, float32, CPU).</summary>
public static class Fixture
{
    /// <summary>The fixture folder copied next to the test assembly.</summary>
    public static string Root { get; } = System.IO.Path.Combine(AppContext.BaseDirectory, "fixtures", "tiny-llava-gemma");

    private static readonly Lazy<SafetensorsFile> GoldenFile = new(() => SafetensorsFile.Open(System.IO.Path.Combine(Root, "golden.safetensors")));
    private static readonly Lazy<JsonDocument> ManifestDoc = new(() => JsonDocument.Parse(File.ReadAllText(System.IO.Path.Combine(Root, "manifest.json"))));

    /// <summary>The single-file model folder.</summary>
    public static string ModelDir => System.IO.Path.Combine(Root, "model");

    /// <summary>The sharded model folder.</summary>
    public static string ShardedModelDir => System.IO.Path.Combine(Root, "model-sharded");

    /// <summary>A test image path.</summary>
    public static string Image(string name) => System.IO.Path.Combine(Root, "images", name + ".png");

    /// <summary>A path under the fixture root.</summary>
    public static string Path(params string[] parts) => System.IO.Path.Combine([Root, .. parts]);

    /// <summary>The golden tensors file.</summary>
    public static SafetensorsFile Golden => GoldenFile.Value;

    /// <summary>Loads a golden tensor (mapped; do not modify in place).</summary>
    public static torch.Tensor Load(string key) => Golden.Load(key);

    /// <summary>The parsed manifest.json root.</summary>
    public static JsonElement Manifest => ManifestDoc.Value.RootElement;
}
