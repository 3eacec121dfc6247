using LlavaInterp.Analysis;
using LlavaInterp.Hub;
using LlavaInterp.Llava;
using LlavaInterp.Sae;
using TorchSharp;

namespace LlavaInterp.Samples;

/// <summary>An SAE and where it came from.</summary>
/// <param name="Sae">The loaded SAE (owned by this record's user: dispose it).</param>
/// <param name="Folder">The local folder it was loaded from.</param>
/// <param name="Release">The SAELens release when loaded as <c>release/sae_id</c>, else null.</param>
public sealed record LoadedSae(SparseAutoencoder Sae, string Folder, string? Release) : IDisposable
{
    /// <summary>Neuronpedia's model id (before the <c>/</c> of <c>neuronpedia_id</c>), or null.</summary>
    public string? NeuronpediaModel =>
        NeuronpediaExplanations.ModelId(Sae);

    /// <inheritdoc/>
    public void Dispose() => Sae.Dispose();
}

/// <summary>
/// Resolves the <c>--model</c>, <c>--sae</c> and <c>--explanations</c> arguments the CLI and the samples share: local
/// folders, Hugging Face repo ids, SAELens <c>release/sae_id</c> names, explanation files and URLs.
/// </summary>
public static class Sources
{
    /// <summary>
    /// Parses a <c>--dtype</c> value: <c>float32</c> (default), <c>bfloat16</c> or <c>float16</c> store and compute in
    /// that dtype; <c>bfloat16-float32</c> / <c>float16-float32</c> store the weights narrow and compute in float32;
    /// <c>auto</c> stores bfloat16 and lets the load's probe choose the compute dtype.
    /// </summary>
    /// <exception cref="CliUsageException">None of these.</exception>
    public static ModelDType ParseDType(string? value) => value switch
    {
        null or "float32" or "fp32" => ModelDType.Float32,
        "bfloat16" or "bf16" => new(torch.ScalarType.BFloat16),
        "float16" or "fp16" => new(torch.ScalarType.Float16),
        "bfloat16-float32" or "bf16-fp32" => new(torch.ScalarType.BFloat16, torch.ScalarType.Float32),
        "float16-float32" or "fp16-fp32" => new(torch.ScalarType.Float16, torch.ScalarType.Float32),
        "auto" => new(torch.ScalarType.BFloat16, Auto: true),
        _ => throw new CliUsageException($"--dtype must be float32, bfloat16, float16, bfloat16-float32, float16-float32 or auto, got '{value}'."),
    };

    /// <summary>
    /// Parses a <c>--device</c> value: <c>cpu</c> (the default), <c>cuda</c> or <c>cuda:N</c>. A CUDA device that this
    /// machine does not have is a usage error too, found here rather than deep inside the first tensor move.
    /// </summary>
    /// <param name="value">The option's value, or null for the CPU.</param>
    /// <param name="cudaDevices">How many CUDA devices there are; null asks libtorch (tests pass a count).</param>
    /// <exception cref="CliUsageException">Not cpu, cuda or cuda:N, or the device is not available.</exception>
    public static torch.Device ParseDevice(string? value, int? cudaDevices = null)
    {
        if (value is null or "cpu")
        {
            return torch.CPU;
        }

        int index;
        if (value == "cuda")
        {
            index = 0;
        }
        else if (value.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(value.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n))
        {
            index = n;
        }
        else
        {
            throw new CliUsageException($"--device must be cpu, cuda or cuda:N, got '{value}'.");
        }

        int count = cudaDevices ?? (torch.cuda.is_available() ? torch.cuda.device_count() : 0);
        if (count == 0)
        {
            throw new CliUsageException($"--device {value}: CUDA is not available here (no GPU, or a CPU-only libtorch); use --device cpu.");
        }

        if (index >= count)
        {
            throw new CliUsageException($"--device {value}: this machine has {count} CUDA device{(count == 1 ? string.Empty : "s")} (cuda:0..cuda:{count - 1}).");
        }

        return new torch.Device(DeviceType.CUDA, index);
    }

