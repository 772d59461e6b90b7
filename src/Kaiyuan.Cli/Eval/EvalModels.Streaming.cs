using System.Net;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;

namespace Kaiyuan.Cli.Eval;

// Streamed answers (kaiyuan arena shows both answers as they are written).

internal sealed partial class LocalEvalModel
{
    /// <summary>The answer's text, a piece at a time, as the scheduler generates it (reasoning and tool calls are left out).</summary>
    public async IAsyncEnumerable<string> StreamAsync(string userMessage, int maxTokens, [EnumeratorCancellation] CancellationToken cancel)
    {
        var input = new Kaiyuan.Chat.ChatInput { Messages = [new Kaiyuan.Chat.ChatMessage("user", userMessage)], MaxTokens = maxTokens };
        using var generation = await ChatGeneration.StartAsync(null, TimeSpan.FromSeconds(10), Runtime, input, cancel);
        await foreach (var piece in generation.ReadAsync().WithCancellation(cancel))
            foreach (var delta in piece.Deltas)
                if (delta.Kind == ChatDeltaKind.Content && delta.Text.Length > 0) yield return delta.Text;
    }
}

internal sealed partial class OpenAiEvalModel
{
    /// <summary>
    /// The answer's text as the endpoint streams it. 429 and 5xx answers and dropped connections before the answer
    /// starts are retried like <see cref="GenerateAsync"/>'s; once text has been shown, a failure is the caller's.
    /// </summary>
    public async IAsyncEnumerable<string> StreamAsync(string userMessage, int maxTokens, [EnumeratorCancellation] CancellationToken cancel)
    {
        var body = new JsonObject
        {
            ["model"] = _model,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = userMessage }),
            ["temperature"] = 0,
            ["max_tokens"] = maxTokens,
            ["stream"] = true,
        }.ToJsonString();
        HttpResponseMessage? response = null;
        for (int attempt = 1; response is null; attempt++)
        {
            TimeSpan? retryAfter = null;
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, "chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
                var sent = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
                if (sent.StatusCode == HttpStatusCode.TooManyRequests || (int)sent.StatusCode >= 500)
                {
                    retryAfter = sent.Headers.RetryAfter?.Delta;
                    sent.Dispose();
                    if (attempt >= _attempts) throw new HttpRequestException($"{_model}: the endpoint answered {(int)sent.StatusCode} {attempt} times");
                }
                else if (!sent.IsSuccessStatusCode)
                {
                    string error = await sent.Content.ReadAsStringAsync(cancel);
                    sent.Dispose();
                    throw new HttpRequestException($"{_model}: the endpoint answered {(int)sent.StatusCode}: {error}", null, sent.StatusCode);
                }
                else
                {
                    response = sent;
                    break;
                }
            }
            catch (HttpRequestException e) when (e.StatusCode is null && attempt < _attempts && !cancel.IsCancellationRequested)
            {
                // A dropped connection: retried like a 5xx.
            }
            await Task.Delay(retryAfter ?? _firstDelay * Math.Pow(2, attempt - 1), cancel);
        }
        using (response)
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
            while (await reader.ReadLineAsync(cancel) is { } line)
            {
                if (!line.StartsWith("data:", StringComparison.Ordinal)) continue;
                string data = line[5..].Trim();
                if (data == "[DONE]") break;
                string? text = null;
                using (var chunk = JsonDocument.Parse(data))
                {
                    if (chunk.RootElement.TryGetProperty("choices", out var choices) && choices.ValueKind == JsonValueKind.Array && choices.GetArrayLength() > 0
                        && choices[0].TryGetProperty("delta", out var delta) && delta.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String)
                        text = content.GetString();
                }
                if (!string.IsNullOrEmpty(text)) yield return text;
            }
        }
    }
}
