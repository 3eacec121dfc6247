// Top SAE features per class over an ImageNet-style folder (DIR/<class>/<images>), dense features excluded, written
// as CSV and Markdown. Resumable: each finished class is saved, and a rerun skips it.
//   dotnet run --project samples/ClassSweep -- --image-dir ~/imagenet-val --per-class 10 --out out/sweep \
//       --model Intel/llava-gemma-2b --sae gemma-2b-res-jb/blocks.12.hook_resid_post
using LlavaInterp.Native;
using LlavaInterp.Samples;
using LlavaInterp.Samples.ClassSweep;

NativeRuntime.Initialize(); // before any TorchSharp call (the MKL shim, see llava-interp's Program.cs)

// Ctrl+C and SIGTERM cancel the run (exit code 130, one line on stderr) instead of killing it mid-write.
using var signals = CancelSignals.Register();
return signals.Finish(await ClassSweepSample.RunAsync(args, Console.Out, Console.Error, signals.Token), Console.Error, "ClassSweep");
