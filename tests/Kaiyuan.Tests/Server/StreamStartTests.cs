using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using Kaiyuan.Inference;
using Kaiyuan.Scheduling;
using Kaiyuan.AspNetCore;
using OllamaSharp;
using OpenAI;
using OpenAI.Chat;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;
using OllamaChatRequest = OllamaSharp.Models.Chat.ChatRequest;
using OllamaChatRole = OllamaSharp.Models.Chat.ChatRole;
using OllamaGenerateRequest = OllamaSharp.Models.GenerateRequest;
using OllamaMessage = OllamaSharp.Models.Chat.Message;

namespace Kaiyuan.Tests.Server;

/// <summary>
/// A stream answers at once, before the model's first token: a long prompt can take a CPU tens of seconds to read, and
/// agent clients that get no headers meanwhile give up and resend. The engine here holds its answer until the test lets
/// it go, so everything asserted before that happened while the prompt was still "prefilling"; refusals still get their
/// status, since the request is submitted before anything is sent.
/// </summary>
public sealed class StreamStartTests
{
    private const string Answer = "Hello there!";

    public static TheoryData<string, string> Routes => new()
    {
        { "v1/chat/completions", """{"stream":true,"messages":[{"role":"user","content":"Hi"}]}""" },
        { "v1/completions", """{"stream":true,"prompt":"Hi"}""" },
        { "api/chat", """{"model":"scripted","messages":[{"role":"user","content":"Hi"}]}""" },
        { "api/generate", """{"model":"scripted","prompt":"Hi"}""" },
    };

    private static bool IsOllama(string path) => path.StartsWith("api/", StringComparison.Ordinal);

    private static string MediaType(string path) => IsOllama(path) ? "application/x-ndjson" : "text/event-stream";

    /// <summary>A guard against a server that never answers: the test fails rather than hangs (no timing is asserted).</summary>
    private static CancellationTokenSource Guard()
    {
        var cts = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        cts.CancelAfter(TimeSpan.FromSeconds(60));
        return cts;
    }

    /// <summary>A server whose engine answers only once <paramref name="release"/> completes.</summary>
    private static Task<KaiyuanServer> StartHeldAsync(TaskCompletionSource release, TimeSpan keepAlive) =>
        ScriptedEngine.StartAsync(new ScriptedEngine(_ => Answer) { Hold = release.Task }, o => o with { StreamKeepAlive = keepAlive });

    private static Task<HttpResponseMessage> PostAsync(HttpClient http, string path, string body, CancellationToken ct) =>
        http.SendAsync(new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") },
            HttpCompletionOption.ResponseHeadersRead, ct);

    /// <summary>An SSE comment, or Ollama's empty not-done object: says "still here" and carries no text.</summary>
    private static bool IsKeepAlive(string line) =>
        line.StartsWith(':') || (line.StartsWith('{') && JsonDocument.Parse(line).RootElement is var j && !j.GetProperty("done").GetBoolean() && Text(line) == "");

    /// <summary>The answer text a line carries ("" for none).</summary>
    private static string Text(string line)
    {
        if (line.StartsWith("data: {", StringComparison.Ordinal))
        {
            var choices = JsonDocument.Parse(line[6..]).RootElement.GetProperty("choices");
            if (choices.GetArrayLength() == 0) return "";
            var choice = choices[0];
            var text = choice.TryGetProperty("delta", out var delta) ? delta.TryGetProperty("content", out var c) ? c : default : choice.GetProperty("text");
            return text.ValueKind == JsonValueKind.String ? text.GetString()! : "";
        }
        if (!line.StartsWith('{')) return "";
        var json = JsonDocument.Parse(line).RootElement;
        return (json.TryGetProperty("message", out var message) ? message.GetProperty("content") : json.GetProperty("response")).GetString()!;
    }

    private static async Task<List<string>> ReadRestAsync(StreamReader reader, CancellationToken ct)
    {
        var lines = new List<string>();
        while (await reader.ReadLineAsync(ct) is { } line) lines.Add(line);
        return lines;
    }

