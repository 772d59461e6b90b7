using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// What a task asks of a model for one answer. <see cref="Raw"/> prompts are completed as text (no chat template), as
/// base-model benchmarks are run; an endpoint completes them through <c>/v1/completions</c> when it was named with
/// <c>--completions</c>, and otherwise through chat, where the task words its prompt for chat instead.
/// </summary>
internal sealed record EvalRequest
{
    public required string Prompt { get; init; }
    public bool Raw { get; init; }
    public int MaxTokens { get; init; } = 512;
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>0: greedy. Above, nucleus sampling (top-p 0.95, as the HumanEval paper's samples) seeded by <see cref="Seed"/>.</summary>
    public float Temperature { get; init; }
    public ulong? Seed { get; init; }
    /// <summary>Multiple choice: the log-probability of each of these strings as the next token is wanted (where the model can give it).</summary>
    public IReadOnlyList<string>? Choices { get; init; }
}

/// <summary>One answer and what it cost: tokens, time to first token, generation time.</summary>
internal sealed record EvalAnswer(string Content, int TokensIn, int TokensOut, double TtftMs, double GenerationSeconds, string FinishReason)
{
    /// <summary>The log-probability of each requested choice as the answer's first token; null when the model gave none.</summary>
    public IReadOnlyDictionary<string, double>? ChoiceLogprobs { get; init; }
}

/// <summary>An endpoint refused a prompt as longer than its model's context.</summary>
internal sealed class PromptTooLongException(string message) : HttpRequestException(message, null, HttpStatusCode.BadRequest);

/// <summary>A model under evaluation: one in process, or one behind an OpenAI-compatible endpoint.</summary>
internal interface IEvalModel : IDisposable
{
    /// <summary>The name results are reported and saved under.</summary>
    string Name { get; }

    /// <summary>True when <see cref="EvalRequest.Raw"/> prompts are completed as text; false when they go through chat.</summary>
    bool CompletesRawText { get; }

    /// <summary>One answer to a request.</summary>
    Task<EvalAnswer> GenerateAsync(EvalRequest request, CancellationToken cancel);

    /// <summary>False when a raw prompt is known to leave no room for an answer in the model's context (an endpoint's is not known: true).</summary>
    bool Fits(string rawPrompt);

    /// <summary>The greedy chat answer's text as it is generated (the arena streams it); by default, the whole answer at once.</summary>
    async IAsyncEnumerable<string> StreamAsync(string userMessage, int maxTokens, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancel)
    {
        yield return (await GenerateAsync(new EvalRequest { Prompt = userMessage, MaxTokens = maxTokens }, cancel)).Content;
    }
}

/// <summary>A GGUF model loaded in process: its scheduler batches the concurrent answers.</summary>
internal sealed partial class LocalEvalModel(ModelRuntime runtime) : IEvalModel
{
    private readonly Dictionary<string, int> _choiceTokens = new(StringComparer.Ordinal);

    public string Name => runtime.Name;

    internal ModelRuntime Runtime => runtime;

    public bool CompletesRawText => true;

    public bool Fits(string rawPrompt) => runtime.Tokenize(rawPrompt).Length < runtime.ContextLength;

    public async Task<EvalAnswer> GenerateAsync(EvalRequest request, CancellationToken cancel)
    {
        var sampling = Sampling(request);
        if (!request.Raw)
        {
            var input = new Kaiyuan.Chat.ChatInput { Messages = [new Kaiyuan.Chat.ChatMessage("user", request.Prompt)], MaxTokens = request.MaxTokens, Stop = request.Stop, Sampling = sampling };
            using var chat = await ChatGeneration.StartAsync(null, TimeSpan.FromSeconds(10), runtime, input, cancel);
            var answer = await chat.CollectAsync();
            return Measured(answer.Content, chat.Outcome);
        }
        // Tokenized as the server's /v1/completions and `kaiyuan generate` tokenize a prompt.
        int[] prompt = runtime.Tokenize(request.Prompt);
        runtime.CheckContext(prompt.Length, "prompt");
        int[]? choices = request.Choices?.Select(ChoiceToken).ToArray();
        using var generation = TextGeneration.Start(runtime, null, new GenerationSettings
        {
            Prompt = prompt,
            Sampling = sampling,
            MaxTokens = request.MaxTokens,
            Stop = request.Stop,
            ScoredTokens = choices,
            // The choices' log-probabilities come with the first token, which must then be one (not an end of generation).
            IgnoreEos = choices is not null,
        }, cancel);
        var text = new StringBuilder();
        TokenLogprob[]? scored = null;
        await foreach (var piece in generation.WithCancellation(cancel))
        {
            text.Append(piece.Text);
            if (scored is null && piece.Tokens.Count > 0) scored = piece.Tokens[0].Scored;
        }
        var result = Measured(text.ToString(), generation.Outcome);
        if (scored is null || request.Choices is null) return result;
        var logprobs = new Dictionary<string, double>(StringComparer.Ordinal);
        for (int i = 0; i < scored.Length; i++) logprobs[request.Choices[i]] = scored[i].Logprob;
        return result with { ChoiceLogprobs = logprobs };
    }

