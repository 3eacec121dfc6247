using LlavaInterp.Analysis;
using Spectre.Console;

namespace LlavaInterp.Samples;

/// <summary>
/// Writes rows as a table: a Spectre.Console table on an interactive console, else plain aligned columns (numeric
/// columns right-aligned, see <see cref="TextTable"/>) so that redirected output stays stable for tools and tests.
/// </summary>
public static class ConsoleTable
{
    /// <summary>Writes the header, a rule and the rows.</summary>
    public static void Write(TextWriter output, IReadOnlyList<string> header, IEnumerable<IReadOnlyList<string>> rows, IReadOnlySet<int>? rightAligned = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(rows);
        if (!IsInteractive(output))
        {
            TextTable.Write(output, header, rows, rightAligned);
            return;
        }

        var table = new Table().Border(TableBorder.Rounded);
        for (int i = 0; i < header.Count; i++)
        {
            var column = new TableColumn(Markup.Escape(header[i]));
            table.AddColumn(rightAligned?.Contains(i) == true ? column.RightAligned() : column);
        }

        foreach (var row in rows)
        {
            table.AddRow(row.Select(cell => (Spectre.Console.Rendering.IRenderable)new Text(cell)).ToArray());
        }

        AnsiConsole.Write(table);
    }

    /// <summary>Whether <paramref name="output"/> is the process's standard output on a terminal.</summary>
    public static bool IsInteractive(TextWriter output) => ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected;
}
