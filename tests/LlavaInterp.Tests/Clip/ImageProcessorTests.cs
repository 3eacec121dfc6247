using LlavaInterp.Models.Clip;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;

namespace LlavaInterp.Tests.Clip;

/// <summary>CLIPImageProcessor parity with the HF 4.46.3 / Pillow 11.1.0 goldens of the tiny fixture.</summary>
public sealed class ImageProcessorTests(ITestOutputHelper output)
{
    public static TheoryData<string> FixtureImages => new() { "gradient_rgb", "rgba_alpha", "gray_l", "tiny_5x7" };

    private static ClipImageProcessor Processor => ClipImageProcessor.FromDirectory(Fixture.ModelDir);

    [Theory]
    [MemberData(nameof(FixtureImages))]
    public void EveryStageMatchesGolden(string name)
    {
        ClipImageProcessor processor = Processor;
        string path = Fixture.Image(name);
        string key = $"image.{name}";

        DecodedImage decoded = PilImageDecoder.Decode(path);
        if (Fixture.Golden.Names.Contains($"{key}.decoded"))
        {
            using var expectedDecoded = Fixture.Load($"{key}.decoded");
            using var actualDecoded = DecodedToTensor(decoded);
            TensorAssert.Equal(expectedDecoded, actualDecoded, $"{key}.decoded");
        }

        RgbImage rgb = processor.Decode(path);
        AssertImage($"{key}.rgb", rgb);

        RgbImage resized = processor.Resize(rgb);
        AssertImage($"{key}.resized", resized);

        RgbImage cropped = processor.CenterCrop(resized);
        AssertImage($"{key}.cropped", cropped);

        using var expected = Fixture.Load($"{key}.pixel_values");
        using var actual = processor.ToPixelValues(cropped);
        double maxDiff = TensorAssert.Close(expected, actual, atol: TensorAssert.PixelAtol, rtol: 0, what: $"{key}.pixel_values");
        output.WriteLine($"{key}.pixel_values max |diff| = {maxDiff:E3}");

        // The one-call path gives the same values and keeps the cropped RGB for overlays.
        ProcessedImage processed = processor.Process(path);
        Assert.Equal(cropped.Pixels, processed.Image.Pixels);
        Assert.Equal(rgb.Width, processed.OriginalWidth);
        Assert.Equal(rgb.Height, processed.OriginalHeight);
        Assert.Equal(path, processed.SourcePath);
        using var fromProcessed = processed.ToTensor();
        TensorAssert.Close(expected, fromProcessed, atol: TensorAssert.PixelAtol, rtol: 0, what: $"{key}.pixel_values (Process)");
    }

    [Fact]
    public void DecodedModesFollowPil()
    {
        Assert.Equal(PilImageMode.Rgb, PilImageDecoder.Decode(Fixture.Image("gradient_rgb")).Mode);
        Assert.Equal(PilImageMode.Rgba, PilImageDecoder.Decode(Fixture.Image("rgba_alpha")).Mode);
        Assert.Equal(PilImageMode.L, PilImageDecoder.Decode(Fixture.Image("gray_l")).Mode);
        Assert.Equal("PNG", PilImageDecoder.Decode(Fixture.Image("tiny_5x7")).Format);
    }

    [Fact]
    public void AlphaIsDroppedNotComposited()
    {
        // rgba_alpha has transparent pixels with non-trivial colour underneath; compositing would change them.
        DecodedImage decoded = PilImageDecoder.Decode(Fixture.Image("rgba_alpha"));
        RgbImage rgb = decoded.ToRgb();
        int transparent = 0;
        for (int y = 0; y < decoded.Height; y++)
        {
            for (int x = 0; x < decoded.Width; x++)
            {
                if (decoded.GetSample(x, y, 3) < 255)
                {
                    transparent++;
                }

                for (int c = 0; c < 3; c++)
                {
                    Assert.Equal(decoded.GetSample(x, y, c), rgb[x, y, c]);
                }
            }
        }

        Assert.True(transparent > 0, "fixture image should contain non-opaque pixels");
    }

