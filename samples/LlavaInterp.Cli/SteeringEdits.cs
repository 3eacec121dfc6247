using System.Globalization;
using LlavaInterp.Hooks;
using LlavaInterp.Sae;
using LlavaInterp.Samples;

namespace LlavaInterp.Cli;

/// <summary>
/// The SAE edits of <c>generate</c>: <c>--steer F=ALPHA</c> adds <c>ALPHA·W_dec[F]</c> to the activation at the SAE's
/// hook point, <c>--clamp F=VALUE</c> sets feature F to VALUE through the SAE (error term kept), <c>--ablate F</c> sets it
/// to zero. Each may be given several times.
/// </summary>
public sealed record SteeringEdits(IReadOnlyList<(int Feature, double Alpha)> Steer, IReadOnlyDictionary<int, double> Clamp, IReadOnlyList<int> Ablate)
{
    /// <summary>Whether there is no edit.</summary>
    public bool IsEmpty => Steer.Count == 0 && Clamp.Count == 0 && Ablate.Count == 0;

    /// <summary>Parses the values of <c>--steer</c>, <c>--clamp</c> and <c>--ablate</c>.</summary>
    /// <exception cref="CliUsageException">A malformed value.</exception>
    public static SteeringEdits Parse(IEnumerable<string> steer, IEnumerable<string> clamp, IEnumerable<string> ablate)
    {
        var steers = steer.Select(s => Pair(s, "--steer", "ALPHA")).ToList();
        var clamps = new Dictionary<int, double>();
        foreach (var (f, v) in clamp.Select(s => Pair(s, "--clamp", "VALUE")))
        {
            if (!clamps.TryAdd(f, v))
            {
                throw new CliUsageException($"--clamp sets feature {f} twice.");
            }
        }

        var ablates = ablate.Select(s => Feature(s, "--ablate")).Distinct().ToList();
        return new SteeringEdits(steers, clamps, ablates);
    }

    /// <summary>The hooks that apply the edits at the selected positions; every feature is checked against the SAE.</summary>
    /// <exception cref="CliUsageException">A feature index is outside the SAE.</exception>
    public IReadOnlyList<HookSpec> ToHooks(SparseAutoencoder sae, PositionSelector positions)
    {
        foreach (int f in Steer.Select(s => s.Feature).Concat(Clamp.Keys).Concat(Ablate))
        {
            if (f >= sae.DSae)
            {
                throw new CliUsageException($"feature {f} is out of range: the SAE has {sae.DSae} features (0..{sae.DSae - 1}).");
            }
        }

        var hooks = new List<HookSpec>();
        if (Steer.Count > 0)
        {
            hooks.Add(Steering.AddFeatures(sae, Steer, positions));
        }

        if (Clamp.Count > 0)
        {
            hooks.Add(Steering.ClampFeatures(sae, Clamp, positions));
        }

        if (Ablate.Count > 0)
        {
            hooks.Add(Steering.AblateFeatures(sae, Ablate, positions));
        }

        return hooks;
    }

    /// <summary>A readable summary, e.g. <c>steer 219×-4</c>.</summary>
    public override string ToString() => string.Join(", ", Steer.Select(s => $"steer {s.Feature}×{s.Alpha.ToString(CultureInfo.InvariantCulture)}")
        .Concat(Clamp.Select(c => $"clamp {c.Key}={c.Value.ToString(CultureInfo.InvariantCulture)}"))
        .Concat(Ablate.Select(f => $"ablate {f}")));

    private static (int Feature, double Value) Pair(string text, string option, string what)
    {
        int eq = text.IndexOf('=', StringComparison.Ordinal);
        if (eq <= 0)
        {
            throw new CliUsageException($"{option} expects FEATURE={what}, got '{text}'.");
        }

        int feature = Feature(text[..eq], option);
        return double.TryParse(text[(eq + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
            ? (feature, v)
            : throw new CliUsageException($"{option} expects FEATURE={what} with a number after '=', got '{text}'.");
    }

    private static int Feature(string text, string option) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int f)
            ? f
            : throw new CliUsageException($"{option}: '{text}' is not a feature index (a non-negative integer).");
}
