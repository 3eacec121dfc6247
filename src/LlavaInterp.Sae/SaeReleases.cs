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
        ?? throw new SaeException(null, $"release '{Release}' has no SAE '{saeId}'. Valid ids: {string.Join(", ", Saes.Select(s => s.Id))}.");
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

    /// <summary>Every known release by id.</summary>
    public static IReadOnlyDictionary<string, SaeRelease> All { get; } = new Dictionary<string, SaeRelease>(StringComparer.Ordinal)
    {
        [Gemma2bResJb.Release] = Gemma2bResJb,
        [Gemma2bItResJb.Release] = Gemma2bItResJb,
    };

    /// <summary>The release of that id.</summary>
    /// <exception cref="SaeException">Unknown release (the message lists the known ones).</exception>
    public static SaeRelease Get(string release) =>
        All.TryGetValue(release, out var r) ? r : throw new SaeException(null, $"unknown SAE release '{release}'. Known: {string.Join(", ", All.Keys)}.");

    /// <summary>The norm scaling factor of one SAE, or null when the release does not list one.</summary>
    public static double? NormScalingFactor(string release, string saeId) => Get(release).Get(saeId).NormScalingFactor;
}
