using LlavaInterp.Sae;
using LlavaInterp.Llava;
using LlavaInterp.Models.Clip;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Analysis;

/// <summary>A feature of a ranking with its activation and its first explanation (null when it has none).</summary>
/// <param name="Index">The feature index.</param>
/// <param name="Activation">Its aggregated activation.</param>
/// <param name="Description">Neuronpedia's explanation, trimmed, or null.</param>
public sealed record RankedFeature(int Index, double Activation, string? Description);

/// <summary>Progress of <see cref="FeatureAnalyzer.Tally"/>: images done of the total, and the last one encoded.</summary>
/// <param name="Done">Images encoded so far.</param>
/// <param name="Total">Images in the sweep.</param>
/// <param name="Image">The image just encoded.</param>
public sealed record FeatureSweepProgress(int Done, int Total, string Image);

/// <summary>The rankings of <see cref="FeatureAnalyzer.RankEntries"/> and the dense features left out of them.</summary>
/// <param name="Results">One ranking per entry, in order.</param>
/// <param name="Dense">The features left out as dense, or null when no threshold was given.</param>
public sealed record FeatureRanking(IReadOnlyList<FeatureResult> Results, IReadOnlySet<int>? Dense);

/// <summary>The SAE feature activations of one prompt: [positions, d_sae] float32 on the CPU, plus the prompt's layout.</summary>
public sealed class PromptFeatures : IDisposable
{
    internal PromptFeatures(Tensor acts, IReadOnlyList<int> inputIds, IReadOnlyList<int> imagePositions, IReadOnlyList<ProcessedImage> images, IReadOnlyList<int> tokensPerImage)
    {
        Acts = acts;
        InputIds = inputIds;
        ImageTokenPositions = imagePositions;
        Images = images;
        TokensPerImage = tokensPerImage;
    }

    /// <summary>Feature activations [positions, d_sae] (float32, CPU).</summary>
    public Tensor Acts { get; }

    /// <summary>The prompt's token ids (images expanded).</summary>
    public IReadOnlyList<int> InputIds { get; }

    /// <summary>Positions of the <c>&lt;image&gt;</c> tokens, image after image.</summary>
    public IReadOnlyList<int> ImageTokenPositions { get; }

    /// <summary>The processed images (their centre crops are what the vision tower saw).</summary>
    public IReadOnlyList<ProcessedImage> Images { get; }

    /// <summary>Image tokens of each image, in order.</summary>
    public IReadOnlyList<int> TokensPerImage { get; }

    /// <summary>The selector for <paramref name="positions"/> in this prompt.</summary>
    /// <exception cref="ArgumentException">No image for <c>image</c>, or an index outside the prompt.</exception>
    public PositionSelector Select(PromptPositions positions) => positions.Resolve(InputIds.Count, ImageTokenPositions);

    /// <summary>Per-feature aggregate over the selected positions, [d_sae] float32; the caller owns it.</summary>
    public Tensor Aggregate(PromptPositions positions, FeatureAggregation aggregation) =>
        FeatureActivations.Aggregate(Acts, Select(positions), aggregation);

    /// <summary>One feature over image <paramref name="image"/>'s patch grid, [gridH, gridW]; the caller owns it.</summary>
    /// <exception cref="ArgumentOutOfRangeException">No such image or feature.</exception>
    public Tensor SpatialMapOf(int feature, int image = 0)
    {
        if (image < 0 || image >= Images.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(image), image, Images.Count == 0 ? "A heatmap needs an image in the prompt." : $"Image {image} is out of range: the prompt has {Images.Count}.");
        }

        if (feature < 0 || feature >= Acts.shape[1])
        {
            throw new ArgumentOutOfRangeException(nameof(feature), feature, $"Feature {feature} is out of range: the SAE has {Acts.shape[1]} features.");
        }