    internal static SamplerOptions Sampling(EvalRequest request) => request.Temperature > 0
        ? new SamplerOptions { Temperature = request.Temperature, TopK = 0, TopP = 0.95f, MinP = 0, Seed = request.Seed }
        : SamplerOptions.Greedy;

    private static EvalAnswer Measured(string content, GenerationOutcome o) =>
        new(content, o.PromptTokens, o.CompletionTokens, o.PromptTime.TotalMilliseconds, o.GenerationTime.TotalSeconds, o.FinishReason);

    /// <summary>
    /// A choice's token: the vocabulary's own token for the string, as CMMLU's harness looks the letters up by name. The
    /// string is tokenized and its last token taken, which must spell it exactly: a SentencePiece tokenizer puts a
    /// space piece before a text's first word, and the letter's own token follows it.
    /// </summary>
    private int ChoiceToken(string choice)
    {
        lock (_choiceTokens)
        {
            if (_choiceTokens.TryGetValue(choice, out int id)) return id;
            int[] ids = runtime.Tokenize(choice, addSpecial: false, parseSpecial: false);
            if (ids.Length == 0 || !runtime.TokenBytes(ids[^1]).AsSpan().SequenceEqual(Encoding.UTF8.GetBytes(choice)))
                throw new NotSupportedException($"{Name}: the choice '{choice}' is no single token of this model's vocabulary; scoring a choice by its log-likelihood needs one token each");
            return _choiceTokens[choice] = ids[^1];
        }
    }

    public void Dispose() => runtime.Dispose();
}

/// <summary>
/// A model behind an OpenAI-compatible endpoint (a closed API, vLLM, Ollama, another kaiyuan serve), named
/// <c>openai:BASE_URL#MODEL</c>: chat completions, or with <paramref name="completions"/> text completions for raw
/// prompts. Streams, to measure the time to the first token; usage from the final chunk (or counted chunks when the
/// server sends none). 429 and 5xx answers and dropped connections are retried with exponential backoff, honouring
/// Retry-After.
/// </summary>
internal sealed partial class OpenAiEvalModel : IEvalModel
{
    public const string Prefix = "openai:";

    /// <summary>The alternatives asked for with a choice's first token: the most OpenAI's API gives.</summary>
    private const int TopLogprobs = 20;

    private readonly HttpClient _http;
    private readonly string _model;
    private readonly bool _completions;
    private readonly int _attempts;
    private readonly TimeSpan _firstDelay;

    public OpenAiEvalModel(string spec, string? apiKey, int attempts = 5, TimeSpan? firstDelay = null, bool completions = false)
    {
        int hash = spec.IndexOf('#', StringComparison.Ordinal);
        if (!spec.StartsWith(Prefix, StringComparison.Ordinal) || hash < 0 || hash == spec.Length - 1)
            throw new ArgumentException($"'{spec}': an endpoint model is written openai:BASE_URL#MODEL (e.g. openai:http://127.0.0.1:8080/v1#qwen3)");
        string url = spec[Prefix.Length..hash];
        if (!Uri.TryCreate(url.EndsWith('/') ? url : url + "/", UriKind.Absolute, out var baseUri) || baseUri.Scheme is not ("http" or "https"))
            throw new ArgumentException($"'{spec}': '{url}' is not an http(s) URL");
        _model = spec[(hash + 1)..];
        _completions = completions;
        _attempts = attempts;
        _firstDelay = firstDelay ?? TimeSpan.FromSeconds(1);
        _http = new HttpClient { BaseAddress = baseUri, Timeout = TimeSpan.FromMinutes(10) };
        if (!string.IsNullOrEmpty(apiKey)) _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
    }

