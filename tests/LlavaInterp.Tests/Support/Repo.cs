namespace LlavaInterp.Tests.Support;

/// <summary>The repository the tests were built from.</summary>
public static class Repo
{
    /// <summary>The folder of <c>LlavaInterp.sln</c>, found above the test binaries.</summary>
    public static string Root()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "LlavaInterp.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new DirectoryNotFoundException("LlavaInterp.sln not found above the test binaries.");
    }
}
