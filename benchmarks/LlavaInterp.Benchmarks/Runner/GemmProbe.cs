using System.Diagnostics;
using System.Text.Json;
using static TorchSharp.torch;

namespace LlavaInterp.Benchmarks.Runner;

/// <summary>
/// <c>gemm</c>: 2048³ matmul rates (fp32, bf16 compute, bf16 storage with fp32 compute) and the first-touch cost of a
/// fresh 600 MB buffer, interleaved round by round so that drift on a shared machine hits every case alike.
/// </summary>
internal static class GemmProbe
{
    public static int Run(string[] args)
    {
        int rounds = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 5;
        using var noGrad = no_grad();
        const long n = 2048;
        var a32 = randn(n, n);
        var b32 = randn(n, n);
        var a16 = a32.to(ScalarType.BFloat16);
        var b16 = b32.to(ScalarType.BFloat16);
        var cases = new (string Name, Func<Tensor> Body)[]
        {
            ("fp32", () => matmul(a32, b32)),
            ("bf16", () => matmul(a16, b16)),
            ("bf16_storage_fp32_compute", () => matmul(a32, b16.to(ScalarType.Float32))),
        };
        var times = cases.ToDictionary(c => c.Name, _ => new List<double>());
        var touch = new List<double>();
        foreach (var c in cases)
        {
            c.Body().Dispose();
        }

        for (int r = 0; r < rounds; r++)
        {
            foreach (var c in cases)
            {
                var sw = Stopwatch.StartNew();
                using var result = c.Body();
                times[c.Name].Add(sw.Elapsed.TotalSeconds);
            }

            var swt = Stopwatch.StartNew();
            using (var fresh = empty(590, 256128))
            {
                fresh.fill_(1.0f);
            }

            touch.Add(swt.Elapsed.TotalSeconds);
        }

        double flop = 2.0 * n * n * n;
        var report = new Dictionary<string, object>
        {
            ["threads"] = get_num_threads(),
            ["rounds"] = rounds,
            ["thp_env"] = Environment.GetEnvironmentVariable("THP_MEM_ALLOC_ENABLE") ?? "",
        };
        foreach (var (name, list) in times)
        {
            report[name + "_gflops_median"] = Math.Round(flop / Median(list) / 1e9, 1);
        }

        report["first_touch_604MB_s_median"] = Math.Round(Median(touch), 3);
        Console.WriteLine(JsonSerializer.Serialize(report));
        return 0;
    }

    public static double Median(List<double> values)
    {
        var sorted = values.OrderBy(v => v).ToList();
        int m = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[m] : (sorted[m - 1] + sorted[m]) / 2;
    }
}
