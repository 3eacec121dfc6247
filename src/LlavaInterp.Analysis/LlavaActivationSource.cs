using System.Text.RegularExpressions;
using LlavaInterp.Llava;
using TorchSharp;
using static TorchSharp.torch;

namespace LlavaInterp.Analysis;

/// <summary>Which positions of a LLaVA prompt feed SAE training.</summary>
public enum ActivationTokens
{
    /// <summary>Only the image-token positions.</summary>
    Image,

    /// <summary>Only the text positions.</summary>
    Text,

    /// <summary>Both, optionally subsampled to <see cref="LlavaActivationSource.ImageShare"/>.</summary>
    Both,
}

/// <summary>
/// Streams one hook point's activations from <see cref="HookedLlava"/> over prepared prompts (images + text): each
/// prompt runs with a cache hook on the hook point only and stops after the hook's block, and yields the selected
/// positions as rows [n, d]. Feed it to <c>ActivationStore.Shuffle</c> and <c>SaeTrainer.Train</c>.
/// </summary>
public sealed class LlavaActivationSource
{
    /// <summary>Creates a source.</summary>
    /// <param name="model">The model (not owned).</param>
    /// <param name="hookName">The hook point, e.g. <c>blocks.2.hook_resid_post</c>.</param>
    public LlavaActivationSource(HookedLlava model, string hookName)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(hookName);
        if (!model.HookNames.Contains(hookName))
        {
            throw new ArgumentException($"'{hookName}' is not a hook point of the model.", nameof(hookName));
        }

        Model = model;
        HookName = hookName;
        var match = Regex.Match(hookName, @"^blocks\.(\d+)\.");
        // Stop after the hook's block; hooks outside the language-model blocks need the whole run.
        StopAtLayer = match.Success ? int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) + 1 : null;
    }

    /// <summary>The model.</summary>
    public HookedLlava Model { get; }

    /// <summary>The hook point.</summary>
    public string HookName { get; }

    /// <summary>The block the run stops before, or null for a full run.</summary>
    public int? StopAtLayer { get; }

    /// <summary>Which positions to keep.</summary>
    public ActivationTokens Tokens { get; init; } = ActivationTokens.Both;

    /// <summary>With <see cref="ActivationTokens.Both"/>: the fraction of image rows per prompt (the larger group is subsampled); null keeps all.</summary>
    public double? ImageShare { get; init; }

    /// <summary>Seed of the subsampling.</summary>
    public long Seed { get; init; }

    /// <summary>Runs each prompt and yields its selected activation rows [n, d] (float32, CPU); the caller disposes each.</summary>
    /// <param name="prompts">Prepared prompts (not disposed).</param>
    /// <param name="cancellationToken">Stops between prompts.</param>
    public IEnumerable<Tensor> Activations(IEnumerable<LlavaPrompt> prompts, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        if (ImageShare is double share && !(share > 0 && share < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(ImageShare), share, "ImageShare must be strictly between 0 and 1.");
        }

        var rng = new Random(unchecked((int)Seed));
        foreach (var prompt in prompts)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var rows = Run(prompt, rng);
            // Yield outside the dispose scope: tensors the caller makes while this iterator is suspended must not
            // land in (and be disposed with) this prompt's scope.
            if (rows is not null)
            {
                yield return rows;
            }
        }
    }

    private Tensor? Run(LlavaPrompt prompt, Random rng)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (_, cache) = Model.RunWithCache(LlavaInput.From(prompt), n => n == HookName, torch.CPU, StopAtLayer);
        using (cache)
        {
            var acts = cache[HookName];
            var rows = acts.reshape(-1, acts.shape[^1]);
            var positions = Select(prompt, (int)rows.shape[0], rng);
            if (positions.Length == 0)
            {
                return null;
            }

            var index = torch.tensor(positions, dtype: ScalarType.Int64);
            return rows.index_select(0, index).to(ScalarType.Float32).contiguous().MoveToOuterDisposeScope();
        }
    }

    private long[] Select(LlavaPrompt prompt, int count, Random rng)
    {
        var image = prompt.ImageTokenPositions.Where(p => p < count).Select(p => (long)p).ToList();
        var isImage = new HashSet<long>(image);
        var text = Enumerable.Range(0, count).Select(p => (long)p).Where(p => !isImage.Contains(p)).ToList();
        switch (Tokens)
        {
            case ActivationTokens.Image:
                return [.. image];
            case ActivationTokens.Text:
                return [.. text];
        }

        if (ImageShare is double share && image.Count > 0 && text.Count > 0)
        {
            if ((double)image.Count / (image.Count + text.Count) > share)
            {
                image = Subsample(image, (int)Math.Floor(share * text.Count / (1 - share)), rng);
            }
            else
            {
                text = Subsample(text, (int)Math.Floor(image.Count * (1 - share) / share), rng);
            }
        }

        return [.. image.Concat(text).Order()];
    }

    private static List<long> Subsample(List<long> items, int keep, Random rng) =>
        [.. items.OrderBy(_ => rng.Next()).Take(Math.Clamp(keep, 0, items.Count))];
}
