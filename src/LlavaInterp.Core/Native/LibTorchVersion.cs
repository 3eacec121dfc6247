using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using TorchSharp;

namespace LlavaInterp.Native;

/// <summary>The libtorch this process runs on.</summary>
/// <param name="ExpectedVersion">The libtorch version TorchSharp was built against (<c>torch.__version__</c>).</param>
/// <param name="LoadedVersion">The loaded libtorch's <c>TORCH_VERSION</c>, or null when it cannot be read on this platform.</param>
/// <param name="LoadedPath">The loaded <c>libtorch_cpu</c> library, or null when not found.</param>
/// <param name="CpuCapability">libtorch's kernel level (<c>AVX512</c>, <c>AVX2</c>, …), or null.</param>
public sealed record LibTorchReport(string ExpectedVersion, string? LoadedVersion, string? LoadedPath, string? CpuCapability);

/// <summary>The loaded libtorch is not the version TorchSharp supports.</summary>
public sealed class LibTorchVersionException(string message) : Exception(message);

/// <summary>
/// Checks that the libtorch the process loaded is the one TorchSharp was built for. A system libtorch found through
/// <c>LD_LIBRARY_PATH</c> (a PyTorch install, say) can be picked up instead of the NuGet one; TorchSharp does not notice,
/// and ops then fail or misbehave far from the cause.
/// </summary>
public static partial class LibTorchVersion
{
    private static readonly object Gate = new();
    private static LibTorchReport? _report;

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void ReturnsStdString(IntPtr result);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate void OperatorDelete(IntPtr block);

    /// <summary>
    /// Reads the loaded libtorch's version once (loading libtorch if nothing has yet) and throws when its major.minor
    /// differs from what TorchSharp expects. Where the version cannot be read (not x86-64 Linux), nothing is checked.
    /// </summary>
    /// <exception cref="LibTorchVersionException">The versions differ; the message names both and the loaded file.</exception>
    public static LibTorchReport Check()
    {
        LibTorchReport report;
        lock (Gate)
        {
            report = _report ??= Read();
        }

        if (WhyUnsupported(report.ExpectedVersion, report.LoadedVersion, report.LoadedPath) is { } why)
        {
            throw new LibTorchVersionException(why);
        }

        return report;
    }

    /// <summary>The version decision, separated from the machine for tests: null when supported, else the error message.</summary>
    public static string? WhyUnsupported(string expected, string? loaded, string? loadedPath)
    {
        ArgumentNullException.ThrowIfNull(expected);
        if (loaded is null || MajorMinor(expected) is not { } want || MajorMinor(loaded) is not { } have || want == have)
        {
            return null;
        }

        return $"TorchSharp {typeof(torch).Assembly.GetName().Version?.ToString(3)} needs libtorch {want.Major}.{want.Minor}.x ({expected}), but the process loaded libtorch {loaded} from {loadedPath ?? "an unknown file"}. "
            + "Remove that folder from LD_LIBRARY_PATH (or reference the libtorch-cpu/cuda NuGet package of the right version) so the packaged libtorch is used.";
    }

    /// <summary>The <c>TORCH_VERSION=…</c> and <c>CPU capability usage: …</c> entries of <c>at::show_config()</c>'s text.</summary>
    public static (string? Version, string? CpuCapability) ParseConfig(string config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var version = TorchVersionPattern().Match(config);
        var capability = CapabilityPattern().Match(config);
        return (version.Success ? version.Groups[1].Value : null, capability.Success ? capability.Groups[1].Value.Trim() : null);
    }

    private static (int Major, int Minor)? MajorMinor(string version)
    {
        var m = MajorMinorPattern().Match(version);
        return m.Success ? (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)) : null;
    }

    private static LibTorchReport Read()
    {
        string expected = torch.__version__;
        if (!NativeRuntime.IsLinuxX64)
        {
            return new LibTorchReport(expected, null, null, null);
        }

        // Any op makes TorchSharp load its native libraries; then the mapped file tells which libtorch it got.
        using (torch.zeros(1))
        {
        }

        string? path = File.ReadLines("/proc/self/maps")
            .Select(l => l.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries))
            .Where(f => f.Length == 6)
            .Select(f => f[5].Trim())
            .FirstOrDefault(p => Path.GetFileName(p).StartsWith("libtorch_cpu.so", StringComparison.Ordinal));
        if (path is null || !NativeLibrary.TryLoad(path, out var lib))
        {
            return new LibTorchReport(expected, null, path, null);
        }

        string? config = ShowConfig(lib);
        var (version, capability) = config is null ? (null, null) : ParseConfig(config);
        return new LibTorchReport(expected, version, path, capability);
    }

    // at::show_config() returns a std::string (libstdc++'s C++11 layout: pointer, length, 16-byte inline buffer); the
    // x86-64 System V ABI returns it through a hidden pointer to caller memory.
    private static string? ShowConfig(IntPtr lib)
    {
        if (!NativeLibrary.TryGetExport(lib, "_ZN2at11show_configB5cxx11Ev", out var fn))
        {
            return null;
        }

        var result = Marshal.AllocHGlobal(32);
        try
        {
            Marshal.GetDelegateForFunctionPointer<ReturnsStdString>(fn)(result);
            var data = Marshal.ReadIntPtr(result);
            long length = Marshal.ReadInt64(result, 8);
            string text = Marshal.PtrToStringUTF8(data, checked((int)length));
            if (data != result + 16 && NativeLibrary.TryLoad("libstdc++.so.6", out var std) && NativeLibrary.TryGetExport(std, "_ZdlPv", out var delete))
            {
                Marshal.GetDelegateForFunctionPointer<OperatorDelete>(delete)(data);
            }

            return text;
        }
        finally
        {
            Marshal.FreeHGlobal(result);
        }
    }

    [GeneratedRegex(@"TORCH_VERSION=([0-9][^,\s]*)")]
    private static partial Regex TorchVersionPattern();

    [GeneratedRegex(@"CPU capability usage:\s*([^\r\n]+)")]
    private static partial Regex CapabilityPattern();

    [GeneratedRegex(@"^\s*(\d+)\.(\d+)")]
    private static partial Regex MajorMinorPattern();
}
