using System.Text.Json;
using System.Text.Json.Serialization;

namespace LlavaInterp.Models.Gemma;

/// <summary>Reads a JSON integer, array of integers or null (as HF writes <c>eos_token_id</c>) into an array.</summary>
internal sealed class IntOrIntArrayConverter : JsonConverter<int[]?>
{
    public override int[]? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return null;
            case JsonTokenType.Number:
                return [reader.GetInt32()];
            case JsonTokenType.StartArray:
                var list = new List<int>();
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    if (reader.TokenType != JsonTokenType.Number)
                    {
                        throw new JsonException("expected an integer in the token id list.");
                    }

                    list.Add(reader.GetInt32());
                }

                return list.ToArray();
            default:
                throw new JsonException($"expected an integer or a list of integers, found {reader.TokenType}.");
        }
    }

    public override void Write(Utf8JsonWriter writer, int[]? value, JsonSerializerOptions options)
    {
        if (value is null)
        {
            writer.WriteNullValue();
        }
        else if (value.Length == 1)
        {
            writer.WriteNumberValue(value[0]);
        }
        else
        {
            writer.WriteStartArray();
            foreach (var v in value)
            {
                writer.WriteNumberValue(v);
            }

            writer.WriteEndArray();
        }
    }
}
