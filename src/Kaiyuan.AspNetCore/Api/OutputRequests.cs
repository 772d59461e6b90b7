using System.Text.Json;
using Kaiyuan.Constraints;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>Each API's fields for a structured answer (response_format, grammar, json_schema, format, output_config), read into a grammar.</summary>
internal static class OutputRequests
{
    /// <summary>OpenAI's response_format, or llama.cpp's top-level grammar (GBNF) or json_schema; null: free text.</summary>
    public static OutputGrammar? FromOpenAi(JsonRequest r)
    {
        var found = new List<OutputGrammar>();
        if (r.Get("response_format") is { } format && StructuredOutput.Format(format, "response_format", "response_format") is { } requested) found.Add(requested);
        if (r.Get("json_schema") is { } jsonSchema) found.Add(StructuredOutput.Schema(jsonSchema, "json_schema", "json_schema"));
        if (r.Get("grammar") is { } grammar)
        {
            if (grammar.ValueKind != JsonValueKind.String) throw RequestException.BadRequest("'grammar' must be a string (a GBNF grammar)", "grammar");
            string text = grammar.GetString()!;
            if (text.Length > 0) found.Add(StructuredOutput.Gbnf(text, "grammar", "grammar"));
        }
        if (found.Count > 1)
            throw RequestException.BadRequest($"give only one of {string.Join(", ", found.Select(f => $"'{f.Field}'"))}", found[1].Field);
        return found.Count == 0 ? null : found[0];
    }

    /// <summary>Ollama's format: "json" (any object) or a JSON Schema object; "" or absent: free text.</summary>
    public static OutputGrammar? FromOllama(JsonRequest r)
    {
        if (r.Get("format") is not { } format) return null;
        if (format.ValueKind == JsonValueKind.String)
        {
            return format.GetString() switch
            {
                "" => null,
                "json" => StructuredOutput.AnyObject("format"),
                var other => throw RequestException.BadRequest($"'format' must be \"json\" or a JSON Schema object, not \"{other}\"", "format"),
            };
        }
        return StructuredOutput.Schema(format, "format", "format");
    }

    /// <summary>Anthropic's structured outputs: <c>output_config.format</c> (or the beta's <c>output_format</c>), a JSON schema.</summary>
    public static OutputGrammar? FromAnthropic(JsonRequest r)
    {
        var (format, field) = r.Get("output_config") is { ValueKind: JsonValueKind.Object } config
            && config.TryGetProperty("format", out var f) && f.ValueKind != JsonValueKind.Null
            ? (f, "output_config")
            : (r.Get("output_format") ?? default, "output_format");
        if (format.ValueKind == JsonValueKind.Undefined) return null;
        string param = field == "output_config" ? "output_config.format" : field;
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
            throw RequestException.BadRequest($"'{param}' must be an object with a 'type'", param);
        if (t.GetString() != "json_schema") throw RequestException.Unsupported(param, $"of type '{t.GetString()}'");
        if (!format.TryGetProperty("schema", out var schema)) throw RequestException.BadRequest($"'{param}' needs a 'schema'", param + ".schema");
        return StructuredOutput.Schema(schema, field, param + ".schema");
    }
}