    [Theory]
    [MemberData(nameof(Routes))]
    public async Task HeadersAndAFirstLineComeBeforeTheFirstToken(string path, string body)
    {
        using var guard = Guard();
        var ct = guard.Token;
        // The keep-alive timer is far off: the first line must go out at once, not on its first tick.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartHeldAsync(release, TimeSpan.FromHours(1));
        using var http = new HttpClient { BaseAddress = server.Address };

        // Only the test lets the answer go, and only after this: the headers and first line came while the prompt was read.
        using var response = await PostAsync(http, path, body, ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(MediaType(path), response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        string first = (await reader.ReadLineAsync(ct))!;
        Assert.False(release.Task.IsCompleted);
        switch (path)
        {
            case "v1/chat/completions":
                // OpenAI's own first chunk: the role, no content yet.
                var delta = JsonDocument.Parse(first[6..]).RootElement.GetProperty("choices")[0].GetProperty("delta");
                Assert.Equal("assistant", delta.GetProperty("role").GetString());
                Assert.Equal("", delta.GetProperty("content").GetString());
                break;
            case "v1/completions":
                Assert.StartsWith(": ", first, StringComparison.Ordinal);
                break;
            default:
                // What Ollama streams: model, created_at, empty text, not done.
                var line = JsonDocument.Parse(first).RootElement;
                Assert.Equal("scripted:latest", line.GetProperty("model").GetString());
                Assert.True(line.TryGetProperty("created_at", out _));
                Assert.False(line.GetProperty("done").GetBoolean());
                if (path == "api/chat") Assert.Equal("assistant", line.GetProperty("message").GetProperty("role").GetString());
                Assert.Equal("", Text(first));
                break;
        }

        release.SetResult();
        var rest = await ReadRestAsync(reader, ct);
        Assert.Equal(Answer, string.Concat(rest.Select(Text)));
        if (!IsOllama(path)) Assert.Equal("data: [DONE]", rest.Last(l => l.Length > 0));
        else Assert.True(JsonDocument.Parse(rest[^1]).RootElement.GetProperty("done").GetBoolean());
    }

    [Theory]
    [MemberData(nameof(Routes))]
    public async Task KeepAlivesRepeatUntilTheFirstToken(string path, string body)
    {
        using var guard = Guard();
        var ct = guard.Token;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartHeldAsync(release, TimeSpan.FromMilliseconds(10));
        using var http = new HttpClient { BaseAddress = server.Address };
        using var response = await PostAsync(http, path, body, ct);
        Assert.Equal(MediaType(path), response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        var lines = new List<string>();
        while (lines.Count(IsKeepAlive) < 3) lines.Add((await reader.ReadLineAsync(ct))!);

        release.SetResult();
        lines.AddRange(await ReadRestAsync(reader, ct));
        Assert.Equal(Answer, string.Concat(lines.Select(Text)));
        // Ollama clients parse every line as JSON: no blank lines.
        if (IsOllama(path)) Assert.All(lines, l => Assert.True(JsonDocument.Parse(l).RootElement.TryGetProperty("done", out _)));
    }

    [Fact]
    public async Task TheOpenAiSdkStreamsThroughTheRoleChunkAndComments()
    {
        using var guard = Guard();
        var ct = guard.Token;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartHeldAsync(release, TimeSpan.FromMilliseconds(10));
        var chat = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1") }).GetChatClient("scripted");
        await using var updates = chat.CompleteChatStreamingAsync([new UserChatMessage("Hi")], new ChatCompletionOptions(), ct).GetAsyncEnumerator(ct);
        // The role chunk reaches the SDK while the engine still holds the answer.
        Assert.True(await updates.MoveNextAsync());
        Assert.Equal(ChatMessageRole.Assistant, updates.Current.Role);
        Assert.False(release.Task.IsCompleted);
        // Comments go out meanwhile; the SDK must skip them.
        await Task.Delay(100, ct);

        release.SetResult();
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        while (await updates.MoveNextAsync())
        {
            foreach (var part in updates.Current.ContentUpdate) text.Append(part.Text);
            finish ??= updates.Current.FinishReason;
        }
        Assert.Equal(Answer, text.ToString());
        Assert.Equal(ChatFinishReason.Stop, finish);
    }

    [Fact]
    public async Task OllamaSharpTakesTheEmptyFirstLinesAsChunks()
    {
        using var guard = Guard();
        var ct = guard.Token;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartHeldAsync(release, TimeSpan.FromMilliseconds(10));
        var ollama = new OllamaApiClient(server.Address);

        var chat = ollama.ChatAsync(new OllamaChatRequest { Model = "scripted", Messages = [new OllamaMessage(OllamaChatRole.User, "Hi")], Stream = true }, ct);
        await using (var e = chat.GetAsyncEnumerator(ct))
        {
            // The first line and two repeats, parsed by OllamaSharp while the engine still holds the answer.
            for (int i = 0; i < 3; i++)
            {
                Assert.True(await e.MoveNextAsync());
                Assert.Equal("", e.Current!.Message.Content);
                Assert.False(e.Current.Done);
            }
            Assert.False(release.Task.IsCompleted);
            release.SetResult();
            var text = new StringBuilder();
            bool done = false;
            while (await e.MoveNextAsync())
            {
                text.Append(e.Current!.Message.Content);
                done = e.Current.Done;
            }
            Assert.Equal(Answer, text.ToString());
            Assert.True(done);
        }

        // A generation submitted now is answered at once (the hold is released); generate's first line is empty too.
        var generated = new StringBuilder();
        int chunks = 0;
        bool finished = false;
        await foreach (var chunk in ollama.GenerateAsync(new OllamaGenerateRequest { Model = "scripted", Prompt = "Hi", Stream = true }, ct))
        {
            if (chunks++ == 0) Assert.Equal("", chunk!.Response);
            generated.Append(chunk!.Response);
            finished = chunk.Done;
        }
        Assert.Equal(Answer, generated.ToString());
        Assert.True(finished);
    }

    [Theory]
    [MemberData(nameof(Routes))]
    public async Task RefusalsOfAStreamKeepTheirStatus(string path, string body)
    {
        var ct = TestContext.Current.CancellationToken;
        var engine = new ScriptedEngine(_ => Answer);
        await using var server = await ScriptedEngine.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        async Task Expect(string request, int status)
        {
            using var response = await PostAsync(http, path, request, ct);
            Assert.Equal(status, (int)response.StatusCode);
            Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
            var error = (await response.JsonAsync()).GetProperty("error");
            if (IsOllama(path)) Assert.False(string.IsNullOrEmpty(error.GetString()));
            else Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
        }

        // Refused by the engine at submission.
        engine.Throw = new QueueFullException("the queue is full");
        await Expect(body, 429);
        engine.Throw = new ContextOverflowException("the prompt does not fit");
        await Expect(body, 400);
        engine.Throw = new SchedulerClosedException("shutting down");
        await Expect(body, 503);
        engine.Throw = null;
        // Refused before submission: longer than the context.
        await Expect(body.Replace("\"Hi\"", $"\"{new string('x', 5000)}\"", StringComparison.Ordinal), 400);
        using var ok = await PostAsync(http, path, body, ct);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
    }

    [Theory]
    [MemberData(nameof(Routes))]
    public async Task AFailureAfterTheHeadersEndsTheStreamWithAnError(string path, string body)
    {
        using var guard = Guard();
        var ct = guard.Token;
        var engine = new ScriptedEngine(_ => Answer) { Fail = new InvalidOperationException("boom") };
        await using var server = await ScriptedEngine.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        using var response = await PostAsync(http, path, body, ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(MediaType(path), response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        string last = (await ReadRestAsync(reader, ct)).Last(l => l.Length > 0);
        var error = JsonDocument.Parse(IsOllama(path) ? last : last[6..]).RootElement.GetProperty("error");
        Assert.Contains("boom", error.ValueKind == JsonValueKind.String ? error.GetString() : error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }
}
