using System.Text;
using System.Text.Json.Nodes;
using CsCheck;

namespace LlavaInterp.Tests.Fuzz;

/// <summary>
/// One edit of a seed file. Every field is a plain number so CsCheck can shrink a failing case towards the smallest
/// edit; <see cref="Position"/> is a fraction of the file (or of its "hot" header region) so one mutation means the
/// same thing on any seed.
/// </summary>
public readonly record struct ByteEdit(ByteEditKind Kind, double Position, int Length, int Value, bool InHotRegion)
{
    /// <summary>Bytes that are structural in the formats we parse (JSON, numbers, zip/PNG/JPEG markers).</summary>
    private static readonly byte[] Interesting = [0x00, 0xFF, 0x7F, 0x80, 0x01, (byte)'"', (byte)'{', (byte)'}', (byte)',', (byte)'[', (byte)']', (byte)'9', (byte)'-', (byte)'\\', (byte)'\n', 0xC0, 0xED];

    /// <summary>Little-endian integers that break length and offset fields.</summary>
    private static readonly ulong[] InterestingWords = [0, ulong.MaxValue, int.MaxValue, 0x80000000, 1UL << 40, 0x7FFF_FFFF_FFFF_FFFF, 0xFFFF, 0x10000, 1];

    /// <summary>Applies the edit to <paramref name="data"/> (hot region: the first <paramref name="hotLength"/> bytes, 0 = whole file).</summary>
    public byte[] Apply(byte[] data, int hotLength)
    {
        int span = InHotRegion && hotLength > 0 ? Math.Min(hotLength, data.Length) : data.Length;
        int pos = span == 0 ? 0 : Math.Clamp((int)(Position * span), 0, span - 1);
        int len = Math.Clamp(Length, 1, Math.Max(1, data.Length - pos));
        var list = new List<byte>(data);
        switch (Kind)
        {
            case ByteEditKind.FlipBit when data.Length > 0:
                list[pos] ^= (byte)(1 << (Value & 7));
                break;
            case ByteEditKind.SetInterestingByte when data.Length > 0:
                list[pos] = Interesting[Value % Interesting.Length];
                break;
            case ByteEditKind.Truncate:
                list.RemoveRange(pos, data.Length - pos);
                break;
            case ByteEditKind.DeleteRange when data.Length > 0:
                list.RemoveRange(pos, len);
                break;
            case ByteEditKind.InsertBytes:
                var rng = new Random(Value);
                var inserted = new byte[Length];
                rng.NextBytes(inserted);
                list.InsertRange(pos, inserted);
                break;
            case ByteEditKind.DuplicateRange when data.Length > 0:
                list.InsertRange(pos, list.GetRange(pos, len));
                break;
            case ByteEditKind.OverwriteWord when data.Length > 0:
                ulong word = InterestingWords[Value % InterestingWords.Length];
                int width = (Value & 1) == 0 ? 4 : 8;
                for (int i = 0; i < width && pos + i < list.Count; i++)
                {
                    list[pos + i] = (byte)(word >> (8 * i));
                }

                break;
        }

        return [.. list];
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Kind}@{Position:F4}{(InHotRegion ? "(hot)" : "")} len {Length} value {Value}";
}

/// <summary>What a <see cref="ByteEdit"/> does.</summary>
public enum ByteEditKind
{
    /// <summary>Flip one bit.</summary>
    FlipBit,

    /// <summary>Replace one byte with a structural byte.</summary>
    SetInterestingByte,

    /// <summary>Cut the file at the position.</summary>
    Truncate,

    /// <summary>Remove a range.</summary>
    DeleteRange,

    /// <summary>Insert random bytes.</summary>
    InsertBytes,

    /// <summary>Repeat a range in place.</summary>
    DuplicateRange,

    /// <summary>Overwrite 4 or 8 bytes with a boundary integer.</summary>
    OverwriteWord,
}

