using System.Text;
using System.Text.Json;
using Kaiyuan.Chat;
using OllamaSharp;
using OllamaSharp.Models;

namespace Kaiyuan.Tests.Server;

/// <summary>
/// OpenAI's <c>n</c> (several choices of one prompt) on chat and completions, and Ollama's generate <c>context</c>, over a
/// real server and model.
/// </summary>
public sealed class ChoicesAndContextTests(StoriesServer fixture) : IClassFixture<StoriesServer>
{
    private static string Chat(int n, double temperature, int maxTokens, bool stream = false, ulong? seed = null)
    {
        var body = new Dictionary<string, object>
        {
            ["model"] = "stories",
            ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = "Once upon a time" } },
            ["n"] = n,
            ["temperature"] = temperature,
            ["max_tokens"] = maxTokens,
            ["stream"] = stream,
        };
        if (seed is { } s) body["seed"] = s;
        if (stream) body["stream_options"] = new Dictionary<string, bool> { ["include_usage"] = true };
        return JsonSerializer.Serialize(body);
    }

    private static async Task<JsonElement> PostAsync(HttpClient http, string path, string body)
    {
        var response = await http.PostJsonAsync(path, body);
        var json = await response.JsonAsync();
        Assert.True(response.IsSuccessStatusCode, json.ToString());
        return json;
    }

    /// <summary>The data events of an SSE stream.</summary>
    private static async Task<List<JsonElement>> EventsAsync(HttpClient http, string path, string body)
    {
        var response = await http.PostJsonAsync(path, body);
        string text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.IsSuccessStatusCode, text);
        Assert.EndsWith("data: [DONE]\n\n", text, StringComparison.Ordinal);
        return [.. text.Split('\n').Where(l => l.StartsWith("data: {", StringComparison.Ordinal)).Select(l => JsonDocument.Parse(l[6..]).RootElement.Clone())];
    }

    private static string[] Contents(JsonElement completion) =>
        [.. completion.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message").GetProperty("content").GetString()!)];

    [Fact]
    public async Task ThreeGreedyChatChoicesAreIdenticalAndTheirUsageSumsTheCompletions()
    {
        using var http = fixture.Http();
        var one = await PostAsync(http, "v1/chat/completions", Chat(1, 0, 12));
        var three = await PostAsync(http, "v1/chat/completions", Chat(3, 0, 12));

        var choices = three.GetProperty("choices");
        Assert.Equal([0, 1, 2], choices.EnumerateArray().Select(c => c.GetProperty("index").GetInt32()));
        Assert.All(Contents(three), c => Assert.Equal(Contents(one)[0], c));
        Assert.All(choices.EnumerateArray(), c => Assert.Equal("length", c.GetProperty("finish_reason").GetString()));
        var usage = three.GetProperty("usage");
        Assert.Equal(one.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(3 * one.GetProperty("usage").GetProperty("completion_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(usage.GetProperty("prompt_tokens").GetInt32() + usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32());

        // Streamed: every choice has its role chunk, its content and its finish chunk, interleaved, and says what the whole one did.
        var events = await EventsAsync(http, "v1/chat/completions", Chat(3, 0, 12, stream: true));
        var text = new StringBuilder[3];
        for (int i = 0; i < 3; i++) text[i] = new StringBuilder();
        var roles = new HashSet<int>();
        var finished = new HashSet<int>();
        foreach (var e in events.Where(e => e.GetProperty("choices").GetArrayLength() > 0))
        {
            var choice = e.GetProperty("choices")[0];
            int index = choice.GetProperty("index").GetInt32();
            var delta = choice.GetProperty("delta");
            if (delta.TryGetProperty("role", out _)) Assert.True(roles.Add(index));
            if (delta.TryGetProperty("content", out var c)) text[index].Append(c.GetString());
            if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String) Assert.True(finished.Add(index));
        }
        Assert.Equal([0, 1, 2], roles.Order());
        Assert.Equal([0, 1, 2], finished.Order());
        Assert.All(text, t => Assert.Equal(Contents(one)[0], t.ToString()));
        Assert.Equal(usage.GetProperty("completion_tokens").GetInt32(), events[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task SampledChoicesDifferAndChoiceIUsesTheSeedPlusI()
    {
        using var http = fixture.Http();
        var three = Contents(await PostAsync(http, "v1/chat/completions", Chat(3, 1.0, 24, seed: 42)));
        Assert.True(three.Distinct().Count() > 1, string.Join(" | ", three));
        for (int i = 0; i < 3; i++)
            Assert.Equal(three[i], Contents(await PostAsync(http, "v1/chat/completions", Chat(1, 1.0, 24, seed: 42 + (ulong)i)))[0]);
    }

    [Fact]
    public async Task CompletionsTakeNToo()
    {
        using var http = fixture.Http();
        const string Prompt = "\"model\":\"stories\",\"prompt\":\"Once upon a time\",\"temperature\":0,\"max_tokens\":10";
        var one = await PostAsync(http, "v1/completions", "{" + Prompt + "}");
        var three = await PostAsync(http, "v1/completions", "{" + Prompt + ",\"n\":3,\"logprobs\":1}");
        string expected = one.GetProperty("choices")[0].GetProperty("text").GetString()!;
        var choices = three.GetProperty("choices").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2], choices.Select(c => c.GetProperty("index").GetInt32()));
        Assert.All(choices, c => Assert.Equal(expected, c.GetProperty("text").GetString()));
        Assert.All(choices, c => Assert.Equal(10, c.GetProperty("logprobs").GetProperty("tokens").GetArrayLength()));
        Assert.Equal(30, three.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(one.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), three.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        var events = await EventsAsync(http, "v1/completions", "{" + Prompt + ",\"n\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
        var text = new StringBuilder[3];
        for (int i = 0; i < 3; i++) text[i] = new StringBuilder();
        foreach (var e in events)
        {
            var choice = e.GetProperty("choices")[0];
            text[choice.GetProperty("index").GetInt32()].Append(choice.GetProperty("text").GetString());
        }
        Assert.All(text, t => Assert.Equal(expected, t.ToString()));
        Assert.Equal(3, events.Count(e => e.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind == JsonValueKind.String));
        Assert.Equal(30, events[^1].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task BadChoiceCountsAreRefusedByName()
    {
        using var http = fixture.Http();
        foreach (var (n, message) in new[] { (0, "'n' must be between 1 and 128"), (129, "'n' must be between 1 and 128") })
        {
            var response = await http.PostJsonAsync("v1/chat/completions", Chat(n, 0, 4));
            Assert.Equal(400, (int)response.StatusCode);
            var error = (await response.JsonAsync()).GetProperty("error");
            Assert.Equal(message, error.GetProperty("message").GetString());
            Assert.Equal("n", error.GetProperty("param").GetString());
        }
        var bestOf = await http.PostJsonAsync("v1/completions", """{"prompt":"Hi","best_of":2}""");
        Assert.Equal(400, (int)bestOf.StatusCode);
    }

    // OllamaSharp marks "context" obsolete, as Ollama deprecates it; clients that chain generates still send it.
#pragma warning disable CS0618
    [Fact]
    public async Task AGenerateGoesOnFromTheContextOfThePreviousOne()
    {
        var ct = TestContext.Current.CancellationToken;
        var server = fixture.Require();
        var runtime = server.State.Runtime;
        var ollama = new OllamaApiClient(server.Address);

        async Task<(string Text, long[] Context)> GenerateAsync(string prompt, long[]? context)
        {
            var request = new GenerateRequest { Model = "stories", Prompt = prompt, Context = context, Options = new RequestOptions { Temperature = 0, NumPredict = 10 } };
            var text = new StringBuilder();
            GenerateDoneResponseStream? done = null;
            await foreach (var chunk in ollama.GenerateAsync(request, ct))
            {
                text.Append(chunk?.Response);
                if (chunk is GenerateDoneResponseStream d) done = d;
            }
            Assert.NotNull(done?.Context);
            return (text.ToString(), done.Context);
        }

        int[] Templated(string prompt, bool bos) =>
            runtime.Codec.Encode(runtime.Formatter.Format([new ChatMessage("user", prompt)], [], addGenerationPrompt: true), bos, parseSpecial: true);

        var (first, context1) = await GenerateAsync("Once upon a time", null);
        int[] prompt1 = Templated("Once upon a time", bos: true);
        Assert.Equal(prompt1, context1[..prompt1.Length].Select(id => (int)id));
        Assert.Equal(first, runtime.Codec.Decode([.. context1[prompt1.Length..].Select(id => (int)id)]));

        var (second, context2) = await GenerateAsync("The cat", context1);
        int[] prompt2 = [.. context1.Select(id => (int)id), .. Templated("The cat", bos: false)];
        Assert.Equal(prompt2, context2[..prompt2.Length].Select(id => (int)id));
        Assert.Equal(second, runtime.Codec.Decode([.. context2[prompt2.Length..].Select(id => (int)id)]));

        // The same tokens as one greedy completion say the same.
        using var http = fixture.Http();
        var whole = await PostAsync(http, "v1/completions", JsonSerializer.Serialize(new { model = "stories", prompt = prompt2, temperature = 0, max_tokens = 10 }));
        Assert.Equal(second, whole.GetProperty("choices")[0].GetProperty("text").GetString());

        // Ids outside the vocabulary, or not ids at all, are refused.
        foreach (var (context, message) in new[] { ("[1, 999999]", "token id 999999"), ("[1, -1]", "token id -1"), ("\"abc\"", "array of token ids") })
        {
            var response = await http.PostJsonAsync("api/generate", $$"""{"model":"stories","prompt":"Hi","context":{{context}}}""");
            Assert.Equal(400, (int)response.StatusCode);
            Assert.Contains(message, (await response.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);
        }
    }
#pragma warning restore CS0618
}
