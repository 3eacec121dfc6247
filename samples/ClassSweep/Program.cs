// Top SAE features per class over an ImageNet-style folder (DIR/<class>/<images>), dense features excluded, written
// as CSV and Markdown. Resumable: each finished class is saved, and a rerun skips it.
//   dotnet run --project samples/ClassSweep -- --image-dir ~/imagenet-val --per-class 10 --out out/sweep \
//       --model Intel/llava-gemma-2b --sae gemma-2b-res-jb/blocks.12.hook_resid_post
using LlavaInterp.Samples.ClassSweep;

using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};
return await ClassSweepSample.RunAsync(args, Console.Out, Console.Error, cts.Token);
