using System.Buffers.Binary;
using System.IO.Compression;
using LlavaInterp.Analysis;
using LlavaInterp.Llava;
using LlavaInterp.Models.Clip;
using LlavaInterp.Models.Gemma;
using LlavaInterp.Sae;
using LlavaInterp.Sae.Training;
using LlavaInterp.TensorFiles;
using LlavaInterp.Tests.Sae;
using LlavaInterp.Tests.Support;
using TorchSharp;
using Xunit.Abstractions;

namespace LlavaInterp.Tests.Fuzz;

/// <summary>
/// Mutation fuzzing of every parser and loader a user's files reach: each target's seed (a valid file from the
/// fixtures) is edited a few bytes or JSON members at a time and loaded end to end (parse, build the model or SAE,
/// run it once). CI runs the case counts below (about 40 s together on 2 cores); a long run by hand:
/// <c>LLAVAINTERP_FUZZ_SCALE=100 dotnet test --filter "FullyQualifiedName~Fuzz"</c>, and
/// <c>LLAVAINTERP_FUZZ_SEED=…</c> replays CsCheck's reported seed.
/// </summary>
[Trait("Category", "Fuzz")]
public sealed class ParserFuzzTests(ITestOutputHelper output)
{
    // Seeds built at run time (an .npy taken out of the GemmaScope .npz, an activation shard, the release yaml).
    private static readonly Lazy<TempDir> Generated = new(MakeGeneratedSeeds);

    /// <summary>Every target, by name (xunit shows one test per target).</summary>
    public static TheoryData<string> TargetNames => new(Targets.Keys);

