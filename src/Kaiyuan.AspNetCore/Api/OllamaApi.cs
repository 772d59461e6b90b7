using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>
/// The Ollama-compatible endpoints: chat, generate (NDJSON streaming), embed, tags, show, version, ps; pull, delete and
/// copy are in <see cref="OllamaModelsApi"/>.
/// </summary>
internal static class OllamaApi
{
    public const string Version = "0.12.0";

    public static void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/api/version", (HttpContext http) => HttpOutput.Json(http, new JsonObject { ["version"] = Version }));
        app.MapGet("/api/tags", (HttpContext http, ServerState state) => HttpOutput.Json(http, new JsonObject
        {
            // The served models, then what else the store holds (pulled or copied, servable after a restart with --models).
            ["models"] = new JsonArray([.. state.Models.Models.Select(m => (JsonNode)ModelEntry(state, m, null)),
                .. OllamaModelsApi.StoreEntries(state, state.Models.Models.Select(m => Path.GetFullPath(m.Path)).ToHashSet())]),
        }));
        app.MapGet("/api/ps", (HttpContext http, ServerState state) => HttpOutput.Json(http, new JsonObject
        {
            ["models"] = new JsonArray(state.Models.LoadedModels().Select(l => (JsonNode)ModelEntry(state, l.Model, l)).ToArray()),
        }));
        app.MapPost("/api/show", ShowAsync);
        app.MapPost("/api/chat", (HttpContext http, ServerState state) => GenerateAsync(http, state, chat: true));
        app.MapPost("/api/generate", (HttpContext http, ServerState state) => GenerateAsync(http, state, chat: false));
        app.MapPost("/api/embed", EmbedAsync);
        app.MapPost("/api/embeddings", LegacyEmbeddingsAsync);
        OllamaModelsApi.Map(app);
    }

    private static string Name(string name) => name.Contains(':', StringComparison.Ordinal) ? name : name + ":latest";

    private static string Digest(ServedModel model) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(model.Path))));

    private static JsonObject Details(ModelDescription description) => new()
    {
        ["parent_model"] = "",
        ["format"] = "gguf",
        ["family"] = description.Architecture,
        ["families"] = new JsonArray(description.Architecture),
        ["parameter_size"] = ParameterSize(description.ParameterCount),
        ["quantization_level"] = description.FileType,
    };

    private static string ParameterSize(long n) => n switch
    {
        >= 1_000_000_000 => $"{n / 1e9:F1}B",
        >= 1_000_000 => $"{n / 1e6:F1}M",
        _ => $"{n / 1e3:F1}K",
    };

    /// <summary>A model as /api/tags lists it (its file's size), or as /api/ps does when loaded (its memory, and when it expires).</summary>
    private static JsonObject ModelEntry(ServerState state, ServedModel model, ModelRegistry.Loaded? loaded)
    {
        var (description, bytes) = loaded is null ? state.Models.Describe(model) : (loaded.Runtime.Description, loaded.Bytes);
        var entry = new JsonObject
        {
            ["name"] = Name(model.Name),
            ["model"] = Name(model.Name),
            ["modified_at"] = File.GetLastWriteTimeUtc(model.Path).ToString("o"),
            ["size"] = loaded is null ? description.FileSize : Math.Max(bytes, description.FileSize),
            ["digest"] = Digest(model),
            ["details"] = Details(description),
        };
        if (loaded is not null)
        {
            // Kept until the server stops: far in the future, as Ollama shows a negative keep_alive.
            entry["expires_at"] = (loaded.ExpiresAt ?? DateTimeOffset.UtcNow.AddYears(100)).ToString("o");
            entry["size_vram"] = 0;
            entry["context_length"] = loaded.Runtime.ContextLength;
        }
        return entry;
    }

    private static async Task ShowAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        // As Ollama, show does not load the model: its GGUF header says all this.
        var model = state.Models.Find(r.String("model") ?? r.String("name"));
        var description = state.Models.LoadedModels().FirstOrDefault(l => l.Model == model)?.Runtime.Description ?? state.Models.Describe(model).Description;
        var info = new JsonObject();
        foreach (var (key, value) in description.Info) info[key] = InfoValue(value);
        await HttpOutput.Json(http, new JsonObject
        {
            ["modelfile"] = $"FROM {model.Path}\n",
            ["parameters"] = "",
            ["template"] = description.ChatTemplate ?? "",
            ["details"] = Details(description),
            ["model_info"] = info,
            ["capabilities"] = new JsonArray("completion", "tools", "embedding"),
            ["modified_at"] = File.GetLastWriteTimeUtc(model.Path).ToString("o"),
        });
    }

    // JsonValue.Create(object) needs reflection-based serialization, which this (trimmable) server has off: GGUF
    // metadata values are converted by their own types instead.
    private static JsonNode? InfoValue(object? value) => value switch
    {
        null => null,
        string s => JsonValue.Create(s),
        bool b => JsonValue.Create(b),
        int i => JsonValue.Create(i),
        long l => JsonValue.Create(l),
        uint u => JsonValue.Create(u),
        ulong u => JsonValue.Create(u),
        float f => float.IsFinite(f) ? JsonValue.Create(f) : JsonValue.Create(f.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        double d => double.IsFinite(d) ? JsonValue.Create(d) : JsonValue.Create(d.ToString(System.Globalization.CultureInfo.InvariantCulture)),
        byte or sbyte or short or ushort => JsonValue.Create(Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)),
        System.Collections.IEnumerable items => new JsonArray(items.Cast<object?>().Select(InfoValue).ToArray()),
        _ => JsonValue.Create(value.ToString()),
    };

    private static async Task EmbedAsync(HttpContext http, ServerState state)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"), keepAlive: KeepAlive.FromJson(r.Get("keep_alive")));
        CheckOptions(r);
        bool truncate = r.Bool("truncate", true);
        ApiRequests.CheckEmbeddingDimensions(r, runtime);
        // Ollama takes a string or an array of strings; an empty string or list only loads the model and embeds nothing.
        List<string> texts = r.Get("input") switch
        {
            null => [],
            { ValueKind: JsonValueKind.String } s => s.GetString() is { Length: > 0 } one ? [one] : [],
            { ValueKind: JsonValueKind.Array } a when a.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
                a.EnumerateArray().Select(e => e.GetString()!).ToList(),
            _ => throw RequestException.BadRequest("'input' must be a string or an array of strings", "input"),
        };
        if (texts.Count > 2048) throw RequestException.BadRequest("'input' takes at most 2048 items", "input");
        var (vectors, tokens) = await EmbedTextsAsync(state, runtime, texts, truncate, "input", http.RequestAborted);
        await HttpOutput.Json(http, new JsonObject
        {
            ["model"] = Name(runtime.Name),
            ["embeddings"] = new JsonArray(vectors.Select(v => (JsonNode)Vector(v)).ToArray()),
            ["total_duration"] = (long)(clock.Elapsed.TotalMicroseconds * 1000),
            ["load_duration"] = 0,
            ["prompt_eval_count"] = tokens,
        });
    }

    /// <summary>Ollama's older single-prompt endpoint, kept because many clients still call it.</summary>
    private static async Task LegacyEmbeddingsAsync(HttpContext http, ServerState state)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var runtime = await state.RuntimeForAsync(http, r.String("model"), keepAlive: KeepAlive.FromJson(r.Get("keep_alive")));
        CheckOptions(r);
        string prompt = r.String("prompt") ?? "";
        // As Ollama: an empty prompt answers an empty embedding rather than an error.
        var (vectors, _) = await EmbedTextsAsync(state, runtime, prompt.Length > 0 ? [prompt] : [], truncate: true, "prompt", http.RequestAborted);
        await HttpOutput.Json(http, new JsonObject { ["embedding"] = vectors.Length > 0 ? Vector(vectors[0]) : new JsonArray() });
    }

    private static void CheckOptions(JsonRequest r)
    {
        // options tune Ollama's runner; this server's is set when it starts.
        if (r.Has("options") && r.Get("options")!.Value.ValueKind != JsonValueKind.Object) throw RequestException.BadRequest("'options' must be an object", "options");
    }

    private static Task<(float[][] Vectors, int Tokens)> EmbedTextsAsync(ServerState state, ModelRuntime runtime, List<string> texts, bool truncate,
        string param, CancellationToken cancel)
    {
        var inputs = new List<int[]>(texts.Count);
        foreach (var text in texts)
        {
            var ids = runtime.Tokenize(text, addSpecial: true, parseSpecial: true);
            if (ids.Length == 0) throw RequestException.BadRequest($"'{param}' holds a text with no tokens", param);
            inputs.Add(ids);
        }
        return ApiRequests.EmbedAsync(state, runtime, inputs, truncate, param, cancel);
    }

    private static JsonArray Vector(float[] v) => new(v.Select(x => (JsonNode)x).ToArray());

    private static async Task GenerateAsync(HttpContext http, ServerState state, bool chat)
    {
        var r = await JsonRequest.ReadAsync(http.Request, http.RequestAborted);
        var keepAlive = KeepAlive.FromJson(r.Get("keep_alive"));
        var lease = await state.LeaseAsync(http, r.String("model"), keepAlive: keepAlive);
        var runtime = lease.Runtime;
        if (chat ? !r.Has("messages") || r.Get("messages") is { ValueKind: JsonValueKind.Array } m && m.GetArrayLength() == 0 : string.IsNullOrEmpty(r.String("prompt")))
        {
            // As Ollama: no prompt (or no messages) only loads the model, and a keep_alive of 0 unloads it (done here,
            // before answering, so the client sees it gone).
            bool unload = keepAlive == TimeSpan.Zero;
            lease.Dispose();
            var done = new JsonObject { ["model"] = Name(runtime.Name), ["created_at"] = DateTimeOffset.UtcNow.ToString("o") };
            if (chat) done["message"] = new JsonObject { ["role"] = "assistant", ["content"] = "" };
            else done["response"] = "";
            done["done"] = true;
            done["done_reason"] = unload ? "unload" : "load";
            await HttpOutput.Json(http, done);
            return;
        }
        var output = OutputRequests.FromOllama(r);
        if (r.Has("images")) throw RequestException.Unsupported("images", "");
        var options = r.Get("options") is { ValueKind: JsonValueKind.Object } o ? new JsonRequest(o)
            : r.Has("options") ? throw RequestException.BadRequest("'options' must be an object", "options") : new JsonRequest(JsonDocument.Parse("{}").RootElement);
        string prompt;
        var tools = new List<JsonElement>();
        bool templated = true;
        // Ollama's (deprecated but still used) conversation memory for generate: the token ids the last answer ended with.
        int[]? context = chat ? null : Context(r, runtime);
        if (chat)
        {
            var messages = ApiRequests.Messages(r, ollama: true);
            tools = ApiRequests.Tools(r);
            prompt = runtime.FormatChat(messages, tools, addGenerationPrompt: true);
        }
        else
        {
            string text = r.String("prompt") ?? "";
            bool raw = r.Bool("raw", false);
            templated = !raw;
            if (raw) prompt = text;
            else
            {
                var messages = new List<ChatMessage>();
                if (r.String("system") is { } system) messages.Add(new ChatMessage("system", system));
                messages.Add(new ChatMessage("user", text));
                prompt = runtime.FormatChat(messages, [], addGenerationPrompt: true);
            }
        }
        var sampling = ApiRequests.Sampling(options, runtime.VocabSize, "options.");
        // As Ollama: a raw prompt neither takes a context nor gives one back. A context already begins with the BOS token.
        if (!templated) context = null;
        int[] promptIds = runtime.Tokenize(prompt, addSpecial: context is not { Length: > 0 }, parseSpecial: true);
        if (context is { Length: > 0 }) promptIds = [.. context, .. promptIds];
        var generated = chat || !templated ? null : new List<int>();
        var settings = new GenerationSettings
        {
            Prompt = promptIds,
            Sampling = sampling,
            MaxTokens = options.Int("num_predict", -2, int.MaxValue) is { } n && n >= 0 ? n : -1,
            Stop = options.Strings("stop", 16),
            Constraint = templated
                ? await StructuredOutput.ForChatAsync(state.Options.GrammarTimeout, runtime, output, new ToolUse(tools, tools.Count > 0 ? ToolMode.Auto : ToolMode.None, null, Parallel: true), prompt, http.RequestAborted)
                : await StructuredOutput.ForPromptAsync(state.Options.GrammarTimeout, runtime, output, http.RequestAborted),
            PreservedTokens = templated ? runtime.OutputMarkers : [],
        };
        runtime.CheckContext(settings.Prompt.Count, chat ? "messages" : "prompt");
        bool stream = r.Bool("stream", true);
        var parser = runtime.CreateOutputParser(prompt, tools.Count > 0);
        var accumulator = new ToolCallAccumulator();
        // Submitted before anything is sent, so a refusal (queue full, context overflow) keeps its status.
        using var generation = TextGeneration.Start(runtime, state.Metrics, settings, http.RequestAborted);
        var outcome = generation.Outcome;
        string model = Name(runtime.Name);

        JsonObject Line(string content, string thinking, IReadOnlyList<ToolCall> calls, bool done)
        {
            var line = new JsonObject { ["model"] = model, ["created_at"] = DateTimeOffset.UtcNow.ToString("o") };
            if (chat)
            {
                var message = new JsonObject { ["role"] = "assistant", ["content"] = content };
                if (thinking.Length > 0) message["thinking"] = thinking;
                if (calls.Count > 0)
                    message["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode)new JsonObject
                    {
                        ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = ParseArguments(c.Arguments) },
                    }).ToArray());
                line["message"] = message;
            }
            else
            {
                line["response"] = content;
                if (thinking.Length > 0) line["thinking"] = thinking;
            }
            line["done"] = done;
            if (done)
            {
                line["done_reason"] = outcome.FinishReason;
                if (generated is not null) line["context"] = new JsonArray([.. promptIds.Concat(generated).Select(id => (JsonNode)id)]);
                line["total_duration"] = (long)((outcome.PromptTime + outcome.GenerationTime).TotalMicroseconds * 1000);
                line["load_duration"] = 0;
                // As Ollama: the prompt tokens evaluated, which leaves out those its cache already held.
                line["prompt_eval_count"] = outcome.PromptTokens - outcome.CachedTokens;
                line["prompt_eval_duration"] = (long)(outcome.PromptTime.TotalMicroseconds * 1000);
                line["eval_count"] = outcome.CompletionTokens;
                line["eval_duration"] = (long)(outcome.GenerationTime.TotalMicroseconds * 1000);
            }
            return line;
        }

        // Tool calls are gathered and sent whole with the last line.
        (string Content, string Thinking, List<ToolCall> Calls) Split(IEnumerable<ChatDelta> deltas, bool last)
        {
            var content = new StringBuilder();
            var thinking = new StringBuilder();
            foreach (var d in deltas)
            {
                if (d.Kind == ChatDeltaKind.Content) content.Append(d.Text);
                else if (d.Kind == ChatDeltaKind.Reasoning) thinking.Append(d.Text);
                else accumulator.Add(d);
            }
            return (content.ToString(), thinking.ToString(), last ? accumulator.Calls : []);
        }

        if (stream)
        {
            // An empty, not-done line goes out at once, and again while the model reads the prompt: clients take it as a
            // chunk with no text. (Not a blank line: clients parse every line as JSON.)
            Task Waiting() => HttpOutput.Line(http, Line("", "", [], false));
            HttpOutput.StartNdjson(http);
            await Waiting();
            await generation.WaitForFirstTokenAsync(state.Options.StreamKeepAlive, Waiting);
            await foreach (var piece in generation)
            {
                generated?.AddRange(piece.Tokens.Select(t => t.Id));
                var (content, thinking, calls) = Split(parser.Push(piece.Text), last: false);
                if (content.Length > 0 || thinking.Length > 0 || calls.Count > 0) await HttpOutput.Line(http, Line(content, thinking, calls, false));
            }
            var (lastContent, lastThinking, lastCalls) = Split(parser.Finish(), last: true);
            await HttpOutput.Line(http, Line(lastContent, lastThinking, lastCalls, true));
            return;
        }
        var all = new List<ChatDelta>();
        await foreach (var piece in generation)
        {
            generated?.AddRange(piece.Tokens.Select(t => t.Id));
            all.AddRange(parser.Push(piece.Text));
        }
        all.AddRange(parser.Finish());
        var (c, t, k) = Split(all, last: true);
        await HttpOutput.Json(http, Line(c, t, k, true));
    }

    /// <summary>A generate request's "context": token ids of this model, which the new prompt goes on from.</summary>
    private static int[]? Context(JsonRequest r, ModelRuntime runtime)
    {
        if (r.Get("context") is not { } c) return null;
        if (c.ValueKind != JsonValueKind.Array) throw RequestException.BadRequest("'context' must be an array of token ids", "context");
        var ids = new int[c.GetArrayLength()];
        int i = 0;
        foreach (var e in c.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int id))
                throw RequestException.BadRequest("'context' must be an array of token ids", "context");
            if (id < 0 || id >= runtime.VocabSize)
                throw RequestException.BadRequest($"'context' holds the token id {id}, outside this model's vocabulary (0…{runtime.VocabSize - 1})", "context");
            ids[i++] = id;
        }
        return ids;
    }

    private static JsonNode ParseArguments(string arguments)
    {
        try
        {
            return JsonNode.Parse(arguments) ?? new JsonObject();
        }
        catch (JsonException)
        {
            return JsonValue.Create(arguments);
        }
    }
}
