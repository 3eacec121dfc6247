using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;

namespace LlavaInterp.Native;

/// <summary>What <see cref="NativeRuntime.Initialize"/> did.</summary>
/// <param name="CpuVendor">The x86 CPUID vendor string (<c>GenuineIntel</c>, <c>AuthenticAMD</c>, …), or empty off x86.</param>
/// <param name="MklShimApplied">Whether the MKL CPU-check shim was loaded.</param>
/// <param name="Reason">Why it was or was not.</param>
public sealed record NativeRuntimeReport(string CpuVendor, bool MklShimApplied, string Reason);

/// <summary>
/// Native set-up that must happen before TorchSharp loads libtorch. On x86-64 Linux CPUs that are not Intel's, the
/// oneMKL inside libtorch takes a slow fp32 GEMM path (measured 2.3× slower on AMD EPYC); a tiny library shipped in this
/// package (<c>runtimes/linux-x64/native/libllavainterp_mklshim.so</c>, exporting <c>mkl_serv_intel_cpu_true</c>)
/// loaded with <c>RTLD_NOW | RTLD_GLOBAL</c> first makes MKL take its AVX2/AVX-512 kernels. It changes which kernels
/// run, never the model's arithmetic definition.
/// </summary>
/// <remarks>
/// Call <see cref="Initialize"/> first thing in the process, before any TorchSharp call; later calls return the first
/// report. <c>LLAVAINTERP_MKL_SHIM=0</c> disables the shim, <c>=1</c> loads it on any x86-64 Linux CPU (for testing;
/// on Intel it is a no-op because MKL's own check already says yes).
/// </remarks>
public static class NativeRuntime
{
    /// <summary>File name of the shim in the package's native assets.</summary>
    public const string MklShimFileName = "libllavainterp_mklshim.so";

    /// <summary>Environment variable: <c>0</c> never loads the shim, <c>1</c> always does (x86-64 Linux only).</summary>
    public const string MklShimVariable = "LLAVAINTERP_MKL_SHIM";

    private const int RtldNow = 0x2;
    private const int RtldGlobal = 0x100;
    private static readonly object Gate = new();
    private static NativeRuntimeReport? _report;

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate IntPtr DlOpen([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    /// <summary>Whether this process runs on x86-64 Linux, the platform the package's native shims are built for.</summary>
    public static bool IsLinuxX64 => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>Applies the native set-up once (see the type's remarks) and says what it did.</summary>
    public static NativeRuntimeReport Initialize()
    {
        lock (Gate)
        {
            return _report ??= Apply();
        }
    }

    /// <summary>The CPUID vendor string on x86, otherwise empty.</summary>
    public static string CpuVendor()
    {
        if (!X86Base.IsSupported)
        {
            return string.Empty;
        }

        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        var bytes = new byte[12];
        BitConverter.TryWriteBytes(bytes.AsSpan(0, 4), ebx);
        BitConverter.TryWriteBytes(bytes.AsSpan(4, 4), edx);
        BitConverter.TryWriteBytes(bytes.AsSpan(8, 4), ecx);
        return Encoding.ASCII.GetString(bytes);
    }

    /// <summary>The shim decision, separated from the machine for tests: null when it applies, else why not.</summary>
    /// <param name="isLinuxX64">Whether this is x86-64 Linux (the only shipped build).</param>
    /// <param name="vendor">The CPUID vendor string.</param>
    /// <param name="setting">The value of <see cref="MklShimVariable"/>, or null.</param>
    public static string? WhyNotApplyMklShim(bool isLinuxX64, string vendor, string? setting)
    {
        if (!isLinuxX64)
        {
            return "not x86-64 Linux";
        }

        return setting switch
        {
            "0" => $"{MklShimVariable}=0",
            "1" => null,
            _ when vendor == "GenuineIntel" => "Intel CPU: MKL already takes its fast path",
            _ => null,
        };
    }

    /// <summary>Where the shim is looked for: next to the app, then in its <c>runtimes/linux-x64/native</c> folder.</summary>
    public static IEnumerable<string> MklShimCandidates() => LibraryCandidates(MklShimFileName, typeof(NativeRuntime).Assembly);

    /// <summary>
    /// Where a native library shipped in a package's <c>runtimes/linux-x64/native</c> folder is looked for: next to the
    /// application and next to <paramref name="owner"/>, each directly and in that folder (a project reference copies
    /// it into the folder; a published app may flatten it).
    /// </summary>
    /// <param name="fileName">The library's file name.</param>
    /// <param name="owner">The assembly that ships it.</param>
    public static IEnumerable<string> LibraryCandidates(string fileName, System.Reflection.Assembly owner)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        ArgumentNullException.ThrowIfNull(owner);
        foreach (var dir in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(owner.Location) })
        {
            if (string.IsNullOrEmpty(dir))
            {
                continue;
            }

            yield return Path.Combine(dir, fileName);
            yield return Path.Combine(dir, "runtimes", "linux-x64", "native", fileName);
        }
    }

    private static NativeRuntimeReport Apply()
    {
        string vendor = CpuVendor();
        string? whyNot = WhyNotApplyMklShim(IsLinuxX64, vendor, Environment.GetEnvironmentVariable(MklShimVariable));
        if (whyNot is not null)
        {
            return new NativeRuntimeReport(vendor, false, whyNot);
        }

        string? path = MklShimCandidates().FirstOrDefault(File.Exists);
        if (path is null)
        {
            return new NativeRuntimeReport(vendor, false, $"{MklShimFileName} not found next to the application");
        }

        if (!NativeLibrary.TryLoad("libc.so.6", out var libc) || !NativeLibrary.TryGetExport(libc, "dlopen", out var dlopenPtr))
        {
            return new NativeRuntimeReport(vendor, false, "dlopen not found in libc.so.6");
        }

        var dlopen = Marshal.GetDelegateForFunctionPointer<DlOpen>(dlopenPtr);
        var handle = dlopen(path, RtldNow | RtldGlobal);
        return handle == IntPtr.Zero
            ? new NativeRuntimeReport(vendor, false, $"dlopen failed for {path}")
            : new NativeRuntimeReport(vendor, true, $"loaded {path}");
    }
}
