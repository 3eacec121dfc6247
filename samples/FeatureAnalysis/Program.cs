// Which SAE features does an image light up when LLaVA is asked to "Describe the image."?
//   dotnet run --project samples/FeatureAnalysis                         (tiny test model, offline)
//   dotnet run --project samples/FeatureAnalysis -- --model Intel/llava-gemma-2b --image dog.jpg --heatmap out/
using LlavaInterp.Samples.FeatureAnalysis;

using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};
return await FeatureAnalysisSample.RunAsync(args, Console.Out, Console.Error, cts.Token);
