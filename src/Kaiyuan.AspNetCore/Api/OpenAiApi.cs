using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>The OpenAI-compatible endpoints: models, chat completions, completions, embeddings.</summary>
internal static class OpenAiApi
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
            if (r.Has(name)) throw RequestException.Unsupported(name, "");
        if (r.Int("best_of", 1, 128) is > 1) throw RequestException.Unsupported("best_of", "greater than 1");
    }

    private static int MaxTokens(JsonRequest r) =>
        r.Int("max_completion_tokens", -1, int.MaxValue) ?? r.Int("max_tokens", -1, int.MaxValue) ?? r.Int("n_predict", -1, int.MaxValue) ?? -1;

    public static async Task ChatAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        RejectUnsupported(r);
        int n = Choices.Count(r, state);
        var messages = ApiRequests.Messages(r);
        var toolUse = ApiRequests.ToolChoice(r, ApiRequests.Tools(r));
        var output = OutputRequests.FromOpenAi(r);
        bool logprobs = r.Bool("logprobs", false);
        int topLogprobs = r.Int("top_logprobs", 0, 20) ?? 0;
        if (r.Has("top_logprobs") && !logprobs) throw RequestException.BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs");
        var input = new ChatInput
        {
            Messages = messages,
            Tools = toolUse,
            Output = output,
            Sampling = ApiRequests.Sampling(r, runtime.VocabSize),
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
        var generations = new List<ChatGeneration>(n);
        try
        {
            for (int i = 0; i < n; i++)
                generations.Add(await ChatGeneration.StartAsync(state.Metrics, state.Options.GrammarTimeout, runtime, input with { Sampling = Choices.Sampling(input.Sampling, i) }, http.RequestAborted));
            await ChatResponseAsync(http, state, runtime, generations, stream, includeUsage, logprobs, id, created);
        }
        finally
        {
            foreach (var g in generations) g.Dispose();
        }
    }

    private static async Task ChatResponseAsync(HttpContext http, ServerState state, ModelRuntime runtime, List<ChatGeneration> generations,
        bool stream, bool includeUsage, bool logprobs, string id, long created)
    {
        var outcomes = generations.Select(g => g.Outcome).ToList();

        JsonObject Chunk(int index, JsonObject delta, string? finish, JsonNode? logprobsNode = null) => new()
        {
            ["id"] = id,
            ["object"] = "chat.completion.chunk",
            ["created"] = created,
            ["model"] = runtime.Name,
            ["system_fingerprint"] = "kaiyuan",
            ["choices"] = new JsonArray(new JsonObject { ["index"] = index, ["delta"] = delta, ["logprobs"] = logprobsNode, ["finish_reason"] = finish }),
        };

        if (stream)
        {
            var seenCalls = generations.Select(_ => new HashSet<int>()).ToArray();
            // The role chunks go out at once, before the model has read the prompt: the client knows it was heard.
            HttpOutput.StartEventStream(http);
            for (int i = 0; i < generations.Count; i++) await HttpOutput.Event(http, Chunk(i, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null));
            await generations[0].WaitForFirstTokenAsync(state.Options.StreamKeepAlive, () => HttpOutput.KeepAlive(http));
            // Each choice's chunks carry its index, interleaved as the choices produce them; each ends with its finish chunk.
            await foreach (var (i, piece, end) in Choices.MergeAsync(generations.Select(g => g.ReadAsync()).ToList(), http.RequestAborted))
            {
                if (end)
                {
                    await HttpOutput.Event(http, Chunk(i, new JsonObject(), Finish(outcomes[i], seenCalls[i].Count)));
                    continue;
                }
                var lp = piece!.Tokens.Count > 0 && logprobs ? new JsonObject { ["content"] = LogprobsContent(runtime, piece.Tokens) } : null;
                bool sentLogprobs = false;
                foreach (var d in piece.Deltas)
                {
                    var delta = d.Kind switch
                    {
                        ChatDeltaKind.Content => new JsonObject { ["content"] = d.Text },
                        ChatDeltaKind.Reasoning => new JsonObject { ["reasoning_content"] = d.Text },
                        _ => new JsonObject { ["tool_calls"] = new JsonArray(ToolCallDelta(d, seenCalls[i].Add(d.Index))) },
                    };
                    await HttpOutput.Event(http, Chunk(i, delta, null, sentLogprobs ? null : lp?.DeepClone()));
                    sentLogprobs = true;
                }
            }
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
                    ["usage"] = Usage(outcomes),
                });
            }
            await HttpOutput.Done(http);
            return;
        }

        var answers = await Task.WhenAll(generations.Select(g => g.CollectAsync()));
        var choices = new JsonArray();
        for (int i = 0; i < answers.Length; i++)
        {
            var answer = answers[i];
            var calls = answer.Calls;
            var message = new JsonObject { ["role"] = "assistant", ["content"] = calls.Count > 0 && string.IsNullOrWhiteSpace(answer.Content) ? null : answer.Content };
            if (answer.Reasoning.Length > 0) message["reasoning_content"] = answer.Reasoning;
            if (calls.Count > 0) message["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode)ToolCallJson(c)).ToArray());
            choices.Add(new JsonObject
            {
                ["index"] = i,
                ["message"] = message,
                ["logprobs"] = logprobs ? new JsonObject { ["content"] = LogprobsContent(runtime, answer.Tokens) } : null,
                ["finish_reason"] = Finish(outcomes[i], calls.Count),
            });
        }
        await HttpOutput.Json(http, new JsonObject
        {
            ["id"] = id,
            ["object"] = "chat.completion",
            ["created"] = created,
            ["model"] = runtime.Name,
            ["system_fingerprint"] = "kaiyuan",
            ["choices"] = choices,
            ["usage"] = Usage(outcomes),
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
                top.Add(new JsonObject { ["token"] = runtime.Detokenize([alt.Id]), ["logprob"] = alt.Logprob, ["bytes"] = Bytes(runtime, alt.Id) });
            array.Add(new JsonObject
            {
                ["token"] = runtime.Detokenize([t.Id]),
                ["logprob"] = t.Logprob,
                ["bytes"] = Bytes(runtime, t.Id),
                ["top_logprobs"] = top,
            });
        }
        return array;
    }

    private static JsonArray Bytes(ModelRuntime runtime, int id) => new(runtime.TokenBytes(id).Select(b => (JsonNode)(int)b).ToArray());

    /// <summary>Usage of one or several choices: the prompt counted once (as OpenAI bills it), the completions of all of them.</summary>
    private static JsonObject Usage(IReadOnlyList<GenerationOutcome> outcomes)
    {
        var first = outcomes[0];
        int completion = outcomes.Sum(o => o.CompletionTokens);
        return new JsonObject
        {
            ["prompt_tokens"] = first.PromptTokens,
            ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = first.CachedTokens },
            ["completion_tokens"] = completion,
            ["total_tokens"] = first.PromptTokens + completion,
        };
    }

    public static async Task CompletionsAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"));
        RejectUnsupported(r);
        int n = Choices.Count(r, state);
        if (r.Bool("echo", false)) throw RequestException.Unsupported("echo", "true");
        int? logprobCount = r.Int("logprobs", 0, 20);
        var output = OutputRequests.FromOpenAi(r);
        var settings = new GenerationSettings
        {
            Prompt = ApiRequests.Prompt(r.Get("prompt"), runtime, "prompt"),
            Sampling = ApiRequests.Sampling(r, runtime.VocabSize),
            MaxTokens = r.Int("max_tokens", -1, int.MaxValue) ?? r.Int("n_predict", -1, int.MaxValue) ?? 16,
            Stop = r.Strings("stop", 16),
            TopLogprobs = logprobCount ?? -1,
            IgnoreEos = r.Bool("ignore_eos", false),
        };
        if (settings.Prompt.Count == 0) throw RequestException.BadRequest("'prompt' is empty", "prompt");
        runtime.CheckContext(settings.Prompt.Count, "prompt");
        bool stream = r.Bool("stream", false);
        bool includeUsage = stream && r.Get("stream_options") is { ValueKind: JsonValueKind.Object } so && new JsonRequest(so).Bool("include_usage", false);
        string id = "cmpl-" + Guid.NewGuid().ToString("N");
        long created = ApiRequests.Now();
        // Submitted before anything is sent, so a refusal (queue full, context overflow) keeps its status. Each choice has
        // its own constraint (a constraint follows one sequence).
        var generations = new List<TextGeneration>(n);
        try
        {
            for (int i = 0; i < n; i++)
            {
                var choice = settings with
                {
                    Sampling = Choices.Sampling(settings.Sampling, i),
                    Constraint = await StructuredOutput.ForPromptAsync(state.Options.GrammarTimeout, runtime, output, http.RequestAborted),
                };
                generations.Add(TextGeneration.Start(runtime, state.Metrics, choice, http.RequestAborted));
            }
            await CompletionsResponseAsync(http, state, runtime, generations, stream, includeUsage, logprobCount, id, created);
        }
        finally
        {
            foreach (var g in generations) g.Dispose();
        }
    }

    private static async Task CompletionsResponseAsync(HttpContext http, ServerState state, ModelRuntime runtime, List<TextGeneration> generations,
        bool stream, bool includeUsage, int? logprobCount, string id, long created)
    {
        var outcomes = generations.Select(g => g.Outcome).ToList();
        JsonObject Choice(int index, string text, string? finish, JsonNode? lp) =>
            new() { ["text"] = text, ["index"] = index, ["logprobs"] = lp, ["finish_reason"] = finish };
        JsonObject Body(JsonArray choices, bool usage) => new()
        {
            ["id"] = id,
            ["object"] = "text_completion",
            ["created"] = created,
            ["model"] = runtime.Name,
            ["system_fingerprint"] = "kaiyuan",
            ["choices"] = choices,
            ["usage"] = usage ? Usage(outcomes) : null,
        };
        if (stream)
        {
            // Completions have no role chunk: a comment is the first byte instead.
            HttpOutput.StartEventStream(http);
            await HttpOutput.KeepAlive(http);
            await generations[0].WaitForFirstTokenAsync(state.Options.StreamKeepAlive, () => HttpOutput.KeepAlive(http));
            var offsets = new int[generations.Count];
            // Each choice's chunks carry its index, interleaved as they come; the usage rides on the very last chunk.
            int left = generations.Count;
            await foreach (var (i, piece, end) in Choices.MergeAsync(generations, http.RequestAborted))
            {
                if (end)
                {
                    left--;
                    await HttpOutput.Event(http, Body(new JsonArray(Choice(i, "", outcomes[i].FinishReason, null)), includeUsage && left == 0));
                    continue;
                }
                var lp = logprobCount is null ? null : CompletionLogprobs(runtime, piece!.Tokens, ref offsets[i]);
                await HttpOutput.Event(http, Body(new JsonArray(Choice(i, piece!.Text, null, lp)), false));
            }
            await HttpOutput.Done(http);
            return;
        }
        var answers = await Task.WhenAll(generations.Select(async g =>
        {
            var text = new StringBuilder();
            var tokens = new List<TokenInfo>();
            await foreach (var piece in g)
            {
                text.Append(piece.Text);
                tokens.AddRange(piece.Tokens);
            }
            return (Text: text.ToString(), Tokens: tokens);
        }));
        var choices = new JsonArray();
        for (int i = 0; i < answers.Length; i++)
        {
            int start = 0;
            choices.Add(Choice(i, answers[i].Text, outcomes[i].FinishReason, logprobCount is null ? null : CompletionLogprobs(runtime, answers[i].Tokens, ref start)));
        }
        await HttpOutput.Json(http, Body(choices, true));
    }

    private static JsonObject CompletionLogprobs(ModelRuntime runtime, IReadOnlyList<TokenInfo> tokens, ref int offset)
    {
        var text = new JsonArray();
        var lps = new JsonArray();
        var tops = new JsonArray();
        var offsets = new JsonArray();
        foreach (var t in tokens)
        {
            string s = runtime.Detokenize([t.Id]);
            text.Add(s);
            lps.Add(t.Logprob);
            var top = new JsonObject();
            foreach (var alt in t.Top ?? []) top[runtime.Detokenize([alt.Id])] = alt.Logprob;
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
        if (format is not ("float" or "base64")) throw RequestException.BadRequest("'encoding_format' must be \"float\" or \"base64\"", "encoding_format");
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
        if (input is not { } v) throw RequestException.BadRequest("'input' is required", "input");
        var list = new List<int[]>();
        if (v.ValueKind == JsonValueKind.String) list.Add(ApiRequests.Prompt(v, runtime, "input"));
        else if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && v.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number))
            list.Add(ApiRequests.Prompt(v, runtime, "input"));
        else if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0)
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind is not (JsonValueKind.String or JsonValueKind.Array)) throw RequestException.BadRequest("'input' items must be strings or token arrays", "input");
                list.Add(ApiRequests.Prompt(item, runtime, "input"));
            }
        else throw RequestException.BadRequest("'input' must be a string, an array of strings, or token ids", "input");
        if (list.Count > 2048) throw RequestException.BadRequest("'input' takes at most 2048 items", "input");
        if (list.Any(i => i.Length == 0)) throw RequestException.BadRequest("'input' holds an empty string", "input");
        return list;
    }
}
