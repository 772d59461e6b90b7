using System.Text;
using System.Text.Json;

namespace Kaiyuan.Tests.Server;

/// <summary>Continuous batching seen from outside: concurrent greedy streams equal the same requests run alone.</summary>
public sealed class ConcurrencyTests(StoriesServer fixture) : IClassFixture<StoriesServer>
{
    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily and Ben were playing in the park", "The little dog", "One day, a big bird",
        "Tom had a red ball", "The sun was shining", "Sara wanted to bake a cake", "There was a tiny frog",
    ];

    private static async Task<string> StreamAsync(HttpClient http, string prompt, int maxTokens, CancellationToken ct)
    {
        var body = JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = prompt } },
            ["max_tokens"] = maxTokens,
            ["temperature"] = 0,
            ["stream"] = true,
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        var text = new StringBuilder();
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
            var choices = JsonDocument.Parse(line[6..]).RootElement.GetProperty("choices");
            if (choices.GetArrayLength() > 0 && choices[0].GetProperty("delta").TryGetProperty("content", out var c)) text.Append(c.GetString());
        }
        return text.ToString();
    }

    [Fact]
    public async Task EightConcurrentGreedyStreamsEqualTheirSoloRuns()
    {
        using var http = fixture.Http();
        var ct = TestContext.Current.CancellationToken;
        const int tokens = 16;
        var alone = new List<string>();
        foreach (var p in Prompts) alone.Add(await StreamAsync(http, p, tokens, ct));
        var together = await Task.WhenAll(Prompts.Select(p => StreamAsync(http, p, tokens, ct)));
        for (int i = 0; i < Prompts.Length; i++) Assert.Equal(alone[i], together[i]);
        Assert.True(alone.Distinct().Count() > 1, "different prompts should give different stories");
    }

    [Fact]
    public async Task ClientDisconnectFreesTheSlot()
    {
        var server = fixture.Require();
        using var http = fixture.Http();
        var ct = TestContext.Current.CancellationToken;
        var body = """{"prompt":"Once upon a time","max_tokens":200,"temperature":0,"ignore_eos":true,"stream":true}""";
        // The tiny model writes its 200 tokens in tens of milliseconds, so on a loaded machine a sequence can end before
        // the client reads its first token: try until one is still running when the client leaves.
        bool leftWhileRunning = false;
        for (int attempt = 0; attempt < 5 && !leftWhileRunning; attempt++)
        {
            using (var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") })
            using (var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct))
            {
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
                // The stream opens with a keep-alive, sent before the sequence may have a slot; text means it is running.
                while ((await reader.ReadLineAsync(ct))?.StartsWith("data: ", StringComparison.Ordinal) == false) { }
                leftWhileRunning = server.State.Runtime.Engine.Load.BusySlots >= 1;
            }
            // Leaving the stream cancels the sequence; its slot is free within a step or so.
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (server.State.Runtime.Engine.Load.BusySlots > 0 && DateTime.UtcNow < deadline) await Task.Delay(20, ct);
            Assert.Equal(0, server.State.Runtime.Engine.Load.BusySlots);
        }
        Assert.True(leftWhileRunning, "in five tries, every sequence ended before the client read its first token");
    }
}
