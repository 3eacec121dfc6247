using LlavaInterp.Cli;

// Ctrl+C cancels the run (exit code 130) instead of killing the process mid-write.
using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};

return await Cli.RunAsync(args, Console.Out, Console.Error, cts.Token);
