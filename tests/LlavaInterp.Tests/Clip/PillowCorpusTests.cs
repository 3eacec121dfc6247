using System.Security.Cryptography;
using System.Text.Json;
using LlavaInterp.Models.Clip;

namespace LlavaInterp.Tests.Clip;

/// <summary>
/// <see cref="PilImageDecoder"/> against Pillow 11.1 on the committed corpus (tests/fixtures/pillow-corpus, made by
/// its make_corpus.py): every file Pillow opens gives Pillow's <c>convert("RGB")</c> bytes, every file Pillow
/// rejects is a typed error naming the file, and a few files go through the whole CLIPImageProcessor path.
/// </summary>
public sealed class PillowCorpusTests
{
    private static readonly string Dir = Path.Combine(AppContext.BaseDirectory, "fixtures", "pillow-corpus");

    private static readonly Lazy<Dictionary<string, JsonElement>> Entries = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "manifest.json")));
        return doc.RootElement.GetProperty("files").EnumerateArray()
            .ToDictionary(e => e.GetProperty("file").GetString()!, e => e.Clone());
    });

    public static TheoryData<string> Accepted => Names(e => !e.TryGetProperty("error", out _));

    public static TheoryData<string> Rejected => Names(e => e.TryGetProperty("error", out _));

    public static TheoryData<string> WithCropReference => Names(e => e.TryGetProperty("crop336_sha256", out _));

    [Fact]
    public void CorpusCoversTheFormatsAndVariants()
    {
        // Guards against a regenerated manifest silently losing cases.
        string[] names = [.. Entries.Value.Keys];
        string[] expected =
        [
            "jpeg_411_", "jpeg_440_", "jpeg_420_", "jpeg_422_", "jpeg_444_", "_prog_", "_opt_", "_arith_", "_restart",
            "jpeg_gray", "jpeg_cmyk", "jpeg_exif", "jpeg_icc", "_1x1.", "_2x3.", "_17x9.", "_64x64.", "_500x375.",
            "png_palette_trns", "png_palette_short", "png_rgb16", "png_gray16", "png_la16", "png_rgba16", "_interlaced_",
            "_gamma_", "png_iccp", "gif_", "bmp_", "webp_lossless", "webp_lossy", "tiff_", "bad_", "jpeg_ycck",
            "corrupt_jpeg_", "corrupt_gif_", "corrupt_png_", "corrupt_tiff_", "gif_no_palette", "gif_partial_frame", "gif_800x600",
        ];
        foreach (string fragment in expected)
        {
            Assert.Contains(names, n => n.Contains(fragment, StringComparison.Ordinal));
        }

        int rejected = Entries.Value.Values.Count(e => e.TryGetProperty("error", out _));
        Assert.True(names.Length - rejected >= 80, $"only {names.Length - rejected} accepted corpus files");
        Assert.True(rejected >= 9, $"only {rejected} rejected corpus files");
    }

    [Theory]
    [MemberData(nameof(Accepted))]
    public void DecodesLikePillow(string file)
    {
        JsonElement entry = Entries.Value[file];
        string path = Path.Combine(Dir, file);
        RgbImage rgb = PilImageDecoder.Decode(path).ToRgb();
        Assert.Equal(entry.GetProperty("width").GetInt32(), rgb.Width);
        Assert.Equal(entry.GetProperty("height").GetInt32(), rgb.Height);

        string fullReference = path + ".rgb";
        if (File.Exists(fullReference))
        {
            byte[] expected = File.ReadAllBytes(fullReference);
            int first = FirstDifference(expected, rgb.Pixels);
            Assert.True(first < 0, $"{file}: first different byte {first} (pixel {first / 3}, channel {first % 3})");
        }

        Assert.Equal(entry.GetProperty("rgb_sha256").GetString(), Sha256(rgb.Pixels));
    }

    [Fact]
    public void StreamDecodingEqualsFileDecoding()
    {
        foreach (string file in new[] { "jpeg_420_q85_97x61.jpg", "png_palette_short_23x11.png", "webp_lossy_64x64.webp" })
        {
            string path = Path.Combine(Dir, file);
            using var stream = new NonSeekableStream(File.ReadAllBytes(path));
            Assert.Equal(PilImageDecoder.Decode(path).ToRgb().Pixels, PilImageDecoder.Decode(stream, file).ToRgb().Pixels);
        }
    }

    [Fact]
    public void TransparentGifPixelsKeepAlphaAndShowPillowsPaletteColour()
    {
        // Pillow's convert("RGB") shows the transparent index's palette colour, also around a first frame smaller
        // than the canvas (filled with that index); convert("RGBA") would show alpha 0. The decoded image carries
        // both: the colour (checked byte for byte by DecodesLikePillow) and the alpha.
        foreach (string file in new[] { "gif_trns_64x64.gif", "gif_partial_frame_trns_9x7.gif" })
        {
            DecodedImage decoded = PilImageDecoder.Decode(Path.Combine(Dir, file));
            Assert.Equal(PilImageMode.Rgba, decoded.Mode);
            byte[] rgb = decoded.ToRgb().Pixels;
            int hidden = 0;
            var colours = new HashSet<int>();
            for (int i = 0; i < decoded.Width * decoded.Height; i++)
            {
                if (decoded.Data[(i * 4) + 3] == 0)
                {
                    hidden++;
                    colours.Add((rgb[i * 3] << 16) | (rgb[(i * 3) + 1] << 8) | rgb[(i * 3) + 2]);
                }
            }

            // Some pixels are transparent, all of them show one palette colour, and it is not Skia's black.
            Assert.InRange(hidden, 1, (decoded.Width * decoded.Height) - 1);
            Assert.Single(colours);
            Assert.NotEqual(0, colours.Single());
        }

        // Without a transparent index Pillow's GIF is opaque: outside the frame it shows palette entry 0.
        Assert.Equal(PilImageMode.Rgb, PilImageDecoder.Decode(Path.Combine(Dir, "gif_partial_frame_9x7.gif")).Mode);
    }

    [Theory]
    [MemberData(nameof(Rejected))]
    public void RejectsWhatPillowRejects(string file)
    {
        string path = Path.Combine(Dir, file);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var ex = Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(path));
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(path, ex.FilePath);
        Assert.Contains(file, ex.Message);
        if (Entries.Value[file].GetProperty("error").GetString()!.StartsWith("DecompressionBombError", StringComparison.Ordinal))
        {
            // 20000x10000: refused from the header; its pixels alone would be 600 MB.
            Assert.Contains("exceeds the limit of 178956970 pixels", ex.Message);
            Assert.True(allocated < 16 << 20, $"{file}: {allocated} bytes allocated before the size was refused");
        }
    }

    [Fact]
    public void TruncatedJpegIsNeverZeroFilled()
    {
        // Every cut of a baseline JPEG past its header is an error, never a partly black image.
        byte[] jpeg = File.ReadAllBytes(Path.Combine(Dir, "jpeg_420_q85_97x61.jpg"));
        for (int cut = jpeg.Length / 4; cut < jpeg.Length - 2; cut += jpeg.Length / 9)
        {
            using var stream = new MemoryStream(jpeg[..cut]);
            var ex = Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(stream, $"cut{cut}.jpg"));
            Assert.Contains($"cut{cut}.jpg", ex.Message);
        }
    }

    [Theory]
    [InlineData("png_rgb_640x480.png")]
    [InlineData("png_rgb_interlaced_23x11.png")]
    [InlineData("png_rgb16_interlaced_23x11.png")]
    [InlineData("png_palette_4bit_17x9.png")]
    public void PngCutBeforeItsImageDataIsCompleteIsAnErrorAndAfterItDecodes(string file)
    {
        // Pillow: "image file is truncated" while rows are missing. A cut at a chunk boundary leaves every chunk
        // intact (only the zlib stream is short), which ImageSharp 2.1 used to accept with zero-filled rows.
        byte[] png = File.ReadAllBytes(Path.Combine(Dir, file));
        var idats = new List<(int Start, int Length)>();
        for (int pos = 8; pos + 12 <= png.Length;)
        {
            int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            if (System.Text.Encoding.ASCII.GetString(png, pos + 4, 4) == "IDAT")
            {
                idats.Add((pos, length));
            }

            pos += 12 + length;
        }

        var cuts = new List<int>();
        foreach (var (start, length) in idats)
        {
            cuts.Add(start + 8 + (length / 2));                 // inside the chunk's data
            if (start != idats[^1].Start)
            {
                cuts.Add(start + 12 + length);                  // exactly between two IDAT chunks
                cuts.Add(start + 12 + length - 1);              // inside a checksum before more image data
            }
        }

        foreach (int cut in cuts)
        {
            using var stream = new MemoryStream(png[..cut]);
            var ex = Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(stream, $"cut{cut}.png"));
            Assert.Contains($"cut{cut}.png", ex.Message);
        }

        // Cut once the image data is complete (inside the last IDAT's checksum, without IEND, inside IEND): Pillow
        // decodes these, and so do we, to the same pixels as the whole file.
        using var whole = new MemoryStream(png);
        byte[] expected = PilImageDecoder.Decode(whole, file).Data;
        var (last, lastLength) = idats[^1];
        foreach (int cut in new[] { last + 12 + lastLength - 2, last + 12 + lastLength, png.Length - 3 })
        {
            using var stream = new MemoryStream(png[..cut]);
            Assert.Equal(expected, PilImageDecoder.Decode(stream, $"cut{cut}.png").Data);
        }
    }

    [Fact]
    public void JpegsGoThroughTheLibJpegTurboShimOnLinuxX64()
    {
        // The shim ships for x86-64 Linux only; on that platform, losing it would silently bring back Skia's decoder.
        Assert.Equal(LlavaInterp.Native.NativeRuntime.IsLinuxX64, LibJpegTurboDecoder.IsAvailable);
    }

    [Fact]
    public void SkiaFallbackEqualsPillowOnEveryUndamagedJpeg()
    {
        // Where the shim is missing (not x86-64 Linux), Skia decodes JPEGs: exact on every valid file of the corpus.
        string[] jpegs = [.. Entries.Value.Where(kv => kv.Key.StartsWith("jpeg_", StringComparison.Ordinal) && !kv.Value.TryGetProperty("error", out _)).Select(kv => kv.Key)];
        Assert.True(jpegs.Length >= 50, $"only {jpegs.Length} JPEGs");
        foreach (string file in jpegs)
        {
            DecodedImage decoded = SkiaImageDecoder.Decode(File.ReadAllBytes(Path.Combine(Dir, file)), file, "JPEG");
            Assert.True(Entries.Value[file].GetProperty("rgb_sha256").GetString() == Sha256(decoded.ToRgb().Pixels), $"{file}: Skia differs from Pillow");
        }
    }

    [Fact]
    public void DamagedJpegsNeedTheShim()
    {
        // Why the shim exists, kept as a check so that the corpus keeps covering it: on damaged data Skia's
        // libjpeg-turbo (no SIMD, no jpeg_finish_decompress) gives other pixels than Pillow, or accepts what Pillow rejects.
        int accepted = 0, rejected = 0, otherPixels = 0, wronglyAccepted = 0;
        foreach ((string file, JsonElement entry) in Entries.Value.Where(kv => kv.Key.StartsWith("corrupt_jpeg_", StringComparison.Ordinal)))
        {
            byte[] bytes = File.ReadAllBytes(Path.Combine(Dir, file));
            if (!bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xFF, 0xD8, 0xFF]))
            {
                continue;
            }

            string? skia;
            try
            {
                skia = Sha256(SkiaImageDecoder.Decode(bytes, file, "JPEG").ToRgb().Pixels);
            }
            catch (ClipImageException)
            {
                skia = null;
            }

            if (entry.TryGetProperty("error", out _))
            {
                rejected++;
                wronglyAccepted += skia is null ? 0 : 1;
            }
            else
            {
                accepted++;
                otherPixels += skia == entry.GetProperty("rgb_sha256").GetString() ? 0 : 1;
            }
        }

        // make_corpus.py picked each of them from the sweep because Skia alone gets it wrong.
        Assert.True(accepted >= 10 && rejected >= 5, $"{accepted} accepted and {rejected} rejected damaged JPEGs");
        Assert.Equal(accepted, otherPixels);
        Assert.Equal(rejected, wronglyAccepted);
    }

    [Fact]
    public void AnUnknownMarkerAfterTheImageDataKeepsLibJpegsMessage()
    {
        const string file = "corrupt_jpeg_420_q100_1x1_629xb3_631xc9_633x73.jpg";
        var ex = Assert.Throws<ClipImageException>(() => PilImageDecoder.Decode(Path.Combine(Dir, file)));
        Assert.Contains("the image data are corrupt (Unsupported marker type 0x", ex.Message);
    }

    [Theory]
    [MemberData(nameof(WithCropReference))]
    public void PixelValuesEqualHuggingFace(string file)
    {
        // llava-gemma-2b's preprocessing: shortest edge 336 (bicubic), centre crop 336, rescale 1/255, CLIP mean/std.
        JsonElement entry = Entries.Value[file];
        var processor = new ClipImageProcessor(new ClipImageProcessorConfig
        {
            Size = new ImageSizeSpec { ShortestEdge = 336 },
            CropSize = new ImageSizeSpec { Height = 336, Width = 336 },
        });
        ProcessedImage processed = processor.Process(Path.Combine(Dir, file));
        Assert.Equal(entry.GetProperty("crop336_sha256").GetString(), Sha256(processed.Image.Pixels));
        byte[] values = new byte[processed.PixelValues.Length * sizeof(float)];
        Buffer.BlockCopy(processed.PixelValues, 0, values, 0, values.Length);
        Assert.True(BitConverter.IsLittleEndian);
        Assert.Equal(entry.GetProperty("pixel_values336_sha256").GetString(), Sha256(values));
    }

    private static TheoryData<string> Names(Func<JsonElement, bool> predicate)
    {
        var data = new TheoryData<string>();
        foreach ((string name, JsonElement e) in Entries.Value)
        {
            if (predicate(e))
            {
                data.Add(name);
            }
        }

        return data;
    }

    private static string Sha256(byte[] data) => Convert.ToHexString(SHA256.HashData(data)).ToLowerInvariant();

    private static int FirstDifference(byte[] expected, byte[] actual)
    {
        if (expected.Length != actual.Length)
        {
            return Math.Min(expected.Length, actual.Length);
        }

        for (int i = 0; i < expected.Length; i++)
        {
            if (expected[i] != actual[i])
            {
                return i;
            }
        }

        return -1;
    }

    private sealed class NonSeekableStream(byte[] data) : MemoryStream(data)
    {
        public override bool CanSeek => false;
    }
}
