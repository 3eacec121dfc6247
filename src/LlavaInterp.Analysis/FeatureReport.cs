using LlavaInterp.Sae;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace LlavaInterp.Analysis;

/// <summary>The top features of one image, or of one class of images.</summary>
/// <param name="Label">The image path, or the class name.</param>
/// <param name="Images">The images it covers.</param>
/// <param name="IsClass">Whether <paramref name="Label"/> is a class.</param>
/// <param name="Features">The ranking, largest first.</param>
public sealed record FeatureResult(string Label, IReadOnlyList<string> Images, bool IsClass, IReadOnlyList<RankedFeature> Features);

/// <summary>Prints rankings as the research's table, as JSON lines, CSV or Markdown.</summary>
public static class FeatureReport
{
    /// <summary>JSON options for every machine-readable output: UTF-8 text kept readable, no indentation.</summary>
    public static JsonSerializerOptions Json { get; } = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// The research's layout: the image (or class) on its first row, then one row per feature with its index,
    /// activation and description.
    /// </summary>
    public static void WriteTable(TextWriter output, IEnumerable<FeatureResult> results)
    {
        var list = results.ToList();
        string first = list.Count > 0 && list.All(r => r.IsClass) ? "CLASS" : "IMAGE";
        var rows = new List<IReadOnlyList<string>>();
        foreach (var r in list)
        {
            string label = r.IsClass ? r.Label : Path.GetFileName(r.Label);
            if (r.Features.Count == 0)
            {
                rows.Add([label, "-", "-", "(no feature left)"]);
            }

            for (int i = 0; i < r.Features.Count; i++)
            {
                var f = r.Features[i];
                rows.Add([i == 0 ? label : string.Empty, f.Index.ToString(CultureInfo.InvariantCulture), Number(f.Activation), f.Description ?? "(no description)"]);
            }
        }

        TextTable.Write(output, [first, "FEATURE", "ACTIVATION", "DESCRIPTION"], rows, new HashSet<int> { 1, 2 });
    }

    /// <summary>One JSON object per line: <c>{"image"|"class": …, "features": [{"index", "activation", "description"}]}</c>.</summary>
    public static void WriteJsonLines(TextWriter output, IEnumerable<FeatureResult> results)
    {
        foreach (var r in results)
        {
            using var buffer = new MemoryStream();
            using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = Json.Encoder }))
            {
                json.WriteStartObject();
                if (r.IsClass)
                {
                    json.WriteString("class", r.Label);
                    json.WriteStartArray("images");
                    foreach (var image in r.Images)
                    {
                        json.WriteStringValue(image);
                    }

                    json.WriteEndArray();
                }
                else
                {
                    json.WriteString("image", r.Label);
                }

                json.WriteStartArray("features");
                foreach (var f in r.Features)
                {
                    json.WriteStartObject();
                    json.WriteNumber("index", f.Index);
                    json.WriteNumber("activation", f.Activation);
                    if (f.Description is null)
                    {
                        json.WriteNull("description");
                    }
                    else
                    {
                        json.WriteString("description", f.Description);
                    }

                    json.WriteEndObject();
                }

                json.WriteEndArray();
                json.WriteEndObject();
            }

            output.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
        }
    }

    /// <summary>A CSV field, quoted when needed (RFC 4180).</summary>
    public static string Csv(string field) =>
        field.IndexOfAny([',', '"', '\n', '\r']) >= 0 ? "\"" + field.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"" : field;

    /// <summary>A Markdown table cell (pipes escaped, line breaks removed).</summary>
    public static string MarkdownCell(string text) =>
        text.Replace("|", "\\|", StringComparison.Ordinal).Replace('\n', ' ').Replace('\r', ' ');

    /// <summary>An activation as printed: 4 significant decimals, invariant culture.</summary>
    public static string Number(double value) => value.ToString("0.0000", CultureInfo.InvariantCulture);

    /// <summary>Text with control characters made visible, for one-line display of generated text.</summary>
    public static string Visible(string text)
    {
        var sb = new StringBuilder(text.Length);
        foreach (char c in text)
        {
            sb.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                _ when char.IsControl(c) => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }

        return sb.ToString();
    }
}
