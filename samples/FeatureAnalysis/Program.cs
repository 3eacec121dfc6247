// Which SAE features does an image light up when LLaVA is asked to "Describe the image."?
//   dotnet run --project samples/FeatureAnalysis                         (tiny test model, offline)
//   dotnet run --project samples/FeatureAnalysis -- --model Intel/llava-gemma-2b --image dog.jpg --heatmap out/
using LlavaInterp.Native;
using LlavaInterp.Samples;
using LlavaInterp.Samples.FeatureAnalysis;

NativeRuntime.Initialize(); // before any TorchSharp call (the MKL shim, see llava-interp's Program.cs)

// Ctrl+C and SIGTERM cancel the run (exit code 130, one line on stderr) instead of killing it mid-write.
using var signals = CancelSignals.Register();
return signals.Finish(await FeatureAnalysisSample.RunAsync(args, Console.Out, Console.Error, signals.Token), Console.Error, "FeatureAnalysis");
