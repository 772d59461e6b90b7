using System.ClientModel;
using System.Text;
using System.Text.Json;
using Kaiyuan.AspNetCore;
using Kaiyuan.AspNetCore.Api;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using OpenAI.Responses;
using static Kaiyuan.Tests.Server.Bodies;

#pragma warning disable OPENAI001 // the SDK marks the Responses client as experimental

namespace Kaiyuan.Tests.Server;

/// <summary>
/// The Responses API on the real server and model, through the official OpenAI .NET SDK's ResponsesClient and
/// Microsoft.Extensions.AI: the same conversation gives the same greedy text and prompt as chat completions.
/// </summary>
public sealed class ResponsesApiTests(StoriesServer fixture) : IClassFixture<StoriesServer>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private ResponsesClient Responses() => fixture.OpenAi().GetResponsesClient();

    private CreateResponseOptions Greedy(int maxTokens, params ResponseItem[] input)
    {
        var options = new CreateResponseOptions(fixture.Model, input) { Temperature = 0, MaxOutputTokenCount = maxTokens };
        return options;
    }

    private async Task<ChatCompletion> ChatAsync(int maxTokens, params OpenAI.Chat.ChatMessage[] messages) =>
        await fixture.OpenAi().GetChatClient(fixture.Model).CompleteChatAsync(messages, new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = maxTokens }, Ct);

    [Fact]
    public async Task CreateGivesTheChatRoutesGreedyTextAndUsage()
    {
        ChatCompletion chat = await ChatAsync(12, new UserChatMessage("Once upon a time"));
        ResponseResult response = await Responses().CreateResponseAsync(Greedy(12, ResponseItem.CreateUserMessageItem("Once upon a time")), Ct);

        Assert.StartsWith("resp_", response.Id);
        Assert.Equal("response", response.Object);
        Assert.Equal(fixture.Model, response.Model);
        Assert.Equal(chat.Content[0].Text, response.GetOutputText());
        var message = Assert.IsAssignableFrom<MessageResponseItem>(Assert.Single(response.OutputItems));
        Assert.StartsWith("msg_", message.Id);
        Assert.Equal(MessageRole.Assistant, message.Role);
        Assert.Equal(chat.Content[0].Text, Assert.Single(message.Content).Text);

        // Cut off by max_output_tokens: incomplete, and says why.
        Assert.Equal(ResponseStatus.Incomplete, response.Status);
        Assert.Equal(ResponseIncompleteStatusReason.MaxOutputTokens, response.IncompleteStatusDetails.Reason);
        Assert.Equal(MessageStatus.Incomplete, message.Status);
        Assert.Equal(12, response.MaxOutputTokenCount);

        Assert.Equal(chat.Usage.InputTokenCount, response.Usage.InputTokenCount);
        Assert.Equal(12, response.Usage.OutputTokenCount);
        Assert.Equal(response.Usage.InputTokenCount + 12, response.Usage.TotalTokenCount);
        Assert.Equal(0, response.Usage.OutputTokenDetails.ReasoningTokenCount);
        // The chat request just read the same prompt: it comes from the prefix cache.
        Assert.InRange(response.Usage.InputTokenDetails.CachedTokenCount, 1, response.Usage.InputTokenCount - 1);

        // A plain string input is a user message; instructions are a system message before it.
        using var http = fixture.Http();
        var plain = await (await http.PostJsonAsync("v1/responses", """{"model":"stories","input":"Once upon a time","max_output_tokens":12,"temperature":0}""")).JsonAsync();
        Assert.Equal(response.GetOutputText(), plain.GetProperty("output_text").GetString());
        Assert.Equal(response.GetOutputText(), plain.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());

        ChatCompletion chatWithSystem = await ChatAsync(8, new SystemChatMessage("You tell stories."), new UserChatMessage("Lily"));
        ResponseResult withInstructions = await Responses().CreateResponseAsync(new CreateResponseOptions(fixture.Model, [ResponseItem.CreateUserMessageItem("Lily")])
        {
            Instructions = "You tell stories.",
            Temperature = 0,
            MaxOutputTokenCount = 8,
        }, Ct);
        Assert.Equal(chatWithSystem.Content[0].Text, withInstructions.GetOutputText());
        Assert.Equal(chatWithSystem.Usage.InputTokenCount, withInstructions.Usage.InputTokenCount);
    }

    [Fact]
    public async Task StreamingGivesTheSameTextWithTypedEventsInOrder()
    {
        ResponseResult whole = await Responses().CreateResponseAsync(Greedy(10, ResponseItem.CreateUserMessageItem("Once upon a time")), Ct);
        var updates = new List<StreamingResponseUpdate>();
        var options = Greedy(10, ResponseItem.CreateUserMessageItem("Once upon a time"));
        options.StreamingEnabled = true;
        await foreach (var update in await Responses().CreateResponseStreamingAsync(options, Ct)) updates.Add(update);

        Assert.Equal(Enumerable.Range(0, updates.Count), updates.Select(u => u.SequenceNumber));
        var created = Assert.IsType<StreamingResponseCreatedUpdate>(updates[0]);
        Assert.Equal(ResponseStatus.InProgress, created.Response.Status);
        Assert.IsType<StreamingResponseInProgressUpdate>(updates[1]);
        var added = Assert.IsType<StreamingResponseOutputItemAddedUpdate>(updates[2]);
        Assert.IsAssignableFrom<MessageResponseItem>(added.Item);
        Assert.IsType<StreamingResponseContentPartAddedUpdate>(updates[3]);
        var deltas = updates[4..^4];
        Assert.NotEmpty(deltas);
        Assert.All(deltas, d => Assert.Equal(added.Item.Id, Assert.IsType<StreamingResponseOutputTextDeltaUpdate>(d).ItemId));
        string streamed = string.Concat(deltas.Cast<StreamingResponseOutputTextDeltaUpdate>().Select(d => d.Delta));
        Assert.Equal(whole.GetOutputText(), streamed);
        Assert.Equal(streamed, Assert.IsType<StreamingResponseOutputTextDoneUpdate>(updates[^4]).Text);
        Assert.Equal(streamed, Assert.IsType<StreamingResponseContentPartDoneUpdate>(updates[^3]).Part.Text);
        var done = Assert.IsType<StreamingResponseOutputItemDoneUpdate>(updates[^2]);
        Assert.Equal(added.Item.Id, done.Item.Id);
        var incomplete = Assert.IsType<StreamingResponseIncompleteUpdate>(updates[^1]);
        Assert.Equal(created.Response.Id, incomplete.Response.Id);
        Assert.Equal(ResponseStatus.Incomplete, incomplete.Response.Status);
        Assert.Equal(10, incomplete.Response.Usage.OutputTokenCount);
        Assert.Equal(streamed, incomplete.Response.GetOutputText());

        // A streamed response is stored like any other.
        ResponseResult stored = await Responses().GetResponseAsync(incomplete.Response.Id, Ct);
        Assert.Equal(streamed, stored.GetOutputText());
    }

    [Fact]
    public async Task SseFramingNamesEachEvent()
    {
        using var http = fixture.Http();
        var r = await http.PostJsonAsync("v1/responses", """{"model":"stories","input":"Hi","max_output_tokens":4,"temperature":0,"stream":true}""");
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType?.MediaType);
        string body = await r.Content.ReadAsStringAsync(Ct);
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => !e.StartsWith(':')).ToArray();
        Assert.All(events, e =>
        {
            var lines = e.Split('\n');
            Assert.Equal(2, lines.Length);
            Assert.StartsWith("event: ", lines[0]);
            Assert.Equal(lines[0][7..], JsonDocument.Parse(lines[1][6..]).RootElement.GetProperty("type").GetString());
        });
        Assert.Equal("event: response.created", events[0].Split('\n')[0]);
        Assert.Equal("event: response.incomplete", events[^1].Split('\n')[0]);
        Assert.DoesNotContain("[DONE]", body);
    }

    [Fact]
    public async Task PreviousResponseIdContinuesAStoredConversation()
    {
        var responses = Responses();
        ResponseResult first = await responses.CreateResponseAsync(Greedy(8, ResponseItem.CreateUserMessageItem("Once upon a time")), Ct);
        Assert.True(first.Status is ResponseStatus.Incomplete);
        var next = Greedy(8, ResponseItem.CreateUserMessageItem("Tell me more"));
        next.PreviousResponseId = first.Id;
        ResponseResult second = await responses.CreateResponseAsync(next, Ct);
        Assert.Equal(first.Id, second.PreviousResponseId);

        // The same conversation through chat completions: the same prompt (token count) and the same greedy answer.
        ChatCompletion chat = await ChatAsync(8, new UserChatMessage("Once upon a time"), new AssistantChatMessage(first.GetOutputText()), new UserChatMessage("Tell me more"));
        Assert.Equal(chat.Usage.InputTokenCount, second.Usage.InputTokenCount);
        Assert.Equal(chat.Content[0].Text, second.GetOutputText());
        Assert.True(second.Usage.InputTokenCount > first.Usage.InputTokenCount + 8);

        // A third turn chains through both.
        var third = Greedy(6, ResponseItem.CreateUserMessageItem("And then?"));
        third.PreviousResponseId = second.Id;
        ResponseResult last = await responses.CreateResponseAsync(third, Ct);
        ChatCompletion chat3 = await ChatAsync(6, new UserChatMessage("Once upon a time"), new AssistantChatMessage(first.GetOutputText()),
            new UserChatMessage("Tell me more"), new AssistantChatMessage(second.GetOutputText()), new UserChatMessage("And then?"));
        Assert.Equal(chat3.Usage.InputTokenCount, last.Usage.InputTokenCount);
        Assert.Equal(chat3.Content[0].Text, last.GetOutputText());

        // GET returns it as it was sent; its input items are this request's own.
        ResponseResult fetched = await responses.GetResponseAsync(second.Id, Ct);
        Assert.Equal(second.Id, fetched.Id);
        Assert.Equal(second.GetOutputText(), fetched.GetOutputText());
        Assert.Equal(second.Usage.InputTokenCount, fetched.Usage.InputTokenCount);
        var items = new List<ResponseItem>();
        await foreach (var item in responses.GetResponseInputItemsAsync(second.Id, Ct)) items.Add(item);
        var input = Assert.IsAssignableFrom<MessageResponseItem>(Assert.Single(items));
        Assert.Equal("Tell me more", input.Content[0].Text);

        // DELETE forgets it: GET and a continuation are then 404s.
        ResponseDeletionResult deleted = await responses.DeleteResponseAsync(second.Id, Ct);
        Assert.True(deleted.Deleted);
        Assert.Equal(second.Id, deleted.ResponseId);
        var gone = await Assert.ThrowsAsync<ClientResultException>(() => responses.GetResponseAsync(second.Id, Ct));
        Assert.Equal(404, gone.Status);
        var again = await Assert.ThrowsAsync<ClientResultException>(() => responses.DeleteResponseAsync(second.Id, Ct));
        Assert.Equal(404, again.Status);

        // store: false keeps nothing.
        var unstored = Greedy(2, ResponseItem.CreateUserMessageItem("Hi"));
        unstored.StoredOutputEnabled = false;
        ResponseResult notKept = await responses.CreateResponseAsync(unstored, Ct);
        Assert.Equal(404, (await Assert.ThrowsAsync<ClientResultException>(() => responses.GetResponseAsync(notKept.Id, Ct))).Status);
    }

    [Fact]
    public async Task ErrorsAreOpenAiShaped()
    {
        var unknown = Greedy(4, ResponseItem.CreateUserMessageItem("Hi"));
        unknown.PreviousResponseId = "resp_nope";
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Responses().CreateResponseAsync(unknown, Ct));
        Assert.Equal(404, e.Status);

        using var http = fixture.Http();
        async Task Expect(HttpResponseMessage r, int status, string param)
        {
            string text = await r.Content.ReadAsStringAsync(Ct);
            Assert.True(status == (int)r.StatusCode, text);
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.Equal(param, error.GetProperty("param").GetString());
            Assert.True(error.TryGetProperty("code", out _));
        }
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":"Hi","previous_response_id":"resp_nope"}"""), 404, "previous_response_id");
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":"Hi","tools":[{"type":"web_search"}]}"""), 400, "tools");
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":"Hi","tools":[{"type":"function"}]}"""), 400, "tools");
        await Expect(await http.PostJsonAsync("v1/responses",
            """{"input":[{"role":"user","content":[{"type":"input_image","image_url":"https://example.com/a.png"}]}]}"""), 400, "input[0].content");
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":[{"type":"item_reference","id":"msg_1"}]}"""), 400, "input[0].type");
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":[{"role":"wizard","content":"Hi"}]}"""), 400, "input[0].role");
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":"Hi","text":{"format":{"type":"xml"}}}"""), 400, "text.format");
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":"Hi","tool_choice":{"type":"file_search"}}"""), 400, "tool_choice");
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":"Hi","background":true}"""), 400, "background");
        await Expect(await http.PostJsonAsync("v1/responses", """{"input":"Hi","temperature":9}"""), 400, "temperature");
        await Expect(await http.PostJsonAsync("v1/responses", """{"model":"stories"}"""), 400, "input");
        string huge = string.Concat(Enumerable.Repeat("Once upon a time there was a girl. ", 100));
        await Expect(await http.PostJsonAsync("v1/responses", Fill("""{"input":"@huge@"}""", ("huge", huge))), 400, "input");
        var missing = await http.GetAsync("v1/responses/resp_nope", Ct);
        Assert.Equal(404, (int)missing.StatusCode);
        Assert.Equal("invalid_request_error", (await missing.JsonAsync()).GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(404, (int)(await http.DeleteAsync("v1/responses/resp_nope", Ct)).StatusCode);
        Assert.Equal(404, (int)(await http.PostJsonAsync("v1/responses", """{"model":"gpt-5","input":"Hi"}""")).StatusCode);
    }

    [Fact]
    public async Task MicrosoftExtensionsAiResponsesChatClient()
    {
        IChatClient client = Responses().AsIChatClient(fixture.Model);
        ChatCompletion chat = await ChatAsync(10, new UserChatMessage("Once upon a time"));
        var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 10 };
        ChatResponse response = await client.GetResponseAsync("Once upon a time", options, Ct);
        Assert.Equal(chat.Content[0].Text, response.Text);
        Assert.Equal(10, response.Usage?.OutputTokenCount);
        Assert.StartsWith("resp_", response.ResponseId);
        // Streaming is not tried here: Microsoft.Extensions.AI.OpenAI 10.11.0 was built against an older OpenAI SDK whose
        // CreateResponseStreamingAsync had another return type, so its streaming path fails with MissingMethodException
        // beside OpenAI 2.15.0 before any request is sent. The SDK's own streaming is tested above.
    }
}

