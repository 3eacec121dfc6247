using System.Text.Json;
using LlavaInterp.Configuration;

namespace LlavaInterp.Models.Gemma;

/// <summary>
/// Reads the JSON files of a Hugging Face tokenizer folder into the settings <see cref="GemmaTokenizer"/> needs,
/// following <c>PreTrainedTokenizerBase._from_pretrained</c> (transformers 4.46): when <c>tokenizer_config.json</c>
/// has <c>added_tokens_decoder</c> it is authoritative; otherwise (legacy folders) <c>special_tokens_map.json</c>
/// overrides the config's special tokens and <c>added_tokens.json</c> supplies the added tokens.
/// </summary>
internal sealed class TokenizerFolder
{
    /// <summary>Special-token attributes in the order Hugging Face lists them (<c>SPECIAL_TOKENS_ATTRIBUTES</c>).</summary>
    internal static readonly string[] SpecialTokenKeys = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    /// <summary>GemmaTokenizer's constructor defaults, used when a key is absent (an explicit null stays null).</summary>
    private static readonly Dictionary<string, string> GemmaDefaults = new()
    {
        ["bos_token"] = "<bos>",
        ["eos_token"] = "<eos>",
        ["unk_token"] = "<unk>",
        ["pad_token"] = "<pad>",
    };

    public const string ModelFileName = "tokenizer.model";
    public const string ConfigFileName = "tokenizer_config.json";
    public const string SpecialTokensMapFileName = "special_tokens_map.json";
    public const string AddedTokensFileName = "added_tokens.json";
    public const string ChatTemplateFileName = "chat_template.json";

    public bool AddBosToken { get; private set; } = true;

    public bool AddEosToken { get; private set; }

    /// <summary>Special token text per attribute key (null when the attribute is unset).</summary>
    public Dictionary<string, string?> SpecialTokens { get; } = new();

    /// <summary>Added tokens in file order, without ids resolved for special tokens missing from them.</summary>
    public List<GemmaAddedToken> AddedTokens { get; } = new();

    public List<string> AdditionalSpecialTokens { get; } = new();

    public string? ChatTemplate { get; private set; }

    /// <summary>The folder's <c>tokenizer.model</c> (named in errors found while encoding).</summary>
    public string ModelPath { get; private set; } = ModelFileName;

    /// <summary>The file the chat template came from (named when the template cannot be used).</summary>
    public string? ChatTemplatePath { get; private set; }

    public static TokenizerFolder Read(string folder)
    {
        var result = new TokenizerFolder { ModelPath = Path.Combine(folder, ModelFileName) };
        foreach (var (key, value) in GemmaDefaults)
        {
            result.SpecialTokens[key] = value;
        }

        string configPath = Path.Combine(folder, ConfigFileName);
        JsonElement? config = File.Exists(configPath) ? ReadJson(configPath) : null;
        bool hasAddedTokensDecoder = false;
        if (config is { } cfg)
        {
            if (cfg.ValueKind != JsonValueKind.Object)
            {
                throw new TokenizerException(configPath, null, "expected a JSON object.");
            }

            result.AddBosToken = GetBool(cfg, "add_bos_token", configPath) ?? true;
            result.AddEosToken = GetBool(cfg, "add_eos_token", configPath) ?? false;
            result.ReadSpecialTokens(cfg, configPath);
            if (cfg.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind != JsonValueKind.Null)
            {
                hasAddedTokensDecoder = true;
                result.ReadAddedTokensDecoder(decoder, configPath);
            }

            if (cfg.TryGetProperty("chat_template", out var template))
            {
                result.ChatTemplate = ReadChatTemplate(template, configPath);
                result.ChatTemplatePath = configPath;
            }
        }

        if (!hasAddedTokensDecoder)
        {
            string mapPath = Path.Combine(folder, SpecialTokensMapFileName);
            if (File.Exists(mapPath))
            {
                var map = ReadJson(mapPath);
                if (map.ValueKind != JsonValueKind.Object)
                {
                    throw new TokenizerException(mapPath, null, "expected a JSON object.");
                }

                result.ReadSpecialTokens(map, mapPath);
            }

            string addedPath = Path.Combine(folder, AddedTokensFileName);
            if (File.Exists(addedPath))
            {
                result.ReadAddedTokensJson(ReadJson(addedPath), addedPath);
            }
        }

        if (result.ChatTemplate is null)
        {
            string templatePath = Path.Combine(folder, ChatTemplateFileName);
            if (File.Exists(templatePath))
            {
                var doc = ReadJson(templatePath);
                if (doc.ValueKind != JsonValueKind.Object || !doc.TryGetProperty("chat_template", out var t))
                {
                    throw new TokenizerException(templatePath, "chat_template", "expected an object with a 'chat_template' string.");
                }

                result.ChatTemplate = ReadChatTemplate(t, templatePath);
                result.ChatTemplatePath = templatePath;
            }
        }

        return result;
    }

