using System.Runtime.InteropServices;
using LlavaInterp.Native;

namespace LlavaInterp.Tests.Core;

public sealed class NativeRuntimeTests
{
    [Theory]
    [InlineData(true, "AuthenticAMD", null, true)]
    [InlineData(true, "HygonGenuine", null, true)]
    [InlineData(true, "GenuineIntel", null, false)]
    [InlineData(true, "GenuineIntel", "1", true)]
    [InlineData(true, "AuthenticAMD", "0", false)]
    [InlineData(false, "AuthenticAMD", "1", false)]
    [InlineData(false, "", null, false)]
    public void TheShimIsAppliedOnlyOnNonIntelX64LinuxUnlessOverridden(bool linuxX64, string vendor, string? setting, bool applies)
    {
        string? whyNot = NativeRuntime.WhyNotApplyMklShim(linuxX64, vendor, setting);
        Assert.Equal(applies, whyNot is null);
    }

    [Fact]
    public void InitializeReportsTheVendorAndIsIdempotent()
    {
        var first = NativeRuntime.Initialize();
        Assert.Same(first, NativeRuntime.Initialize());
        Assert.Equal(NativeRuntime.CpuVendor(), first.CpuVendor);
        Assert.False(string.IsNullOrEmpty(first.Reason));
    }

    [Fact]
    public void TheShippedShimIsNextToTheAppAndAnswersYes()
    {
        if (!NativeRuntime.IsLinuxX64)
        {
            return;
        }

        string path = Assert.Single(NativeRuntime.MklShimCandidates().Where(File.Exists).Distinct());
        var handle = NativeLibrary.Load(path);
        try
        {
            var answer = Marshal.GetDelegateForFunctionPointer<IntQuery>(NativeLibrary.GetExport(handle, "mkl_serv_intel_cpu_true"));
            Assert.Equal(1, answer());
        }
        finally
        {
            NativeLibrary.Free(handle);
        }
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    private delegate int IntQuery();

    [Theory]
    [InlineData("2.10.0.0", "2.10.0", true)]
    [InlineData("2.10.0.0", "2.10.1+cpu", true)]
    [InlineData("2.10.0.0", "2.6.0", false)]
    [InlineData("2.10.0.0", "3.10.0", false)]
    [InlineData("2.10.0.0", null, true)]
    public void OnlyTheLibTorchMinorVersionTorchSharpWasBuiltForIsAccepted(string expected, string? loaded, bool accepted)
    {
        string? why = LibTorchVersion.WhyUnsupported(expected, loaded, "/usr/lib/libtorch_cpu.so");
        Assert.Equal(accepted, why is null);
        if (why is not null)
        {
            // The message names both versions and the file that was loaded.
            Assert.Contains("2.10.x", why, StringComparison.Ordinal);
            Assert.Contains(loaded!, why, StringComparison.Ordinal);
            Assert.Contains("/usr/lib/libtorch_cpu.so", why, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ShowConfigTextGivesTheVersionAndKernelLevel()
    {
        const string Config = "PyTorch built with:\n  - CPU capability usage: AVX2\n  - Build settings: BLAS_INFO=mkl, TORCH_VERSION=2.6.0, USE_CUDA=0, \n";
        Assert.Equal(("2.6.0", "AVX2"), LibTorchVersion.ParseConfig(Config));
        Assert.Equal((null, null), LibTorchVersion.ParseConfig("nothing here"));
    }

    [Fact]
    public void TheLoadedLibTorchIsReadAndSupported()
    {
        var report = LibTorchVersion.Check();
        Assert.Equal(TorchSharp.torch.__version__, report.ExpectedVersion);
        if (NativeRuntime.IsLinuxX64)
        {
            Assert.NotNull(report.LoadedPath);
            Assert.NotNull(report.CpuCapability);
            Assert.StartsWith(string.Join('.', report.ExpectedVersion.Split('.').Take(2)) + ".", report.LoadedVersion + ".", StringComparison.Ordinal);
        }
    }
}
