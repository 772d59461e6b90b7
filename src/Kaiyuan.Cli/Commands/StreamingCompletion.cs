using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Kaiyuan.Cli.Commands;

/// <summary>The usage an OpenAI response reports; <c>prompt_tokens_details.cached_tokens</c> is 0 when absent.</summary>
internal readonly record struct TokenUsage(int PromptTokens, int CompletionTokens, int CachedTokens);

/// <summary>One streamed completion as the client saw it.</summary>
/// <param name="TtftMs">From sending the request to the first event that carries generated text (to the end of the stream when none did).</param>
/// <param name="TotalMs">From sending the request to the end of the stream.</param>
/// <param name="Text">The generated text (chat: the content, without reasoning), when asked for.</param>
internal sealed record StreamedCompletion(double TtftMs, double TotalMs, TokenUsage Usage, string Text);

/// <summary>
/// The bench commands' client for the server's streaming OpenAI routes (<c>/v1/completions</c>, <c>/v1/chat/completions</c>):
/// sends one request with <c>stream</c> and <c>include_usage</c> on, times the first token and reads the usage.
/// </summary>
internal static class StreamingCompletion
{
    /// <param name="onFirstLine">Called with the milliseconds until the response's first line (a keep-alive counts).</param>
    /// <param name="onOutput">Called with the milliseconds at which each event carrying generated output arrived.</param>
    public static async Task<StreamedCompletion> PostAsync(HttpClient http, string path, Dictionary<string, object> body, bool collectText = false,
        CancellationToken cancel = default, Action<double>? onFirstLine = null, Action<double>? onOutput = null)
    {
        body["stream"] = true;
        body["stream_options"] = new Dictionary<string, object> { ["include_usage"] = true };
        long start = Stopwatch.GetTimestamp();
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = JsonContent.Create(body) };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        if (!response.IsSuccessStatusCode)
            throw new HttpRequestException($"/{path.TrimStart('/')}: {(int)response.StatusCode} {ErrorMessage(await response.Content.ReadAsStringAsync(cancel))}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
        double? ttft = null;
        var usage = default(TokenUsage);
        var text = collectText ? new StringBuilder() : null;
        bool firstLine = true;
        while (await reader.ReadLineAsync(cancel) is { } line)
        {
            if (firstLine) onFirstLine?.Invoke(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            firstLine = false;
            if (!line.StartsWith("data:", StringComparison.Ordinal)) continue;
            var data = line.AsMemory(5).TrimStart();
            if (data.Span is not ['{', ..]) continue;  // [DONE]
            bool hasUsage = HasUsage(data.Span);
            // After the first token only the chunks still needed are parsed, which keeps the client's own work small.
            if (ttft is not null && text is null && onOutput is null && !hasUsage) continue;
            using var doc = JsonDocument.Parse(data);
            var root = doc.RootElement;
            if (Generated(root, out string? content))
            {
                double now = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                ttft ??= now;
                onOutput?.Invoke(now);
                text?.Append(content);
            }
            if (hasUsage && root.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object) usage = ReadUsage(u);
        }
        double total = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        return new StreamedCompletion(ttft ?? total, total, usage, text?.ToString() ?? "");
    }

    /// <summary>Whether an event carries generated output: completion text, or chat content, reasoning or a tool call.</summary>
    private static bool Generated(JsonElement chunk, out string? content)
    {
        content = null;
        if (!chunk.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array || choices.GetArrayLength() == 0) return false;
        var choice = choices[0];
        if (choice.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String)
        {
            content = t.GetString();
            return content is { Length: > 0 };
        }
        if (!choice.TryGetProperty("delta", out var delta) || delta.ValueKind != JsonValueKind.Object) return false;
        if (delta.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String) content = c.GetString();
        return content is { Length: > 0 }
               || delta.TryGetProperty("reasoning_content", out var r) && r.ValueKind == JsonValueKind.String && r.GetString() is { Length: > 0 }
               || delta.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array;
    }

    /// <summary>Whether the event's JSON has a <c>"usage"</c> object (not <c>null</c>), without parsing it.</summary>
    private static bool HasUsage(ReadOnlySpan<char> json)
    {
        int at = json.IndexOf("\"usage\"", StringComparison.Ordinal);
        if (at < 0) return false;
        var rest = json[(at + 7)..].TrimStart();
        return rest is [':', ..] && rest[1..].TrimStart() is ['{', ..];
    }

    private static TokenUsage ReadUsage(JsonElement usage)
    {
        static int Int(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int n) ? n : 0;
        int cached = usage.TryGetProperty("prompt_tokens_details", out var details) && details.ValueKind == JsonValueKind.Object ? Int(details, "cached_tokens") : 0;
        return new TokenUsage(Int(usage, "prompt_tokens"), Int(usage, "completion_tokens"), cached);
    }

    /// <summary>The message of an OpenAI-shaped error body, else the body itself (shortened).</summary>
    public static string ErrorMessage(string body)
    {
        try
        {
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.TryGetProperty("error", out var error) && error.ValueKind == JsonValueKind.Object
                && error.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.String)
                return message.GetString()!;
        }
        catch (JsonException)
        {
        }
        body = body.ReplaceLineEndings(" ").Trim();
        return body.Length <= 200 ? body : body[..200] + "…";
    }
}
