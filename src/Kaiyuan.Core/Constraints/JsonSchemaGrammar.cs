using System.Text.Json;
using static Kaiyuan.Constraints.GrammarNode;

namespace Kaiyuan.Constraints;

/// <summary>How JSON output may be laid out.</summary>
public sealed record JsonSchemaOptions
{
    /// <summary>Whitespace characters allowed between two tokens of JSON (bounded, so a model cannot pad forever).</summary>
    public int MaxWhitespace { get; init; } = 20;
}

// TEMPORARY stand-in until the schema compiler lands (same API): any value, and a small subset of JSON Schema
// (type, enum, const, properties/required, items, min/maxItems, min/maxLength, anyOf); anything else is refused.
public static class JsonSchemaGrammar
{
    private static readonly HashSet<string> Annotations =
        ["$schema", "$id", "$comment", "title", "description", "default", "examples", "additionalProperties", "strict"];

    public static Grammar Compile(string schemaJson, JsonSchemaOptions? o = null)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(schemaJson);
        }
        catch (JsonException e)
        {
            throw new GrammarException($"the schema is not valid JSON: {e.Message}");
        }
        using (doc) return Compile(doc.RootElement, o);
    }

    public static Grammar Compile(JsonElement schema, JsonSchemaOptions? o = null)
    {
        var g = new Grammar();
        int root = g.AddRule("root");
        var value = AddTo(g, schema, o);
        g.Define(root, Seq(Ws(o), value, Ws(o)));
        g.Root = root;
        return g;
    }

    public static Grammar AnyValue(JsonSchemaOptions? o = null)
    {
        var g = new Grammar();
        g.Root = g.AddRule("root", Seq(Ws(o), Ref(AnyValueRule(g, o)), Ws(o)));
        return g;
    }

    public static Grammar AnyObject(JsonSchemaOptions? o = null)
    {
        var g = new Grammar();
        int value = AnyValueRule(g, o);
        g.Root = g.AddRule("root", Seq(Ws(o), ObjectOf(Seq(Str(), Ws(o), Literal(":"), Ws(o), Ref(value)), o), Ws(o)));
        return g;
    }

    /// <summary>Adds the schema's rules to <paramref name="grammar"/>; returns the node of one value.</summary>
    public static GrammarNode AddTo(Grammar grammar, JsonElement schema, JsonSchemaOptions? o = null)
    {
        if (schema.ValueKind == JsonValueKind.True) return Ref(AnyValueRule(grammar, o));
        if (schema.ValueKind != JsonValueKind.Object) throw new GrammarException($"a schema must be an object or a boolean, not {schema.ValueKind}");
        foreach (var p in schema.EnumerateObject())
            if (!Annotations.Contains(p.Name) && p.Name is not ("type" or "enum" or "const" or "properties" or "required" or "items" or "minItems" or "maxItems" or "minLength" or "maxLength" or "anyOf"))
                throw new GrammarException($"schema keyword '{p.Name}' is not supported yet");
        if (schema.TryGetProperty("const", out var c)) return Literal(c.GetRawText());
        if (schema.TryGetProperty("enum", out var e))
        {
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() == 0) throw new GrammarException("'enum' must be a non-empty array");
            return Alt([.. e.EnumerateArray().Select(v => Literal(JsonSerializer.Serialize(v)))]);
        }
        if (schema.TryGetProperty("anyOf", out var any))
        {
            if (any.ValueKind != JsonValueKind.Array || any.GetArrayLength() == 0) throw new GrammarException("'anyOf' must be a non-empty array");
            return Alt([.. any.EnumerateArray().Select(s => AddTo(grammar, s, o))]);
        }
        if (!schema.TryGetProperty("type", out var type)) return Ref(AnyValueRule(grammar, o));
        if (type.ValueKind == JsonValueKind.Array) return Alt([.. type.EnumerateArray().Select(t => OfType(grammar, schema, t.GetString() ?? "", o))]);
        if (type.ValueKind != JsonValueKind.String) throw new GrammarException("'type' must be a string or an array of strings");
        return OfType(grammar, schema, type.GetString()!, o);
    }

    private static GrammarNode OfType(Grammar g, JsonElement schema, string type, JsonSchemaOptions? o)
    {
        switch (type)
        {
            case "string":
                int min = Int(schema, "minLength") ?? 0, max = Int(schema, "maxLength") ?? -1;
                return Seq(Literal("\""), Repeat(Char(), min, max), Literal("\""));
            case "integer": return Integer();
            case "number": return Number();
            case "boolean": return Alt(Literal("true"), Literal("false"));
            case "null": return Literal("null");
            case "array":
                var item = schema.TryGetProperty("items", out var items) ? AddTo(g, items, o) : Ref(AnyValueRule(g, o));
                int lo = Int(schema, "minItems") ?? 0, hi = Int(schema, "maxItems") ?? -1;
                var more = Seq(Ws(o), Literal(","), Ws(o), item);
                var list = Seq(item, Repeat(more, Math.Max(0, lo - 1), hi < 0 ? -1 : Math.Max(0, hi - 1)));
                return Seq(Literal("["), Ws(o), lo == 0 ? Optional(Seq(list, Ws(o))) : Seq(list, Ws(o)), Literal("]"));
            case "object":
                if (!schema.TryGetProperty("properties", out var props)) return ObjectOf(Seq(Str(), Ws(o), Literal(":"), Ws(o), Ref(AnyValueRule(g, o))), o);
                if (props.ValueKind != JsonValueKind.Object) throw new GrammarException("'properties' must be an object");
                var required = schema.TryGetProperty("required", out var r) && r.ValueKind == JsonValueKind.Array
                    ? r.EnumerateArray().Select(x => x.GetString()).ToHashSet() : [];
                // Properties in their declared order; a required one after optional ones keeps the grammar simple.
                var body = Empty;
                bool first = true;
                foreach (var p in props.EnumerateObject())
                {
                    var member = Seq(Literal(JsonSerializer.Serialize(p.Name)), Ws(o), Literal(":"), Ws(o), AddTo(g, p.Value, o));
                    var entry = first ? member : Seq(Ws(o), Literal(","), Ws(o), member);
                    if (!required.Contains(p.Name))
                    {
                        if (first) throw new GrammarException("the stand-in schema compiler needs the first property to be required");
                        entry = Optional(entry);
                    }
                    body = Seq(body, entry);
                    first = false;
                }
                return Seq(Literal("{"), Ws(o), body, Ws(o), Literal("}"));
            default:
                throw new GrammarException($"unknown type '{type}'");
        }
    }

    private static int? Int(JsonElement schema, string name) =>
        schema.TryGetProperty(name, out var v) ? v.TryGetInt32(out int i) && i >= 0 ? i : throw new GrammarException($"'{name}' must be a non-negative integer") : null;

    private static GrammarNode Ws(JsonSchemaOptions? o) => Repeat(Chars(CodepointSet.Of(" \t\n\r")), 0, (o ?? new()).MaxWhitespace);

    private static GrammarNode Char() => Alt(Chars(CodepointSet.Range(0x20, 0x10FFFF).Except(CodepointSet.Of("\"\\"))),
        Seq(Literal("\\"), Alt(Chars(CodepointSet.Of("\"\\/bfnrt")), Seq(Literal("u"), Repeat(Chars(CodepointSet.Of("0123456789abcdefABCDEF")), 4, 4)))));

    private static GrammarNode Str() => Seq(Literal("\""), Repeat(Char(), 0, -1), Literal("\""));

    private static GrammarNode Integer() =>
        Seq(Optional(Literal("-")), Alt(Literal("0"), Seq(Chars(CodepointSet.Range('1', '9')), Repeat(Chars(CodepointSet.Range('0', '9')), 0, -1))));

    private static GrammarNode Number()
    {
        var digits = Repeat(Chars(CodepointSet.Range('0', '9')), 1, -1);
        return Seq(Integer(), Optional(Seq(Literal("."), digits)), Optional(Seq(Chars(CodepointSet.Of("eE")), Optional(Chars(CodepointSet.Of("+-"))), digits)));
    }

    private static GrammarNode ObjectOf(GrammarNode member, JsonSchemaOptions? o) =>
        Seq(Literal("{"), Ws(o), Optional(Seq(member, Repeat(Seq(Ws(o), Literal(","), Ws(o), member), 0, -1), Ws(o))), Literal("}"));

    private static int AnyValueRule(Grammar g, JsonSchemaOptions? o)
    {
        if (g.Find("json-value") is { } existing) return existing;
        int value = g.AddRule("json-value");
        var member = Seq(Str(), Ws(o), Literal(":"), Ws(o), Ref(value));
        var arr = Seq(Literal("["), Ws(o), Optional(Seq(Ref(value), Repeat(Seq(Ws(o), Literal(","), Ws(o), Ref(value)), 0, -1), Ws(o))), Literal("]"));
        g.Define(value, Alt(ObjectOf(member, o), arr, Str(), Number(), Literal("true"), Literal("false"), Literal("null")));
        return value;
    }
}