    /// <summary>
    /// Loads a model from a local folder or a Hugging Face repo id (downloaded into the hub cache;
    /// <c>HF_HUB_OFFLINE</c>, <c>HF_HOME</c>, <c>HF_TOKEN</c> are honoured).
    /// </summary>
    /// <exception cref="CliUsageException">Neither an existing folder nor a repo id.</exception>
    /// <param name="pathOrRepoId">A local model folder or a Hugging Face repo id.</param>
    /// <param name="dtype">Parameter and compute dtype (<see cref="ParseDType"/>).</param>
    /// <param name="log">Receives one line per downloaded file, and the compute dtype <c>auto</c> chose.</param>
    /// <param name="ct">Cancels loading.</param>
    /// <param name="hub">Hub settings; null reads them from the environment.</param>
    /// <param name="device">Where the weights go; null is the CPU.</param>
    /// <param name="progress">Shows downloads and weight loading; null prints only the download lines to <paramref name="log"/>.</param>
    public static async Task<HookedLlava> LoadModelAsync(string pathOrRepoId, ModelDType dtype, TextWriter? log, CancellationToken ct, HubOptions? hub = null, torch.Device? device = null, CliProgress? progress = null)
    {
        if (!Directory.Exists(pathOrRepoId) && !HubClient.LooksLikeRepoId(pathOrRepoId))
        {
            throw new CliUsageException(File.Exists(pathOrRepoId)
                ? $"--model '{pathOrRepoId}' is a file; pass the model folder (with config.json) or a Hugging Face repo id."
                : $"--model '{pathOrRepoId}' is neither an existing folder nor a Hugging Face repo id (owner/name).");
        }

        var options = new LlavaLoadOptions
        {
            DType = dtype.Storage,
            ComputeDType = dtype.Compute,
            AutoComputeDType = dtype.Auto,
            Device = device,
            Hub = hub ?? HubOptions.FromEnvironment(),
            DownloadProgress = log is null ? null : DownloadLog(log),
        };
        var model = await (progress is null ? HookedLlava.FromPretrainedAsync(pathOrRepoId, options, ct) : LoadAsync(progress)).ConfigureAwait(false);
        if (model.ComputeDTypeProbe is { } probe)
        {
            log?.WriteLine($"--dtype auto: {probe.StorageDType} linear {probe.Speedup:F2}x float32's on this machine, so computing in {probe.Chosen} with {probe.StorageDType} weights");
        }

        return model;

        async Task<HookedLlava> LoadAsync(CliProgress progress)
        {
            // One phase for the whole load (its total, every weight tensor, comes with the first report); downloads,
            // which come first, are phases of their own.
            using var downloads = progress.Downloads();
            using var phase = progress.Begin("loading weights");
            var load = options with { DownloadProgress = downloads, LoadProgress = phase.As<LlavaInterp.Loading.WeightLoadProgress>(p => (p.Loaded, p.Total)) };
            return await HookedLlava.FromPretrainedAsync(pathOrRepoId, load, ct).ConfigureAwait(false);
        }
    }

    /// <summary>The model's processor (tokenizer + image processor).</summary>
    /// <exception cref="CliUsageException">The model was built without one.</exception>
    public static LlavaProcessor ProcessorOf(HookedLlava model) =>
        model.Processor ?? throw new CliUsageException("the model has no processor (tokenizer and preprocessor files); load it from a model folder.");