/// <summary>
/// One structural edit of a JSON document: a value replaced by a boundary literal (huge, negative, non-finite, wrong
/// type, invalid text), a member deleted, duplicated or renamed. Literals go in as raw text so the result can be JSON
/// that System.Text.Json itself would refuse to write (duplicate keys, lone surrogates, 1e400, NaN).
/// </summary>
public readonly record struct JsonEdit(JsonEditKind Kind, double Target, int Value)
{
    /// <summary>Raw JSON literals a value is replaced by.</summary>
    public static readonly string[] Literals =
    [
        "0", "-1", "1", "2", "0.5", "-0.0", "100000", "800000", "1000000000", "2147483647", "2147483648", "-2147483649",
        "9223372036854775807", "18446744073709551616", "1e308", "-1e308", "1e400", "1e-320", "NaN", "Infinity",
        "null", "true", "false", "\"\"", "\"x\"", "\"\\u0000\"", "\"\\ud800\"", "\"\\udfff\\ud800\"", "\"1\"", "[]", "[1,2,3]", "{}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "\"" + new string('a', 5000) + "\"",
    ];

    /// <summary>Applies the edit to the document <paramref name="json"/> and returns the file's new text.</summary>
    public string Apply(string json)
    {
        try
        {
            return ApplyToDocument(json);
        }
        catch (Exception ex) when (ex is System.Text.Json.JsonException or ArgumentException or InvalidOperationException)
        {
            // An earlier edit left text System.Text.Json refuses (bad syntax, duplicate keys, lone surrogates): keep it.
            return json;
        }
    }

    private string ApplyToDocument(string json)
    {
        var root = JsonNode.Parse(json);
        if (root is null)
        {
            return json;
        }

        var nodes = new List<JsonNode>();
        Collect(root, nodes);
        var node = nodes[Math.Clamp((int)(Target * nodes.Count), 0, nodes.Count - 1)];
        const string Marker = "\"__fuzz_marker__\"";
        string literal = Literals[Value % Literals.Length];
        switch (Kind)
        {
            case JsonEditKind.ReplaceValue when node.Parent is not null:
                Replace(node, JsonValue.Create("__fuzz_marker__"));
                return root.ToJsonString().Replace(Marker, literal, StringComparison.Ordinal);
            case JsonEditKind.ReplaceValue:
                return literal;
            case JsonEditKind.DeleteMember when node.Parent is JsonObject parentObject:
                parentObject.Remove(node.GetPropertyName());
                return root.ToJsonString();
            case JsonEditKind.DeleteMember when node.Parent is JsonArray parentArray:
                parentArray.Remove(node);
                return root.ToJsonString();
            case JsonEditKind.DuplicateMember when node.Parent is JsonObject:
            {
                // A second copy of the member with another value: "key": <literal>, "key": <original>.
                string name = node.GetPropertyName();
                Replace(node, JsonValue.Create("__fuzz_marker__"));
                string original = node.ToJsonString();
                string text = root.ToJsonString();
                string key = System.Text.Json.JsonSerializer.Serialize(name);
                return text.Replace(key + ":" + Marker, key + ":" + literal + "," + key + ":" + Marker, StringComparison.Ordinal).Replace(Marker, original, StringComparison.Ordinal);
            }

            case JsonEditKind.RenameMember when node.Parent is JsonObject renameParent:
            {
                string name = node.GetPropertyName();
                renameParent.Remove(name);
                string newName = (Value % 3) switch { 0 => name.ToUpperInvariant(), 1 => name + "_", _ => name.Length > 1 ? name[..^1] : "" };
                if (!renameParent.ContainsKey(newName))
                {
                    renameParent[newName] = node;
                }

                return root.ToJsonString();
            }

            default:
                return root.ToJsonString();
        }
    }

    private static void Replace(JsonNode node, JsonNode replacement)
    {
        switch (node.Parent)
        {
            case JsonObject o:
                o[node.GetPropertyName()] = replacement;
                break;
            case JsonArray a:
                a[node.GetElementIndex()] = replacement;
                break;
        }
    }

    private static void Collect(JsonNode node, List<JsonNode> into)
    {
        into.Add(node);
        switch (node)
        {
            case JsonObject o:
                foreach (var (_, child) in o.ToList())
                {
                    if (child is not null)
                    {
                        Collect(child, into);
                    }
                }

                break;
            case JsonArray a:
                foreach (var child in a.ToList())
                {
                    if (child is not null)
                    {
                        Collect(child, into);
                    }
                }

                break;
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Kind}@{Target:F4} {Literals[Value % Literals.Length][..Math.Min(24, Literals[Value % Literals.Length].Length)]}";
}

/// <summary>What a <see cref="JsonEdit"/> does.</summary>
public enum JsonEditKind
{
    /// <summary>Replace a value by a boundary literal.</summary>
    ReplaceValue,

    /// <summary>Remove an object member or array element.</summary>
    DeleteMember,

    /// <summary>Add a second member with the same name.</summary>
    DuplicateMember,

    /// <summary>Change a member's name (case, suffix, truncation).</summary>
    RenameMember,
}

/// <summary>A case: a few edits of one seed file.</summary>
public sealed record Mutation(ByteEdit[] ByteEdits, JsonEdit[] JsonEdits)
{
    // Declared first: static initializers run in text order.
    private static Gen<ByteEdit> ByteEditGen { get; } =
        Gen.Select(Gen.Enum<ByteEditKind>(), Gen.Double[0, 1], Gen.Int[1, 64], Gen.Int[0, 1 << 16], Gen.Bool, (k, p, l, v, h) => new ByteEdit(k, p, l, v, h));

    private static Gen<JsonEdit> JsonEditGen { get; } =
        Gen.Select(Gen.Frequency((6, Gen.Const(JsonEditKind.ReplaceValue)), (2, Gen.Const(JsonEditKind.DeleteMember)), (1, Gen.Const(JsonEditKind.DuplicateMember)), (1, Gen.Const(JsonEditKind.RenameMember))), Gen.Double[0, 1], Gen.Int[0, 1 << 16], (k, t, v) => new JsonEdit(k, t, v));

    /// <summary>Mutations of binary files: one to four byte edits.</summary>
    public static Gen<Mutation> Binary { get; } =
        ByteEditGen.Array[1, 4].Select(b => new Mutation(b, []));

    /// <summary>Mutations of JSON files: mostly structural edits, sometimes raw byte edits on top (broken syntax, invalid UTF-8).</summary>
    public static Gen<Mutation> Json { get; } =
        Gen.Select(JsonEditGen.Array[1, 3], Gen.Frequency((3, Gen.Const(Array.Empty<ByteEdit>())), (1, ByteEditGen.Array[1, 2])), (j, b) => new Mutation(b, j));

    /// <summary>The mutated file: JSON edits on the text first, then byte edits.</summary>
    public byte[] Apply(byte[] seed, int hotLength)
    {
        var bytes = seed;
        if (JsonEdits.Length > 0)
        {
            string text = Encoding.UTF8.GetString(seed);
            foreach (var edit in JsonEdits)
            {
                text = edit.Apply(text);
            }

            bytes = Encoding.UTF8.GetBytes(text);
        }

        foreach (var edit in ByteEdits)
        {
            bytes = edit.Apply(bytes, hotLength);
        }

        return bytes;
    }

    /// <inheritdoc/>
    public override string ToString() => string.Join("; ", JsonEdits.Select(e => e.ToString()).Concat(ByteEdits.Select(e => e.ToString())));
}
