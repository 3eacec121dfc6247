using BenchmarkDotNet.Running;
using LlavaInterp.Benchmarks.Runner;
using LlavaInterp.Native;

// Before any TorchSharp call: the MKL shim must be loaded before libtorch (it is only applied on non-Intel x86 CPUs).
var native = NativeRuntime.Initialize();
Console.Error.WriteLine($"cpu {native.CpuVendor}: MKL shim {(native.MklShimApplied ? "applied" : "not applied")} ({native.Reason})");

// Plain runners (JSON on stdout) for the side-by-side table; everything else is BenchmarkDotNet.
return args.FirstOrDefault() switch
{
    "gemm" => GemmProbe.Run(args[1..]),
    "make-bench-checkpoint" => SideBySide.MakeCheckpoint(args[1..]),
    "side-by-side" => SideBySide.Run(args[1..]),
    _ => RunBenchmarkDotNet(args),
};

static int RunBenchmarkDotNet(string[] args)
{
    BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    return 0;
}
