using BenchmarkDotNet.Attributes;
using LlavaInterp.Models.Clip;

namespace LlavaInterp.Benchmarks;

/// <summary>
/// CLIP image preprocessing of one file to LLaVA's 336×336 input, as llava-gemma-2b's preprocessor config does it
/// (shortest edge 336 bicubic, centre crop 336, rescale, normalise): "png"/"jpeg" are 640×480 files written at setup,
/// "jpeg420_500x375", "png_640x480" and "gif_800x600" the Pillow-made corpus files (a typical 4:2:0 photo JPEG; a
/// 256-colour GIF through the managed Pillow-rules LZW decoder). Images per second
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
    [Params("png", "jpeg", "jpeg420_500x375", "png_640x480", "gif_800x600")]
    public string Format { get; set; } = "png";

    [GlobalSetup]
    public void Setup()
    {
        _processor = new ClipImageProcessor(MidSizeLlava.ImageProcessorConfig);
        _dir = MidSizeLlava.NewTempDir();
        string corpus = Path.Combine(MidSizeLlava.FixtureModelDir, "..", "..", "pillow-corpus");
        _path = Format switch
        {
            "jpeg420_500x375" => Path.Combine(corpus, "jpeg_420_q85_500x375.jpg"),
            "png_640x480" => Path.Combine(corpus, "png_rgb_640x480.png"),
            "gif_800x600" => Path.Combine(corpus, "gif_800x600.gif"),
            _ => MidSizeLlava.WriteImage(_dir, 0, jpeg: Format == "jpeg"),
        };
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

/// <summary>
/// JPEG decoding alone, 500×375 4:2:0 corpus photo: the libjpeg-turbo shim (SIMD, used on x86-64 Linux) against the
/// Skia fallback (libjpeg-turbo without SIMD, used elsewhere). Same pixels on valid files.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 5)]
public class JpegDecoderBenchmarks
{
    private byte[] _jpeg = null!;

    [GlobalSetup]
    public void Setup() =>
        _jpeg = File.ReadAllBytes(Path.Combine(MidSizeLlava.FixtureModelDir, "..", "..", "pillow-corpus", "jpeg_420_q85_500x375.jpg"));

    /// <summary>libjpeg-turbo with SIMD through the shim.</summary>
    [Benchmark(Baseline = true)]
    public int Shim() => LibJpegTurboDecoder.Decode(_jpeg, "bench.jpg").Width;

    /// <summary>Skia's codec.</summary>
    [Benchmark]
    public int Skia() => SkiaImageDecoder.Decode(_jpeg, "bench.jpg", "JPEG").Width;
}