    private static readonly Dictionary<string, FuzzTarget> Targets = new FuzzTarget[]
    {
        // The model folder: every file a LLaVA load reads, loaded and run on an image prompt.
        new("llava config.json", Fixture.ModelDir, "config.json", Json: true, Cases: 480, LoadAndRunLlava),
        new("preprocessor_config.json", Fixture.ModelDir, "preprocessor_config.json", Json: true, Cases: 240, LoadAndRunLlava),
        new("tokenizer_config.json", Fixture.ModelDir, "tokenizer_config.json", Json: true, Cases: 240, LoadAndRunLlava),
        new("special_tokens_map.json", Fixture.ModelDir, "special_tokens_map.json", Json: true, Cases: 120, LoadAndRunLlava),
        new("generation_config.json", Fixture.ModelDir, "generation_config.json", Json: true, Cases: 120, LoadAndRunLlava),
        new("processor_config.json", Fixture.ModelDir, "processor_config.json", Json: true, Cases: 120, LoadAndRunLlava),
        new("model.safetensors.index.json", Fixture.ShardedModelDir, "model.safetensors.index.json", Json: true, Cases: 240, LoadAndRunLlava),
        new("model.safetensors", Fixture.ModelDir, "model.safetensors", Json: false, Cases: 320, LoadAndRunLlava, SafetensorsHeaderEnd),

        // Files read on their own.
        new("tokenizer.model", Fixture.ModelDir, "tokenizer.model", Json: false, Cases: 600, LoadAndUseTokenizer),
        new("sae cfg.json", SaeFixture.StandardFolder, "cfg.json", Json: true, Cases: 600, LoadAndRunSae),
        new("sae_weights.safetensors", SaeFixture.StandardFolder, "sae_weights.safetensors", Json: false, Cases: 600, LoadAndRunSae, SafetensorsHeaderEnd),
        new("gemmascope params.npz", Path.GetDirectoryName(SaeFixture.GemmaScopeNpz)!, "params.npz", Json: false, Cases: 600, LoadAndRunGemmaScope, ZipDirectoryAndHeaders),
        new("npy array", Path.Combine(Generated.Value.Path, "npy"), "array.npy", Json: false, Cases: 1200, (_, file) => Npy.Load(file).Dispose(), NpyHeaderEnd),
        new("activation shard", Path.Combine(Generated.Value.Path, "shards"), "shard_00000.safetensors", Json: false, Cases: 600, ReadActivationShards, SafetensorsHeaderEnd),
        new("neuronpedia json array", Path.GetDirectoryName(SaeFixture.ExplanationsFile)!, Path.GetFileName(SaeFixture.ExplanationsFile), Json: true, Cases: 800, LoadExplanations),
        new("neuronpedia jsonl.gz batch", Fixture.Path("..", "neuronpedia", "v1", "tiny-llava-gemma", "2-res-tiny256", "explanations"), "batch-0.jsonl.gz", Json: false, Cases: 600, LoadExplanations),
        new("neuronpedia jsonl", Path.Combine(Generated.Value.Path, "jsonl"), "batch-0.jsonl", Json: false, Cases: 600, LoadExplanations),
        new("pretrained_saes.yaml", Path.Combine(Generated.Value.Path, "yaml"), "pretrained_saes.yaml", Json: false, Cases: 800, (_, file) => SaeReleases.LoadPretrainedSaesYaml(file)),

        // Images, one seed per decoder path (SkiaSharp: JPEG, WebP, GIF, BMP; ImageSharp: PNG, TIFF), decoded and preprocessed.
        new("image png", PillowSeed("png_rgb_17x9.png"), "png_rgb_17x9.png", Json: false, Cases: 320, DecodeAndPreprocess),
        new("image png palette+tRNS", PillowSeed("png_palette_trns_17x9.png"), "png_palette_trns_17x9.png", Json: false, Cases: 240, DecodeAndPreprocess),
        new("image png 16-bit interlaced", PillowSeed("png_rgb16_interlaced_23x11.png"), "png_rgb16_interlaced_23x11.png", Json: false, Cases: 240, DecodeAndPreprocess),
        new("image jpeg", PillowSeed("jpeg_420_q85_97x61.jpg"), "jpeg_420_q85_97x61.jpg", Json: false, Cases: 400, DecodeAndPreprocess),
        new("image progressive jpeg", PillowSeed("jpeg_420_q80_prog_97x61.jpg"), "jpeg_420_q80_prog_97x61.jpg", Json: false, Cases: 240, DecodeAndPreprocess),
        new("image gif", PillowSeed("gif_64x64.gif"), "gif_64x64.gif", Json: false, Cases: 240, DecodeAndPreprocess),
        new("image gif partial frame+transparency", PillowSeed("gif_partial_frame_trns_9x7.gif"), "gif_partial_frame_trns_9x7.gif", Json: false, Cases: 240, DecodeAndPreprocess),
        new("image jpeg cmyk", PillowSeed("jpeg_cmyk_q90_97x61.jpg"), "jpeg_cmyk_q90_97x61.jpg", Json: false, Cases: 160, DecodeAndPreprocess),
        new("image bmp", PillowSeed("bmp_rgb_64x64.bmp"), "bmp_rgb_64x64.bmp", Json: false, Cases: 240, DecodeAndPreprocess),
        new("image webp lossy", PillowSeed("webp_lossy_64x64.webp"), "webp_lossy_64x64.webp", Json: false, Cases: 240, DecodeAndPreprocess),
        new("image webp lossless", PillowSeed("webp_lossless_64x64.webp"), "webp_lossless_64x64.webp", Json: false, Cases: 240, DecodeAndPreprocess),
        new("image tiff", PillowSeed("tiff_rgb_97x61.tif"), "tiff_rgb_97x61.tif", Json: false, Cases: 240, DecodeAndPreprocess),
    }.ToDictionary(t => t.Name);

    private static readonly Lazy<ClipImageProcessor> Processor = new(() => ClipImageProcessor.FromDirectory(Fixture.ModelDir));

    /// <summary>Loads, or a typed exception naming the file; never another exception, a hang or a memory blow-up.</summary>
    [Theory]
    [MemberData(nameof(TargetNames))]
    public void MutatedFilesLoadOrFailWithATypedErrorNamingTheFile(string target)
    {
        var counts = FuzzHarness.Run(Targets[target], output);
        Assert.Equal((long)Targets[target].Cases * FuzzHarness.Scale, counts.Values.Sum());
    }

    /// <summary>The targets cover each parser: a file type added to the loaders needs a target here.</summary>
    [Fact]
    public void EveryPillowCorpusFormatHasAnImageTarget()
    {
        var formats = Directory.GetFiles(Fixture.Path("..", "pillow-corpus")).Select(f => Path.GetExtension(f).ToLowerInvariant())
            .Where(e => e is not ".rgb" and not ".json" and not ".py").ToHashSet();
        var covered = Targets.Values.Where(t => t.Name.StartsWith("image", StringComparison.Ordinal)).Select(t => Path.GetExtension(t.FileName)).ToHashSet();
        Assert.Empty(formats.Except(covered));
    }

