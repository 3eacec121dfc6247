// Steering with an SAE feature: generate a description of an image, then generate again while subtracting a
// feature's decoder direction from the residual stream at several strengths (the research: feature 4501
// "loyal companions, specifically dogs" at -2 .. -7 turns a dog photo's description into something else).
//   dotnet run --project samples/Steering                                     (tiny test model, offline)
//   dotnet run --project samples/Steering -- --model Intel/llava-gemma-2b --image dog.png --feature 4501
using LlavaInterp.Native;
using LlavaInterp.Samples;
using LlavaInterp.Samples.Steering;

NativeRuntime.Initialize(); // before any TorchSharp call (the MKL shim, see llava-interp's Program.cs)

// Ctrl+C and SIGTERM cancel the run (exit code 130, one line on stderr) instead of killing it mid-write.
using var signals = CancelSignals.Register();
return signals.Finish(await SteeringSample.RunAsync(args, Console.Out, Console.Error, signals.Token), Console.Error, "Steering");
