using System.IO.Compression;
using System.Xml.Linq;
using LlavaInterp.Tests.Support;

namespace LlavaInterp.Tests.Packaging;

/// <summary>
/// The <c>llava-interp</c> .NET tool package that <c>./build.sh test</c> packs into <c>artifacts/packages</c> before the
/// tests run. Packing here again would recompress half a gigabyte of libtorch (over a minute), so the test reads the
/// package the build made, and checks that it is this build's by comparing its entry assembly with the one next to the tests.
/// </summary>
public sealed class ToolPackageTests
{
    private const string ToolFolder = "tools/net10.0/any/";

    private static string PackagePath(string id = "LlavaInterp.Cli")
    {
        string version = typeof(LlavaInterp.Cli.Cli).Assembly.GetName().Version is { } v ? $"{v.Major}.{v.Minor}.{v.Build}" : "0.1.0";
        string path = Path.Combine(Repo.Root(), "artifacts", "packages", $"{id}.{version}.nupkg");
        Assert.True(File.Exists(path), $"{path} is missing: run ./build.sh test, which packs the solution (dotnet pack LlavaInterp.sln -c Release --no-build -o artifacts/packages) before testing.");
        return path;
    }

    [Fact]
    public void TheToolPackageHoldsTheEntryPointNativeLibrariesAndTheTinyModel()
    {
        using var package = ZipFile.OpenRead(PackagePath());
        var names = package.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);

        // The package is this build's: its entry assembly is the one the tests run (the build is deterministic).
        var entry = package.GetEntry(ToolFolder + "llava-interp.dll");
        Assert.NotNull(entry);
        using (var packed = new MemoryStream())
        {
            using (var s = entry.Open())
            {
                s.CopyTo(packed);
            }

            Assert.True(
                packed.ToArray().AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "llava-interp.dll"))),
                "artifacts/packages holds a tool package of another build: run ./build.sh test.");
        }

        // dotnet tool install reads the command from DotnetToolSettings.xml.
        using (var settings = package.GetEntry(ToolFolder + "DotnetToolSettings.xml")!.Open())
        {
            var command = XDocument.Load(settings).Descendants("Command").Single();
            Assert.Equal("llava-interp", command.Attribute("Name")?.Value);
            Assert.Equal("llava-interp.dll", command.Attribute("EntryPoint")?.Value);
        }

        // The nuspec declares a tool package under the right id.
        var nuspec = package.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using (var s = nuspec.Open())
        {
            var doc = XDocument.Load(s);
            Assert.Equal("LlavaInterp.Cli", doc.Descendants().Single(e => e.Name.LocalName == "id").Value);
            Assert.Contains(doc.Descendants().Where(e => e.Name.LocalName == "packageType"), t => t.Attribute("name")?.Value == "DotnetTool");
        }

        // libtorch and SkiaSharp travel with the tool, and so does every file of the shipped tiny model: `demo` runs offline.
        Assert.Contains(ToolFolder + "runtimes/linux-x64/native/libtorch_cpu.so", names);
        Assert.Contains(ToolFolder + "runtimes/linux-x64/native/libLibTorchSharp.so", names);
        Assert.Contains(ToolFolder + "runtimes/linux-x64/native/libSkiaSharp.so", names);
        Assert.Contains(ToolFolder + "runtimes/linux-x64/native/libllavainterp_mklshim.so", names);
        Assert.Contains(ToolFolder + "runtimes/linux-x64/native/libllavainterp_jpeg.so", names);
        string data = Path.Combine(Repo.Root(), "samples", "data");
        var shipped = Directory.EnumerateFiles(data, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(data, f).Replace('\\', '/')).ToList();
        Assert.Contains("tiny-llava-gemma/model/model.safetensors", shipped);
        Assert.Contains("tiny-llava-gemma/sae/standard-L2/cfg.json", shipped);
        Assert.All(shipped, f => Assert.Contains(ToolFolder + "data/" + f, names));
    }

    [Fact]
    public void TheClipPackageShipsTheJpegShimWithLibJpegTurbosLicences()
    {
        // dotnet add package users get the shim from the package's runtimes folder, and libjpeg-turbo's notices with it.
        using var package = ZipFile.OpenRead(PackagePath("LlavaInterp.Models.Clip"));
        var names = package.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
        Assert.Contains("runtimes/linux-x64/native/libllavainterp_jpeg.so", names);
        Assert.Contains("licenses/libjpeg-turbo-LICENSE.md", names);
        Assert.Contains("licenses/libjpeg-README.ijg", names);
    }
}