    private void ReadSpecialTokens(JsonElement obj, string path)
    {
        foreach (string key in SpecialTokenKeys)
        {
            if (obj.TryGetProperty(key, out var value))
            {
                SpecialTokens[key] = TokenContent(value, path, key, allowNull: true);
            }
        }

        if (obj.TryGetProperty("additional_special_tokens", out var extra) && extra.ValueKind != JsonValueKind.Null)
        {
            if (extra.ValueKind != JsonValueKind.Array)
            {
                throw new TokenizerException(path, "additional_special_tokens", "expected an array.");
            }

            AdditionalSpecialTokens.Clear();
            foreach (var item in extra.EnumerateArray())
            {
                string content = TokenContent(item, path, "additional_special_tokens", allowNull: false)!;
                if (!AdditionalSpecialTokens.Contains(content))
                {
                    AdditionalSpecialTokens.Add(content);
                }
            }
        }
    }

    private void ReadAddedTokensDecoder(JsonElement decoder, string path)
    {
        const string key = "added_tokens_decoder";
        if (decoder.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerException(path, key, "expected an object mapping ids to tokens.");
        }

        foreach (var property in decoder.EnumerateObject())
        {
            string entryKey = $"{key}.{property.Name}";
            if (!int.TryParse(property.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id))
            {
                throw new TokenizerException(path, entryKey, "the id is not a non-negative integer.");
            }

            var token = property.Value;
            if (token.ValueKind != JsonValueKind.Object)
            {
                throw new TokenizerException(path, entryKey, "expected an AddedToken object.");
            }

            string content = GetString(token, "content", path, entryKey)
                ?? throw new TokenizerException(path, entryKey + ".content", "missing.");
            AddedTokens.Add(new GemmaAddedToken(
                id,
                content,
                Special: GetBool(token, "special", path, entryKey) ?? false,
                LStrip: GetBool(token, "lstrip", path, entryKey) ?? false,
                RStrip: GetBool(token, "rstrip", path, entryKey) ?? false,
                SingleWord: GetBool(token, "single_word", path, entryKey) ?? false,
                Normalized: GetBool(token, "normalized", path, entryKey) ?? false));
        }
    }

    private void ReadAddedTokensJson(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerException(path, null, "expected an object mapping tokens to ids.");
        }

        var special = new HashSet<string>(AdditionalSpecialTokens);
        foreach (var value in SpecialTokens.Values)
        {
            if (value is not null)
            {
                special.Add(value);
            }
        }

        foreach (var property in root.EnumerateObject())
        {
            if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetInt32(out int id) || id < 0)
            {
                throw new TokenizerException(path, property.Name, "the id is not a non-negative integer.");
            }

            bool isSpecial = special.Contains(property.Name);
            AddedTokens.RemoveAll(t => t.Id == id);
            AddedTokens.Add(new GemmaAddedToken(id, property.Name, isSpecial, Normalized: !isSpecial));
        }
    }

    private static string? ReadChatTemplate(JsonElement template, string path)
    {
        switch (template.ValueKind)
        {
            case JsonValueKind.Null:
                return null;
            case JsonValueKind.String:
                return template.GetString();
            case JsonValueKind.Array:
                // Named templates: Hugging Face uses the one called "default".
                foreach (var item in template.EnumerateArray())
                {
                    if (item.ValueKind == JsonValueKind.Object
                        && item.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String && name.GetString() == "default"
                        && item.TryGetProperty("template", out var body) && body.ValueKind == JsonValueKind.String)
                    {
                        return body.GetString();
                    }
                }

                return null;
            default:
                throw new TokenizerException(path, "chat_template", $"expected a string or a list of named templates, found {template.ValueKind}.");
        }
    }

    private static string? TokenContent(JsonElement value, string path, string key, bool allowNull)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                return value.GetString();
            case JsonValueKind.Object:
                return GetString(value, "content", path, key) ?? throw new TokenizerException(path, key + ".content", "missing.");
            case JsonValueKind.Null when allowNull:
                return null;
            default:
                throw new TokenizerException(path, key, $"expected a string or an AddedToken object, found {value.ValueKind}.");
        }
    }

    private static JsonElement ReadJson(string path)
    {
        try
        {
            // The config parser's checks: repeated keys and text that is not valid Unicode are errors, not surprises.
            using var doc = HfConfigLoader.ParseDocument(File.ReadAllText(path), path, new JsonDocumentOptions { AllowTrailingCommas = true });
            return doc.RootElement.Clone();
        }
        catch (ConfigException e)
        {
            throw new TokenizerException(path, e.Key, e.Detail, e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerException(path, null, $"cannot be read: {e.Message}", e);
        }
    }

    private static bool? GetBool(JsonElement obj, string name, string path, string? parentKey = null)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new TokenizerException(path, parentKey is null ? name : $"{parentKey}.{name}", $"expected true or false, found {value.ValueKind}."),
        };
    }

    private static string? GetString(JsonElement obj, string name, string path, string parentKey)
    {
        if (!obj.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw new TokenizerException(path, $"{parentKey}.{name}", $"expected a string, found {value.ValueKind}.");
    }
}
