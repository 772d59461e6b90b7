using System.Text.Json;
using Kaiyuan.Constraints;
using Kaiyuan.Templates.Parsing;

namespace Kaiyuan.Chat;

/// <summary>
/// What a request asks the output to be: a grammar to compile (its cache key and how to build it) and the request
/// field it came from, so that a bad schema, grammar or pattern is a 400 that names it. Made by
/// <see cref="StructuredOutput"/>'s readers.
/// </summary>
public sealed class OutputGrammar
{
    internal OutputGrammar(string kind, string source, string field, string param, Func<Grammar> build, JsonElement? schema = null, bool isJson = false)
    {
        Kind = kind;
        Source = source;
        Field = field;
        Param = param;
        Build = build;
        Schema = schema;
        IsJson = isJson;
    }

    /// <summary>What the source is ("gbnf", "json-schema", "json-object", "json-value", "tools", …); with <see cref="Source"/>, the grammar cache's key.</summary>
    public string Kind { get; }

    /// <summary>The grammar's text (a GBNF grammar, a schema's JSON), empty where the kind says it all.</summary>
    public string Source { get; }

    /// <summary>The top-level request field it came from ("response_format", "grammar", "format", "tool_choice").</summary>
    public string Field { get; }

    /// <summary>Where in that field the grammar's source is, named by compile errors.</summary>
    public string Param { get; }

    /// <summary>Builds the grammar when the cache does not hold it.</summary>
    internal Func<Grammar> Build { get; }

    /// <summary>For JSON output: the schema (null: any value), so tool calls can be offered beside it.</summary>
    public JsonElement? Schema { get; }

    /// <summary>The output is JSON (a schema, any object or any value), so optional tool calls can be offered beside it.</summary>
    public bool IsJson { get; }
}

/// <summary>How a request lets the model use its tools.</summary>
public enum ToolMode
{
    /// <summary>No calls (the tools may still be shown to the model).</summary>
    None,
    /// <summary>The model decides.</summary>
    Auto,
    /// <summary>The model must call one (or <see cref="ToolUse.Function"/>).</summary>
    Required,
}

/// <summary>A request's tools and what it says about calling them (OpenAI's tool_choice and parallel_tool_calls).</summary>
/// <param name="Tools">OpenAI-style tool definitions, <c>{"type":"function","function":{"name",…,"parameters"}}</c>.</param>
/// <param name="Mode">Whether calls are off, free or required.</param>
/// <param name="Function">The one function a required call must be to; null: any.</param>
/// <param name="Parallel">More than one call may be made in an answer.</param>
public sealed record ToolUse(IReadOnlyList<JsonElement> Tools, ToolMode Mode, string? Function, bool Parallel);

/// <summary>
/// Structured output: reads a response format (OpenAI's shape, which the in-process API maps to) and forced tool calls
/// into a grammar, compiles it against the model's vocabulary (cached, with a time limit), and wraps it
/// so that it applies where the answer starts: after a reasoning block, or (optional tool calls) from a call's opening.
/// </summary>
public static class StructuredOutput
{
    private static readonly JsonElement AnyObjectSchema = JsonDocument.Parse("""{"type":"object"}""").RootElement;

    /// <summary>
    /// A format object, <c>{"type":"text"|"json_object"|"json_schema",…}</c>: chat's response_format (the schema under
    /// "json_schema", or bare as llama-server also takes it) and the Responses API's text.format (the schema beside the
    /// type). <paramref name="field"/> is the top-level request field, <paramref name="param"/> where the object is.
    /// </summary>
    public static OutputGrammar? Format(JsonElement format, string field, string param)
    {
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
            throw RequestException.BadRequest($"'{param}' must be an object with a 'type'", param);
        switch (t.GetString())
        {
            case "text":
                return null;
            case "json_object":
                // llama-server also takes a schema here.
                return format.TryGetProperty("schema", out var s) ? Schema(s, field, param + ".schema") : AnyObject(field);
            case "json_schema":
                if (format.TryGetProperty("json_schema", out var js) && js.ValueKind == JsonValueKind.Object)
                {
                    return js.TryGetProperty("schema", out var schema) && schema.ValueKind != JsonValueKind.Null
                        ? Schema(schema, field, param + ".json_schema.schema")
                        : AnyValue(field);
                }
                if (format.TryGetProperty("schema", out var bare)) return Schema(bare, field, param + ".schema");
                throw RequestException.BadRequest($"'{param}' of type 'json_schema' needs a 'schema'", param);
            default:
                throw RequestException.Unsupported(param, $"of type '{t.GetString()}'");
        }
    }