    [Fact]
    public void PreprocessBatchMatchesPromptGoldens()
    {
        ClipImageProcessor processor = Processor;
        using var single = processor.Preprocess([Fixture.Image("gradient_rgb")]);
        using var expectedSingle = Fixture.Load("prompt.image_chat.pixel_values");
        double d1 = TensorAssert.Close(expectedSingle, single, atol: TensorAssert.PixelAtol, rtol: 0, what: "prompt.image_chat.pixel_values");

        using var batch = processor.Preprocess([Fixture.Image("gradient_rgb"), Fixture.Image("rgba_alpha")]);
        using var expectedBatch = Fixture.Load("prompt.batch.pixel_values");
        double d2 = TensorAssert.Close(expectedBatch, batch, atol: TensorAssert.PixelAtol, rtol: 0, what: "prompt.batch.pixel_values");
        Assert.Equal(torch.float32, batch.dtype);
        output.WriteLine($"prompt.image_chat max |diff| = {d1:E3}, prompt.batch max |diff| = {d2:E3}");

        // In-memory RGB images give the same batch.
        using var fromImages = processor.Preprocess([processor.Decode(Fixture.Image("gradient_rgb")), processor.Decode(Fixture.Image("rgba_alpha"))]);
        TensorAssert.Close(expectedBatch, fromImages, atol: TensorAssert.PixelAtol, rtol: 0, what: "batch from RgbImage");
    }

    [Fact]
    public void StreamDecodingMatchesFileDecoding()
    {
        ClipImageProcessor processor = Processor;
        byte[] bytes = File.ReadAllBytes(Fixture.Image("gray_l"));

        // A non-seekable stream exercises the buffering path.
        using var stream = new NonSeekableStream(new MemoryStream(bytes));
        RgbImage fromStream = processor.Decode(stream, "gray_l.png");
        Assert.Equal(processor.Decode(Fixture.Image("gray_l")).Pixels, fromStream.Pixels);
    }

    [Fact]
    public void ConfigBindsFixturePreprocessorConfig()
    {
        ClipImageProcessorConfig config = ClipImageProcessorConfig.FromFile(Path.Combine(Fixture.ModelDir, "preprocessor_config.json"));
        Assert.True(config.DoResize);
        Assert.Equal(32, config.Size.ShortestEdge);
        Assert.Null(config.Size.Height);
        Assert.Equal(PilResampling.Bicubic, config.Resample);
        Assert.True(config.DoCenterCrop);
        Assert.Equal(32, config.CropSize.Height);
        Assert.Equal(32, config.CropSize.Width);
        Assert.True(config.DoRescale);
        Assert.Equal(0.00392156862745098, config.RescaleFactor);
        Assert.True(config.DoNormalize);
        Assert.Equal([0.48145466, 0.4578275, 0.40821073], config.ImageMean);
        Assert.Equal([0.26862954, 0.26130258, 0.27577711], config.ImageStd);
        Assert.True(config.DoConvertRgb);
        Assert.Equal("CLIPImageProcessor", config.ImageProcessorType);
        Assert.Equal("LlavaProcessor", config.ProcessorClass);
    }

    [Fact]
    public void ConfigDefaultsAndLegacyForms()
    {
        // Missing keys take CLIPImageProcessor's defaults.
        ClipImageProcessorConfig empty = ClipImageProcessorConfig.FromJson("{}");
        Assert.Equal(224, empty.Size.ShortestEdge);
        Assert.Equal(224, empty.CropSize.Height);
        Assert.Equal(224, empty.CropSize.Width);
        Assert.Equal(PilResampling.Bicubic, empty.Resample);
        Assert.Equal(1.0 / 255, empty.RescaleFactor);
        Assert.Equal(ClipImageProcessorConfig.OpenAiClipMean, empty.ImageMean);
        Assert.Equal(ClipImageProcessorConfig.OpenAiClipStd, empty.ImageStd);

        // Bare integers: size → shortest edge, crop_size → square (get_size_dict's default_to_square).
        ClipImageProcessorConfig ints = ClipImageProcessorConfig.FromJson("""{"size": 336, "crop_size": 336, "resample": 2}""");
        Assert.Equal(336, ints.Size.ShortestEdge);
        Assert.False(ints.Size.HasHeightWidth);
        Assert.Equal(336, ints.CropSize.Height);
        Assert.Equal(336, ints.CropSize.Width);
        Assert.Equal(PilResampling.Bilinear, ints.Resample);

        // Lists are [height, width]; null mean/std fall back to the OpenAI values; a scalar covers all channels.
        ClipImageProcessorConfig lists = ClipImageProcessorConfig.FromJson("""{"size": [20, 30], "crop_size": {"height": 10, "width": 12}, "image_mean": null, "image_std": 0.5}""");
        Assert.Equal(20, lists.Size.Height);
        Assert.Equal(30, lists.Size.Width);
        Assert.Null(lists.Size.ShortestEdge);
        Assert.Equal(ClipImageProcessorConfig.OpenAiClipMean, lists.ImageMean);
        Assert.Equal([0.5], lists.ImageStd);

        // Kosmos-2's use_square_size turns the shortest edge into a square resize.
        ClipImageProcessorConfig square = ClipImageProcessorConfig.FromJson("""{"size": {"shortest_edge": 40}, "use_square_size": true}""");
        Assert.Equal(40, square.Size.Height);
        Assert.Equal(40, square.Size.Width);
        Assert.Null(square.Size.ShortestEdge);
    }

