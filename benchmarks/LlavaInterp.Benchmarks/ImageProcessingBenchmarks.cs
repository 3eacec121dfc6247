using BenchmarkDotNet.Attributes;
using LlavaInterp.Models.Clip;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// CLIP image preprocessing of one 640×480 file (written at setup) to LLaVA's 336×336 input, as llava-gemma-2b's
/// preprocessor config does it (shortest edge 336 bicubic, centre crop 336, rescale, normalise). Images per second
/// is 1 / mean. <see cref="Preprocess"/> is the whole path (decode + resize + crop + normalise + tensor);
/// <see cref="DecodeOnly"/> and <see cref="ResizeCropNormalise"/> split it.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 5)]
public class ImageProcessingBenchmarks
{
    private ClipImageProcessor _processor = null!;
    private string _dir = null!;
    private string _path = null!;
    private RgbImage _decoded = null!;

    /// <summary>File format of the source image.</summary>
    [Params("png", "jpeg")]
    public string Format { get; set; } = "png";

    [GlobalSetup]
    public void Setup()
    {
        _processor = new ClipImageProcessor(MidSizeLlava.ImageProcessorConfig);
        _dir = MidSizeLlava.NewTempDir();
        _path = MidSizeLlava.WriteImage(_dir, 0, jpeg: Format == "jpeg");
        _decoded = _processor.Decode(_path);
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    /// <summary>File → pixel_values [1, 3, 336, 336].</summary>
    [Benchmark(Baseline = true)]
    public long Preprocess()
    {
        using var pixels = _processor.Preprocess([_path]);
        return pixels.shape[3];
    }

    /// <summary>File → RGB bytes only.</summary>
    [Benchmark]
    public int DecodeOnly() => _processor.Decode(_path).Width;

    /// <summary>Decoded RGB → resized, cropped, normalised floats (no file I/O, no tensor).</summary>
    [Benchmark]
    public int ResizeCropNormalise() => _processor.Process(_decoded).Width;
}
