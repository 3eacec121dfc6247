using System.Diagnostics;
using System.Globalization;
using CsCheck;
using LlavaInterp.Tests.Support;
using Xunit.Abstractions;

namespace LlavaInterp.Tests.Fuzz;

/// <summary>
/// A loader under fuzzing: a seed folder, the one file in it that gets mutated, and what "loading" means (parse,
/// then use what was parsed). The rule checked on every case: it loads, or it throws one of the library's typed
/// exceptions whose message names the file (or its folder); never another exception, a hang or a memory blow-up.
/// </summary>
/// <param name="Name">Shown in test names and the report.</param>
/// <param name="SeedFolder">Copied once per run; the loader sees the copy.</param>
/// <param name="FileName">The file (relative to the folder) each case rewrites.</param>
/// <param name="Json">JSON-aware edits (else raw byte edits).</param>
/// <param name="Cases">Cases in a CI run (scaled by LLAVAINTERP_FUZZ_SCALE for long runs).</param>
/// <param name="Load">Loads from the folder copy; gets the mutated file's full path.</param>
/// <param name="HotLength">Byte edits land in the first HotLength bytes half of the time (headers); 0: anywhere.</param>
public sealed record FuzzTarget(string Name, string SeedFolder, string FileName, bool Json, int Cases, Action<string, string> Load, Func<byte[], int>? HotLength = null)
{
    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>How one case ended.</summary>
public enum FuzzOutcome
{
    /// <summary>The mutated file loaded and was used.</summary>
    Loaded,

    /// <summary>A typed exception that names the file.</summary>
    Rejected,
}

/// <summary>Runs a <see cref="FuzzTarget"/> through CsCheck and counts outcomes.</summary>
public static class FuzzHarness
{
    /// <summary>A case that takes longer than this is a hang.</summary>
    public static readonly TimeSpan CaseTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Peak resident memory one case may add (a loader that trusts a size field allocates far more).</summary>
    public const long CaseMemoryLimitBytes = 2L << 30;

    /// <summary>LLAVAINTERP_FUZZ_SCALE multiplies every target's case count (the long run by hand); 1 in CI.</summary>
    public static int Scale => int.TryParse(Environment.GetEnvironmentVariable("LLAVAINTERP_FUZZ_SCALE"), NumberStyles.Integer, CultureInfo.InvariantCulture, out int s) && s > 0 ? s : 1;

    /// <summary>
    /// Runs the target's cases and returns the outcome counts; throws on the first case that breaks the rule. By default
    /// the cases are fixed (case i is drawn from PCG stream i of one seed), so CI runs the same files every time and a
    /// failure names the case to rerun. <c>LLAVAINTERP_FUZZ_RANDOM=1</c> (the long run by hand) draws fresh cases through
    /// CsCheck, which shrinks a failing case and prints its seed (<c>LLAVAINTERP_FUZZ_SEED</c> replays it).
    /// </summary>
    public static IReadOnlyDictionary<FuzzOutcome, int> Run(FuzzTarget target, ITestOutputHelper output)
    {
        using var dir = TempDir.CopyOf(target.SeedFolder);
        string file = Path.Combine(dir.Path, target.FileName);
        byte[] seed = File.ReadAllBytes(file);
        int hot = target.HotLength?.Invoke(seed) ?? 0;
        var counts = new Dictionary<FuzzOutcome, int> { [FuzzOutcome.Loaded] = 0, [FuzzOutcome.Rejected] = 0 };

        // The unmutated seed must load: otherwise every case would be a rejection and the target would prove nothing.
        target.Load(dir.Path, file);

        var gen = target.Json ? Mutation.Json : Mutation.Binary;
        long cases = (long)target.Cases * Scale;
        var clock = Stopwatch.StartNew();
        if (Environment.GetEnvironmentVariable("LLAVAINTERP_FUZZ_RANDOM") == "1" || Environment.GetEnvironmentVariable("LLAVAINTERP_FUZZ_SEED") is not null)
        {
            gen.Sample(
                mutation => counts[RunCase(target, dir.Path, file, mutation.Apply(seed, hot))]++,
                seed: Environment.GetEnvironmentVariable("LLAVAINTERP_FUZZ_SEED"),
                iter: cases,
                threads: 1,
                print: m => m.ToString());
        }
        else
        {
            for (long i = 0; i < cases; i++)
            {
                var mutation = gen.Generate(new PCG((uint)i, FixedSeed), null, out _);
                try
                {
                    counts[RunCase(target, dir.Path, file, mutation.Apply(seed, hot))]++;
                }
                catch (FuzzDefectException ex)
                {
                    throw new FuzzDefectException($"case {i} ({mutation}): {ex.Message}", ex.InnerException);
                }
            }
        }

        output.WriteLine($"fuzz {target.Name}: {counts[FuzzOutcome.Loaded] + counts[FuzzOutcome.Rejected]} cases in {clock.Elapsed.TotalSeconds:F1} s: {counts[FuzzOutcome.Loaded]} loaded, {counts[FuzzOutcome.Rejected]} rejected with a typed error");
        return counts;
    }

    // The seed of the fixed CI cases.
    private const ulong FixedSeed = 20261204;

    private static FuzzOutcome RunCase(FuzzTarget target, string folder, string file, byte[] mutated)
    {
        // A new inode each case: a mapping a loader still holds keeps the old bytes instead of faulting (SIGBUS).
        File.Delete(file);
        File.WriteAllBytes(file, mutated);
        ResetPeakMemory();
        long before = PeakResidentBytes();
        Exception? error = null;
        var task = Task.Run(() =>
        {
            try
            {
                target.Load(folder, file);
            }
            catch (Exception ex)
            {
                error = ex;
            }
        });
        if (!task.Wait(CaseTimeout))
        {
            throw new FuzzDefectException($"{target.Name}: the case did not finish within {CaseTimeout.TotalSeconds} s (a hang)");
        }

        long grown = PeakResidentBytes() - before;
        if (before > 0 && grown > CaseMemoryLimitBytes)
        {
            throw new FuzzDefectException($"{target.Name}: the case raised peak memory by {grown >> 20} MiB (limit {CaseMemoryLimitBytes >> 20} MiB)", error);
        }

        if (error is null)
        {
            return FuzzOutcome.Loaded;
        }

        if (!IsTyped(error))
        {
            throw new FuzzDefectException($"{target.Name}: untyped {error.GetType().FullName}: {error.Message}", error);
        }

        string name = Path.GetFileName(file);
        if (!error.Message.Contains(name, StringComparison.Ordinal) && !error.Message.Contains(folder, StringComparison.Ordinal))
        {
            throw new FuzzDefectException($"{target.Name}: {error.GetType().Name} does not name {name} or its folder: {error.Message}", error);
        }

        return FuzzOutcome.Rejected;
    }

    // The library's own exception types (LlavaInterp.* assemblies), plus the BCL's "no such file" ones a loader
    // raises for a file named in the config that is missing.
    private static bool IsTyped(Exception ex) =>
        (ex.GetType().Assembly.GetName().Name?.StartsWith("LlavaInterp.", StringComparison.Ordinal) ?? false)
        || ex is FileNotFoundException or DirectoryNotFoundException;

    // Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) so each case's own peak is measured.
    private static void ResetPeakMemory()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static long PeakResidentBytes()
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
                }
            }
        }
        catch (IOException)
        {
        }

        return 0;
    }
}

/// <summary>A fuzz case broke the rule "loads, or a typed exception naming the file".</summary>
public sealed class FuzzDefectException(string message, Exception? inner = null) : Exception(message, inner);