/// <summary>
/// The Responses API over a scripted engine (exact model output): function calls and their outputs, reasoning items,
/// the prompt a continuation renders, streaming before the first token, and a failure mid-stream.
/// </summary>
public sealed class ResponsesScriptedTests
{
    private const string WeatherCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    private const string WeatherParameters = """{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static string WeatherScript(string prompt) =>
        prompt.Contains("<tool_response>", StringComparison.Ordinal) ? "<think>The tool said sunny.</think>\n\nIt is sunny in Paris." : WeatherCall;

    private static ResponsesClient Client(KaiyuanServer server) =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1") }).GetResponsesClient();

    private static CreateResponseOptions WeatherOptions(params ResponseItem[] input)
    {
        var options = new CreateResponseOptions("scripted", input);
        options.Tools.Add(ResponseTool.CreateFunctionTool("get_weather", BinaryData.FromString(WeatherParameters), strictModeEnabled: null,
            functionDescription: "Current weather of a city"));
        return options;
    }

    [Fact]
    public async Task FunctionCallRoundTrip()
    {
        var engine = new ScriptedEngine(WeatherScript);
        await using var server = await ScriptedEngine.StartAsync(engine);
        var responses = Client(server);
        ResponseResult first = await responses.CreateResponseAsync(WeatherOptions(ResponseItem.CreateUserMessageItem("What is the weather in Paris?")), Ct);
        Assert.Equal(ResponseStatus.Completed, first.Status);
        var call = Assert.IsAssignableFrom<FunctionCallResponseItem>(Assert.Single(first.OutputItems));
        Assert.Equal("get_weather", call.FunctionName);
        Assert.StartsWith("fc_", call.Id);
        Assert.StartsWith("call_", call.CallId);
        Assert.Equal(FunctionCallStatus.Completed, call.Status);
        Assert.Equal("Paris", JsonDocument.Parse(call.FunctionArguments).RootElement.GetProperty("city").GetString());
        Assert.True(string.IsNullOrEmpty(first.GetOutputText()));
        // The template offered the tool to the model in chat's shape.
        Assert.Contains("\"get_weather\"", engine.Prompts[0]);
        Assert.Contains("<tools>", engine.Prompts[0]);

        var next = WeatherOptions(ResponseItem.CreateFunctionCallOutputItem(call.CallId, "sunny, 24 °C"));
        next.PreviousResponseId = first.Id;
        ResponseResult second = await responses.CreateResponseAsync(next, Ct);
        Assert.Equal(ResponseStatus.Completed, second.Status);
        Assert.Equal(2, second.OutputItems.Count);
        var reasoning = Assert.IsAssignableFrom<ReasoningResponseItem>(second.OutputItems[0]);
        Assert.Equal("The tool said sunny.", reasoning.GetSummaryText());
        var message = Assert.IsAssignableFrom<MessageResponseItem>(second.OutputItems[1]);
        Assert.Equal("It is sunny in Paris.", message.Content[0].Text);
        Assert.Equal("It is sunny in Paris.", second.GetOutputText());
        Assert.InRange(second.Usage.OutputTokenDetails.ReasoningTokenCount, 1, second.Usage.OutputTokenCount);
        Assert.Contains("<tool_response>\nsunny, 24 °C\n</tool_response>", engine.Prompts[1]);
        // The stored call, as the parser read it, is the assistant's turn before the output.
        Assert.Contains("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + call.FunctionArguments + "}\n</tool_call><|im_end|>", engine.Prompts[1]);
    }

    [Fact]
    public async Task AContinuationRendersTheChatRoutesPrompt()
    {
        var engine = new ScriptedEngine(WeatherScript);
        await using var server = await ScriptedEngine.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        const string Tool = """{"type":"function","name":"get_weather","description":"Current weather of a city","parameters":@P@}""";
        const string ChatTool = """{"type":"function","function":{"name":"get_weather","description":"Current weather of a city","parameters":@P@}}""";
        var first = await (await http.PostJsonAsync("v1/responses", Fill("""
            {"instructions":"Be brief.","input":"What is the weather in Paris?","tools":[@Tool@]}
            """, ("Tool", Tool), ("P", WeatherParameters)))).JsonAsync();
        var call = first.GetProperty("output")[0];
        Assert.Equal("function_call", call.GetProperty("type").GetString());
        string callId = call.GetProperty("call_id").GetString()!;
        string arguments = call.GetProperty("arguments").GetString()!;
        // The instructions belong to the request that gave them; the continuation repeats them, as a client must.
        var second = await http.PostJsonAsync("v1/responses", Fill("""
            {"instructions":"Be brief.","previous_response_id":"@Id@","tools":[@Tool@],
             "input":[{"type":"function_call_output","call_id":"@CallId@","output":"sunny"}]}
            """, ("Id", first.GetProperty("id").GetString()!), ("Tool", Tool), ("P", WeatherParameters), ("CallId", callId)));
        Assert.True(second.IsSuccessStatusCode, await second.Content.ReadAsStringAsync(Ct));

        var chat = await http.PostJsonAsync("v1/chat/completions", Fill("""
            {"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is the weather in Paris?"},
              {"role":"assistant","content":null,"tool_calls":[{"id":"@CallId@","type":"function","function":{"name":"get_weather","arguments":@Args@}}]},
              {"role":"tool","tool_call_id":"@CallId@","content":"sunny"}],
             "tools":[@Tool@]}
            """, ("Tool", ChatTool), ("P", WeatherParameters), ("CallId", callId), ("Args", JsonSerializer.Serialize(arguments))));
        Assert.True(chat.IsSuccessStatusCode, await chat.Content.ReadAsStringAsync(Ct));
        Assert.Equal(3, engine.Prompts.Count);
        Assert.Equal(engine.Prompts[2], engine.Prompts[1]);

        // The same conversation sent in full (as a client with store false does, output items and all) renders the same.
        var full = await http.PostJsonAsync("v1/responses", Fill("""
            {"instructions":"Be brief.","store":false,"tools":[@Tool@],
             "input":[{"role":"user","content":[{"type":"input_text","text":"What is the weather in Paris?"}]},@Call@,
                      {"type":"function_call_output","call_id":"@CallId@","output":"sunny"}]}
            """, ("Tool", Tool), ("P", WeatherParameters), ("Call", call.GetRawText()), ("CallId", callId)));
        Assert.True(full.IsSuccessStatusCode, await full.Content.ReadAsStringAsync(Ct));
        Assert.Equal(engine.Prompts[2], engine.Prompts[3]);
    }

    [Fact]
    public async Task StreamingFunctionCallAndReasoningEvents()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(WeatherScript));
        var responses = Client(server);
        var options = WeatherOptions(ResponseItem.CreateUserMessageItem("weather?"));
        options.StreamingEnabled = true;
        var arguments = new StringBuilder();
        string? done = null;
        ResponseResult? completed = null;
        var kinds = new List<Type>();
        await foreach (var update in await responses.CreateResponseStreamingAsync(options, Ct))
        {
            kinds.Add(update.GetType());
            if (update is StreamingResponseFunctionCallArgumentsDeltaUpdate delta) arguments.Append(delta.Delta.ToString());
            if (update is StreamingResponseFunctionCallArgumentsDoneUpdate d) done = d.FunctionArguments.ToString();
            if (update is StreamingResponseCompletedUpdate c) completed = c.Response;
        }
        Assert.Equal(typeof(StreamingResponseCreatedUpdate), kinds[0]);
        Assert.Equal(typeof(StreamingResponseOutputItemAddedUpdate), kinds[2]);
        Assert.Equal(typeof(StreamingResponseFunctionCallArgumentsDoneUpdate), kinds[^3]);
        Assert.Equal(typeof(StreamingResponseOutputItemDoneUpdate), kinds[^2]);
        Assert.Equal(arguments.ToString(), done);
        Assert.Equal("Paris", JsonDocument.Parse(done!).RootElement.GetProperty("city").GetString());
        Assert.NotNull(completed);
        var call = Assert.IsAssignableFrom<FunctionCallResponseItem>(Assert.Single(completed.OutputItems));
        Assert.Equal(done, call.FunctionArguments.ToString());

        var next = WeatherOptions(ResponseItem.CreateFunctionCallOutputItem(call.CallId, "sunny"));
        next.PreviousResponseId = completed.Id;
        next.StreamingEnabled = true;
        var summary = new StringBuilder();
        var text = new StringBuilder();
        var outputIndexes = new List<int>();
        await foreach (var update in await responses.CreateResponseStreamingAsync(next, Ct))
        {
            if (update is StreamingResponseReasoningSummaryTextDeltaUpdate r) summary.Append(r.Delta);
            if (update is StreamingResponseOutputTextDeltaUpdate t) text.Append(t.Delta);
            if (update is StreamingResponseOutputItemAddedUpdate added) outputIndexes.Add(added.OutputIndex);
        }
        Assert.Equal("The tool said sunny.", summary.ToString());
        Assert.Equal("It is sunny in Paris.", text.ToString());
        Assert.Equal([0, 1], outputIndexes);
    }

    [Fact]
    public async Task CreatedIsSentBeforeTheFirstTokenWithKeepAlives()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "Hello there!") { Hold = release.Task },
            o => o with { StreamKeepAlive = TimeSpan.FromMilliseconds(50) });
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        cts.CancelAfter(TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = server.Address };
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/responses")
        {
            Content = new StringContent("""{"input":"Hi","stream":true}""", Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cts.Token);
        Assert.Equal(200, (int)response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cts.Token));
        var before = new List<string>();
        // Still "prefilling": the response exists and says so, and comments keep the connection alive.
        while (before.Count(l => l.StartsWith(':')) < 2) before.Add((await reader.ReadLineAsync(cts.Token))!);
        Assert.Equal("event: response.created", before[0]);
        Assert.Contains("event: response.in_progress", before);
        Assert.DoesNotContain(before, l => l.StartsWith("event: response.output", StringComparison.Ordinal));
        release.SetResult();
        string rest = await reader.ReadToEndAsync(cts.Token);
        Assert.Contains("event: response.completed", rest);
        Assert.Contains("Hello there!", rest);
    }

    [Fact]
    public async Task AFailureMidStreamIsAnErrorAndResponseFailed()
    {
        var engine = new ScriptedEngine(_ => "never") { Fail = new InvalidOperationException("the forward pass broke") };
        await using var server = await ScriptedEngine.StartAsync(engine);
        var options = new CreateResponseOptions("scripted", [ResponseItem.CreateUserMessageItem("Hi")]) { StreamingEnabled = true };
        var updates = new List<StreamingResponseUpdate>();
        await foreach (var update in await Client(server).CreateResponseStreamingAsync(options, Ct)) updates.Add(update);
        var error = Assert.IsType<StreamingResponseErrorUpdate>(updates[^2]);
        Assert.Contains("the forward pass broke", error.Message);
        Assert.Equal("generation_failed", error.Code);
        var failed = Assert.IsType<StreamingResponseFailedUpdate>(updates[^1]);
        Assert.Equal(ResponseStatus.Failed, failed.Response.Status);
        Assert.Contains("the forward pass broke", failed.Response.Error.Message);

        // Refused before anything was sent: the status says so.
        engine.Throw = new Kaiyuan.Scheduling.QueueFullException("the queue is full");
        var refused = await Assert.ThrowsAsync<ClientResultException>(async () =>
        {
            await foreach (var _ in await Client(server).CreateResponseStreamingAsync(options, Ct)) { }
        });
        Assert.Equal(429, refused.Status);
    }
}

/// <summary>
/// Structured output and forced function calls through the Responses API, on the random-weight qwen3 fixture with
/// Qwen2.5's real template (Hermes tool calls), sampled with seeds as the chat route's tests are: answers that finish
/// validate against their schema, and a seeded answer is the chat route's for the same request.
/// </summary>
public sealed class ResponsesStructuredTests(StructuredServer fixture) : IClassFixture<StructuredServer>
{
    private const string Verdict = """
        {"type":"object","properties":{"answer":{"type":"string","enum":["yes","no","maybe"]},"sure":{"type":"boolean"}},
         "required":["answer","sure"],"additionalProperties":false}
        """;

    private const string LookupParameters = """
        {"type":"object","properties":{"query":{"type":"string","maxLength":6},"exact":{"type":"boolean"}},"required":["query","exact"],"additionalProperties":false}
        """;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private ResponsesClient Responses() =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(fixture.Require().Address, "v1") }).GetResponsesClient();

    /// <summary>Sampled as the chat tests sample; the SDK has no seed property, so it goes in through the request's patch.</summary>
    private CreateResponseOptions Sampled(long seed, int maxTokens = 300)
    {
        var options = new CreateResponseOptions(fixture.Model, [ResponseItem.CreateUserMessageItem("Is the sky blue?")])
        {
            Temperature = 1,
            TopP = 1,
            MaxOutputTokenCount = maxTokens,
        };
#pragma warning disable SCME0001 // JsonPatch: evaluation-only in System.ClientModel
        options.Patch.Set("$.seed"u8, seed);
#pragma warning restore SCME0001
        return options;
    }

    [Fact]
    public async Task JsonSchemaTextFormatAnswersValidate()
    {
        int completed = 0;
        for (long seed = 1; seed <= 6; seed++)
        {
            var options = Sampled(seed);
            options.TextOptions = new ResponseTextOptions
            {
                TextFormat = ResponseTextFormat.CreateJsonSchemaFormat("verdict", BinaryData.FromString(Verdict), jsonSchemaIsStrict: true),
            };
            ResponseResult response = await Responses().CreateResponseAsync(options, Ct);
            Assert.Equal(ResponseTextFormatKind.JsonSchema, response.TextOptions.TextFormat.Kind);
            if (response.Status != ResponseStatus.Completed) continue;
            completed++;
            StructuredOutputTests.AssertValid(Verdict, response.GetOutputText());
        }
        Assert.True(completed >= 3, $"only {completed} of 6 answers finished");

        // The same seed and schema through chat completions: the same prompt, constraint and sampler, so the same answer.
        var chat = await fixture.Chat().CompleteChatAsync([new UserChatMessage("Is the sky blue?")], new ChatCompletionOptions
        {
            Temperature = 1,
            TopP = 1,
            MaxOutputTokenCount = 300,
            Seed = 3,
            ResponseFormat = OpenAI.Chat.ChatResponseFormat.CreateJsonSchemaFormat("verdict", BinaryData.FromString(Verdict), jsonSchemaIsStrict: true),
        }, Ct);
        var same = Sampled(3);
        same.TextOptions = new ResponseTextOptions
        {
            TextFormat = ResponseTextFormat.CreateJsonSchemaFormat("verdict", BinaryData.FromString(Verdict), jsonSchemaIsStrict: true),
        };
        Assert.Equal(chat.Value.Content[0].Text, (await Responses().CreateResponseAsync(same, Ct)).Value.GetOutputText());
    }

    [Fact]
    public async Task ForcedFunctionCallFollowsTheSchemaAndItsOutputIsTaken()
    {
        int called = 0;
        for (long seed = 1; seed <= 4; seed++)
        {
            var options = Sampled(seed, 600);
            options.Tools.Add(ResponseTool.CreateFunctionTool("lookup", BinaryData.FromString(LookupParameters), strictModeEnabled: true, functionDescription: "Looks a word up"));
            options.ToolChoice = ResponseToolChoice.CreateFunctionChoice("lookup");
            options.ParallelToolCallsEnabled = false;
            ResponseResult response = await Responses().CreateResponseAsync(options, Ct);
            Assert.Equal(ResponseToolChoiceKind.Function, response.ToolChoice.Kind);
            Assert.False(response.ParallelToolCallsEnabled);
            if (response.Status != ResponseStatus.Completed) continue;
            called++;
            var call = Assert.IsAssignableFrom<FunctionCallResponseItem>(Assert.Single(response.OutputItems, i => i is FunctionCallResponseItem));
            Assert.Equal("lookup", call.FunctionName);
            StructuredOutputTests.AssertValid(LookupParameters, call.FunctionArguments.ToString());

            // The call's output continues the conversation.
            var next = Sampled(seed, 16);
            next.InputItems.Clear();
            next.InputItems.Add(ResponseItem.CreateFunctionCallOutputItem(call.CallId, """{"found":true}"""));
            next.PreviousResponseId = response.Id;
            next.Tools.Add(ResponseTool.CreateFunctionTool("lookup", BinaryData.FromString(LookupParameters), strictModeEnabled: true, functionDescription: "Looks a word up"));
            ResponseResult answer = await Responses().CreateResponseAsync(next, Ct);
            Assert.True(answer.Status is ResponseStatus.Completed or ResponseStatus.Incomplete);
            // The template re-renders the call's arguments compactly, so the prompt grows by less than the call's tokens.
            Assert.True(answer.Usage.InputTokenCount > response.Usage.InputTokenCount);
        }
        Assert.True(called >= 2, $"only {called} of 4 calls finished");
    }
}

public sealed class ResponseStoreTests
{
    private static StoredResponse Response(string id, int size = 10) => new(id, new string('x', size), "[]", 0);

    [Fact]
    public void EvictsTheLeastRecentlyUsedPastItsCount()
    {
        var store = new ResponseStore(maxCount: 3);
        foreach (var id in new[] { "a", "b", "c" }) store.Add(Response(id));
        Assert.NotNull(store.Get("a")); // a is now the most recently used
        store.Add(Response("d"));
        Assert.Null(store.Get("b"));
        Assert.Equal(3, store.Count);
        Assert.NotNull(store.Get("a"));
        Assert.True(store.Remove("c"));
        Assert.False(store.Remove("c"));
        Assert.Equal(2, store.Count);
    }

    [Fact]
    public void KeepsWithinItsBytes()
    {
        long one = Response("a", 1000).Bytes;
        var store = new ResponseStore(maxBytes: one * 2 + one / 2);
        store.Add(Response("a", 1000));
        store.Add(Response("b", 1000));
        store.Add(Response("c", 1000));
        Assert.Null(store.Get("a"));
        Assert.Equal(2, store.Count);
        Assert.True(store.Bytes <= store.MaxBytes);
        // One larger than the whole budget is not kept, and evicts nothing.
        Assert.False(store.Add(Response("huge", 10_000)));
        Assert.Null(store.Get("huge"));
        Assert.Equal(2, store.Count);
        // Storing an id again replaces it.
        store.Add(Response("b", 10));
        Assert.Equal(2, store.Count);
        Assert.Equal(10, store.Get("b")!.Json.Length);
    }
}