    private static string PillowSeed(string name)
    {
        // One file per seed folder so the loader sees only the mutated image.
        string folder = Path.Combine(Generated.Value.Path, "images", name);
        if (!Directory.Exists(folder))
        {
            Directory.CreateDirectory(folder);
            File.Copy(Fixture.Path("..", "pillow-corpus", name), Path.Combine(folder, name));
        }

        return folder;
    }

    private static void LoadAndRunLlava(string folder, string file)
    {
        using var model = HookedLlava.FromPretrained(folder);
        using var prompt = model.Processor!.Prepare("Describe the image.", [Fixture.Image("gradient_rgb")]);
        using var logits = model.call(LlavaInput.From(prompt));
        _ = model.Tokenizer.Decode(model.Tokenizer.Encode("a b"));
    }

    private static void LoadAndUseTokenizer(string folder, string file)
    {
        var tokenizer = GemmaTokenizer.FromPretrained(folder);
        var ids = tokenizer.Encode("Hello, world! 😀 <image> ünïcödé");
        _ = tokenizer.Decode(ids);
    }

    private static void LoadAndRunSae(string folder, string file)
    {
        using var sae = SparseAutoencoder.Load(folder);
        RunSae(sae);
    }

    private static void LoadAndRunGemmaScope(string folder, string file)
    {
        using var sae = SparseAutoencoder.LoadGemmaScope(file, "blocks.3.hook_resid_post");
        RunSae(sae);
    }

    private static void RunSae(SparseAutoencoder sae)
    {
        using var scope = torch.NewDisposeScope();
        var x = torch.randn(3, sae.DIn, generator: new torch.Generator(0));
        _ = sae.Decode(sae.Encode(x), x);
    }

    private static void ReadActivationShards(string folder, string file)
    {
        foreach (var batch in ActivationStore.ReadShards(folder))
        {
            batch.Dispose();
        }
    }

    private static void LoadExplanations(string folder, string file)
    {
        var explanations = FeatureExplanations.Load(file);
        foreach (int f in explanations.Features)
        {
            _ = explanations.Describe(f);
        }
    }

    private static void DecodeAndPreprocess(string folder, string file)
    {
        using var pixels = Processor.Value.Preprocess([file]);
    }

    // The first 8 + header-length bytes: where every structural field of a safetensors file lives.
    private static int SafetensorsHeaderEnd(byte[] seed) => (int)Math.Min(seed.Length, 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(seed));

    // Magic, version, header length and the dict header.
    private static int NpyHeaderEnd(byte[] seed) => Math.Min(seed.Length, 10 + BinaryPrimitives.ReadUInt16LittleEndian(seed.AsSpan(8)));

    // Zip local headers are at the front, the central directory at the back: mutate the last 512 bytes' worth by
    // treating the whole file as hot — the archive is small, so uniform positions already hit both.
    private static int ZipDirectoryAndHeaders(byte[] seed) => seed.Length;

    private static TempDir MakeGeneratedSeeds()
    {
        var dir = new TempDir();
        string npy = Directory.CreateDirectory(Path.Combine(dir.Path, "npy")).FullName;
        using (var zip = ZipFile.OpenRead(SaeFixture.GemmaScopeNpz))
        {
            var entry = zip.Entries.OrderBy(e => e.Length).First();
            entry.ExtractToFile(Path.Combine(npy, "array.npy"));
        }

        string shards = Directory.CreateDirectory(Path.Combine(dir.Path, "shards")).FullName;
        using (var chunk = torch.randn(6, 8, generator: new torch.Generator(1)))
        {
            ActivationStore.WriteShards([chunk], shards, rowsPerShard: 6, hookName: "blocks.2.hook_resid_post");
        }

        // The JSON-lines export layout (one object per line), from the gzipped batch.
        string jsonl = Directory.CreateDirectory(Path.Combine(dir.Path, "jsonl")).FullName;
        using (var gz = new GZipStream(File.OpenRead(Fixture.Path("..", "neuronpedia", "v1", "tiny-llava-gemma", "2-res-tiny256", "explanations", "batch-0.jsonl.gz")), CompressionMode.Decompress))
        using (var outFile = File.Create(Path.Combine(jsonl, "batch-0.jsonl")))
        {
            gz.CopyTo(outFile);
        }

        string yaml = Directory.CreateDirectory(Path.Combine(dir.Path, "yaml")).FullName;
        File.WriteAllText(Path.Combine(yaml, "pretrained_saes.yaml"), SaeLensFormatTests.Yaml);
        return dir;
    }
}
