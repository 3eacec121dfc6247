using LlavaInterp.Cli;
using LlavaInterp.Native;
using LlavaInterp.Samples;

// Before any TorchSharp call: on non-Intel x86-64 CPUs the MKL shim makes libtorch take its fast fp32 kernels
// (measured 2.3x on AMD EPYC; see docs/performance.md). It changes which kernels run, not the results.
NativeRuntime.Initialize();

// Ctrl+C and SIGTERM cancel the run (exit code 130, one line on stderr) instead of killing it mid-write.
using var signals = CancelSignals.Register();
return signals.Finish(await Cli.RunAsync(args, Console.Out, Console.Error, signals.Token), Console.Error, Cli.Name);
