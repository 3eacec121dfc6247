using LlavaInterp.Analysis;

namespace LlavaInterp.Samples;

/// <summary>Writes rows as a table with aligned columns; numeric columns are right-aligned (see <see cref="TextTable"/>).</summary>
public static class ConsoleTable
{
    /// <summary>Writes the header, a rule and the rows.</summary>
    public static void Write(TextWriter output, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows, IReadOnlySet<int>? rightAligned = null) =>
        TextTable.Write(output, header, rows, rightAligned);
}
