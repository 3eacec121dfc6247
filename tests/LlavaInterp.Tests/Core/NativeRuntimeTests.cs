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
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != System.Runtime.InteropServices.Architecture.X64)
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
}
