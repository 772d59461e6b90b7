using System.Runtime.CompilerServices;
using System.Text.Json;
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
    /// starts are retried (<see cref="SendAsync"/>, as for <see cref="GenerateAsync"/>); once text has been shown, a failure is the caller's.
    /// </summary>
    public async IAsyncEnumerable<string> StreamAsync(string userMessage, int maxTokens, [EnumeratorCancellation] CancellationToken cancel)
    {
        var (path, body) = Body(new EvalRequest { Prompt = userMessage, MaxTokens = maxTokens });
        using var sent = await SendAsync(path, body, cancel);
        using var reader = new StreamReader(await sent.Response.Content.ReadAsStreamAsync(cancel));
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
