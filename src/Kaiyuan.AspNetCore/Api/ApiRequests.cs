using System.Globalization;
using System.Text.Json;
using Kaiyuan.Sampling;
using Kaiyuan.Chat;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>Parsing shared by the OpenAI and Ollama endpoints.</summary>
internal static class ApiRequests
{
    /// <summary>Sampling parameters from an object that uses OpenAI's (and llama-server's) names; llama-server's defaults.</summary>
    public static SamplerOptions Sampling(JsonRequest r, int vocabSize, string prefix = "")
    {
        var options = new SamplerOptions
        {
            Temperature = (float)(r.Number("temperature", 0, 2) ?? 0.8),
            TopP = (float)(r.Number("top_p", 0, 1) ?? 0.95),
            TopK = r.Int("top_k", 0, int.MaxValue) ?? 40,
            MinP = (float)(r.Number("min_p", 0, 1) ?? 0.05),
            PresencePenalty = (float)(r.Number("presence_penalty", -2, 2) ?? 0),
            FrequencyPenalty = (float)(r.Number("frequency_penalty", -2, 2) ?? 0),
            RepeatPenalty = (float)(r.Number(r.Has("repeat_penalty") ? "repeat_penalty" : "repetition_penalty", 0, 10) ?? 1),
            RepeatLastN = r.Int("repeat_last_n", -1, int.MaxValue) ?? 64,
            Seed = r.Seed("seed"),
            LogitBias = LogitBias(r, vocabSize, prefix),
        };
        return options;
    }

    private static Dictionary<int, float>? LogitBias(JsonRequest r, int vocabSize, string prefix)
    {
        if (r.Get("logit_bias") is not { } v) return null;
        string param = prefix + "logit_bias";
        if (v.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("'logit_bias' must be an object mapping token ids to biases", param);
        var bias = new Dictionary<int, float>();
        foreach (var p in v.EnumerateObject())
        {
            if (!int.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id) || id >= vocabSize)
                throw RequestException.BadRequest($"'logit_bias' key '{p.Name}' is not a token id of this model (0…{vocabSize - 1})", param);
            double b = JsonRequest.ReadNumber(p.Value, "logit_bias", -100, 100)!.Value;
            bias[id] = b <= -100 ? float.NegativeInfinity : (float)b;
        }
        return bias;
    }

    private static readonly string[] ChatTextParts = ["text"];

    /// <summary>Message content: a string, or an array of text parts (of the given types: chat's "text" by default).</summary>
    public static string? Content(JsonElement? content, string param, IReadOnlyCollection<string>? textTypes = null)
    {
        textTypes ??= ChatTextParts;
        if (content is not { } c) return null;
        if (c.ValueKind == JsonValueKind.String) return c.GetString();
        if (c.ValueKind != JsonValueKind.Array) throw RequestException.BadRequest("message content must be a string or an array of content parts", param);
        var text = new System.Text.StringBuilder();
        foreach (var part in c.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("each content part must be an object", param);
            string type = part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
            if (!textTypes.Contains(type) || !part.TryGetProperty("text", out var s) || s.ValueKind != JsonValueKind.String)
                throw RequestException.Unsupported(param, $"content part type '{type}'");
            text.Append(s.GetString());
        }
        return text.ToString();
    }

