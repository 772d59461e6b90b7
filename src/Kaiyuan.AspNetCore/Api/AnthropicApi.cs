using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>
/// Anthropic's Messages API (<c>POST /v1/messages</c> and <c>/v1/messages/count_tokens</c>), so that clients that speak
/// only it (Anthropic's SDKs, Claude Code-style coding agents) run on the served model. A request is read into the same
/// chat input as OpenAI's chat route and runs through the same template, constraints and output parser; the answer comes
/// back as Anthropic's content blocks (thinking, text, tool_use), whole or as its named server-sent events.
/// </summary>
internal static class AnthropicApi
{
    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/messages", (HttpContext http, ServerState state) => MessagesAsync(http, state));
        app.MapPost("/v1/messages/count_tokens", (HttpContext http, ServerState state) => CountTokensAsync(http, state));
    }

    /// <summary>Whether a path belongs to this API (its errors are Anthropic-shaped, and sent as an <c>error</c> event mid-stream).</summary>
    public static bool Owns(PathString path) => path.StartsWithSegments("/v1/messages");

    /// <summary>Anthropic's error body, <c>{"type":"error","error":{"type","message"}}</c>, its type chosen by status.</summary>
    public static JsonObject Error(int status, string message) => new()
    {
        ["type"] = "error",
        ["error"] = new JsonObject
        {
            ["type"] = status switch
            {
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                503 or 529 => "overloaded_error",
                >= 500 => "api_error",
                _ => "invalid_request_error",
            },
            ["message"] = message,
        },
    };

    private static async Task MessagesAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        var input = Read(r, runtime, generate: true);
        bool stream = r.Bool("stream", false);
        string id = "msg_" + Guid.NewGuid().ToString("N");
        // Submitted before anything is sent, so a refusal (queue full, context overflow) keeps its status.
        using var generation = await ChatGeneration.StartAsync(state.Metrics, state.Options.GrammarTimeout, runtime, input, http.RequestAborted);
        var outcome = generation.Outcome;
        var blocks = new ContentBlocks();

        if (stream)
        {
            // message_start and a ping go out at once, and pings again while the model reads the prompt. The cached
            // share of the prompt is known only once it has been read: message_delta's usage says it.
            HttpOutput.StartEventStream(http);
            await Send(http, new JsonObject
            {
                ["type"] = "message_start",
                ["message"] = Message(id, runtime, [], null, null, Usage(outcome.PromptTokens, 0, 0)),
            });
            Task Ping() => Send(http, new JsonObject { ["type"] = "ping" });
            await Ping();
            await generation.WaitForFirstTokenAsync(state.Options.StreamKeepAlive, Ping);
            await foreach (var piece in generation.ReadAsync())
                foreach (var e in blocks.Push(piece.Deltas))
                    await Send(http, e);
            foreach (var e in blocks.Finish()) await Send(http, e);
            var (reason, sequence) = StopReason(outcome, blocks.Calls);
            await Send(http, new JsonObject
            {
                ["type"] = "message_delta",
                ["delta"] = new JsonObject { ["stop_reason"] = reason, ["stop_sequence"] = sequence },
                ["usage"] = Usage(outcome),
            });
            await Send(http, new JsonObject { ["type"] = "message_stop" });
            return;
        }

        await foreach (var piece in generation.ReadAsync()) blocks.Push(piece.Deltas);
        blocks.Finish();
        var (stopReason, stopSequence) = StopReason(outcome, blocks.Calls);
        await HttpOutput.Json(http, Message(id, runtime, blocks.Content, stopReason, stopSequence, Usage(outcome)));
    }

    /// <summary>The prompt's size for the same body as <c>/v1/messages</c> (system, messages, tools), without generating.</summary>
    private static async Task CountTokensAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        var input = Read(r, runtime, generate: false);
        int tokens = ChatGeneration.Encode(runtime, ChatGeneration.Render(runtime, input)).Length;
        await HttpOutput.Json(http, new JsonObject { ["input_tokens"] = tokens });
    }

    /// <summary>Each event is sent under its own type's name, which Anthropic's clients dispatch on.</summary>
    private static Task Send(HttpContext http, JsonObject e) => HttpOutput.Event(http, (string)e["type"]!, e);

    private static JsonObject Message(string id, ModelRuntime runtime, List<JsonObject> content, string? stopReason, string? stopSequence, JsonObject usage) => new()
    {
        ["id"] = id,
        ["type"] = "message",
        ["role"] = "assistant",
        ["model"] = runtime.Name,
        ["content"] = new JsonArray([.. content]),
        ["stop_reason"] = stopReason,
        ["stop_sequence"] = stopSequence,
        ["usage"] = usage,
    };

    /// <summary>As Anthropic counts: input_tokens leaves out the prompt tokens read from the (prefix) cache, which are counted apart.</summary>
    private static JsonObject Usage(GenerationOutcome o) => Usage(o.PromptTokens - o.CachedTokens, o.CachedTokens, o.CompletionTokens);

    private static JsonObject Usage(int input, int cached, int output) => new()
    {
        ["input_tokens"] = input,
        ["cache_creation_input_tokens"] = 0,
        ["cache_read_input_tokens"] = cached,
        ["output_tokens"] = output,
    };

    private static (string Reason, string? Sequence) StopReason(GenerationOutcome outcome, int calls) =>
        ChatGeneration.EndedWithCalls(outcome, calls) ? ("tool_use", null)
        : outcome.FinishReason == "length" ? ("max_tokens", null)
        : outcome.StopSequence is { } s ? ("stop_sequence", s)
        : ("end_turn", null);

    /// <summary>
    /// The request as a chat input: the system prompt and messages (content blocks become the template's messages: tool
    /// results its tool messages, tool_use blocks its calls), the tools and tool_choice, the reasoning switch, and for a
    /// generation the sampling and limits. <c>metadata</c>, cache_control and the like mean nothing here and are ignored.
    /// </summary>
    private static ChatInput Read(JsonRequest r, ModelRuntime runtime, bool generate)
    {
        var messages = new List<ChatMessage>();
        if (SystemPrompt(r) is { Length: > 0 } system) messages.Add(new ChatMessage("system", system));
        messages.AddRange(Messages(r));
        var tools = ToolChoice(r, Tools(r));
        bool? thinking = Thinking(r);
        // A conversation that ends with the assistant's own words is continued from them (a prefill), as Anthropic does.
        bool prefill = messages[^1] is { Role: "assistant", ToolCalls.Count: 0, Content: { } text } && !string.IsNullOrWhiteSpace(text);
        if (!generate) return new ChatInput { Messages = messages, Tools = tools, Thinking = thinking, Continue = prefill };
        int maxTokens = r.Int("max_tokens", 1, int.MaxValue) ?? throw RequestException.BadRequest("'max_tokens' is required", "max_tokens");
        return new ChatInput
        {
            Messages = messages,
            Tools = tools,
            Thinking = thinking,
            Continue = prefill,
            Output = OutputRequests.FromAnthropic(r),
            Sampling = ApiRequests.Sampling(r, runtime.VocabSize),
            MaxTokens = maxTokens,
            Stop = r.Strings("stop_sequences", 64),
        };
    }

    private static string? SystemPrompt(JsonRequest r) => r.Get("system") switch
    {
        null => null,
        { ValueKind: JsonValueKind.String } s => s.GetString(),
        { ValueKind: JsonValueKind.Array } blocks => Text(blocks, "system"),
        _ => throw RequestException.BadRequest("'system' must be a string or an array of text blocks", "system"),
    };

    private static List<ChatMessage> Messages(JsonRequest r)
    {
        if (r.Get("messages") is not { ValueKind: JsonValueKind.Array } array || array.GetArrayLength() == 0)
            throw RequestException.BadRequest("'messages' must be a non-empty array", "messages");
        var list = new List<ChatMessage>();
        // Tool results name their call only by id; templates that render the tool's name get it from the call.
        var toolNames = new Dictionary<string, string>(StringComparer.Ordinal);
        int i = 0;
        foreach (var m in array.EnumerateArray())
        {
            string param = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("each message must be an object", param);
            var message = new JsonRequest(m);
            string role = message.String("role") ?? throw RequestException.BadRequest("a message needs a 'role'", param + ".role");
            if (role is not ("user" or "assistant" or "system"))
                throw RequestException.BadRequest($"unknown role '{role}': messages are \"user\" or \"assistant\" (the system prompt is 'system')", param + ".role");
            var content = message.Get("content") ?? throw RequestException.BadRequest("a message needs 'content'", param + ".content");
            param += ".content";
            if (content.ValueKind == JsonValueKind.String) list.Add(new ChatMessage(role, content.GetString()));
            else if (content.ValueKind != JsonValueKind.Array) throw RequestException.BadRequest("message content must be a string or an array of content blocks", param);
            else if (role == "assistant") list.Add(Assistant(content, param, toolNames));
            else if (role == "user") User(content, param, toolNames, list);
            else list.Add(new ChatMessage(role, Text(content, param)));
        }
        return list;
    }

    /// <summary>An assistant turn: its text, and its tool_use blocks as calls. Earlier reasoning is not shown to the model again.</summary>
    private static ChatMessage Assistant(JsonElement content, string param, Dictionary<string, string> toolNames)
    {
        var text = new StringBuilder();
        var calls = new List<ToolCall>();
        int i = 0;
        foreach (var block in content.EnumerateArray())
        {
            string at = $"{param}[{i++}]";
            var b = Block(block, at, out string type);
            switch (type)
            {
                case "text":
                    text.Append(TextOf(b, at));
                    break;
                case "thinking" or "redacted_thinking":
                    break;
                case "tool_use":
                    string id = b.String("id") ?? throw RequestException.BadRequest("a tool_use block needs an 'id'", at + ".id");
                    string name = b.String("name") ?? throw RequestException.BadRequest("a tool_use block needs a 'name'", at + ".name");
                    var input = b.Get("input");
                    if (input is { ValueKind: not JsonValueKind.Object }) throw RequestException.BadRequest("'input' must be an object", at + ".input");
                    toolNames[id] = name;
                    calls.Add(new ToolCall(id, name, input?.GetRawText() ?? "{}"));
                    break;
                default:
                    throw Unsupported(type, at);
            }
        }
        return new ChatMessage("assistant", text.ToString()) { ToolCalls = calls };
    }

    /// <summary>A user turn: tool_result blocks become tool messages, the text between them user messages, in their order.</summary>
    private static void User(JsonElement content, string param, Dictionary<string, string> toolNames, List<ChatMessage> list)
    {
        var text = new StringBuilder();
        bool any = false;
        int i = 0;
        foreach (var block in content.EnumerateArray())
        {
            string at = $"{param}[{i++}]";
            var b = Block(block, at, out string type);
            if (type == "text")
            {
                text.Append(text.Length > 0 ? "\n" : "").Append(TextOf(b, at));
                continue;
            }
            if (type != "tool_result") throw Unsupported(type, at);
            if (text.Length > 0)
            {
                list.Add(new ChatMessage("user", text.ToString()));
                text.Clear();
            }
            string id = b.String("tool_use_id") ?? throw RequestException.BadRequest("a tool_result block needs a 'tool_use_id'", at + ".tool_use_id");
            string result = b.Get("content") switch
            {
                null => "",
                { ValueKind: JsonValueKind.String } s => s.GetString()!,
                { ValueKind: JsonValueKind.Array } parts => Text(parts, at + ".content"),
                _ => throw RequestException.BadRequest("a tool result's 'content' must be a string or an array of text blocks", at + ".content"),
            };
            // Chat templates have no place for a failed call: the model reads it in the result.
            if (b.Bool("is_error", false)) result = "Error: " + result;
            list.Add(new ChatMessage("tool", result) { ToolCallId = id, Name = toolNames.GetValueOrDefault(id) });
            any = true;
        }
        if (text.Length > 0 || !any) list.Add(new ChatMessage("user", text.ToString()));
    }

    /// <summary>Text blocks joined with newlines (the system prompt, a tool result, a system message).</summary>
    private static string Text(JsonElement blocks, string param)
    {
        var text = new StringBuilder();
        int i = 0;
        foreach (var block in blocks.EnumerateArray())
        {
            string at = $"{param}[{i++}]";
            var b = Block(block, at, out string type);
            if (type != "text") throw Unsupported(type, at);
            text.Append(text.Length > 0 ? "\n" : "").Append(TextOf(b, at));
        }
        return text.ToString();
    }

    private static JsonRequest Block(JsonElement block, string param, out string type)
    {
        if (block.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("each content block must be an object", param);
        var b = new JsonRequest(block);
        type = b.String("type") ?? throw RequestException.BadRequest("a content block needs a 'type'", param + ".type");
        return b;
    }

    private static string TextOf(JsonRequest block, string param) =>
        block.String("text") ?? throw RequestException.BadRequest("a text block needs 'text'", param + ".text");

    private static RequestException Unsupported(string type, string param) => type is "image" or "document"
        ? RequestException.BadRequest($"'{type}' content is not supported: the served model reads text only", param, "unsupported_content")
        : RequestException.BadRequest($"content blocks of type '{type}' are not supported here", param, "unsupported_content");

    /// <summary>Anthropic's tools (name, description, input_schema) in the OpenAI function shape the templates and grammars read.</summary>
    private static List<JsonElement> Tools(JsonRequest r)
    {
        if (r.Get("tools") is not { } tools) return [];
        if (tools.ValueKind != JsonValueKind.Array) throw RequestException.BadRequest("'tools' must be an array", "tools");
        var list = new List<JsonElement>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        int i = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            string param = $"tools[{i++}]";
            if (tool.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("each tool must be an object", param);
            var t = new JsonRequest(tool);
            // Anthropic's own server tools (web search, code execution, …) run on Anthropic's side: nothing here runs them.
            if (t.String("type") is { } type && type != "custom")
                throw RequestException.BadRequest($"the server tool '{type}' is not available here; only client tools (name, input_schema) are", param + ".type");
            string name = t.String("name") ?? throw RequestException.BadRequest("a tool needs a 'name'", param + ".name");
            if (!names.Add(name)) throw RequestException.BadRequest($"the tool name '{name}' is used twice", param + ".name");
            var schema = t.Get("input_schema") ?? throw RequestException.BadRequest("a tool needs an 'input_schema'", param + ".input_schema");
            if (schema.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("'input_schema' must be a JSON Schema object", param + ".input_schema");
            var function = new JsonObject { ["name"] = name };
            if (t.String("description") is { } description) function["description"] = description;
            function["parameters"] = JsonNode.Parse(schema.GetRawText());
            using var doc = JsonDocument.Parse(HttpOutput.Serialize(new JsonObject { ["type"] = "function", ["function"] = function }));
            list.Add(doc.RootElement.Clone());
        }
        return list;
    }

    /// <summary>
    /// tool_choice: "auto" (the default), "any" and "tool" force a call (any tool, or the named one) through the same
    /// constraint as OpenAI's "required" and named choices, "none" leaves the tools out.
    /// </summary>
    private static ToolUse ToolChoice(JsonRequest r, List<JsonElement> tools)
    {
        var auto = new ToolUse(tools, tools.Count > 0 ? ToolMode.Auto : ToolMode.None, null, Parallel: true);
        if (r.Get("tool_choice") is not { } choice) return auto;
        if (choice.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("'tool_choice' must be an object with a 'type'", "tool_choice");
        var c = new JsonRequest(choice);
        bool parallel = !c.Bool("disable_parallel_tool_use", false);
        switch (c.String("type"))
        {
            case "auto":
                return auto with { Parallel = parallel };
            case "none":
                return new ToolUse([], ToolMode.None, null, parallel);
            case "any":
                if (tools.Count == 0) throw RequestException.BadRequest("'tool_choice' \"any\" needs 'tools'", "tool_choice");
                return new ToolUse(tools, ToolMode.Required, null, parallel);
            case "tool":
                string name = c.String("name") ?? throw RequestException.BadRequest("'tool_choice' of type \"tool\" needs a 'name'", "tool_choice.name");
                if (!tools.Any(t => t.GetProperty("function").GetProperty("name").GetString() == name))
                    throw RequestException.BadRequest($"'tool_choice' names '{name}', which is not in 'tools'", "tool_choice.name");
                return new ToolUse(tools, ToolMode.Required, name, parallel);
            default:
                throw RequestException.BadRequest("'tool_choice' type must be \"auto\", \"any\", \"tool\" or \"none\"", "tool_choice.type");
        }
    }

    /// <summary>thinking: enabled or disabled sets the template's reasoning switch where it has one; the budget is not enforced.</summary>
    private static bool? Thinking(JsonRequest r)
    {
        if (r.Get("thinking") is not { } t) return null;
        if (t.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("'thinking' must be an object with a 'type'", "thinking");
        var c = new JsonRequest(t);
        string? type = c.String("type");
        if (type == "enabled") _ = c.Int("budget_tokens", 0, int.MaxValue);
        return type switch
        {
            "enabled" => true,
            "disabled" => false,
            "adaptive" => null,
            _ => throw RequestException.BadRequest("'thinking' type must be \"enabled\", \"disabled\" or \"adaptive\"", "thinking.type"),
        };
    }

    /// <summary>
    /// Parsed output as Anthropic's content blocks, in the order the model wrote them: the stream's start, delta and stop
    /// events as they happen, and the finished blocks for a whole message. A text or thinking block opens only once it
    /// has more than whitespace to say (the blank line between a reasoning block and a call is no block of its own).
    /// </summary>
    private sealed class ContentBlocks
    {
        private readonly List<JsonObject> _events = [];
        private Block? _open;
        private ChatDeltaKind _heldKind;
        private readonly StringBuilder _held = new();

        public List<JsonObject> Content { get; } = [];
        public int Calls { get; private set; }

        private sealed class Block(ChatDeltaKind kind, int index, int call)
        {
            public ChatDeltaKind Kind { get; } = kind;
            public int Index { get; } = index;
            public int Call { get; } = call;
            public string Id { get; init; } = "";
            public string Name { get; init; } = "";
            public StringBuilder Text { get; } = new();
        }

        public List<JsonObject> Push(IEnumerable<ChatDelta> deltas)
        {
            _events.Clear();
            foreach (var d in deltas) Add(d);
            return [.. _events];
        }

        public List<JsonObject> Finish()
        {
            _events.Clear();
            Close();
            return [.. _events];
        }

        private void Add(ChatDelta d)
        {
            if (d.Kind != _heldKind) _held.Clear();
            if (d.Kind == ChatDeltaKind.ToolCall)
            {
                if (_open is not { Kind: ChatDeltaKind.ToolCall } || _open.Call != d.Index)
                {
                    Close();
                    Open(new Block(d.Kind, Content.Count, d.Index) { Id = "toolu_" + Guid.NewGuid().ToString("N")[..24], Name = d.Name ?? "" });
                    Calls++;
                }
                Append(d.Text);
                return;
            }
            if (_open?.Kind == d.Kind)
            {
                Append(d.Text);
                return;
            }
            _heldKind = d.Kind;
            _held.Append(d.Text);
            if (string.IsNullOrWhiteSpace(_held.ToString())) return;
            Close();
            Open(new Block(d.Kind, Content.Count, -1));
            Append(_held.ToString());
            _held.Clear();
        }

        private void Open(Block block)
        {
            _open = block;
            Content.Add(new JsonObject());
            _events.Add(new JsonObject
            {
                ["type"] = "content_block_start",
                ["index"] = block.Index,
                ["content_block"] = block.Kind switch
                {
                    ChatDeltaKind.Content => new JsonObject { ["type"] = "text", ["text"] = "" },
                    ChatDeltaKind.Reasoning => new JsonObject { ["type"] = "thinking", ["thinking"] = "", ["signature"] = "" },
                    _ => new JsonObject { ["type"] = "tool_use", ["id"] = block.Id, ["name"] = block.Name, ["input"] = new JsonObject() },
                },
            });
        }

        private void Append(string text)
        {
            if (_open is null || text.Length == 0) return;
            _open.Text.Append(text);
            Delta(_open.Kind switch
            {
                ChatDeltaKind.Content => new JsonObject { ["type"] = "text_delta", ["text"] = text },
                ChatDeltaKind.Reasoning => new JsonObject { ["type"] = "thinking_delta", ["thinking"] = text },
                _ => new JsonObject { ["type"] = "input_json_delta", ["partial_json"] = text },
            });
        }

        private void Delta(JsonObject delta) =>
            _events.Add(new JsonObject { ["type"] = "content_block_delta", ["index"] = _open!.Index, ["delta"] = delta });

        private void Close()
        {
            if (_open is not { } block) return;
            string text = block.Text.ToString();
            if (block.Kind == ChatDeltaKind.Reasoning)
            {
                // Clients keep thinking blocks only with a signature; this one is opaque and checks nothing.
                string signature = Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
                Delta(new JsonObject { ["type"] = "signature_delta", ["signature"] = signature });
                Content[block.Index] = new JsonObject { ["type"] = "thinking", ["thinking"] = text, ["signature"] = signature };
            }
            else if (block.Kind == ChatDeltaKind.Content) Content[block.Index] = new JsonObject { ["type"] = "text", ["text"] = text };
            else Content[block.Index] = new JsonObject { ["type"] = "tool_use", ["id"] = block.Id, ["name"] = block.Name, ["input"] = Input(text) };
            _events.Add(new JsonObject { ["type"] = "content_block_stop", ["index"] = block.Index });
            _open = null;
        }

        /// <summary>A call's arguments as an object; one cut off by the token limit (or not an object) is given as empty.</summary>
        private static JsonObject Input(string arguments)
        {
            if (string.IsNullOrWhiteSpace(arguments)) return [];
            try
            {
                return JsonNode.Parse(arguments) as JsonObject ?? [];
            }
            catch (JsonException)
            {
                return [];
            }
        }
    }
}