    [Fact]
    public void FixedSizeResizeAndScalarStatistics()
    {
        var config = ClipImageProcessorConfig.FromJson("""{"size": {"height": 20, "width": 30}, "do_center_crop": false, "image_mean": 0.5, "image_std": 0.25}""");
        var processor = new ClipImageProcessor(config);
        RgbImage rgb = processor.Decode(Fixture.Image("gradient_rgb"));
        Assert.Equal((20, 30), processor.GetResizeOutputSize(rgb.Height, rgb.Width));
        ProcessedImage processed = processor.Process(rgb);
        Assert.Equal(30, processed.Width);
        Assert.Equal(20, processed.Height);
        RgbImage resized = PillowResampler.Resize(rgb, 30, 20, PilResampling.Bicubic);
        Assert.Equal(resized.Pixels, processed.Image.Pixels);

        // Every channel uses mean 0.5 and std 0.25 in float32.
        for (int c = 0; c < 3; c++)
        {
            byte v = resized[7, 5, c];
            float x = (float)(v * (1.0 / 255));
            Assert.Equal((x - 0.5f) / 0.25f, processed.PixelValues[(c * 600) + (5 * 30) + 7]);
        }
    }

    [Fact]
    public void RescaleAndNormalizeCanBeSwitchedOff()
    {
        RgbImage image = new(2, 1, [0, 128, 255, 10, 20, 30]);

        var raw = new ClipImageProcessor(ClipImageProcessorConfig.FromJson("""{"do_resize": false, "do_center_crop": false, "do_rescale": false, "do_normalize": false}"""));
        Assert.Equal([0f, 10f, 128f, 20f, 255f, 30f], raw.Process(image).PixelValues);

        // Normalise without rescale works on the float32 cast of the bytes, as HF's normalize does.
        var normOnly = new ClipImageProcessor(ClipImageProcessorConfig.FromJson("""{"do_resize": false, "do_center_crop": false, "do_rescale": false, "image_mean": [1, 2, 3], "image_std": [2, 4, 8]}"""));
        Assert.Equal([-0.5f, 4.5f, 31.5f, 4.5f, 31.5f, 3.375f], normOnly.Process(image).PixelValues);

        var rescaleOnly = new ClipImageProcessor(ClipImageProcessorConfig.FromJson("""{"do_resize": false, "do_center_crop": false, "do_normalize": false, "rescale_factor": 0.1}"""));
        Assert.Equal([0f, 1f, (float)(128 * 0.1), 2f, (float)(255 * 0.1), 3f], rescaleOnly.Process(image).PixelValues);
    }

    [Theory]
    [InlineData(36, 48, 32, 32, 42)]
    [InlineData(45, 30, 32, 48, 32)]
    [InlineData(27, 33, 32, 32, 39)]
    [InlineData(7, 5, 32, 44, 32)]
    [InlineData(40, 40, 32, 32, 32)]
    [InlineData(375, 500, 224, 224, 298)]
    [InlineData(750, 1000, 336, 336, 448)]
    [InlineData(1, 1000, 336, 336, 336000)]
    [InlineData(3000, 7, 336, 144000, 336)]
    public void ShortestEdgeSizeTruncatesLikePython(int height, int width, int edge, int expectedHeight, int expectedWidth)
    {
        Assert.Equal((expectedHeight, expectedWidth), ClipImageProcessor.ShortestEdgeSize(height, width, edge));
    }

    [Fact]
    public void CenterCropTakesFloorOffsets()
    {
        RgbImage image = Numbered(5, 4);
        RgbImage crop = ClipImageProcessor.CenterCrop(image, 2, 2);

        // top = (4 - 2) // 2 = 1, left = (5 - 2) // 2 = 1.
        AssertPixelFrom(image, crop, 0, 0, 1, 1);
        AssertPixelFrom(image, crop, 1, 1, 2, 2);

        RgbImage odd = ClipImageProcessor.CenterCrop(Numbered(6, 5), 2, 3);

        // top = (5 - 2) // 2 = 1, left = (6 - 3) // 2 = 1.
        AssertPixelFrom(Numbered(6, 5), odd, 0, 0, 1, 1);
    }