        var positions = ImageTokenPositions.Skip(TokensPerImage.Take(image).Sum()).Take(TokensPerImage[image]).Select(p => (long)p).ToArray();
        var (gridH, gridW) = SpatialMap.SquareGrid(positions.Length);
        return SpatialMap.FromActivations(Acts, positions, feature, gridH, gridW);
    }

    /// <summary>
    /// Writes a heatmap figure (PNG) of one feature over the processed image: enlarged to a readable size, titled
    /// (<paramref name="title"/>, default <c>feature F</c>; pass the Neuronpedia description too), with a colour bar.
    /// Written to a temporary file, then moved. <see cref="Heatmap"/> draws the bare overlay at the image's size.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">No such image or feature.</exception>
    public void RenderHeatmap(int feature, string outputPath, int image = 0, string? title = null, HeatmapStyle? style = null)
    {
        using var map = SpatialMapOf(feature, image);
        HeatmapFigure.Render(Images[image].Image, map, outputPath, title ?? $"feature {feature}", style);
    }

    /// <summary>
    /// One figure with a tile per feature over image <paramref name="image"/>, sharing one value range and colour bar;
    /// <paramref name="titles"/> (same order as <paramref name="features"/>) default to <c>feature F</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">No such image or feature.</exception>
    /// <exception cref="ArgumentException">No features, or a title count that differs.</exception>
    public void RenderHeatmapGrid(IReadOnlyList<int> features, string outputPath, int image = 0, IReadOnlyList<string>? titles = null, HeatmapStyle? style = null, int columns = 0)
    {
        ArgumentNullException.ThrowIfNull(features);
        if (titles is not null && titles.Count != features.Count)
        {
            throw new ArgumentException($"{titles.Count} titles for {features.Count} features.", nameof(titles));
        }

        using var scope = torch.NewDisposeScope();
        var tiles = features.Select((f, i) => new HeatmapTile(Images[image].Image, SpatialMapOf(f, image), titles?[i] ?? $"feature {f}")).ToArray();
        HeatmapFigure.RenderGrid(tiles, outputPath, style, columns);
    }

    /// <inheritdoc/>
    public void Dispose() => Acts.Dispose();
}

/// <summary>
/// The research workflow on one model and one SAE: run a prompt (text + images) through the model only up to the SAE's
/// layer, encode the activation at the SAE's hook point into feature activations, aggregate them over chosen positions
/// and rank features, with Neuronpedia explanations.
/// </summary>
public sealed class FeatureAnalyzer
{
    private readonly ILogger? _logger;

    /// <summary>Creates the analyzer; the model, SAE and explanations stay owned by the caller.</summary>
    /// <param name="model">The model.</param>
    /// <param name="sae">The SAE; its hook point must be one of the model's.</param>
    /// <param name="explanations">Feature explanations, or null.</param>
    /// <param name="logger">Receives one debug line per image of <see cref="Tally"/>; null logs nothing.</param>
    /// <exception cref="SaeException">The model has no hook point of the SAE's name.</exception>
    public FeatureAnalyzer(HookedLlava model, SparseAutoencoder sae, FeatureExplanations? explanations, ILogger? logger = null)
    {
        _logger = logger;
        Model = model ?? throw new ArgumentNullException(nameof(model));
        Sae = sae ?? throw new ArgumentNullException(nameof(sae));
        Explanations = explanations;
        if (!model.HookDict.ContainsKey(sae.HookName))
        {
            throw new SaeException(sae.HookName, $"The SAE reads '{sae.HookName}', which is not a hook point of this model (e.g. {string.Join(", ", model.HookNames.Where(n => n.EndsWith("hook_resid_post", StringComparison.Ordinal)).Take(3))}).");
        }
    }

    /// <summary>The model.</summary>
    public HookedLlava Model { get; }

    /// <summary>The SAE.</summary>
    public SparseAutoencoder Sae { get; }

    /// <summary>The explanations, if any.</summary>
    public FeatureExplanations? Explanations { get; }

