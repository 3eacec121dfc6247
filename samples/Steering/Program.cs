// Steering with an SAE feature: generate a description of an image, then generate again while subtracting a
// feature's decoder direction from the residual stream at several strengths (the research: feature 4501
// "loyal companions, specifically dogs" at -2 .. -7 turns a dog photo's description into something else).
//   dotnet run --project samples/Steering                                     (tiny test model, offline)
//   dotnet run --project samples/Steering -- --model Intel/llava-gemma-2b --image dog.png --feature 4501
using LlavaInterp.Samples.Steering;

using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};
return await SteeringSample.RunAsync(args, Console.Out, Console.Error, cts.Token);