    public string Name => _model;

    public bool CompletesRawText => _completions;

    public bool Fits(string rawPrompt) => true;

    public async Task<EvalAnswer> GenerateAsync(EvalRequest request, CancellationToken cancel)
    {
        var (path, body) = Body(request);
        using var response = await SendAsync(path, body, cancel);
        var answer = await ReadStreamAsync(response.Response, response.Clock, cancel);
        return request.Choices is null ? answer.Item1 : answer.Item1 with { ChoiceLogprobs = ChoiceLogprobs(answer.Item2, request.Choices) };
    }

    /// <summary>The streamed request for <paramref name="request"/>: its path (chat or text completions) and JSON body.</summary>
    private (string Path, string Body) Body(EvalRequest request)
    {
        bool text = request.Raw && _completions;
        var body = new JsonObject { ["model"] = _model };
        if (text) body["prompt"] = request.Prompt;
        else body["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = request.Prompt });
        body["temperature"] = request.Temperature;
        if (request.Temperature > 0) body["top_p"] = 0.95;
        if (request.Seed is { } seed) body["seed"] = (long)(seed & long.MaxValue);
        body["max_tokens"] = request.MaxTokens;
        if (request.Stop.Count > 0) body["stop"] = new JsonArray(request.Stop.Select(s => (JsonNode)s).ToArray());
        if (request.Choices is not null)
        {
            // Chat asks for log-probabilities with a flag and a count, text completions with the count alone.
            if (text) body["logprobs"] = TopLogprobs;
            else
            {
                body["logprobs"] = true;
                body["top_logprobs"] = TopLogprobs;
            }
        }
        body["stream"] = true;
        body["stream_options"] = new JsonObject { ["include_usage"] = true };
        return (text ? "completions" : "chat/completions", body.ToJsonString());
    }

    /// <summary>Each choice's log-probability among the first token's alternatives (a token " A" counts as "A"); null when none is there.</summary>
    internal static Dictionary<string, double>? ChoiceLogprobs(IReadOnlyList<(string Token, double Logprob)>? top, IReadOnlyList<string> choices)
    {
        if (top is null) return null;
        var found = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var (token, logprob) in top)
        {
            string t = token.Trim();
            if (choices.Contains(t) && (!found.TryGetValue(t, out double seen) || logprob > seen)) found[t] = logprob;
        }
        return found.Count == 0 ? null : found;
    }

    /// <summary>A successful streamed response, and the clock started as the request was sent.</summary>
    internal sealed record Sent(HttpResponseMessage Response, Stopwatch Clock) : IDisposable
    {
        public void Dispose() => Response.Dispose();
    }

    /// <summary>
    /// Posts <paramref name="body"/> and returns the response once its headers say it succeeded: 429 and 5xx answers and
    /// dropped connections are retried with exponential backoff (honouring Retry-After); a 4xx is final.
    /// </summary>
    internal async Task<Sent> SendAsync(string path, string body, CancellationToken cancel)
    {
        for (int attempt = 1; ; attempt++)
        {
            TimeSpan? retryAfter = null;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                var clock = Stopwatch.StartNew();
                var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
                if (response.StatusCode == HttpStatusCode.TooManyRequests || (int)response.StatusCode >= 500)
                {
                    retryAfter = response.Headers.RetryAfter?.Delta;
                    response.Dispose();
                    if (attempt >= _attempts) throw new HttpRequestException($"{_model}: the endpoint answered {(int)response.StatusCode} {attempt} times");
                }
                else
                {
                    if (!response.IsSuccessStatusCode)
                    {
                        string error = await response.Content.ReadAsStringAsync(cancel);
                        response.Dispose();
                        string message = $"{_model}: the endpoint answered {(int)response.StatusCode}: {error}";
                        // A prompt longer than the model's context (OpenAI's code context_length_exceeded; other servers word it
                        // their own way, all naming the context): a task may ask again with a shorter one.
                        if (response.StatusCode == HttpStatusCode.BadRequest && error.Contains("context", StringComparison.OrdinalIgnoreCase))
                            throw new PromptTooLongException(message);
                        throw new HttpRequestException(message, null, response.StatusCode);
                    }
                    return new Sent(response, clock);
                }
            }
            catch (HttpRequestException e) when (e.StatusCode is null && attempt < _attempts && !cancel.IsCancellationRequested)
            {
                // A dropped connection: retried like a 5xx (a 4xx answer is the request's fault, and final).
            }
            var delay = retryAfter ?? _firstDelay * Math.Pow(2, attempt - 1);
            await Task.Delay(delay, cancel);
        }
    }