    /// <summary>OpenAI (and Ollama) chat messages.</summary>
    public static List<ChatMessage> Messages(JsonRequest r, bool ollama = false)
    {
        if (r.Get("messages") is not { ValueKind: JsonValueKind.Array } array || array.GetArrayLength() == 0)
            throw RequestException.BadRequest("'messages' must be a non-empty array", "messages");
        var messages = new List<ChatMessage>();
        int i = 0;
        foreach (var m in array.EnumerateArray())
        {
            string param = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("each message must be an object", param);
            var message = new JsonRequest(m);
            string role = message.String("role") ?? throw RequestException.BadRequest("a message needs a 'role'", param + ".role");
            if (role is not ("system" or "developer" or "user" or "assistant" or "tool"))
                throw RequestException.BadRequest($"unknown role '{role}'", param + ".role");
            if (ollama && message.Has("images")) throw RequestException.Unsupported(param + ".images", "(images)");
            var calls = new List<ToolCall>();
            if (message.Get("tool_calls") is { ValueKind: JsonValueKind.Array } toolCalls)
            {
                foreach (var call in toolCalls.EnumerateArray())
                {
                    var c = new JsonRequest(call);
                    var function = c.Get("function") is { ValueKind: JsonValueKind.Object } f ? new JsonRequest(f)
                        : throw RequestException.BadRequest("a tool call needs a 'function'", param + ".tool_calls");
                    string name = function.String("name") ?? throw RequestException.BadRequest("a tool call needs a function name", param + ".tool_calls");
                    string arguments = function.Get("arguments") is { } a
                        ? a.ValueKind == JsonValueKind.String ? a.GetString()! : a.GetRawText()
                        : "{}";
                    calls.Add(new ToolCall(c.String("id") ?? "", name, arguments));
                }
            }
            string? content = Content(message.Get("content"), param + ".content");
            if (content is null && calls.Count == 0 && role != "assistant")
                throw RequestException.BadRequest("a message needs 'content'", param + ".content");
            messages.Add(new ChatMessage(role, content ?? "")
            {
                ToolCalls = calls,
                ToolCallId = message.String("tool_call_id"),
                Name = message.Get("name") is { ValueKind: JsonValueKind.String } n ? n.GetString() : null,
            });
        }
        return messages;
    }