    /// <summary>
    /// Images per forward in <see cref="Tally"/> and <see cref="RankEntries"/> (default 1, one image per run as the
    /// research did). The same prompt with one image each gives rows of equal length, so a batch needs no padding
    /// and each row's activations equal a single run's within float rounding; larger batches trade memory for speed.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Less than 1.</exception>
    public int BatchSize
    {
        get => _batchSize;
        set => _batchSize = value >= 1 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "BatchSize must be at least 1.");
    }

    private int _batchSize = 1;

    private LlavaProcessor Processor => Model.Processor ?? throw new InvalidOperationException("The model has no processor (tokenizer and preprocessor files); load it from a model folder.");

    /// <summary>
    /// The decoder block to stop before so the SAE's hook point is the last thing computed (TransformerLens
    /// <c>stop_at_layer</c>): <c>hook_layer + 1</c> for decoder hooks, null (full run) for other hook points.
    /// </summary>
    public int? StopAtLayer => Sae.HookName.StartsWith("blocks.", StringComparison.Ordinal) ? Sae.HookLayer + 1 : null;

    /// <summary>Runs one prompt and returns its feature activations.</summary>
    /// <param name="prompt">The user text (chat format applied) or, with <paramref name="raw"/>, the exact text to tokenize.</param>
    /// <param name="images">Image files (one <c>&lt;image&gt;</c> each).</param>
    /// <param name="raw">Tokenize <paramref name="prompt"/> as is (see <see cref="LlavaProcessor.Prepare(string, IReadOnlyList{string}?, bool)"/>).</param>
    /// <param name="cancellationToken">Cancels before the run.</param>
    /// <exception cref="InvalidOperationException">The model was built without a processor.</exception>
    public PromptFeatures Encode(string prompt, IReadOnlyList<string> images, bool raw = false, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var prepared = Processor.Prepare(prompt, images, raw);
        return Encode(prepared, cancellationToken);
    }

    /// <summary>Runs one prompt with already processed images (nothing is decoded again) and returns its feature activations.</summary>
    /// <exception cref="InvalidOperationException">The model was built without a processor.</exception>
    public PromptFeatures Encode(string prompt, IReadOnlyList<ProcessedImage> images, bool raw = false, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var prepared = Processor.Prepare(prompt, images, raw);
        return Encode(prepared, cancellationToken);
    }

    /// <summary>
    /// Runs a prepared prompt (the same one can then be given to <see cref="HookedLlava.Generate(LlavaPrompt, GenerationOptions, CancellationToken)"/>)
    /// and returns its feature activations; the prompt stays owned by the caller.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model was built without a processor.</exception>
    public PromptFeatures Encode(LlavaPrompt prompt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        cancellationToken.ThrowIfCancellationRequested();
        return Run(LlavaInput.From(prompt), [prompt])[0];
    }

    /// <summary>
    /// Runs a left-padded batch in one forward (up to the SAE's block) and returns each row's feature activations
    /// (padding removed), in row order; the batch stays owned by the caller.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model was built without a processor.</exception>
    public IReadOnlyList<PromptFeatures> Encode(LlavaBatch batch, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        cancellationToken.ThrowIfCancellationRequested();
        return Run(LlavaInput.From(batch), batch.Prompts);
    }

    // One forward of rows whose prompts are `prompts` (left-padded to the longest): the SAE's activations per row.
    private IReadOnlyList<PromptFeatures> Run(LlavaInput input, IReadOnlyList<LlavaPrompt> prompts)
    {
        var processor = Processor;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.inference_mode();
        var (output, cache) = Model.RunWithCache(input with { ComputeLogits = StopAtLayer is null }, n => n == Sae.HookName, stopAtLayer: StopAtLayer);
        using (output)
        using (cache)
        {
            var activation = cache[Sae.HookName];
            var rows = activation.dim() == 3 ? activation : activation.unsqueeze(0);
            long length = rows.shape[1];
            var results = new List<PromptFeatures>(prompts.Count);
            try
            {
                for (int r = 0; r < prompts.Count; r++)
                {
                    var prompt = prompts[r];
                    var row = rows[r].narrow(0, length - prompt.Ids.Count, prompt.Ids.Count);
                    var acts = Sae.Encode(row).to(ScalarType.Float32).cpu().contiguous();
                    results.Add(new PromptFeatures(acts.MoveToOuterDisposeScope(), prompt.Ids.ToArray(), prompt.ImageTokenPositions.ToArray(), prompt.Images.ToArray(), prompt.Images.Select(i => processor.ImageTokensFor(i.Height, i.Width)).ToArray()));
                }
            }
            catch
            {
                results.ForEach(f => f.Dispose());
                throw;
            }

            return results;
        }
    }

    /// <summary>The <paramref name="k"/> top features of one prompt's activations aggregated over <paramref name="positions"/>.</summary>
    /// <exception cref="ArgumentException">The positions do not fit the prompt.</exception>
    public IReadOnlyList<RankedFeature> Top(PromptFeatures features, int k, PromptPositions positions, FeatureAggregation aggregation = FeatureAggregation.Sum, IReadOnlySet<int>? exclude = null)
    {
        ArgumentNullException.ThrowIfNull(features);
        using var aggregate = features.Aggregate(positions, aggregation);
        return Rank(aggregate, k, exclude);
    }

    /// <summary>
    /// The strongest feature at <paramref name="positions"/>; with <see cref="PromptPositions.Last"/>, the feature at the
    /// last prompt token, where the answer starts (the one steering moves most directly).
    /// </summary>
    public RankedFeature TopFeature(PromptFeatures features, PromptPositions positions, FeatureAggregation aggregation = FeatureAggregation.Sum) =>
        Top(features, 1, positions, aggregation)[0];

    /// <summary>Encodes a prepared prompt and returns its strongest feature at <paramref name="positions"/>.</summary>
    public RankedFeature TopFeature(LlavaPrompt prompt, PromptPositions positions, FeatureAggregation aggregation = FeatureAggregation.Sum, CancellationToken cancellationToken = default)
    {
        using var features = Encode(prompt, cancellationToken);
        return TopFeature(features, positions, aggregation);
    }

    /// <summary>
    /// Runs <paramref name="prompt"/> with each image (<see cref="BatchSize"/> images per forward) and accumulates the per-image
    /// aggregates and activity counts at <paramref name="positions"/>; the caller owns the returned tally.
    /// </summary>
    /// <param name="images">Image files.</param>
    /// <param name="prompt">The prompt (see <see cref="Encode(string, IReadOnlyList{string}, bool, CancellationToken)"/>).</param>
    /// <param name="positions">Where activations are read.</param>
    /// <param name="aggregation">How each image's positions are combined.</param>
    /// <param name="raw">Tokenize <paramref name="prompt"/> as is.</param>
    /// <param name="progress">Receives a report after each image.</param>
    /// <param name="cancellationToken">Cancels between images.</param>
    /// <param name="onEncoded">Sees each image's activations before they are disposed (e.g. to draw a heatmap without a second run).</param>
    public FeatureTally Tally(
        IReadOnlyList<string> images, string prompt, PromptPositions positions, FeatureAggregation aggregation,
        bool raw = false, IProgress<FeatureSweepProgress>? progress = null, CancellationToken cancellationToken = default, Action<string, PromptFeatures>? onEncoded = null)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(positions);
        var tally = new FeatureTally(Sae.DSae);
        try
        {
            for (int start = 0; start < images.Count; start += BatchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var chunk = images.Skip(start).Take(BatchSize).ToArray();
                using var batch = Processor.PrepareBatch(chunk.Select(image => (prompt, (IReadOnlyList<string>)[image])).ToArray(), raw);
                var encoded = Encode(batch, cancellationToken);
                try
                {
                    for (int j = 0; j < chunk.Length; j++)
                    {
                        tally.Add(encoded[j], positions, aggregation);
                        onEncoded?.Invoke(chunk[j], encoded[j]);
                        _logger?.LogDebug("Encoded {Image} ({Done}/{Total})", chunk[j], start + j + 1, images.Count);
                        progress?.Report(new FeatureSweepProgress(start + j + 1, images.Count, chunk[j]));
                    }
                }
                finally
                {
                    foreach (var f in encoded)
                    {
                        f.Dispose();
                    }
                }
            }

            return tally;
        }
        catch
        {
            tally.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The research's table: one tally per entry (an image, or a class of images whose aggregates are averaged), then
    /// each entry's top <paramref name="k"/> features, without the features active on more than
    /// <paramref name="maxDensity"/> of the selected positions of all entries when it is given.
    /// </summary>
    /// <param name="entries">Images or classes of images.</param>
    /// <param name="classes">Whether the entries are classes (their results are labelled as such).</param>
    /// <param name="prompt">The prompt.</param>
    /// <param name="positions">Where activations are read.</param>
    /// <param name="aggregation">How each image's positions are combined.</param>
    /// <param name="k">Features per entry.</param>
    /// <param name="maxDensity">Dense-feature threshold (a fraction), or null to keep every feature.</param>
    /// <param name="raw">Tokenize <paramref name="prompt"/> as is.</param>
    /// <param name="progress">Receives a report after each image of each entry.</param>
    /// <param name="cancellationToken">Cancels between images.</param>
    /// <param name="onEncoded">Sees each image's activations before they are disposed.</param>
    public FeatureRanking RankEntries(
        IReadOnlyList<ImageClass> entries, bool classes, string prompt, PromptPositions positions, FeatureAggregation aggregation, int k,
        double? maxDensity = null, bool raw = false, IProgress<FeatureSweepProgress>? progress = null, CancellationToken cancellationToken = default,
        Action<string, PromptFeatures>? onEncoded = null)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (maxDensity is double m && !(m >= 0 && m <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(maxDensity), m, $"The dense-feature threshold must be a fraction between 0 and 1, got {m}.");
        }

        // First every tally (density needs all images), then the rankings.
        var tallies = new List<FeatureTally>();
        try
        {
            foreach (var entry in entries)
            {
                tallies.Add(Tally(entry.Images, prompt, positions, aggregation, raw, progress, cancellationToken, onEncoded));
            }

            var dense = maxDensity is double max ? FeatureTally.DenseFeatures(tallies.Select(t => (t.ActiveCounts(), t.Density.Positions)), max) : null;
            var results = new List<FeatureResult>();
            for (int i = 0; i < entries.Count; i++)
            {
                using var mean = tallies[i].Mean();
                results.Add(new FeatureResult(entries[i].Name, entries[i].Images, classes, Rank(mean, k, dense)));
            }

            return new FeatureRanking(results, dense);
        }
        finally
        {
            foreach (var t in tallies)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>The feature's first explanation, or null.</summary>
    public string? Describe(int feature) => Explanations?.Describe(feature);

    /// <summary>A figure title: <c>feature F: description</c>, or <c>feature F</c> without an explanation.</summary>
    public string HeatmapTitle(int feature) => Describe(feature) is { } d ? $"feature {feature}: {d}" : $"feature {feature}";

    /// <summary>
    /// The <paramref name="k"/> largest features of an aggregate [d_sae], largest first (<c>torch.topk</c> order),
    /// skipping <paramref name="exclude"/>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">k is not positive.</exception>
    public IReadOnlyList<RankedFeature> Rank(Tensor aggregate, int k, IReadOnlySet<int>? exclude = null)
    {
        ArgumentNullException.ThrowIfNull(aggregate);
        if (k < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(k), k, $"The number of features to rank must be at least 1, got {k}.");
        }

        using var scope = torch.NewDisposeScope();
        long dSae = aggregate.shape[^1];
        int excluded = exclude?.Count ?? 0;
        int take = (int)Math.Min(dSae, (long)k + excluded);
        var (values, indices) = aggregate.to(ScalarType.Float32).topk(take);
        var v = values.to(ScalarType.Float64).data<double>().ToArray();
        var i = indices.data<long>().ToArray();
        return Enumerable.Range(0, take)
            .Where(j => exclude is null || !exclude.Contains((int)i[j]))
            .Take(k)
            .Select(j => new RankedFeature((int)i[j], v[j], Describe((int)i[j])))
            .ToArray();
    }
}