    /// <summary>
    /// The constraint for a chat request (null: none): forced calls, or optional calls beside a JSON answer, or the
    /// requested grammar, with optional calls left free until their opening marker.
    /// </summary>
    public static async Task<TokenConstraint?> ForChatAsync(TimeSpan grammarTimeout, ModelRuntime runtime, OutputGrammar? output, ToolUse tools, string prompt,
        CancellationToken cancel)
    {
        var format = runtime.Formatter.OutputFormat;
        string? lazyTrigger = null;
        if (tools.Mode == ToolMode.Required)
        {
            if (format is null || !ToolCallGrammar.Supports(format))
                throw RequestException.Unsupported("tool_choice", $"forcing a call with this model's chat format ({format?.Name ?? "unknown"})");
            output = ToolsGrammar(format, Signatures(tools), tools.Parallel, tools.Function is null ? "tools" : "tool_choice", json: null);
        }
        else if (tools.Mode == ToolMode.Auto && format is not null && ToolCallGrammar.Supports(format))
        {
            if (output is { IsJson: true })
                output = ToolsGrammar(format, Signatures(tools), tools.Parallel, output.Field, json: output);
            else if (output is not null)
                throw RequestException.BadRequest($"'{output.Field}' cannot be combined with tools; use a JSON schema, or tool_choice \"none\"", output.Field);
            else if (ToolCallGrammar.Trigger(format) is { } trigger)
            {
                output = ToolsGrammar(format, Signatures(tools), tools.Parallel, "tools", json: null);
                lazyTrigger = trigger;
            }
        }
        if (output is null) return null;
        CompiledGrammar grammar;
        if (lazyTrigger is not null)
        {
            // Optional calls were never asked to be constrained: where that cannot be done (no vocabulary, a tool schema
            // the compiler refuses or that takes too long), the request is served as before, unconstrained.
            if (runtime.Codec.Vocabulary is null) return null;
            try
            {
                grammar = await CompileAsync(grammarTimeout, runtime, output, cancel);
            }
            catch (RequestException e) when (e.Status == 400)
            {
                return null;
            }
        }
        else grammar = await CompileAsync(grammarTimeout, runtime, output, cancel);
        var vocabulary = runtime.Codec.Vocabulary!;
        TokenConstraint constraint = grammar.CreateMatcher();
        if (lazyTrigger is not null) constraint = new TriggeredConstraint(constraint, vocabulary, [lazyTrigger], includeTrigger: true, required: false);
        return TriggeredConstraint.ForAnswer(constraint, vocabulary, format, prompt, runtime.Formatter.MayReason, required: lazyTrigger is null);
    }

    /// <summary>The constraint for a raw prompt (completions, Ollama raw generate): the grammar from the first token.</summary>
    public static async Task<TokenConstraint?> ForPromptAsync(TimeSpan grammarTimeout, ModelRuntime runtime, OutputGrammar? output, CancellationToken cancel) =>
        output is null ? null : (await CompileAsync(grammarTimeout, runtime, output, cancel)).CreateMatcher();

    /// <summary>
    /// Compiles (or finds in the cache) the grammar for this model's vocabulary; one that takes longer than
    /// <paramref name="timeout"/> is refused rather than left to tie up the engine.
    /// </summary>
    internal static async Task<CompiledGrammar> CompileAsync(TimeSpan timeout, ModelRuntime runtime, OutputGrammar output, CancellationToken cancel)
    {
        var vocabulary = runtime.Codec.Vocabulary
            ?? throw RequestException.Unsupported(output.Field, "(structured output) with this model's tokenizer");
        // The cache computes the first mask too: a grammar too large to run fails here, as a 400, not in the scheduler.
        var work = Task.Run(() => GrammarCache.Get(output.Kind, output.Source, TokenTrie.For(vocabulary), output.Build), CancellationToken.None);
        try
        {
            return await work.WaitAsync(timeout, cancel);
        }
        catch (TimeoutException)
        {
            // The compile runs on in the background (it cannot be interrupted) but is bounded by the automaton's limits.
            _ = work.ContinueWith(t => t.Exception, TaskScheduler.Default);
            throw RequestException.BadRequest($"'{output.Param}' is too complex to compile in time ({timeout.TotalSeconds:0.###} s)", output.Param, "grammar_too_complex");
        }
        catch (GrammarException e)
        {
            throw RequestException.BadRequest($"invalid {What(output)}: {e.Message}", output.Param, "invalid_grammar");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or FormatException or KeyNotFoundException)
        {
            // A front end tripping over an unexpected shape is still the input's fault, not the server's.
            throw RequestException.BadRequest($"invalid {What(output)}: {e.Message}", output.Param, "invalid_grammar");
        }
    }

