using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Server.Chat;

namespace Kaiyuan.Server.Api;

/// <summary>The OpenAI-compatible endpoints: models, chat completions, completions, embeddings.</summary>
public static class OpenAiApi
{
    /// <summary>Request fields we know of but cannot honour: refused by name rather than ignored.</summary>
    private static readonly string[] Unsupported = ["audio", "modalities", "prediction", "web_search_options", "functions", "function_call", "suffix"];

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/models", (HttpContext http, ServerState state) => HttpOutput.Json(http, new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(state.Models.Models.Select(m => (JsonNode)ModelObject(state, m)).ToArray()),
        }));
        app.MapGet("/v1/models/{id}", (HttpContext http, ServerState state, string id) =>
            HttpOutput.Json(http, ModelObject(state, state.Models.Find(id, "id"))));
        app.MapPost("/v1/chat/completions", (HttpContext http, ServerState state) => ChatAsync(http, state));
        app.MapPost("/v1/completions", (HttpContext http, ServerState state) => CompletionsAsync(http, state));
        app.MapPost("/v1/embeddings", (HttpContext http, ServerState state) => EmbeddingsAsync(http, state));
    }

    /// <summary>A servable model, loaded or not (its facts come from its file until it is loaded).</summary>
    private static JsonObject ModelObject(ServerState state, ServedModel model)
    {
        var loaded = state.Models.LoadedModels().FirstOrDefault(l => l.Model == model)?.Runtime;
        var description = loaded?.Description ?? state.Models.Describe(model).Description;
        return new JsonObject
        {
            ["id"] = loaded?.Name ?? model.Name,
            ["object"] = "model",
            ["created"] = (loaded?.LoadedAt ?? state.Started).ToUnixTimeSeconds(),
            ["owned_by"] = "kaiyuan",
            ["meta"] = new JsonObject
            {
                ["architecture"] = description.Architecture,
                ["n_ctx"] = description.ContextLength,
                ["n_params"] = description.ParameterCount,
                ["size"] = description.FileSize,
            },
        };
    }

    private static void RejectUnsupported(JsonRequest r)
    {
        foreach (var name in Unsupported)
            if (r.Has(name)) throw ApiException.Unsupported(name, "");
        if (r.Int("n", 1, 128) is > 1) throw ApiException.Unsupported("n", "greater than 1");
        if (r.Int("best_of", 1, 128) is > 1) throw ApiException.Unsupported("best_of", "greater than 1");
    }

    private static int MaxTokens(JsonRequest r) =>
        r.Int("max_completion_tokens", -1, int.MaxValue) ?? r.Int("max_tokens", -1, int.MaxValue) ?? r.Int("n_predict", -1, int.MaxValue) ?? -1;

    public static async Task ChatAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        RejectUnsupported(r);
        var messages = ApiRequests.Messages(r);
        var toolUse = StructuredOutput.Tools(r, ApiRequests.Tools(r));
        var output = StructuredOutput.FromOpenAi(r);
        bool logprobs = r.Bool("logprobs", false);
        int topLogprobs = r.Int("top_logprobs", 0, 20) ?? 0;
        if (r.Has("top_logprobs") && !logprobs) throw ApiException.BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs");
        var input = new ChatInput
        {
            Messages = messages,
            Tools = toolUse,
            Output = output,
            Sampling = ApiRequests.Sampling(r, runtime.Engine.VocabSize),
            MaxTokens = MaxTokens(r),
            Stop = r.Strings("stop", 16),
            TopLogprobs = logprobs ? topLogprobs : -1,
            IgnoreEos = r.Bool("ignore_eos", false),
        };
        bool stream = r.Bool("stream", false);
        bool includeUsage = stream && r.Get("stream_options") is { ValueKind: JsonValueKind.Object } so && new JsonRequest(so).Bool("include_usage", false);
        string id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        long created = ApiRequests.Now();
        // Submitted before anything is sent, so a refusal (queue full, context overflow) keeps its status.
        using var generation = await ChatGeneration.StartAsync(state, runtime, input, http.RequestAborted);
        var outcome = generation.Outcome;

        JsonObject Chunk(JsonObject delta, string? finish, JsonNode? logprobsNode = null) => new()
        {
            ["id"] = id,
            ["object"] = "chat.completion.chunk",
            ["created"] = created,
            ["model"] = runtime.Name,
            ["system_fingerprint"] = "kaiyuan",
            ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["logprobs"] = logprobsNode, ["finish_reason"] = finish }),
        };

        if (stream)
        {
            var seenCalls = new HashSet<int>();
            // The role chunk goes out at once, before the model has read the prompt: the client knows it was heard.
            HttpOutput.StartEventStream(http);
            await HttpOutput.Event(http, Chunk(new JsonObject { ["role"] = "assistant", ["content"] = "" }, null));
            await generation.WaitForFirstTokenAsync(state.Options.StreamKeepAlive, () => HttpOutput.KeepAlive(http));
            await foreach (var piece in generation.ReadAsync())
            {
                var lp = piece.Tokens.Count > 0 && logprobs ? new JsonObject { ["content"] = LogprobsContent(runtime, piece.Tokens) } : null;
                bool sentLogprobs = false;
                foreach (var d in piece.Deltas)
                {
                    var delta = d.Kind switch
                    {
                        ChatDeltaKind.Content => new JsonObject { ["content"] = d.Text },
                        ChatDeltaKind.Reasoning => new JsonObject { ["reasoning_content"] = d.Text },
                        _ => new JsonObject { ["tool_calls"] = new JsonArray(ToolCallDelta(d, seenCalls.Add(d.Index))) },
                    };
                    await HttpOutput.Event(http, Chunk(delta, null, sentLogprobs ? null : lp?.DeepClone()));
                    sentLogprobs = true;
                }
            }
            string finish = Finish(outcome, seenCalls.Count);
            await HttpOutput.Event(http, Chunk(new JsonObject(), finish));
            if (includeUsage)
            {
                await HttpOutput.Event(http, new JsonObject
                {
                    ["id"] = id,
                    ["object"] = "chat.completion.chunk",
                    ["created"] = created,
                    ["model"] = runtime.Name,
                    ["system_fingerprint"] = "kaiyuan",
                    ["choices"] = new JsonArray(),
                    ["usage"] = Usage(outcome),
                });
            }
            await HttpOutput.Done(http);
            return;
        }

        var answer = await generation.CollectAsync();
        var calls = answer.Calls;
        var message = new JsonObject { ["role"] = "assistant", ["content"] = calls.Count > 0 && string.IsNullOrWhiteSpace(answer.Content) ? null : answer.Content };
        if (answer.Reasoning.Length > 0) message["reasoning_content"] = answer.Reasoning;
        if (calls.Count > 0) message["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode)ToolCallJson(c)).ToArray());
        await HttpOutput.Json(http, new JsonObject
        {
            ["id"] = id,
            ["object"] = "chat.completion",
            ["created"] = created,
            ["model"] = runtime.Name,
            ["system_fingerprint"] = "kaiyuan",
            ["choices"] = new JsonArray(new JsonObject
            {
                ["index"] = 0,
                ["message"] = message,
                ["logprobs"] = logprobs ? new JsonObject { ["content"] = LogprobsContent(runtime, answer.Tokens) } : null,
                ["finish_reason"] = Finish(outcome, calls.Count),
            }),
            ["usage"] = Usage(outcome),
        });
    }

    /// <summary>"tool_calls" when the answer ended after calls; a cut-off answer stays "length" (its last call is incomplete).</summary>
    private static string Finish(GenerationOutcome outcome, int calls) => ChatGeneration.EndedWithCalls(outcome, calls) ? "tool_calls" : outcome.FinishReason;

    private static JsonObject ToolCallJson(ToolCall call) => new()
    {
        ["id"] = call.Id,
        ["type"] = "function",
        ["function"] = new JsonObject { ["name"] = call.Name, ["arguments"] = call.Arguments },
    };

    /// <summary>A streamed tool-call delta: the first one of a call names it, the rest add argument text.</summary>
    private static JsonObject ToolCallDelta(ChatDelta d, bool first)
    {
        var function = new JsonObject { ["arguments"] = d.Text };
        var json = new JsonObject { ["index"] = d.Index };
        if (first)
        {
            json["id"] = d.Id ?? $"call_{d.Index}";
            json["type"] = "function";
            function["name"] = d.Name ?? "";
        }
        json["function"] = function;
        return json;
    }

    private static JsonArray LogprobsContent(ModelRuntime runtime, IEnumerable<TokenInfo> tokens)
    {
        var array = new JsonArray();
        foreach (var t in tokens)
        {
            var top = new JsonArray();
            foreach (var alt in t.Top ?? [])
                top.Add(new JsonObject { ["token"] = runtime.Codec.Decode([alt.Id]), ["logprob"] = alt.Logprob, ["bytes"] = Bytes(runtime, alt.Id) });
            array.Add(new JsonObject
            {
                ["token"] = runtime.Codec.Decode([t.Id]),
                ["logprob"] = t.Logprob,
                ["bytes"] = Bytes(runtime, t.Id),
                ["top_logprobs"] = top,
            });
        }
        return array;
    }

    private static JsonArray Bytes(ModelRuntime runtime, int id) => new(runtime.Codec.TokenBytes(id).Select(b => (JsonNode)(int)b).ToArray());

    private static JsonObject Usage(GenerationOutcome o) => new()
    {
        ["prompt_tokens"] = o.PromptTokens,
        ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = o.CachedTokens },
        ["completion_tokens"] = o.CompletionTokens,
        ["total_tokens"] = o.PromptTokens + o.CompletionTokens,
    };

    public static async Task CompletionsAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        RejectUnsupported(r);
        if (r.Bool("echo", false)) throw ApiException.Unsupported("echo", "true");
        int? logprobCount = r.Int("logprobs", 0, 20);
        var settings = new GenerationSettings
        {
            Prompt = ApiRequests.Prompt(r.Get("prompt"), runtime, "prompt"),
            Sampling = ApiRequests.Sampling(r, runtime.Engine.VocabSize),
            MaxTokens = r.Int("max_tokens", -1, int.MaxValue) ?? r.Int("n_predict", -1, int.MaxValue) ?? 16,
            Stop = r.Strings("stop", 16),
            TopLogprobs = logprobCount ?? -1,
            IgnoreEos = r.Bool("ignore_eos", false),
            Constraint = await StructuredOutput.ForPromptAsync(state, runtime, StructuredOutput.FromOpenAi(r), http.RequestAborted),
        };
        if (settings.Prompt.Count == 0) throw ApiException.BadRequest("'prompt' is empty", "prompt");
        ApiRequests.CheckContext(runtime, settings.Prompt.Count, "prompt");
        bool stream = r.Bool("stream", false);
        bool includeUsage = stream && r.Get("stream_options") is { ValueKind: JsonValueKind.Object } so && new JsonRequest(so).Bool("include_usage", false);
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = ApiRequests.Now();
        // Submitted before anything is sent, so a refusal (queue full, context overflow) keeps its status.
        using var generation = TextGeneration.Start(runtime, state.Metrics, settings, http.RequestAborted);
        var outcome = generation.Outcome;
        JsonObject Body(string text, string? finish, JsonNode? lp, bool usage) => new()
        {
            ["id"] = id,
            ["object"] = "text_completion",
            ["created"] = created,
            ["model"] = runtime.Name,
            ["system_fingerprint"] = "kaiyuan",
            ["choices"] = new JsonArray(new JsonObject { ["text"] = text, ["index"] = 0, ["logprobs"] = lp, ["finish_reason"] = finish }),
            ["usage"] = usage ? Usage(outcome) : null,
        };
        if (stream)
        {
            // Completions have no role chunk: a comment is the first byte instead.
            HttpOutput.StartEventStream(http);
            await HttpOutput.KeepAlive(http);
            await generation.WaitForFirstTokenAsync(state.Options.StreamKeepAlive, () => HttpOutput.KeepAlive(http));
            int offset = 0;
            await foreach (var piece in generation)
                await HttpOutput.Event(http, Body(piece.Text, null, logprobCount is null ? null : CompletionLogprobs(runtime, piece.Tokens, ref offset), false));
            await HttpOutput.Event(http, Body("", outcome.FinishReason, null, includeUsage));
            await HttpOutput.Done(http);
            return;
        }
        var text = new StringBuilder();
        var tokens = new List<TokenInfo>();
        await foreach (var piece in generation)
        {
            text.Append(piece.Text);
            tokens.AddRange(piece.Tokens);
        }
        int start = 0;
        await HttpOutput.Json(http, Body(text.ToString(), outcome.FinishReason, logprobCount is null ? null : CompletionLogprobs(runtime, tokens, ref start), true));
    }

    private static JsonObject CompletionLogprobs(ModelRuntime runtime, IReadOnlyList<TokenInfo> tokens, ref int offset)
    {
        var text = new JsonArray();
        var lps = new JsonArray();
        var tops = new JsonArray();
        var offsets = new JsonArray();
        foreach (var t in tokens)
        {
            string s = runtime.Codec.Decode([t.Id]);
            text.Add(s);
            lps.Add(t.Logprob);
            var top = new JsonObject();
            foreach (var alt in t.Top ?? []) top[runtime.Codec.Decode([alt.Id])] = alt.Logprob;
            tops.Add(top);
            offsets.Add(offset);
            offset += s.Length;
        }
        return new JsonObject { ["tokens"] = text, ["token_logprobs"] = lps, ["top_logprobs"] = tops, ["text_offset"] = offsets };
    }

    public static async Task EmbeddingsAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        string format = r.String("encoding_format") ?? "float";
        if (format is not ("float" or "base64")) throw ApiException.BadRequest("'encoding_format' must be \"float\" or \"base64\"", "encoding_format");
        ApiRequests.CheckEmbeddingDimensions(r, runtime);
        var (vectors, tokens) = await ApiRequests.EmbedAsync(state, runtime, EmbeddingInputs(r.Get("input"), runtime), truncate: null, "input", http.RequestAborted);
        var data = new JsonArray();
        for (int i = 0; i < vectors.Length; i++)
        {
            JsonNode embedding = format == "base64"
                ? Convert.ToBase64String(MemoryMarshal.AsBytes(vectors[i].AsSpan()))
                : new JsonArray(vectors[i].Select(v => (JsonNode)v).ToArray());
            data.Add(new JsonObject { ["object"] = "embedding", ["index"] = i, ["embedding"] = embedding });
        }
        await HttpOutput.Json(http, new JsonObject
        {
            ["object"] = "list",
            ["data"] = data,
            ["model"] = runtime.Name,
            ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens },
        });
    }

    private static List<int[]> EmbeddingInputs(JsonElement? input, ModelRuntime runtime)
    {
        if (input is not { } v) throw ApiException.BadRequest("'input' is required", "input");
        var list = new List<int[]>();
        if (v.ValueKind == JsonValueKind.String) list.Add(ApiRequests.Prompt(v, runtime, "input"));
        else if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number))
            list.Add(ApiRequests.Prompt(v, runtime, "input"));
        else if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0)
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind is not (JsonValueKind.String or JsonValueKind.Array)) throw ApiException.BadRequest("'input' items must be strings or token arrays", "input");
                list.Add(ApiRequests.Prompt(item, runtime, "input"));
            }
        else throw ApiException.BadRequest("'input' must be a string, an array of strings, or token ids", "input");
        if (list.Count > 2048) throw ApiException.BadRequest("'input' takes at most 2048 items", "input");
        if (list.Any(i => i.Length == 0)) throw ApiException.BadRequest("'input' holds an empty string", "input");
        return list;
    }
}
