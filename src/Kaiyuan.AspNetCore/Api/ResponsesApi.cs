using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>
/// OpenAI's Responses API: <c>POST /v1/responses</c> (a whole response, or typed SSE events), and the responses it
/// stores for <c>previous_response_id</c>: <c>GET</c> and <c>DELETE /v1/responses/{id}</c>,
/// <c>GET /v1/responses/{id}/input_items</c>. The conversation is rendered, constrained and parsed as chat completions
/// do (<see cref="ChatGeneration"/>); only the request's and the answer's spelling differ.
/// </summary>
internal static class ResponsesApi
{
    /// <summary>Request fields we know of but cannot honour: refused by name rather than ignored.</summary>
    private static readonly string[] Unsupported = ["conversation", "prompt", "max_tool_calls"];

    private static readonly string[] InputTextParts = ["input_text", "output_text", "text"];

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/responses", (HttpContext http, ServerState state) => CreateAsync(http, state));
        app.MapGet("/v1/responses/{id}", (HttpContext http, ServerState state, string id) => GetAsync(http, state, id));
        app.MapDelete("/v1/responses/{id}", (HttpContext http, ServerState state, string id) =>
        {
            if (!state.Responses.Remove(id)) throw NotFound(id, null);
            return HttpOutput.Json(http, new JsonObject { ["id"] = id, ["object"] = "response", ["deleted"] = true });
        });
        app.MapGet("/v1/responses/{id}/input_items", (HttpContext http, ServerState state, string id) => InputItemsAsync(http, state, id));
    }

    private static RequestException NotFound(string id, string? param) =>
        new(404, param is null ? $"Response with id '{id}' not found." : $"Previous response with id '{id}' not found.",
            param, "response_not_found", "invalid_request_error");

    private static Task GetAsync(HttpContext http, ServerState state, string id)
    {
        if (http.Request.Query["stream"] == "true") throw RequestException.Unsupported("stream", "on a stored response (replaying its events)");
        var stored = state.Responses.Get(id) ?? throw NotFound(id, null);
        http.Response.ContentType = "application/json; charset=utf-8";
        return http.Response.WriteAsync(stored.Json, Encoding.UTF8, http.RequestAborted);
    }

    /// <summary>The request's own input items, newest first unless <c>order=asc</c>; <c>limit</c> and <c>after</c> page them.</summary>
    private static Task InputItemsAsync(HttpContext http, ServerState state, string id)
    {
        var stored = state.Responses.Get(id) ?? throw NotFound(id, null);
        var query = http.Request.Query;
        int limit = 20;
        if (query.ContainsKey("limit") && (!int.TryParse(query["limit"], out limit) || limit is < 1 or > 100))
            throw RequestException.BadRequest("'limit' must be an integer from 1 to 100", "limit");
        string order = query["order"].FirstOrDefault() ?? "desc";
        if (order is not ("asc" or "desc")) throw RequestException.BadRequest("'order' must be \"asc\" or \"desc\"", "order");
        var context = JsonNode.Parse(stored.Context)!.AsArray();
        var items = context.Skip(context.Count - stored.InputCount).Select(i => i!.DeepClone()).ToList();
        if (order == "desc") items.Reverse();
        if (query["after"].FirstOrDefault() is { Length: > 0 } after)
        {
            int at = items.FindIndex(i => (string?)i["id"] == after);
            if (at < 0) throw RequestException.BadRequest($"'after' names '{after}', which is not an input item of this response", "after");
            items = items[(at + 1)..];
        }
        var page = items.Take(limit).ToArray();
        return HttpOutput.Json(http, new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(page),
            ["first_id"] = page.Length > 0 ? page[0]!["id"]?.DeepClone() : null,
            ["last_id"] = page.Length > 0 ? page[^1]!["id"]?.DeepClone() : null,
            ["has_more"] = items.Count > page.Length,
        });
    }

    public static async Task CreateAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        foreach (var name in Unsupported)
            if (r.Has(name)) throw RequestException.Unsupported(name, "");
        if (r.Bool("background", false)) throw RequestException.Unsupported("background", "true");
        if (r.Int("top_logprobs", 0, 20) is > 0) throw RequestException.Unsupported("top_logprobs", "");

        string? previousId = r.String("previous_response_id");
        var previous = previousId is null ? null : state.Responses.Get(previousId) ?? throw NotFound(previousId, "previous_response_id");
        var input = InputItems(r.Get("input"));
        // The instructions open this request only: a continuation does not inherit them (as OpenAI's does not).
        string? instructions = r.String("instructions");
        var history = previous is null ? [] : Conversation(previous);
        var messages = new List<ChatMessage>();
        if (!string.IsNullOrEmpty(instructions)) messages.Add(new ChatMessage("system", instructions));
        messages.AddRange(Messages([.. history, .. input]));
        if (messages.Count == 0) throw RequestException.BadRequest("'input' is required", "input");

        var (tools, toolsEcho) = Tools(r);
        var toolUse = ApiRequests.ToolChoice(r, tools, flat: true);
        var (output, textEcho) = TextFormat(r);
        var metadata = Metadata(r);
        var sampling = ApiRequests.Sampling(r, runtime.VocabSize);
        int? maxOutput = r.Int("max_output_tokens", 1, int.MaxValue);
        bool stream = r.Bool("stream", false);
        bool store = r.Bool("store", true);
        var chat = new ChatInput
        {
            Messages = messages,
            MessagesParam = "input",
            Tools = toolUse,
            Output = output,
            Sampling = sampling,
            MaxTokens = maxOutput ?? -1,
            Stop = r.Strings("stop", 16),
            IgnoreEos = r.Bool("ignore_eos", false),
        };
        string id = ResponseOutput.NewId("resp_");
        long created = ApiRequests.Now();
        JsonObject Response(string status, JsonArray items, string outputText, GenerationOutcome? usage, int reasoningTokens) => new()
        {
            ["id"] = id,
            ["object"] = "response",
            ["created_at"] = created,
            ["status"] = status,
            ["background"] = false,
            ["error"] = null,
            ["incomplete_details"] = status == "incomplete" ? new JsonObject { ["reason"] = "max_output_tokens" } : null,
            ["instructions"] = instructions,
            ["max_output_tokens"] = maxOutput,
            ["max_tool_calls"] = null,
            ["model"] = runtime.Name,
            ["output"] = items.DeepClone(),
            ["output_text"] = outputText,
            ["parallel_tool_calls"] = toolUse.Parallel,
            ["previous_response_id"] = previousId,
            ["reasoning"] = new JsonObject { ["effort"] = null, ["summary"] = null },
            ["service_tier"] = "default",
            ["store"] = store,
            ["temperature"] = sampling.Temperature,
            ["text"] = textEcho.DeepClone(),
            ["tool_choice"] = r.Get("tool_choice") is { } choice ? JsonNode.Parse(choice.GetRawText()) : (JsonNode)"auto",
            ["tools"] = toolsEcho.DeepClone(),
            ["top_p"] = sampling.TopP,
            ["truncation"] = "disabled",
            ["usage"] = usage is null ? null : Usage(usage, reasoningTokens),
            ["user"] = r.Get("user") is { ValueKind: JsonValueKind.String } user ? user.GetString() : null,
            ["metadata"] = metadata.DeepClone(),
        };

        // Submitted before anything is sent, so a refusal (queue full, context overflow) keeps its status.
        using var generation = await ChatGeneration.StartAsync(state.Metrics, state.Options.GrammarTimeout, runtime, chat, http.RequestAborted);
        var outcome = generation.Outcome;
        int sequence = 0;
        Task Emit(string type, JsonObject fields)
        {
            var e = new JsonObject { ["type"] = type, ["sequence_number"] = sequence++ };
            ResponseOutput.Move(fields, e);
            return HttpOutput.Event(http, type, e);
        }
        var answer = new ResponseOutput(stream ? Emit : null);
        JsonObject final;
        if (stream)
        {
            // The client hears at once that the request was accepted, before the model has read the prompt.
            HttpOutput.StartEventStream(http);
            await Emit("response.created", new JsonObject { ["response"] = Response("in_progress", [], "", null, 0) });
            await Emit("response.in_progress", new JsonObject { ["response"] = Response("in_progress", [], "", null, 0) });
            try
            {
                await generation.WaitForFirstTokenAsync(state.Options.StreamKeepAlive, () => HttpOutput.KeepAlive(http));
                await foreach (var piece in generation.ReadAsync()) await answer.AddAsync(piece.Deltas);
                final = await FinishAsync();
            }
            catch (Exception e) when (!http.RequestAborted.IsCancellationRequested)
            {
                // The status is sent: the failure is told in the stream's own terms, error then response.failed.
                var error = e as RequestException ?? new RequestException(500, $"internal error: {e.Message}", code: "internal_error");
                if (error.Status >= 500)
                    http.RequestServices.GetService<ILoggerFactory>()?.CreateLogger("kaiyuan.server").LogError(e, "request failed");
                string code = error.Code ?? (error.Status >= 500 ? "server_error" : "invalid_request");
                await Emit("error", new JsonObject { ["code"] = code, ["message"] = error.Message, ["param"] = error.Param });
                var failed = Response("failed", answer.Items, answer.OutputText, null, 0);
                failed["error"] = new JsonObject { ["code"] = code, ["message"] = error.Message };
                await Emit("response.failed", new JsonObject { ["response"] = failed });
                return;
            }
            await Emit(final["status"]!.GetValue<string>() == "incomplete" ? "response.incomplete" : "response.completed",
                new JsonObject { ["response"] = final.DeepClone() });
        }
        else
        {
            await foreach (var piece in generation.ReadAsync()) await answer.AddAsync(piece.Deltas);
            final = await FinishAsync();
            await HttpOutput.Json(http, final);
        }

        // Stored before the client hears the end, so a continuation sent the moment it does finds it.
        async Task<JsonObject> FinishAsync()
        {
            bool incomplete = outcome.FinishReason == "length";
            await answer.FinishAsync(incomplete);
            // The reasoning's length in tokens, as the model's tokenizer reads it back (the parser sees text, not tokens).
            int reasoningTokens = answer.Reasoning.Length == 0 ? 0
                : Math.Min(outcome.CompletionTokens, runtime.Tokenize(answer.Reasoning, addSpecial: false, parseSpecial: false).Length);
            var response = Response(incomplete ? "incomplete" : "completed", answer.Items, answer.OutputText, outcome, reasoningTokens);
            if (store)
            {
                var context = new JsonArray([.. history, .. input.Select(i => i.DeepClone())]);
                state.Responses.Add(new StoredResponse(id, HttpOutput.Serialize(response), HttpOutput.Serialize(context), input.Count));
            }
            return response;
        }
    }

    private static JsonObject Usage(GenerationOutcome o, int reasoningTokens) => new()
    {
        ["input_tokens"] = o.PromptTokens,
        ["input_tokens_details"] = new JsonObject { ["cached_tokens"] = o.CachedTokens },
        ["output_tokens"] = o.CompletionTokens,
        ["output_tokens_details"] = new JsonObject { ["reasoning_tokens"] = reasoningTokens },
        ["total_tokens"] = o.PromptTokens + o.CompletionTokens,
    };

    /// <summary>A stored response's conversation: what the model read (earlier turns, then that request's input) and what it answered.</summary>
    private static List<JsonObject> Conversation(StoredResponse stored)
    {
        var items = JsonNode.Parse(stored.Context)!.AsArray().Select(i => i!.DeepClone().AsObject()).ToList();
        items.AddRange(JsonNode.Parse(stored.Json)!["output"]!.AsArray().Select(i => i!.DeepClone().AsObject()));
        return items;
    }

    /// <summary>
    /// The input, checked and spelt out in full as items (a string is one user message; an item without "type" is a
    /// message), each with an id: what is stored and what previous_response_id replays.
    /// </summary>
    private static List<JsonObject> InputItems(JsonElement? input)
    {
        if (input is not { } v) return [];
        if (v.ValueKind == JsonValueKind.String)
            return [Message(ResponseOutput.NewId("msg_"), "user", v.GetString()!)];
        if (v.ValueKind != JsonValueKind.Array) throw RequestException.BadRequest("'input' must be a string or an array of items", "input");
        var items = new List<JsonObject>();
        int i = 0;
        foreach (var item in v.EnumerateArray())
        {
            string param = $"input[{i++}]";
            if (item.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("each input item must be an object", param);
            var it = new JsonRequest(item);
            string type = it.String("type") ?? (it.Has("role") ? "message" : throw RequestException.BadRequest("an input item needs a 'type'", param + ".type"));
            string id = it.Get("id") is { ValueKind: JsonValueKind.String } given ? given.GetString()! : "";
            items.Add(type switch
            {
                "message" => MessageItem(it, id, param),
                "function_call" => FunctionCallItem(it, id, param),
                "function_call_output" => FunctionCallOutputItem(it, id, param),
                // A model's earlier reasoning: kept with the conversation, not shown to the model again (as chat
                // templates drop past reasoning).
                "reasoning" => JsonNode.Parse(item.GetRawText())!.AsObject(),
                _ => throw RequestException.Unsupported(param + ".type", $"item type '{type}'"),
            });
        }
        return items;
    }

    private static JsonObject MessageItem(JsonRequest it, string id, string param)
    {
        string role = it.String("role") ?? throw RequestException.BadRequest("a message needs a 'role'", param + ".role");
        if (role is not ("user" or "assistant" or "system" or "developer")) throw RequestException.BadRequest($"unknown role '{role}'", param + ".role");
        string content = ApiRequests.Content(it.Get("content"), param + ".content", InputTextParts)
            ?? throw RequestException.BadRequest("a message needs 'content'", param + ".content");
        return Message(id.Length > 0 ? id : ResponseOutput.NewId("msg_"), role, content);
    }

    private static JsonObject FunctionCallItem(JsonRequest it, string id, string param)
    {
        string callId = it.String("call_id") ?? throw RequestException.BadRequest("a function_call needs a 'call_id'", param + ".call_id");
        string name = it.String("name") ?? throw RequestException.BadRequest("a function_call needs a 'name'", param + ".name");
        string arguments = it.Get("arguments") is { } a ? a.ValueKind == JsonValueKind.String ? a.GetString()! : a.GetRawText() : "{}";
        return new JsonObject
        {
            ["id"] = id.Length > 0 ? id : ResponseOutput.NewId("fc_"),
            ["type"] = "function_call",
            ["status"] = "completed",
            ["call_id"] = callId,
            ["name"] = name,
            ["arguments"] = arguments,
        };
    }

    /// <summary>A call's result: text, text parts, or any other JSON (taken as its text).</summary>
    private static JsonObject FunctionCallOutputItem(JsonRequest it, string id, string param)
    {
        string callId = it.String("call_id") ?? throw RequestException.BadRequest("a function_call_output needs a 'call_id'", param + ".call_id");
        string output = it.Get("output") switch
        {
            null => throw RequestException.BadRequest("a function_call_output needs an 'output'", param + ".output"),
            { ValueKind: JsonValueKind.String } o => o.GetString()!,
            { ValueKind: JsonValueKind.Array } o => ApiRequests.Content(o, param + ".output", InputTextParts)!,
            { } o => o.GetRawText(),
        };
        return new JsonObject
        {
            ["id"] = id.Length > 0 ? id : ResponseOutput.NewId("fco_"),
            ["type"] = "function_call_output",
            ["status"] = "completed",
            ["call_id"] = callId,
            ["output"] = output,
        };
    }

    private static JsonObject Message(string id, string role, string text) => new()
    {
        ["id"] = id,
        ["type"] = "message",
        ["status"] = "completed",
        ["role"] = role,
        ["content"] = new JsonArray(role == "assistant"
            ? new JsonObject { ["type"] = "output_text", ["text"] = text, ["annotations"] = new JsonArray() }
            : new JsonObject { ["type"] = "input_text", ["text"] = text }),
    };

    /// <summary>
    /// Items as chat messages: an assistant message and the function calls after it are one assistant turn; each
    /// function call's output is a tool message (named after its call, for templates that want the name).
    /// </summary>
    private static List<ChatMessage> Messages(IEnumerable<JsonObject> items)
    {
        var messages = new List<ChatMessage>();
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        ChatMessage? assistant = null;
        void Flush()
        {
            if (assistant is not null) messages.Add(assistant);
            assistant = null;
        }
        foreach (var item in items)
        {
            switch ((string?)item["type"])
            {
                case "message":
                    string role = (string)item["role"]!;
                    string text = string.Concat(item["content"]!.AsArray().Select(p => (string?)p!["text"]));
                    Flush();
                    if (role == "assistant") assistant = new ChatMessage(role, text);
                    else messages.Add(new ChatMessage(role, text));
                    break;
                case "function_call":
                    string callId = (string)item["call_id"]!, name = (string)item["name"]!;
                    names[callId] = name;
                    assistant ??= new ChatMessage("assistant", "");
                    assistant = assistant with { ToolCalls = [.. assistant.ToolCalls, new ToolCall(callId, name, (string)item["arguments"]!)] };
                    break;
                case "function_call_output":
                    Flush();
                    string outputCallId = (string)item["call_id"]!;
                    messages.Add(new ChatMessage("tool", (string)item["output"]!)
                    {
                        ToolCallId = outputCallId,
                        Name = names.GetValueOrDefault(outputCallId),
                    });
                    break;
            }
        }
        Flush();
        return messages;
    }

    /// <summary>
    /// Function tools in the Responses API's flat shape (chat's nested shape is taken too), as chat-shaped tools for the
    /// template and the constraint, and as given for the response to echo; other tool types are refused.
    /// </summary>
    private static (List<JsonElement> Tools, JsonArray Echo) Tools(JsonRequest r)
    {
        var tools = new List<JsonElement>();
        var echo = new JsonArray();
        if (r.Get("tools") is not { } array) return (tools, echo);
        if (array.ValueKind != JsonValueKind.Array) throw RequestException.BadRequest("'tools' must be an array", "tools");
        foreach (var tool in array.EnumerateArray())
        {
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
                throw RequestException.BadRequest("each tool must be an object with a 'type'", "tools");
            if (t.GetString() != "function") throw RequestException.Unsupported("tools", $"tool type '{t.GetString()}'");
            var source = tool.TryGetProperty("function", out var nested) && nested.ValueKind == JsonValueKind.Object ? nested : tool;
            if (!source.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String)
                throw RequestException.BadRequest("each tool must be {\"type\":\"function\",\"name\":…,\"parameters\":…}", "tools");
            var function = new JsonObject { ["name"] = n.GetString() };
            var flat = new JsonObject { ["type"] = "function", ["name"] = n.GetString() };
            foreach (string field in new[] { "description", "parameters", "strict" })
            {
                if (!source.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) continue;
                function[field] = JsonNode.Parse(value.GetRawText());
                flat[field] = JsonNode.Parse(value.GetRawText());
            }
            using var doc = JsonDocument.Parse(HttpOutput.Serialize(new JsonObject { ["type"] = "function", ["function"] = function }));
            tools.Add(doc.RootElement.Clone());
            echo.Add(flat);
        }
        return (tools, echo);
    }

    /// <summary>text.format through the structured-output engine, and the "text" object the response echoes.</summary>
    private static (OutputGrammar? Grammar, JsonObject Echo) TextFormat(JsonRequest r)
    {
        var echo = new JsonObject { ["format"] = new JsonObject { ["type"] = "text" } };
        if (r.Get("text") is not { } text) return (null, echo);
        if (text.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("'text' must be an object", "text");
        echo = JsonNode.Parse(text.GetRawText())!.AsObject();
        if (!text.TryGetProperty("format", out var format) || format.ValueKind == JsonValueKind.Null)
        {
            echo["format"] = new JsonObject { ["type"] = "text" };
            return (null, echo);
        }
        return (StructuredOutput.Format(format, "text", "text.format"), echo);
    }

    /// <summary>Up to 16 string values, kept with the response and otherwise unused.</summary>
    private static JsonObject Metadata(JsonRequest r)
    {
        var metadata = new JsonObject();
        if (r.Get("metadata") is not { } m) return metadata;
        if (m.ValueKind != JsonValueKind.Object || m.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.String))
            throw RequestException.BadRequest("'metadata' must be an object of string values", "metadata");
        foreach (var p in m.EnumerateObject()) metadata[p.Name] = p.Value.GetString();
        if (metadata.Count > 16) throw RequestException.BadRequest("'metadata' takes at most 16 keys", "metadata");
        return metadata;
    }
}
