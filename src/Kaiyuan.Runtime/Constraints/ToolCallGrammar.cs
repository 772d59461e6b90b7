using System.Text.Json;
using Kaiyuan.Templates.Parsing;
using static Kaiyuan.Constraints.GrammarNode;

namespace Kaiyuan.Constraints;

/// <summary>A function the model may call: its name and the JSON Schema of its arguments (null: any object).</summary>
internal sealed record ToolSignature(string Name, JsonElement? Parameters);

/// <summary>
/// Grammars for tool calls written in a model family's own syntax (the one its chat template renders and
/// <see cref="ChatOutputParser"/> reads), with each call's arguments constrained by that tool's parameter schema:
/// forced calls (<c>tool_choice: "required"</c> or a named function) use it from the first token, optional ones
/// (<c>"auto"</c>) from the call's opening marker (<see cref="Trigger"/>) on.
/// </summary>
internal static class ToolCallGrammar
{
    private static readonly GrammarNode Digits = Repeat(Chars(CodepointSet.Range('0', '9')), 1, 4);

    /// <summary>Whether calls of this family can be written by a grammar here.</summary>
    public static bool Supports(ToolCallFormat format) => format.Name is "hermes" or "qwen3-coder" or "glm-4.5" or "deepseek" or "kimi-k2" or "minimax-m2" or "llama3";

    /// <summary>The marker that opens the calls, for a lazy grammar; null when calls have no marker of their own (Llama 3's bare JSON).</summary>
    public static string? Trigger(ToolCallFormat format) => format.Name == "llama3" ? null : format.SectionStart ?? format.CallStart;

    /// <summary>One or more calls (exactly one unless <paramref name="parallel"/>) of the given tools, and nothing else.</summary>
    public static Grammar Build(ToolCallFormat format, IReadOnlyList<ToolSignature> tools, bool parallel, JsonSchemaOptions? options = null)
    {
        var g = new Grammar();
        int root = g.AddRule("root");
        g.Define(root, AddTo(g, format, tools, parallel, options));
        g.Root = root;
        return g;
    }

    /// <summary>Adds the calls' rules to <paramref name="g"/>; returns the node of the whole block of calls.</summary>
    public static GrammarNode AddTo(Grammar g, ToolCallFormat format, IReadOnlyList<ToolSignature> tools, bool parallel, JsonSchemaOptions? options = null)
    {
        if (tools.Count == 0) throw new GrammarException("no tools to call");
        if (!Supports(format)) throw new GrammarException($"the '{format.Name}' chat format has no tool-call syntax to constrain");
        // Each call is a rule of its own: calls repeat, and a rule keeps the automaton from copying the argument schemas.
        int call = g.AddRule("tool-call");
        g.Define(call, Alt([.. tools.Select(t => Call(g, format, t, options))]));
        bool single = !parallel || format.Name == "llama3"; // Llama 3 answers with one bare call
        var separator = format.Name switch
        {
            "hermes" or "qwen3-coder" or "glm-4.5" => TemplateText("\n"),
            _ => Empty,
        };
        var calls = single ? Ref(call) : Seq(Ref(call), Repeat(Seq(separator, Ref(call)), 0, -1));
        return format.Name switch
        {
            "deepseek" or "kimi-k2" => Seq(TemplateText(format.SectionStart!), calls, TemplateText(format.SectionEnd!)),
            "minimax-m2" => Seq(TemplateText(format.SectionStart! + "\n"), calls, TemplateText(format.SectionEnd!)),
            _ => calls,
        };
    }

