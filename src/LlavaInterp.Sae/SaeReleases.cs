namespace LlavaInterp.Sae;

/// <summary>One SAE of a release: its id, its folder in the Hugging Face repository and its metadata.</summary>
/// <param name="Id">The SAE id within the release (SAELens uses the hook name, e.g. <c>blocks.12.hook_resid_post</c>).</param>
/// <param name="Path">The folder in the repository that holds <c>cfg.json</c> and <c>sae_weights.safetensors</c>.</param>
/// <param name="NeuronpediaId">The Neuronpedia id (<c>model/source</c>), when Neuronpedia hosts the SAE.</param>
/// <param name="NormScalingFactor">
/// The constant input scale for SAEs trained with <c>normalize_activations = "expected_average_only_in"</c>; it is
/// folded into the weights on load (see <see cref="SparseAutoencoder.FoldActivationNormScalingFactor"/>).
/// </param>
public sealed record SaeReleaseEntry(string Id, string Path, string? NeuronpediaId = null, double? NormScalingFactor = null)
{
    /// <summary>The repository path of a file of this SAE, e.g. <c>FilePath("cfg.json")</c>.</summary>
    public string FilePath(string fileName) => $"{Path}/{fileName}";
}

/// <summary>A release of pretrained SAEs as SAELens's <c>pretrained_saes.yaml</c> lists it.</summary>
/// <param name="Release">The release id, e.g. <c>gemma-2b-res-jb</c>.</param>
/// <param name="RepoId">The Hugging Face repository.</param>
/// <param name="Model">The model the SAEs were trained on.</param>
/// <param name="Saes">The SAEs of the release.</param>
/// <param name="ConfigOverrides">Keys SAELens overrides in each SAE's <c>cfg.json</c> (string values only).</param>
public sealed record SaeRelease(string Release, string RepoId, string Model, IReadOnlyList<SaeReleaseEntry> Saes, IReadOnlyDictionary<string, string>? ConfigOverrides = null)
{
    /// <summary>The SAE with that id.</summary>
    /// <exception cref="SaeException">The release has no SAE of that id (the message lists the valid ids).</exception>
    public SaeReleaseEntry Get(string saeId) =>
        Saes.FirstOrDefault(s => s.Id == saeId)
        ?? throw new SaeException(null, $"release '{Release}' has no SAE '{saeId}'.{SaeReleases.DidYouMean(saeId, Saes.Select(s => s.Id))} Valid ids: {string.Join(", ", Saes.Select(s => s.Id))}.");
}

/// <summary>
/// Known SAE releases (a small subset of SAELens 4.x <c>pretrained_saes.yaml</c>): ids, repository folders, Neuronpedia
/// ids and norm scaling factors. Files are fetched by the hub layer; <see cref="SaeLoadOptions.ForRelease"/> carries the
/// metadata to <see cref="SparseAutoencoder.Load"/>.
/// </summary>
public static class SaeReleases
{
    /// <summary>Joseph Bloom's Gemma-2b residual-stream SAEs (16384 features).</summary>
    public static SaeRelease Gemma2bResJb { get; } = new(
        "gemma-2b-res-jb",
        "jbloom/Gemma-2b-Residual-Stream-SAEs",
        "gemma-2b",
        [
            new("blocks.0.hook_resid_post", "gemma_2b_blocks.0.hook_resid_post_16384_anthropic", "gemma-2b/0-res-jb"),
            new("blocks.6.hook_resid_post", "gemma_2b_blocks.6.hook_resid_post_16384_anthropic_fast_lr", "gemma-2b/6-res-jb"),
            new("blocks.10.hook_resid_post", "gemma_2b_blocks.10.hook_resid_post_16384", "gemma-2b/10-res-jb"),
            new("blocks.12.hook_resid_post", "gemma_2b_blocks.12.hook_resid_post_16384", "gemma-2b/12-res-jb", 0.21381938399317255),
            new("blocks.17.hook_resid_post", "gemma_2b_blocks.17.hook_resid_post_16384"),
        ]);