    [Fact]
    public void CenterCropPadsSmallImagesWithZeros()
    {
        // 3x2 image into a 4 (wide) x 5 (high) crop: HF pads ceil(3/2) = 2 rows on top, ceil(1/2) = 1 column left.
        RgbImage image = Numbered(3, 2);
        RgbImage crop = ClipImageProcessor.CenterCrop(image, 5, 4);
        Assert.Equal(4, crop.Width);
        Assert.Equal(5, crop.Height);
        for (int y = 0; y < 5; y++)
        {
            for (int x = 0; x < 4; x++)
            {
                int sy = y - 2;
                int sx = x - 1;
                bool inside = sy >= 0 && sy < 2 && sx >= 0 && sx < 3;
                for (int c = 0; c < 3; c++)
                {
                    Assert.Equal(inside ? image[sx, sy, c] : 0, crop[x, y, c]);
                }
            }
        }

        // Padding along one side only: height 2 → 4 pads 1 row; width 6 → 3 crops from left = 1.
        RgbImage wide = Numbered(6, 2);
        RgbImage mixed = ClipImageProcessor.CenterCrop(wide, 4, 3);
        for (int x = 0; x < 3; x++)
        {
            Assert.Equal(0, mixed[x, 0, 0]);
            Assert.Equal(0, mixed[x, 3, 2]);
            AssertPixelFrom(wide, mixed, x, 1, x + 1, 0);
            AssertPixelFrom(wide, mixed, x, 2, x + 1, 1);
        }
    }

    [Fact]
    public void MissingImageFileIsATypedError()
    {
        string missing = Path.Combine(Fixture.Root, "images", "does_not_exist.png");
        var ex = Assert.Throws<ClipImageException>(() => Processor.Decode(missing));
        Assert.Equal(missing, ex.FilePath);
        Assert.Contains("does_not_exist.png", ex.Message);

        var batchEx = Assert.Throws<ClipImageException>(() => Processor.Preprocess([Fixture.Image("gray_l"), missing]));
        Assert.Equal(missing, batchEx.FilePath);
    }

