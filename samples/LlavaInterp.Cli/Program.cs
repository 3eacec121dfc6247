using LlavaInterp.Cli;
using LlavaInterp.Samples;

// Ctrl+C and SIGTERM cancel the run (exit code 130, one line on stderr) instead of killing it mid-write.
using var signals = CancelSignals.Register();
return signals.Finish(await Cli.RunAsync(args, Console.Out, Console.Error, signals.Token), Console.Error, Cli.Name);
