using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;

namespace Kaiyuan.Cli.Eval;

/// <summary>One answer and what it cost: tokens, time to first token, generation time.</summary>
internal sealed record EvalAnswer(string Content, int TokensIn, int TokensOut, double TtftMs, double GenerationSeconds, string FinishReason);

/// <summary>A model under evaluation: one in process, or one behind an OpenAI-compatible endpoint.</summary>
internal interface IEvalModel : IDisposable
{
    /// <summary>The name results are reported and saved under.</summary>
    string Name { get; }

    /// <summary>The greedy answer to one user message.</summary>
    Task<EvalAnswer> AnswerAsync(string userMessage, int maxTokens, CancellationToken cancel);

    /// <summary>The answer's text as it is generated (the arena streams it); by default, the whole answer at once.</summary>
    async IAsyncEnumerable<string> StreamAsync(string userMessage, int maxTokens, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancel)
    {
        yield return (await AnswerAsync(userMessage, maxTokens, cancel)).Content;
    }
}

/// <summary>A GGUF model loaded in process: its scheduler batches the concurrent answers.</summary>
internal sealed partial class LocalEvalModel(ModelRuntime runtime) : IEvalModel
{
    public string Name => runtime.Name;

    internal ModelRuntime Runtime => runtime;

    public async Task<EvalAnswer> AnswerAsync(string userMessage, int maxTokens, CancellationToken cancel)
    {
        var input = new Kaiyuan.Chat.ChatInput { Messages = [new Kaiyuan.Chat.ChatMessage("user", userMessage)], MaxTokens = maxTokens };
        using var generation = await ChatGeneration.StartAsync(null, TimeSpan.FromSeconds(10), runtime, input, cancel);
        var answer = await generation.CollectAsync();
        var o = generation.Outcome;
        return new EvalAnswer(answer.Content, o.PromptTokens, o.CompletionTokens, o.PromptTime.TotalMilliseconds, o.GenerationTime.TotalSeconds, o.FinishReason);
    }

    public void Dispose() => runtime.Dispose();
}

/// <summary>
/// A model behind an OpenAI-compatible chat completions endpoint (a closed API, vLLM, Ollama, another kaiyuan serve),
/// named <c>openai:BASE_URL#MODEL</c>. Streams, to measure the time to the first token; usage from the final chunk
/// (or counted chunks when the server sends none). 429 and 5xx answers and dropped connections are retried with
/// exponential backoff, honouring Retry-After.
/// </summary>
internal sealed partial class OpenAiEvalModel : IEvalModel
{
    public const string Prefix = "openai:";
    private readonly HttpClient _http;
    private readonly string _model;
    private readonly int _attempts;
    private readonly TimeSpan _firstDelay;

    public OpenAiEvalModel(string spec, string? apiKey, int attempts = 5, TimeSpan? firstDelay = null)
    {
        int hash = spec.IndexOf('#', StringComparison.Ordinal);
        if (!spec.StartsWith(Prefix, StringComparison.Ordinal) || hash < 0 || hash == spec.Length - 1)
            throw new ArgumentException($"'{spec}': an endpoint model is written openai:BASE_URL#MODEL (e.g. openai:http://127.0.0.1:8080/v1#qwen3)");
        string url = spec[Prefix.Length..hash];
        if (!Uri.TryCreate(url.EndsWith('/') ? url : url + "/", UriKind.Absolute, out var baseUri) || baseUri.Scheme is not ("http" or "https"))
            throw new ArgumentException($"'{spec}': '{url}' is not an http(s) URL");
        _model = spec[(hash + 1)..];
        _attempts = attempts;
        _firstDelay = firstDelay ?? TimeSpan.FromSeconds(1);
        _http = new HttpClient { BaseAddress = baseUri, Timeout = TimeSpan.FromMinutes(10) };
        if (!string.IsNullOrEmpty(apiKey)) _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
    }

    public string Name => _model;

    public async Task<EvalAnswer> AnswerAsync(string userMessage, int maxTokens, CancellationToken cancel)
    {
        var body = new JsonObject
        {
            ["model"] = _model,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = userMessage }),
            ["temperature"] = 0,
            ["max_tokens"] = maxTokens,
            ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
        }.ToJsonString();
        for (int attempt = 1; ; attempt++)
        {
            TimeSpan? retryAfter = null;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                var clock = Stopwatch.StartNew();
                using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
                if (response.StatusCode == HttpStatusCode.TooManyRequests || (int)response.StatusCode >= 500)
                {
                    retryAfter = response.Headers.RetryAfter?.Delta;
                    if (attempt >= _attempts) throw new HttpRequestException($"{_model}: the endpoint answered {(int)response.StatusCode} {attempt} times");
                }
                else
                {
                    if (!response.IsSuccessStatusCode)
                        throw new HttpRequestException($"{_model}: the endpoint answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancel)}",
                            null, response.StatusCode);
                    return await ReadStreamAsync(response, clock, cancel);
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

    private static async Task<EvalAnswer> ReadStreamAsync(HttpResponseMessage response, Stopwatch clock, CancellationToken cancel)
    {
        var content = new StringBuilder();
        double ttft = -1;
        int chunks = 0, tokensIn = 0, tokensOut = -1;
        string finish = "stop";
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
            if (choice.TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var text) && text.ValueKind == JsonValueKind.String)
            {
                if (ttft < 0) ttft = clock.Elapsed.TotalMilliseconds;
                content.Append(text.GetString());
                chunks++;
            }
            if (choice.TryGetProperty("finish_reason", out var reason) && reason.ValueKind == JsonValueKind.String) finish = reason.GetString()!;
        }
        double total = clock.Elapsed.TotalSeconds;
        if (ttft < 0) ttft = total * 1000;
        return new EvalAnswer(content.ToString(), tokensIn, tokensOut >= 0 ? tokensOut : chunks, ttft, total - ttft / 1000, finish);
    }

    public void Dispose() => _http.Dispose();
}
