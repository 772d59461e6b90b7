using System.Net.Http.Json;
using System.ClientModel;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;

namespace Kaiyuan.Tests.Server;

/// <summary>The real server and model, driven by the official OpenAI .NET SDK and Microsoft.Extensions.AI.</summary>
public sealed class OpenAiSdkTests(StoriesServer fixture) : IClassFixture<StoriesServer>
{
    private static readonly ChatCompletionOptions Greedy = new() { Temperature = 0, MaxOutputTokenCount = 12 };

    [Fact]
    public async Task ListsTheModel()
    {
        var models = await fixture.OpenAi().GetOpenAIModelClient().GetModelsAsync(TestContext.Current.CancellationToken);
        Assert.Contains(models.Value, m => m.Id == fixture.Model);
    }

    [Fact]
    public async Task ChatNonStreamingAndStreamingAgree()
    {
        var chat = fixture.OpenAi().GetChatClient(fixture.Model);
        var ct = TestContext.Current.CancellationToken;
        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], Greedy, ct);
        Assert.Equal(ChatFinishReason.Length, completion.FinishReason);
        Assert.Equal(12, completion.Usage.OutputTokenCount);
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.Equal(completion.Usage.InputTokenCount + 12, completion.Usage.TotalTokenCount);
        string text = completion.Content[0].Text;
        Assert.False(string.IsNullOrEmpty(text));

        var streamed = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Once upon a time")],
                           new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 }, ct))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(text, streamed.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);
    }

    [Fact]
    public async Task StreamingUsageWhenAsked()
    {
        var chat = fixture.OpenAi().GetChatClient(fixture.Model);
        ChatTokenUsage? usage = null;
        // The SDK asks for stream_options.include_usage itself.
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("Hello")],
                           new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 5 }, TestContext.Current.CancellationToken))
            usage ??= update.Usage;
        Assert.NotNull(usage);
        Assert.Equal(5, usage.OutputTokenCount);
    }

    [Fact]
    public async Task LogprobsAndStop()
    {
        var chat = fixture.OpenAi().GetChatClient(fixture.Model);
        var ct = TestContext.Current.CancellationToken;
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 6, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 };
        ChatCompletion c = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], options, ct);
        Assert.Equal(6, c.ContentTokenLogProbabilities.Count);
        foreach (var lp in c.ContentTokenLogProbabilities)
        {
            Assert.True(lp.LogProbability <= 0);
            Assert.Equal(3, lp.TopLogProbabilities.Count);
            // Greedy: the chosen token is the most likely one.
            Assert.Equal(lp.TopLogProbabilities[0].LogProbability, lp.LogProbability, 4);
        }

        ChatCompletion full = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 }, ct);
        string text = full.Content[0].Text;
        string stop = text.Substring(text.Length / 2, 2);
        var stopped = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 24 };
        stopped.StopSequences.Add(stop);
        ChatCompletion s = await chat.CompleteChatAsync([new UserChatMessage("Once upon a time")], stopped, ct);
        Assert.Equal(ChatFinishReason.Stop, s.FinishReason);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], s.Content[0].Text);
    }

    [Fact]
    public async Task SeededSamplingIsReproducible()
    {
        var chat = fixture.OpenAi().GetChatClient(fixture.Model);
        var ct = TestContext.Current.CancellationToken;
#pragma warning disable OPENAI001 // Seed is marked experimental in the SDK
        ChatCompletionOptions Options() => new() { Temperature = 1.0f, TopP = 1, MaxOutputTokenCount = 16, Seed = 1234 };
#pragma warning restore OPENAI001
        ChatCompletion a = await chat.CompleteChatAsync([new UserChatMessage("Lily")], Options(), ct);
        ChatCompletion b = await chat.CompleteChatAsync([new UserChatMessage("Lily")], Options(), ct);
        Assert.Equal(a.Content[0].Text, b.Content[0].Text);
    }

    [Fact]
    public async Task Embeddings()
    {
        var client = fixture.OpenAi().GetEmbeddingClient(fixture.Model);
        var result = await client.GenerateEmbeddingsAsync(["a little girl", "a big dog", "a little girl"], cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(3, result.Value.Count);
        var vectors = result.Value.Select(e => e.ToFloats().ToArray()).ToArray();
        foreach (var v in vectors)
        {
            Assert.Equal(64, v.Length);
            Assert.Equal(1.0, Math.Sqrt(v.Sum(x => (double)x * x)), 3);
        }
        Assert.Equal(vectors[0], vectors[2]);
        Assert.NotEqual(vectors[0], vectors[1]);
    }

    [Fact]
    public async Task MicrosoftExtensionsAiChatClient()
    {
        IChatClient client = fixture.OpenAi().GetChatClient(fixture.Model).AsIChatClient();
        var ct = TestContext.Current.CancellationToken;
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 10 };
        ChatResponse response = await client.GetResponseAsync("Once upon a time", options, ct);
        Assert.False(string.IsNullOrEmpty(response.Text));
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(10, response.Usage?.OutputTokenCount);

        var streamed = new StringBuilder();
        await foreach (var update in client.GetStreamingResponseAsync("Once upon a time", options, ct)) streamed.Append(update.Text);
        Assert.Equal(response.Text, streamed.ToString());
    }

    [Fact]
    public async Task Completions()
    {
        using var http = fixture.Http();
        var ct = TestContext.Current.CancellationToken;
        var r = await http.PostJsonAsync("v1/completions", """{"model":"stories","prompt":"Once upon a time","max_tokens":20,"temperature":0}""");
        var json = await r.JsonAsync();
        Assert.Equal("text_completion", json.GetProperty("object").GetString());
        string text = json.GetProperty("choices")[0].GetProperty("text").GetString()!;
        // The model card's greedy continuation.
        Assert.StartsWith(", there was a little girl named Lily", text);
        Assert.Equal("length", json.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(20, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        // A prompt of token ids: "Once upon a time" is [1, 403, 407, 261, 378].
        var ids = await http.PostJsonAsync("v1/completions", """{"prompt":[1,403,407,261,378],"max_tokens":20,"temperature":0}""");
        Assert.Equal(text, (await ids.JsonAsync()).GetProperty("choices")[0].GetProperty("text").GetString());
        _ = ct;
    }

    [Fact]
    public async Task SseFraming()
    {
        using var http = fixture.Http();
        var r = await http.PostJsonAsync("v1/chat/completions",
            """{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0,"stream":true}""");
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType?.MediaType);
        string body = await r.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e[6..]).RootElement).ToArray();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c.GetProperty("object").GetString()));
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal("length", chunks[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Single(chunks.Select(c => c.GetProperty("id").GetString()).Distinct());
    }

    [Fact]
    public async Task RepeatedSystemPromptIsServedFromThePrefixCache()
    {
        var chat = fixture.OpenAi().GetChatClient(fixture.Model);
        var ct = TestContext.Current.CancellationToken;
        string system = "You tell short stories about " + string.Join(", ", Enumerable.Range(0, 12).Select(i => $"the cat number {i}")) + ".";
        ChatCompletion first = await chat.CompleteChatAsync([new SystemChatMessage(system), new UserChatMessage("Tell one about a dog.")], Greedy, ct);
        ChatCompletion second = await chat.CompleteChatAsync([new SystemChatMessage(system), new UserChatMessage("Tell one about a bird.")], Greedy, ct);
        // Other tests' prompts share at most the chat template's opening with the first; the second shares the system prompt.
        Assert.InRange(first.Usage.InputTokenDetails.CachedTokenCount, 0, 31);
        Assert.InRange(second.Usage.InputTokenDetails.CachedTokenCount, 64, second.Usage.InputTokenCount - 1);

        using var http = fixture.Http();
        // Ollama reports only the prompt tokens it evaluated.
        var generate = await http.PostAsJsonAsync("api/generate", new { model = fixture.Model, prompt = system, stream = false, options = new { num_predict = 2 } }, ct);
        var again = await http.PostAsJsonAsync("api/generate", new { model = fixture.Model, prompt = system + " And a fox.", stream = false, options = new { num_predict = 2 } }, ct);
        using var a = JsonDocument.Parse(await generate.Content.ReadAsStringAsync(ct));
        using var b = JsonDocument.Parse(await again.Content.ReadAsStringAsync(ct));
        Assert.True(b.RootElement.GetProperty("prompt_eval_count").GetInt32() < a.RootElement.GetProperty("prompt_eval_count").GetInt32() / 2);

        string metrics = await http.GetStringAsync("metrics", ct);
        Assert.Matches(@"kaiyuan_prefix_cache_hit_tokens_total [1-9]", metrics);
        Assert.Matches(@"kaiyuan_prefill_tokens_total [1-9]", metrics);
        Assert.Contains("kaiyuan_kv_blocks{state=\"cached\"}", metrics);
        Assert.Contains("kaiyuan_kv_bytes_resident", metrics);
        // Decode steps by the threads they ran on (the thread tuner's choices), and the threads given.
        Assert.Matches(@"kaiyuan_decode_passes_total\{threads=""[1-9]\d*""\} [1-9]", metrics);
        Assert.Matches(@"\nkaiyuan_threads [1-9]", metrics);
    }

    [Fact]
    public async Task HealthMetricsAndChatPage()
    {
        using var http = fixture.Http();
        var ct = TestContext.Current.CancellationToken;
        Assert.Equal(200, (int)(await http.GetAsync("health", ct)).StatusCode);
        await http.GetAsync("v1/models", ct);
        string metrics = await http.GetStringAsync("metrics", ct);
        Assert.Contains("kaiyuan_requests_total{route=\"/v1/models\",status=\"200\"}", metrics);
        Assert.Contains("kaiyuan_busy_slots", metrics);
        Assert.Contains("kaiyuan_queue_depth", metrics);
        Assert.Contains("kaiyuan_time_to_first_token_seconds_bucket", metrics);
        var page = await http.GetAsync("/", ct);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("/v1/chat/completions", await page.Content.ReadAsStringAsync(ct));
        Assert.True(page.Headers.Contains("X-Request-Id"));
    }

    [Fact]
    public async Task ErrorsFromTheSdk()
    {
        var ct = TestContext.Current.CancellationToken;
        var unknown = fixture.OpenAi().GetChatClient("no-such-model");
        var e = await Assert.ThrowsAsync<ClientResultException>(() => unknown.CompleteChatAsync([new UserChatMessage("Hi")], Greedy, ct));
        Assert.Equal(404, e.Status);

        var chat = fixture.OpenAi().GetChatClient(fixture.Model);
        string huge = string.Concat(Enumerable.Repeat("Once upon a time there was a girl. ", 100));
        var overflow = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync([new UserChatMessage(huge)], Greedy, ct));
        Assert.Equal(400, overflow.Status);
        Assert.Contains("context", overflow.Message);
    }
}