    /// <summary>The tools on offer (OpenAI's function-tool shape).</summary>
    public static List<JsonElement> Tools(JsonRequest r)
    {
        if (r.Get("tools") is not { } tools) return [];
        if (tools.ValueKind != JsonValueKind.Array) throw RequestException.BadRequest("'tools' must be an array", "tools");
        var list = new List<JsonElement>();
        foreach (var tool in tools.EnumerateArray())
        {
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("function", out var f) || f.ValueKind != JsonValueKind.Object
                || !f.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String)
                throw RequestException.BadRequest("each tool must be {\"type\":\"function\",\"function\":{\"name\":…}}", "tools");
            if (tool.TryGetProperty("type", out var t) && t.GetString() != "function")
                throw RequestException.Unsupported("tools", $"tool type '{t}'");
            list.Add(tool);
        }
        return list;
    }

    /// <summary>Token ids or text for a prompt: a string, or an array of token ids.</summary>
    public static int[] Prompt(JsonElement? prompt, ModelRuntime runtime, string param, bool addSpecial = true)
    {
        if (prompt is not { } p) throw RequestException.BadRequest($"'{param}' is required", param);
        if (p.ValueKind == JsonValueKind.String) return runtime.Tokenize(p.GetString()!, addSpecial, parseSpecial: true);
        if (p.ValueKind == JsonValueKind.Array)
        {
            var items = p.EnumerateArray().ToList();
            if (items.Count == 1 && items[0].ValueKind is JsonValueKind.String or JsonValueKind.Array) return Prompt(items[0], runtime, param, addSpecial);
            if (items.All(e => e.ValueKind == JsonValueKind.Number))
            {
                var ids = items.Select(e => e.TryGetInt32(out int id) ? id : -1).ToArray();
                if (ids.Any(id => id < 0 || id >= runtime.VocabSize))
                    throw RequestException.BadRequest($"'{param}' holds a token id outside the vocabulary (0…{runtime.VocabSize - 1})", param);
                return ids;
            }
            if (items.Count > 1) throw RequestException.Unsupported(param, "with several prompts (batched prompts)");
        }
        throw RequestException.BadRequest($"'{param}' must be a string or an array of token ids", param);
    }

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    /// <summary>'dimensions' other than the model's embedding length is refused (no model here can shorten its vectors).</summary>
    internal static void CheckEmbeddingDimensions(JsonRequest r, ModelRuntime runtime)
    {
        if (r.Int("dimensions", 1, int.MaxValue) is { } dims && dims != runtime.Description.EmbeddingLength)
            throw RequestException.Unsupported("dimensions", $"other than the model's {runtime.Description.EmbeddingLength}");
    }

    /// <summary>
    /// Pooled, L2-normalised embeddings of token inputs, for /v1/embeddings and Ollama's /api/embed alike. An input
    /// longer than the context is cut to it when <paramref name="truncate"/> is true, else refused (null: the API has
    /// no truncate option to suggest).
    /// </summary>
    internal static async Task<(float[][] Vectors, int Tokens)> EmbedAsync(ServerState state, ModelRuntime runtime, List<int[]> inputs, bool? truncate,
        string param, CancellationToken cancel)
    {
        if (inputs.Count == 0) return ([], 0);
        int context = runtime.ContextLength;
        for (int i = 0; i < inputs.Count; i++)
        {
            if (inputs[i].Length <= context) continue;
            if (truncate != true)
                throw RequestException.BadRequest($"an input has {inputs[i].Length} tokens, more than the context of {context}"
                    + (truncate is null ? "" : "; send \"truncate\": true to cut it"), param, "context_length_exceeded");
            inputs[i] = inputs[i][..context];
        }
        var vectors = await runtime.EmbedAsync(inputs, cancel);
        int tokens = inputs.Sum(i => i.Length);
        state.Metrics.PromptTokens(tokens);
        return (vectors, tokens);
    }

    /// <summary>
    /// OpenAI's tool_choice and parallel_tool_calls over the request's tools (in chat's shape). A named function is
    /// <c>{"type":"function","function":{"name":…}}</c> in chat completions, <c>{"type":"function","name":…}</c> in the
    /// Responses API (<paramref name="flat"/>).
    /// </summary>
    public static ToolUse ToolChoice(JsonRequest r, List<JsonElement> tools, bool flat = false)
    {
        bool parallel = r.Bool("parallel_tool_calls", true);
        if (r.Get("tool_choice") is not { } choice) return new ToolUse(tools, tools.Count > 0 ? ToolMode.Auto : ToolMode.None, null, parallel);
        if (choice.ValueKind == JsonValueKind.String)
        {
            var mode = choice.GetString() switch
            {
                "none" => ToolMode.None,
                "auto" => ToolMode.Auto,
                "required" => ToolMode.Required,
                var other => throw RequestException.BadRequest($"'tool_choice' must be \"none\", \"auto\", \"required\" or a function, not \"{other}\"", "tool_choice"),
            };
            if (mode == ToolMode.Required && tools.Count == 0) throw RequestException.BadRequest("'tool_choice' \"required\" needs 'tools'", "tool_choice");
            return new ToolUse(mode == ToolMode.None ? [] : tools, tools.Count == 0 ? ToolMode.None : mode, null, parallel);
        }
        if (flat && choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String
            && type.GetString() != "function")
            throw RequestException.Unsupported("tool_choice", $"of type '{type.GetString()}'");
        var named = flat ? choice : choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("function", out var f) ? f : default;
        if (choice.ValueKind != JsonValueKind.Object || named.ValueKind != JsonValueKind.Object
            || !named.TryGetProperty("name", out var n) || n.ValueKind != JsonValueKind.String)
            throw RequestException.BadRequest(flat ? "'tool_choice' must be a string or {\"type\":\"function\",\"name\":…}"
                : "'tool_choice' must be a string or {\"type\":\"function\",\"function\":{\"name\":…}}", "tool_choice");
        string name = n.GetString()!;
        if (!tools.Any(t => StructuredOutput.ToolName(t) == name)) throw RequestException.BadRequest($"'tool_choice' names '{name}', which is not in 'tools'", "tool_choice");
        return new ToolUse(tools, ToolMode.Required, name, parallel);
    }
}