    private static string What(OutputGrammar g) => g.Kind switch
    {
        "gbnf" => "grammar",
        "regex" => "regular expression",
        "tools" => "tool schema",
        _ => "JSON schema",
    };

    /// <summary>Output that follows a JSON Schema.</summary>
    /// <param name="schema">The schema (an object, or <c>true</c>).</param>
    /// <param name="field">The top-level request field it came from.</param>
    /// <param name="param">Where in that field the schema is, named by errors.</param>
    /// <exception cref="RequestException">400: the schema is not an object.</exception>
    public static OutputGrammar Schema(JsonElement schema, string field, string param)
    {
        if (schema.ValueKind is not (JsonValueKind.Object or JsonValueKind.True))
            throw RequestException.BadRequest($"'{param}' must be a JSON Schema object", param);
        // The element outlives the request's document only through this copy (the grammar cache may build later).
        var copy = schema.Clone();
        string source = copy.GetRawText();
        return new OutputGrammar("json-schema", source, field, param, () => JsonSchemaGrammar.Compile(copy), copy, isJson: true);
    }

    /// <summary>Output that is any JSON object (JSON mode).</summary>
    /// <param name="field">The request field that asked for it.</param>
    public static OutputGrammar AnyObject(string field) =>
        new("json-object", "", field, field, () => JsonSchemaGrammar.AnyObject(), AnyObjectSchema, isJson: true);

    /// <summary>Output that is any JSON value.</summary>
    /// <param name="field">The request field that asked for it.</param>
    public static OutputGrammar AnyValue(string field) =>
        new("json-value", "", field, field, () => JsonSchemaGrammar.AnyValue(), null, isJson: true);

    /// <summary>Output that follows a GBNF grammar (llama.cpp's grammar format; the rule <c>root</c> is the whole answer).</summary>
    /// <param name="grammar">The grammar's text; it is parsed when first compiled, and an invalid one is then a 400.</param>
    /// <param name="field">The top-level request field it came from.</param>
    /// <param name="param">Where in that field the grammar is, named by errors.</param>
    public static OutputGrammar Gbnf(string grammar, string field, string param) =>
        new("gbnf", grammar, field, param, () => GbnfGrammar.Parse(grammar));

    /// <summary>Calls in the family's syntax; with <paramref name="json"/>, a JSON answer is allowed instead.</summary>
    private static OutputGrammar ToolsGrammar(ToolCallFormat format, List<ToolSignature> tools, bool parallel, string field, OutputGrammar? json)
    {
        string source = string.Join("\n", tools.Select(t => t.Name + "\u0001" + (t.Parameters?.GetRawText() ?? "")));
        string kind = $"tools:{format.Name}:{(parallel ? "parallel" : "single")}" + (json is null ? "" : ":or-json");
        if (json is not null) source += "\n\u0002" + json.Kind + "\u0001" + json.Source;
        return new OutputGrammar("tools", kind + "\n" + source, field, json?.Param ?? field, () =>
        {
            if (json is null) return ToolCallGrammar.Build(format, tools, parallel);
            var g = new Grammar();
            int root = g.AddRule("root");
            var calls = ToolCallGrammar.AddTo(g, format, tools, parallel);
            var answer = json.Schema is { } s ? JsonSchemaGrammar.AddTo(g, s) : Ref(AnyValueRoot(g));
            g.Define(root, GrammarNode.Alt(calls, answer));
            g.Root = root;
            return g;
        }, isJson: false);
    }

    private static GrammarNode Ref(int rule) => GrammarNode.Ref(rule);

    /// <summary>Any JSON value as a rule of <paramref name="g"/> (for an answer with no schema beside optional calls).</summary>
    private static int AnyValueRoot(Grammar g)
    {
        using var doc = JsonDocument.Parse("true");
        return g.AddRule("any-json", JsonSchemaGrammar.AddTo(g, doc.RootElement));
    }

    private static List<ToolSignature> Signatures(ToolUse use)
    {
        var list = new List<ToolSignature>();
        foreach (var tool in use.Tools)
        {
            string name = ToolName(tool);
            if (use.Function is not null && name != use.Function) continue;
            var f = tool.GetProperty("function");
            JsonElement? parameters = f.TryGetProperty("parameters", out var p) && p.ValueKind != JsonValueKind.Null ? p.Clone() : null;
            list.Add(new ToolSignature(name, parameters));
        }
        return list;
    }

    /// <summary>The function name of an OpenAI-style tool definition.</summary>
    /// <exception cref="KeyNotFoundException">It has no <c>function.name</c>.</exception>
    public static string ToolName(JsonElement tool) => tool.GetProperty("function").GetProperty("name").GetString()!;
}