    /// <summary>
    /// Loads an SAE from a local SAELens folder (<c>cfg.json</c> + <c>sae_weights.safetensors</c>), a SAELens release
    /// name <c>release/sae_id</c> (e.g. <c>gemma-2b-res-jb/blocks.12.hook_resid_post</c>, fetched from the release's
    /// Hugging Face repo with its metadata applied), or a Hugging Face repo that holds an SAELens folder at its root.
    /// </summary>
    /// <exception cref="CliUsageException">The argument names nothing loadable.</exception>
    /// <param name="spec">A folder, <c>release/sae_id</c> or repo id.</param>
    /// <param name="dtype">Compute dtype; null keeps the config's.</param>
    /// <param name="log">Receives one line per downloaded file.</param>
    /// <param name="ct">Cancels downloads.</param>
    /// <param name="hub">Hub settings; null reads them from the environment.</param>
    /// <param name="device">Where the SAE's weights go (the model's device, so that its activations need no copy); null is the CPU.</param>
    /// <param name="progress">Shows downloads; null prints the download lines to <paramref name="log"/>.</param>
    public static async Task<LoadedSae> LoadSaeAsync(string spec, torch.ScalarType? dtype, TextWriter? log, CancellationToken ct, HubOptions? hub = null, torch.Device? device = null, CliProgress? progress = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        SaeLocation location;
        using var downloads = progress?.Downloads();
        try
        {
            location = await SparseAutoencoder.LocateAsync(spec, hub: hub, progress: (IProgress<HubDownloadProgress>?)downloads ?? (log is null ? null : DownloadLog(log)), cancellationToken: ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is ArgumentException or FileNotFoundException)
        {
            throw new CliUsageException($"--sae: {ex.Message}");
        }

        var load = new SaeLoadOptions { DType = dtype, Device = device };
        if (location.Release is not null)
        {
            load = load with { Release = location.Release, SaeId = location.SaeId };
        }

        return new LoadedSae(SparseAutoencoder.Load(location.Folder, load), location.Folder, location.Release);
    }

    /// <summary>
    /// Loads feature explanations (see <see cref="NeuronpediaExplanations"/>): <paramref name="spec"/> is a file or an
    /// http(s) URL; without one, the export next to the SAE, or Neuronpedia's for a release SAE (a failed download only
    /// warns on <paramref name="log"/>). Returns null when no explanations are found.
    /// </summary>
    /// <exception cref="FeatureExplanationsException">An explicitly given file or URL cannot be used.</exception>
    /// <param name="spec">A file or URL; null looks next to the SAE, then at Neuronpedia for a release SAE.</param>
    /// <param name="sae">The SAE.</param>
    /// <param name="log">Receives a warning when the Neuronpedia download fails.</param>
    /// <param name="ct">Cancels the download.</param>
    /// <param name="hub">Hub settings (only <see cref="HubOptions.Offline"/> is used: offline, nothing is downloaded); null reads the environment.</param>
    public static async Task<FeatureExplanations?> LoadExplanationsAsync(string? spec, LoadedSae sae, TextWriter? log, CancellationToken ct, HubOptions? hub = null)
    {
        ArgumentNullException.ThrowIfNull(sae);
        if (spec is not null)
        {
            return await NeuronpediaExplanations.LoadAsync(spec, hub, cancellationToken: ct).ConfigureAwait(false);
        }

        return await NeuronpediaExplanations.FindAsync(sae.Sae, sae.Folder, sae.Release is not null, hub, logger: log is null ? null : new WarningLog(log), cancellationToken: ct).ConfigureAwait(false);
    }

    /// <summary>A message on one line (line breaks become spaces).</summary>
    public static string OneLine(string message) =>
        string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    // One line when a file starts downloading and one when it is complete: per-chunk lines would flood redirected output.
    // Progress<T> would post to the thread pool and reorder lines, so this reports synchronously.
    private static IProgress<HubDownloadProgress> DownloadLog(TextWriter log) => new DownloadLogger(log);

    // Library warnings as "warning: …" lines, like the CLI's other messages.
    private sealed class WarningLog(TextWriter log) : Microsoft.Extensions.Logging.ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => logLevel >= Microsoft.Extensions.Logging.LogLevel.Warning;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                log.WriteLine($"warning: {OneLine(formatter(state, exception))}");
            }
        }
    }

    private sealed class DownloadLogger(TextWriter log) : IProgress<HubDownloadProgress>
    {
        private readonly HashSet<string> _started = new(StringComparer.Ordinal);
        private readonly HashSet<string> _done = new(StringComparer.Ordinal);

        public void Report(HubDownloadProgress value)
        {
            lock (_started)
            {
                if (_started.Add(value.File))
                {
                    string size = value.TotalBytes is long t ? $" ({t / 1e6:F1} MB)" : string.Empty;
                    log.WriteLine($"downloading {value.File}{size}");
                }

                if (value.TotalBytes is long total && value.BytesDone >= total && _done.Add(value.File))
                {
                    log.WriteLine($"downloaded {value.File}");
                }
            }
        }
    }
}