    private static GrammarNode Call(Grammar g, ToolCallFormat format, ToolSignature tool, JsonSchemaOptions? options)
    {
        string name = tool.Name;
        GrammarNode JsonArgs() => tool.Parameters is { } p ? JsonSchemaGrammar.AddTo(g, p, options) : ObjectSchema(g, options);
        return format.Name switch
        {
            "hermes" => Seq(TemplateText($"<tool_call>\n{{\"name\": {JsonSerializer.Serialize(name)}, \"arguments\": "), JsonArgs(), TemplateText("}\n</tool_call>")),
            "llama3" => Seq(TemplateText($"{{\"name\": {JsonSerializer.Serialize(name)}, \"parameters\": "), JsonArgs(), TemplateText("}")),
            "deepseek" => Seq(TemplateText(format.CallStart + name + "<｜tool▁sep｜>"), JsonArgs(), TemplateText(format.CallEnd!)),
            "kimi-k2" => Seq(TemplateText(format.CallStart + "functions." + name + ":"), Digits, TemplateText("<|tool_call_argument_begin|>"), JsonArgs(), TemplateText(format.CallEnd!)),
            "qwen3-coder" => Seq(TemplateText($"<tool_call>\n<function={name}>\n"),
                TextArguments(g, tool, options, k => $"<parameter={k}>\n", "\n</parameter>\n"), TemplateText("</function>\n</tool_call>")),
            "glm-4.5" => Seq(TemplateText($"<tool_call>{name}\n"),
                TextArguments(g, tool, options, k => $"<arg_key>{k}</arg_key>\n<arg_value>", "</arg_value>\n"), TemplateText("</tool_call>")),
            "minimax-m2" => Seq(TemplateText($"<invoke name=\"{name}\">\n"),
                TextArguments(g, tool, options, k => $"<parameter name=\"{k}\">", "</parameter>\n"), TemplateText("</invoke>\n")),
            _ => throw new GrammarException($"the '{format.Name}' chat format has no tool-call syntax to constrain"),
        };
    }

    private static GrammarNode ObjectSchema(Grammar g, JsonSchemaOptions? options)
    {
        using var doc = JsonDocument.Parse("""{"type":"object"}""");
        return JsonSchemaGrammar.AddTo(g, doc.RootElement, options);
    }

    /// <summary>
    /// XML-style arguments, one element per parameter in the schema's order (required ones always, the others
    /// optionally): a string is written as raw text (no '&lt;', so it cannot close its element early), anything else as
    /// JSON under its own schema, as the family's parser reads them back.
    /// </summary>
    private static GrammarNode TextArguments(Grammar g, ToolSignature tool, JsonSchemaOptions? options, Func<string, string> open, string close)
    {
        if (tool.Parameters is not { ValueKind: JsonValueKind.Object } schema || !schema.TryGetProperty("properties", out var props)) return Empty;
        if (props.ValueKind != JsonValueKind.Object) throw new GrammarException($"tool '{tool.Name}': 'properties' must be an object");
        var required = schema.TryGetProperty("required", out var r) && r.ValueKind == JsonValueKind.Array
            ? r.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!).ToHashSet(StringComparer.Ordinal)
            : [];
        var items = new List<GrammarNode>();
        foreach (var p in props.EnumerateObject())
        {
            var element = Seq(TemplateText(open(p.Name)), TextValue(g, p.Value, options), TemplateText(close));
            items.Add(required.Contains(p.Name) ? element : Optional(element));
        }
        return Seq([.. items]);
    }

    private static GrammarNode TextValue(Grammar g, JsonElement schema, JsonSchemaOptions? options)
    {
        if (schema.ValueKind == JsonValueKind.Object)
        {
            if (schema.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 0
                && e.EnumerateArray().All(v => v.ValueKind == JsonValueKind.String))
                return Alt([.. e.EnumerateArray().Select(v => Literal(v.GetString()!))]);
            if (schema.TryGetProperty("const", out var c) && c.ValueKind == JsonValueKind.String) return Literal(c.GetString()!);
            if (schema.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == "string")
            {
                int min = Length(schema, "minLength") ?? 0, max = Length(schema, "maxLength") ?? -1;
                return Repeat(Chars(CodepointSet.All.Except(CodepointSet.Of("<"))), min, max < min ? -1 : max);
            }
        }
        return JsonSchemaGrammar.AddTo(g, schema, options);
    }

    private static int? Length(JsonElement schema, string name) =>
        schema.TryGetProperty(name, out var v) && v.TryGetInt32(out int n) && n >= 0 ? n : null;
}