    /// <summary>Joseph Bloom's Gemma-2b-IT residual-stream SAE (layer 12, 16384 features).</summary>
    public static SaeRelease Gemma2bItResJb { get; } = new(
        "gemma-2b-it-res-jb",
        "jbloom/Gemma-2b-IT-Residual-Stream-SAEs",
        "gemma-2b-it",
        [
            new("blocks.12.hook_resid_post", "gemma_2b_it_blocks.12.hook_resid_post_16384", "gemma-2b-it/12-res-jb"),
        ],
        new Dictionary<string, string> { ["dataset_path"] = "Skylion007/openwebtext" });

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, SaeRelease> Registry = new(
        new Dictionary<string, SaeRelease> { [Gemma2bResJb.Release] = Gemma2bResJb, [Gemma2bItResJb.Release] = Gemma2bItResJb },
        StringComparer.Ordinal);

    /// <summary>Every known release by id: the built-in ones plus those added by <see cref="Register"/> or <see cref="LoadPretrainedSaesYaml"/>.</summary>
    public static IReadOnlyDictionary<string, SaeRelease> All => Registry;

    /// <summary>Adds a release (or replaces the one with the same id) so <see cref="SparseAutoencoder.FromPretrainedAsync"/> knows it.</summary>
    /// <param name="release">The release.</param>
    public static void Register(SaeRelease release)
    {
        ArgumentNullException.ThrowIfNull(release);
        ArgumentException.ThrowIfNullOrWhiteSpace(release.Release, nameof(release));
        Registry[release.Release] = release;
    }

    /// <summary>
    /// Reads SAELens's <c>pretrained_saes.yaml</c> (releases at the top level, or under <c>SAE_LOOKUP</c> as in older
    /// versions) and registers every release in it. Only <c>repo_id</c>, <c>model</c>, <c>config_overrides</c> and each
    /// SAE's <c>id</c>, <c>path</c>, <c>neuronpedia</c> and <c>norm_scaling_factor</c> are read.
    /// </summary>
    /// <param name="path">The YAML file.</param>
    /// <returns>The releases read.</returns>
    /// <exception cref="SaeException">The file is missing or not in that layout (the message names file and line).</exception>
    public static IReadOnlyList<SaeRelease> LoadPretrainedSaesYaml(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new SaeException(null, $"{path}: file not found.");
        }

        var releases = PretrainedSaesYaml.Parse(File.ReadAllText(path), path);
        foreach (var r in releases)
        {
            Register(r);
        }

        return releases;
    }

    /// <summary>The release with that id.</summary>
    /// <exception cref="SaeException">Unknown release; the message suggests the closest known ids.</exception>
    public static SaeRelease Get(string release) =>
        Registry.TryGetValue(release, out var r)
            ? r
            : throw new SaeException(null, $"unknown SAE release '{release}'.{DidYouMean(release, Registry.Keys)} Known: {string.Join(", ", Registry.Keys.Order(StringComparer.Ordinal))}.");

    /// <summary>The norm scaling factor of an SAE of a known release, or null.</summary>
    public static double? NormScalingFactor(string release, string saeId) => Get(release).Get(saeId).NormScalingFactor;

    /// <summary>The known release ids close to a misspelled one (edit distance at most a third of its length), closest first.</summary>
    /// <param name="release">The id as typed.</param>
    public static IReadOnlyList<string> Suggest(string release) => Closest(release, Registry.Keys);

    internal static string DidYouMean(string typed, IEnumerable<string> known)
    {
        var close = Closest(typed, known);
        return close.Count == 0 ? "" : $" Did you mean {string.Join(" or ", close.Select(c => $"'{c}'"))}?";
    }

    private static List<string> Closest(string typed, IEnumerable<string> known)
    {
        int limit = Math.Max(2, typed.Length / 3);
        return known.Select(k => (k, d: Distance(typed.ToLowerInvariant(), k.ToLowerInvariant())))
            .Where(x => x.d <= limit)
            .OrderBy(x => x.d).ThenBy(x => x.k, StringComparer.Ordinal)
            .Take(3).Select(x => x.k).ToList();
    }

    private static int Distance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++)
        {
            prev[j] = j;
        }

        for (int i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            (prev, cur) = (cur, prev);
        }

        return prev[b.Length];
    }
}