    private static async Task<(EvalAnswer, List<(string, double)>?)> ReadStreamAsync(HttpResponseMessage response, Stopwatch clock, CancellationToken cancel)
    {
        var content = new StringBuilder();
        double ttft = -1;
        int chunks = 0, tokensIn = 0, tokensOut = -1;
        string finish = "stop";
        List<(string, double)>? firstTop = null;
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
        while (await reader.ReadLineAsync(cancel) is { } line)
        {
            if (!line.StartsWith("data:", StringComparison.Ordinal)) continue;
            string data = line[5..].Trim();
            if (data == "[DONE]") break;
            using var chunk = JsonDocument.Parse(data);
            var root = chunk.RootElement;
            if (root.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
            {
                tokensIn = usage.TryGetProperty("prompt_tokens", out var p) ? p.GetInt32() : 0;
                tokensOut = usage.TryGetProperty("completion_tokens", out var c) ? c.GetInt32() : tokensOut;
            }
            if (!root.TryGetProperty("choices", out var choices) || choices.GetArrayLength() == 0) continue;
            var choice = choices[0];
            // Chat streams deltas; text completions stream "text".
            var piece = choice.TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var c1) ? c1
                : choice.TryGetProperty("text", out var t1) ? t1 : default;
            // The first token is the first text, answer or reasoning: servers send an empty role chunk (kaiyuan serve at
            // once, to keep the client from timing out while a long prompt is read) that is no token yet.
            bool reasoning = delta.ValueKind == JsonValueKind.Object && delta.TryGetProperty("reasoning_content", out var r1)
                && r1.ValueKind == JsonValueKind.String && r1.GetString()!.Length > 0;
            if (ttft < 0 && (reasoning || (piece.ValueKind == JsonValueKind.String && piece.GetString()!.Length > 0))) ttft = clock.Elapsed.TotalMilliseconds;
            if (piece.ValueKind == JsonValueKind.String && piece.GetString()!.Length > 0)
            {
                content.Append(piece.GetString());
                chunks++;
            }
            if (firstTop is null && choice.TryGetProperty("logprobs", out var logprobs) && logprobs.ValueKind == JsonValueKind.Object) firstTop = FirstTop(logprobs);
            if (choice.TryGetProperty("finish_reason", out var reason) && reason.ValueKind == JsonValueKind.String) finish = reason.GetString()!;
        }
        double total = clock.Elapsed.TotalSeconds;
        if (ttft < 0) ttft = total * 1000;
        return (new EvalAnswer(content.ToString(), tokensIn, tokensOut >= 0 ? tokensOut : chunks, ttft, total - ttft / 1000, finish), firstTop);
    }

    /// <summary>The first token's alternatives: chat's <c>content[0].top_logprobs</c> ({token, logprob} objects), or text
    /// completions' <c>top_logprobs[0]</c> (a token → logprob map); null when the chunk has none.</summary>
    internal static List<(string, double)>? FirstTop(JsonElement logprobs)
    {
        var top = new List<(string, double)>();
        if (logprobs.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.Array && content.GetArrayLength() > 0)
        {
            if (content[0].TryGetProperty("top_logprobs", out var alternatives) && alternatives.ValueKind == JsonValueKind.Array)
                foreach (var a in alternatives.EnumerateArray())
                    if (a.TryGetProperty("token", out var t) && t.ValueKind == JsonValueKind.String && a.TryGetProperty("logprob", out var l) && l.ValueKind == JsonValueKind.Number)
                        top.Add((t.GetString()!, l.GetDouble()));
        }
        else if (logprobs.TryGetProperty("top_logprobs", out var perToken) && perToken.ValueKind == JsonValueKind.Array && perToken.GetArrayLength() > 0
                 && perToken[0].ValueKind == JsonValueKind.Object)
        {
            foreach (var a in perToken[0].EnumerateObject())
                if (a.Value.ValueKind == JsonValueKind.Number) top.Add((a.Name, a.Value.GetDouble()));
        }
        else return null;
        return top;
    }

    public void Dispose() => _http.Dispose();
}
