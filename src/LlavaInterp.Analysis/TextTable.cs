using LlavaInterp.Sae;
namespace LlavaInterp.Analysis;

/// <summary>Writes rows as a table with aligned columns; numeric columns are right-aligned.</summary>
public static class TextTable
{
    /// <summary>Writes the header, a rule and the rows.</summary>
    public static void Write(TextWriter output, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows, IReadOnlySet<int>? rightAligned = null)
    {
        var all = rows.ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, all.Count == 0 ? 0 : all.Max(r => i < r.Count ? r[i].Length : 0))).ToArray();
        string Line(IReadOnlyList<string> cells) => string.Join("  ", cells.Select((c, i) =>
            i == cells.Count - 1 && (rightAligned is null || !rightAligned.Contains(i)) ? c
            : rightAligned is not null && rightAligned.Contains(i) ? c.PadLeft(widths[i]) : c.PadRight(widths[i]))).TrimEnd();
        output.WriteLine(Line(header));
        output.WriteLine(string.Join("  ", widths.Select(w => new string('-', w))));
        foreach (var row in all)
        {
            output.WriteLine(Line(row));
        }
    }
}
