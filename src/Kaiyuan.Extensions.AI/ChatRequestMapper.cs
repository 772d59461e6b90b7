using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Sampling;
using Kaiyuan.Chat;
using Microsoft.Extensions.AI;
using ChatMessage = Microsoft.Extensions.AI.ChatMessage;
using ModelMessage = Kaiyuan.Chat.ChatMessage;
using ModelToolCall = Kaiyuan.Chat.ToolCall;

namespace Kaiyuan.Extensions.AI;

/// <summary>
/// Microsoft.Extensions.AI's messages and options as the chat pipeline's request: the same conversation, tools and
/// constraints the OpenAI endpoint builds from JSON, so a request gives the same prompt in process as over HTTP.
/// </summary>
internal static class ChatRequestMapper
{
    /// <summary>The per-request switch of templates with a reasoning mode (Qwen3's <c>enable_thinking</c>), as a bool in <see cref="ChatOptions.AdditionalProperties"/>.</summary>
    public const string ThinkingProperty = "enable_thinking";

    /// <summary>
    /// As MEAI's OpenAI adapter reads it: a JSON schema is strict, objects take only the properties it names (JSON
    /// Schema's default, followed otherwise, allows others).
    /// </summary>
    public const string StrictProperty = "strictJsonSchema";

    public static ChatInput Map(IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        bool strict = options?.AdditionalProperties?.TryGetValue(StrictProperty, out bool s) == true && s;
        var tools = Tools(options, strict);
        return new ChatInput
        {
            Messages = Messages(messages),
            Tools = tools,
            Output = Output(options?.ResponseFormat, strict),
            Thinking = options?.AdditionalProperties?.TryGetValue(ThinkingProperty, out bool thinking) == true ? thinking : null,
            Sampling = Sampling(options),
            MaxTokens = options?.MaxOutputTokens is { } max ? (max >= 0 ? max : throw new ArgumentOutOfRangeException(nameof(options), "MaxOutputTokens must not be negative")) : -1,
            Stop = options?.StopSequences?.ToArray() ?? [],
        };
    }