    [Fact]
    public void DirectoryInsteadOfFileIsATypedError()
    {
        using var dir = new TempDir();
        var ex = Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(dir.Path));
        Assert.Equal(dir.Path, ex.FilePath);
    }

    [Fact]
    public void UndecodableBytesAreTypedErrors()
    {
        using var dir = new TempDir();
        string text = dir.File("not_an_image.png");
        File.WriteAllText(text, "this is not an image at all");
        var ex = Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(text));
        Assert.Equal(text, ex.FilePath);
        Assert.Contains("not_an_image.png", ex.Message);

        string empty = dir.File("empty.jpg");
        File.WriteAllBytes(empty, []);
        Assert.Equal(empty, Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(empty)).FilePath);

        // A PNG cut inside its image data: the signature and header are valid, the pixels are not there.
        byte[] png = File.ReadAllBytes(Fixture.Image("gradient_rgb"));
        string truncated = dir.File("truncated.png");
        File.WriteAllBytes(truncated, png[..(png.Length / 2)]);
        Assert.Equal(truncated, Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(truncated)).FilePath);

        // Garbage after a valid PNG signature.
        string garbage = dir.File("garbage.png");
        File.WriteAllBytes(garbage, [.. png[..8], .. Enumerable.Range(0, 200).Select(i => (byte)(i * 37))]);
        Assert.Equal(garbage, Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(garbage)).FilePath);

        using var stream = new MemoryStream([1, 2, 3, 4]);
        Assert.Null(Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(stream)).FilePath);
    }

    [Fact]
    public void ConfigErrorsAreTypedAndNameTheFile()
    {
        using var dir = new TempDir();
        string missing = dir.File("preprocessor_config.json");
        Assert.Equal(missing, Assert.Throws<ClipImageException>(() => ClipImageProcessor.FromFile(missing)).FilePath);
        Assert.Equal(missing, Assert.Throws<ClipImageException>(() => ClipImageProcessor.FromDirectory(dir.Path)).FilePath);

        AssertConfigError(dir, "{ not json", "invalid preprocessor config");
        AssertConfigError(dir, """{"size": {"longest_edge": 30}}""", "shortest_edge");
        AssertConfigError(dir, """{"size": "big"}""", "size");
        AssertConfigError(dir, """{"size": [1, 2, 3]}""", "[height, width]");
        AssertConfigError(dir, """{"crop_size": {"height": 30}}""", "crop_size");
        AssertConfigError(dir, """{"size": {"shortest_edge": 0}}""", "positive");
        AssertConfigError(dir, """{"resample": 0}""", "resample 0");
        AssertConfigError(dir, """{"resample": 9}""", "resample 9");
        AssertConfigError(dir, """{"image_mean": [0.5, 0.5]}""", "image_mean");
        AssertConfigError(dir, """{"image_std": ["a"]}""", "number");

        // Switched-off steps are not validated, as in HF.
        Assert.False(ClipImageProcessorConfig.FromJson("""{"do_center_crop": false, "crop_size": {"height": 30}}""").DoCenterCrop);
    }

    [Fact]
    public void NearestResamplingIsNotSupported()
    {
        Assert.Throws<NotSupportedException>(() => PillowResampler.Resize(Numbered(4, 4), 2, 2, PilResampling.Nearest));
        Assert.Throws<NotSupportedException>(() => PillowResampler.Resize(Numbered(4, 4), 2, 2, (PilResampling)42));
    }

    [Fact]
    public void NonRgbImageWithoutConversionIsRejected()
    {
        var processor = new ClipImageProcessor(ClipImageProcessorConfig.FromJson("""{"do_convert_rgb": false, "size": 32, "crop_size": 32}"""));
        var ex = Assert.Throws<ClipImageException>(() => processor.Decode(Fixture.Image("gray_l")));
        Assert.Equal(Fixture.Image("gray_l"), ex.FilePath);
        Assert.Contains("do_convert_rgb", ex.Message);

        // RGB files need no conversion and process as usual.
        using var expected = Fixture.Load("image.gradient_rgb.pixel_values");
        using var actual = processor.Preprocess([Fixture.Image("gradient_rgb")]);
        TensorAssert.Close(expected, actual, atol: TensorAssert.PixelAtol, rtol: 0, what: "do_convert_rgb=false RGB");
    }

    [Fact]
    public void BatchingDifferentSizesIsATypedError()
    {
        var processor = new ClipImageProcessor(ClipImageProcessorConfig.FromJson("""{"size": 32, "do_center_crop": false}"""));
        var ex = Assert.Throws<ClipImageException>(() => processor.Preprocess([Fixture.Image("gradient_rgb"), Fixture.Image("rgba_alpha")]));
        Assert.Equal(Fixture.Image("rgba_alpha"), ex.FilePath);
        Assert.Throws<ArgumentException>(() => ProcessedImage.Stack([]));
    }

    private static void AssertConfigError(TempDir dir, string json, string expectedFragment)
    {
        string path = dir.File("preprocessor_config.json");
        File.WriteAllText(path, json);
        var ex = Assert.Throws<ClipImageException>(() => ClipImageProcessor.FromFile(path));
        Assert.Equal(path, ex.FilePath);
        Assert.Contains(path, ex.Message);
        Assert.Contains(expectedFragment, ex.Message);
    }

    private static void AssertImage(string key, RgbImage image)
    {
        using var expected = Fixture.Load(key);
        using var actual = torch.tensor(image.Pixels.Select(b => (long)b).ToArray(), [image.Height, image.Width, 3], torch.int64);
        TensorAssert.Equal(expected, actual, key);
    }

    private static torch.Tensor DecodedToTensor(DecodedImage image)
    {
        var values = new long[(long)image.Width * image.Height * image.Bands];
        long i = 0;
        for (int y = 0; y < image.Height; y++)
        {
            for (int x = 0; x < image.Width; x++)
            {
                for (int b = 0; b < image.Bands; b++)
                {
                    values[i++] = image.GetSample(x, y, b);
                }
            }
        }

        // PIL arrays drop the band axis for single-band modes.
        long[] shape = image.Bands == 1 ? [image.Height, image.Width] : [image.Height, image.Width, image.Bands];
        return torch.tensor(values, shape, torch.int64);
    }

    private static RgbImage Numbered(int width, int height)
    {
        var pixels = new byte[width * height * 3];
        for (int i = 0; i < pixels.Length; i++)
        {
            pixels[i] = (byte)(1 + (i % 250));
        }

        return new RgbImage(width, height, pixels);
    }

    private static void AssertPixelFrom(RgbImage source, RgbImage crop, int cx, int cy, int sx, int sy)
    {
        for (int c = 0; c < 3; c++)
        {
            Assert.Equal(source[sx, sy, c], crop[cx, cy, c]);
        }
    }

    private sealed class NonSeekableStream(Stream inner) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                inner.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