    private static List<ModelMessage> Messages(IEnumerable<ChatMessage> messages)
    {
        var list = new List<ModelMessage>();
        // Tool results carry only the call's id; templates that name the function (Llama 3's ipython turns) get its name back.
        var callNames = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var message in messages)
        {
            string role = message.Role.Value;
            var text = new System.Text.StringBuilder();
            var calls = new List<ModelToolCall>();
            var results = new List<FunctionResultContent>();
            foreach (var content in message.Contents)
            {
                switch (content)
                {
                    case TextContent t: text.Append(t.Text); break;
                    case FunctionCallContent c:
                        calls.Add(new ModelToolCall(c.CallId, c.Name, JsonSerializer.Serialize(c.Arguments ?? new Dictionary<string, object?>(), AIJsonUtilities.DefaultOptions)));
                        callNames[c.CallId] = c.Name;
                        break;
                    case FunctionResultContent r: results.Add(r); break;
                    // Earlier reasoning is not shown to the model again (the families' templates drop it), nor are usage notes.
                    case TextReasoningContent or UsageContent: break;
                    default:
                        throw new NotSupportedException($"{content.GetType().Name} in a {role} message is not supported: Kaiyuan's models read text");
                }
            }
            if (text.Length > 0 || calls.Count > 0 || results.Count == 0)
                list.Add(new ModelMessage(role, text.Length > 0 || calls.Count == 0 ? text.ToString() : null) { ToolCalls = calls });
            foreach (var r in results)
                list.Add(new ModelMessage("tool", ResultText(r.Result)) { ToolCallId = r.CallId, Name = callNames.GetValueOrDefault(r.CallId) });
        }
        if (list.Count == 0) throw new ArgumentException("the conversation has no messages", nameof(messages));
        return list;
    }

    private static string ResultText(object? result) => result switch
    {
        null => "",
        string s => s,
        JsonElement { ValueKind: JsonValueKind.String } e => e.GetString()!,
        _ => JsonSerializer.Serialize(result, AIJsonUtilities.DefaultOptions),
    };

    private static SamplerOptions Sampling(ChatOptions? options)
    {
        var defaults = new SamplerOptions();
        if (options is null) return defaults;
        if (options.Temperature is < 0 or > 2) throw new ArgumentOutOfRangeException(nameof(options), "Temperature must be from 0 to 2");
        if (options.TopP is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(options), "TopP must be from 0 to 1");
        if (options.TopK is < 0) throw new ArgumentOutOfRangeException(nameof(options), "TopK must not be negative");
        return defaults with
        {
            Temperature = options.Temperature ?? defaults.Temperature,
            TopP = options.TopP ?? defaults.TopP,
            TopK = options.TopK ?? defaults.TopK,
            PresencePenalty = options.PresencePenalty ?? 0,
            FrequencyPenalty = options.FrequencyPenalty ?? 0,
            Seed = options.Seed is { } seed ? unchecked((ulong)seed) : null,
        };
    }

    private static ToolUse Tools(ChatOptions? options, bool strict)
    {
        var tools = new List<JsonElement>();
        foreach (var tool in options?.Tools ?? [])
        {
            if (tool is not AIFunctionDeclaration f)
                throw new NotSupportedException($"the tool '{tool.Name}' ({tool.GetType().Name}) is not supported: in process, tools are functions");
            // In the order MEAI's OpenAI adapter writes them, so a template's tojson renders the same prompt in process and over HTTP.
            var function = new JsonObject();
            if (!string.IsNullOrEmpty(f.Description)) function["description"] = f.Description;
            function["name"] = f.Name;
            function["parameters"] = JsonNode.Parse(Strict(f.JsonSchema, strict).GetRawText());
            tools.Add(JsonSerializer.SerializeToElement(new JsonObject { ["type"] = "function", ["function"] = function }));
        }
        bool parallel = options?.AllowMultipleToolCalls ?? true;
        switch (options?.ToolMode)
        {
            case null or AutoChatToolMode:
                return new ToolUse(tools, tools.Count > 0 ? ToolMode.Auto : ToolMode.None, null, parallel);
            case NoneChatToolMode:
                return new ToolUse([], ToolMode.None, null, parallel);
            case RequiredChatToolMode required:
                if (tools.Count == 0) throw new ArgumentException("ToolMode requires a tool call, but ChatOptions.Tools is empty", nameof(options));
                string? name = required.RequiredFunctionName;
                if (name is not null && !options.Tools!.Any(t => t.Name == name))
                    throw new ArgumentException($"ToolMode requires '{name}', which is not in ChatOptions.Tools", nameof(options));
                return new ToolUse(tools, ToolMode.Required, name, parallel);
            default:
                throw new NotSupportedException($"ToolMode {options.ToolMode.GetType().Name} is not supported");
        }
    }

    private static OutputGrammar? Output(ChatResponseFormat? format, bool strict)
    {
        if (format is null or ChatResponseFormatText) return null;
        if (format is not ChatResponseFormatJson json) throw new NotSupportedException($"ResponseFormat {format.GetType().Name} is not supported");
        var request = json.Schema is { } schema
            ? new JsonObject { ["type"] = "json_schema", ["json_schema"] = new JsonObject { ["schema"] = JsonNode.Parse(Strict(schema, strict).GetRawText()) } }
            : new JsonObject { ["type"] = "json_object" };
        return StructuredOutput.Format(JsonSerializer.SerializeToElement(request), "response_format", "response_format");
    }

    private static JsonElement Strict(JsonElement schema, bool strict) =>
        strict ? AIJsonUtilities.TransformSchema(schema, new AIJsonSchemaTransformOptions { DisallowAdditionalProperties = true }) : schema;

    /// <summary>The pipeline's refusals as .NET exceptions: a request the model cannot serve is the caller's argument error.</summary>
    public static Exception Translate(RequestException e) => e.Status switch
    {
        400 or 404 or 413 => new ArgumentException(e.Message, e),
        _ => new InvalidOperationException(e.Message, e),
    };
}
