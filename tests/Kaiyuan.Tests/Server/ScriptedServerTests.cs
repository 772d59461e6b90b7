using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json;
using Kaiyuan.Scheduling;
using Microsoft.Extensions.AI;
using OpenAI;
using OpenAI.Chat;
using ChatFinishReason = OpenAI.Chat.ChatFinishReason;

namespace Kaiyuan.Tests.Server;

/// <summary>
/// The real HTTP stack and SDKs over a scripted engine (exact model output on demand): tool calls, reasoning, and
/// the error statuses.
/// </summary>
public sealed class ScriptedServerTests
{
    private const string WeatherCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    private static string WeatherScript(string prompt) =>
        prompt.Contains("<tool_response>", StringComparison.Ordinal) ? "<think>The tool said sunny.</think>\n\nIt is sunny in Paris." : WeatherCall;

    private static OpenAIClient Client(Kaiyuan.AspNetCore.KaiyuanServer server, string key = "unused") =>
        new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(server.Address, "v1") });

    private static readonly ChatTool WeatherTool = ChatTool.CreateFunctionTool("get_weather", "Current weather of a city",
        BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"""));

    [Fact]
    public async Task ToolCallRoundTripWithOpenAiSdk()
    {
        var engine = new ScriptedEngine(WeatherScript);
        await using var server = await ScriptedEngine.StartAsync(engine);
        var chat = Client(server).GetChatClient("scripted");
        var ct = TestContext.Current.CancellationToken;
        var options = new ChatCompletionOptions { Tools = { WeatherTool } };
        List<OpenAI.Chat.ChatMessage> messages = [new UserChatMessage("What is the weather in Paris?")];
        ChatCompletion first = await chat.CompleteChatAsync(messages, options, ct);
        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        var call = Assert.Single(first.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.Equal("Paris", JsonDocument.Parse(call.FunctionArguments).RootElement.GetProperty("city").GetString());
        // The template offered the tool to the model.
        Assert.Contains("\"get_weather\"", engine.Prompts[0]);
        Assert.Contains("<tools>", engine.Prompts[0]);

        messages.Add(new AssistantChatMessage(first));
        messages.Add(new ToolChatMessage(call.Id, "sunny, 24 °C"));
        ChatCompletion second = await chat.CompleteChatAsync(messages, options, ct);
        Assert.Equal(ChatFinishReason.Stop, second.FinishReason);
        Assert.Equal("It is sunny in Paris.", second.Content[0].Text);
        Assert.Contains("<tool_response>\nsunny, 24 °C\n</tool_response>", engine.Prompts[1]);
        Assert.Contains("<tool_call>\n{\"name\": \"get_weather\"", engine.Prompts[1]);
    }

    [Fact]
    public async Task QwenJinjaTemplateToolRoundTrip()
    {
        string template = File.ReadAllText(Fixtures.Require("chat-templates", "Qwen-Qwen3-0.6B.jinja"));
        var engine = new ScriptedEngine(p => p.Contains("<tool_response>", StringComparison.Ordinal)
            ? "<think>\nThe tool answered.\n</think>\n\nIt is sunny in Paris."
            : "<think>\nI should call the tool.\n</think>\n\n" + WeatherCall);
        await using var server = await ScriptedEngine.StartAsync(engine, formatter: new Kaiyuan.Chat.JinjaPromptFormatter(template, "", "<|im_end|>"));
        var chat = Client(server).GetChatClient("scripted");
        var ct = TestContext.Current.CancellationToken;
        var options = new ChatCompletionOptions { Tools = { WeatherTool } };
        List<OpenAI.Chat.ChatMessage> messages = [new SystemChatMessage("Be brief."), new UserChatMessage("What is the weather in Paris?")];
        ChatCompletion first = await chat.CompleteChatAsync(messages, options, ct);
        Assert.Equal(ChatFinishReason.ToolCalls, first.FinishReason);
        Assert.Equal("get_weather", Assert.Single(first.ToolCalls).FunctionName);
        Assert.StartsWith("<|im_start|>system\nBe brief.", engine.Prompts[0]);
        Assert.Contains("<tools>", engine.Prompts[0]);
        Assert.EndsWith("<|im_start|>assistant\n", engine.Prompts[0]);

        messages.Add(new AssistantChatMessage(first));
        messages.Add(new ToolChatMessage(first.ToolCalls[0].Id, "sunny"));
        ChatCompletion second = await chat.CompleteChatAsync(messages, options, ct);
        Assert.Equal("It is sunny in Paris.", second.Content[0].Text.Trim());
        Assert.Contains("<tool_response>\nsunny\n</tool_response>", engine.Prompts[1]);
        Assert.Contains("\"city\": \"Paris\"", engine.Prompts[1]);
    }

    [Fact]
    public async Task ToolCallStreamsAsDeltas()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(WeatherScript));
        var chat = Client(server).GetChatClient("scripted");
        var names = new List<string>();
        var args = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync([new UserChatMessage("weather?")], new ChatCompletionOptions { Tools = { WeatherTool } },
                           TestContext.Current.CancellationToken))
        {
            foreach (var t in update.ToolCallUpdates)
            {
                if (t.FunctionName is { } n) names.Add(n);
                if (t.FunctionArgumentsUpdate is { } a && !a.ToMemory().IsEmpty) args.Append(a.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal(["get_weather"], names);
        Assert.Equal("Paris", JsonDocument.Parse(args.ToString()).RootElement.GetProperty("city").GetString());
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task FunctionInvocationThroughMicrosoftExtensionsAi()
    {
        var engine = new ScriptedEngine(WeatherScript);
        await using var server = await ScriptedEngine.StartAsync(engine);
        IChatClient client = new ChatClientBuilder(Client(server).GetChatClient("scripted").AsIChatClient()).UseFunctionInvocation().Build();
        int calls = 0;
        var tool = AIFunctionFactory.Create((string city) => { calls++; return $"sunny in {city}"; }, "get_weather", "Current weather of a city");
        var response = await client.GetResponseAsync("What is the weather in Paris?", new ChatOptions { Tools = [tool] }, TestContext.Current.CancellationToken);
        Assert.Equal(1, calls);
        Assert.Equal("It is sunny in Paris.", response.Text);
        Assert.Contains("sunny in Paris", engine.Prompts[^1]);
    }

    [Fact]
    public async Task ReasoningContentIsSeparated()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "<think>Let me think.</think>\n\nHello!"));
        using var http = new HttpClient { BaseAddress = server.Address };
        var r = await http.PostJsonAsync("v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}]}""");
        var message = (await r.JsonAsync()).GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("Hello!", message.GetProperty("content").GetString());
        Assert.Equal("Let me think.", message.GetProperty("reasoning_content").GetString());

        var s = await http.PostJsonAsync("v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}],"stream":true}""");
        string body = await s.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        var deltas = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => e != "data: [DONE]")
            .Select(e => JsonDocument.Parse(e[6..]).RootElement.GetProperty("choices")[0].GetProperty("delta")).ToArray();
        string Join(string name) => string.Concat(deltas.Where(d => d.TryGetProperty(name, out _)).Select(d => d.GetProperty(name).GetString()));
        Assert.Equal("Let me think.", Join("reasoning_content"));
        Assert.Equal("Hello!", Join("content"));
    }

    [Fact]
    public async Task ErrorStatusesAreOpenAiShaped()
    {
        var engine = new ScriptedEngine(_ => "ok");
        await using var server = await ScriptedEngine.StartAsync(engine, o => o with { MaxRequestBodyBytes = 4096 });
        using var http = new HttpClient { BaseAddress = server.Address };
        async Task Expect(HttpResponseMessage r, int status, string? param = null)
        {
            Assert.Equal(status, (int)r.StatusCode);
            var error = (await r.JsonAsync()).GetProperty("error");
            Assert.False(string.IsNullOrEmpty(error.GetProperty("message").GetString()));
            Assert.Equal(JsonValueKind.String, error.GetProperty("type").ValueKind);
            Assert.True(error.TryGetProperty("code", out _));
            Assert.True(error.TryGetProperty("param", out var p));
            if (param is not null) Assert.Equal(param, p.GetString());
        }
        const string Hi = "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]";
        await Expect(await http.PostJsonAsync("v1/chat/completions", "{not json"), 400);
        await Expect(await http.PostJsonAsync("v1/chat/completions", "[1,2]"), 400);
        await Expect(await http.PostJsonAsync("v1/chat/completions", """{"messages":"hi"}"""), 400, "messages");
        await Expect(await http.PostJsonAsync("v1/chat/completions", $$"""{"model":"gpt-4o",{{Hi}}}"""), 404, "model");
        await Expect(await http.PostJsonAsync("v1/chat/completions", $$"""{"n":0,{{Hi}}}"""), 400, "n");
        await Expect(await http.PostJsonAsync("v1/chat/completions",
            "{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\",\"schema\":{}}}," + Hi + "}"), 400, "response_format");
        await Expect(await http.PostJsonAsync("v1/chat/completions", $$"""{"temperature":"hot",{{Hi}}}"""), 400, "temperature");
        await Expect(await http.PostJsonAsync("v1/chat/completions", $$"""{"temperature":7,{{Hi}}}"""), 400, "temperature");
        await Expect(await http.PostJsonAsync("v1/chat/completions", $$"""{"logit_bias":{"abc":1},{{Hi}}}"""), 400, "logit_bias");
        await Expect(await http.PostJsonAsync("v1/chat/completions", $$"""{"tool_choice":"required",{{Hi}}}"""), 400, "tool_choice");
        await Expect(await http.PostJsonAsync("v1/chat/completions", """{"messages":[{"role":"wizard","content":"Hi"}]}"""), 400, "messages[0].role");
        // Array items that must be objects but are not (found by the HTTP fuzzer: content parts of numbers were a 500).
        await Expect(await http.PostJsonAsync("v1/chat/completions", """{"messages":[{"role":"system","content":[1,2,3,300]},{"role":"user","content":"Hi"}]}"""), 400, "messages[0].content");
        await Expect(await http.PostJsonAsync("v1/chat/completions", """{"messages":[{"role":"assistant","content":"","tool_calls":[7]},{"role":"user","content":"Hi"}]}"""), 400, "messages[0].tool_calls");
        await Expect(await http.PostJsonAsync("v1/completions", """{"prompt":[1,-5]}"""), 400, "prompt");
        await Expect(await http.PostJsonAsync("v1/embeddings", """{"input":42}"""), 400, "input");
        await Expect(await http.PostJsonAsync("v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('x', 8000) + "\"}]}"), 413);
        await Expect(await http.GetAsync("v1/nothing-here", TestContext.Current.CancellationToken), 404);

        engine.Throw = new QueueFullException("the queue is full");
        await Expect(await http.PostJsonAsync("v1/chat/completions", $"{{{Hi}}}"), 429);
        var sdk = await Assert.ThrowsAsync<ClientResultException>(() =>
            Client(server).GetChatClient("scripted").CompleteChatAsync([new UserChatMessage("Hi")], new ChatCompletionOptions(), TestContext.Current.CancellationToken));
        Assert.Equal(429, sdk.Status);
        engine.Throw = new InvalidOperationException("boom");
        await Expect(await http.PostJsonAsync("v1/chat/completions", $"{{{Hi}}}"), 500);
        engine.Throw = null;
        Assert.Equal(HttpStatusCode.OK, (await http.PostJsonAsync("v1/chat/completions", $"{{{Hi}}}")).StatusCode);
    }

    [Fact]
    public async Task ApiKeyIsRequired()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "ok"), o => o with { ApiKey = "sesame" });
        var ct = TestContext.Current.CancellationToken;
        using var http = new HttpClient { BaseAddress = server.Address };
        var missing = await http.GetAsync("v1/models", ct);
        Assert.Equal(401, (int)missing.StatusCode);
        Assert.Equal("invalid_api_key", (await missing.JsonAsync()).GetProperty("error").GetProperty("code").GetString());
        Assert.Equal(200, (int)(await http.GetAsync("health", ct)).StatusCode);

        var wrong = await Assert.ThrowsAsync<ClientResultException>(() => Client(server, "wrong").GetOpenAIModelClient().GetModelsAsync(ct));
        Assert.Equal(401, wrong.Status);
        var models = await Client(server, "sesame").GetOpenAIModelClient().GetModelsAsync(ct);
        Assert.Equal("scripted", Assert.Single(models.Value).Id);
    }

    [Fact]
    public async Task CorsPreflightAndHeaders()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "ok"), o => o with { CorsOrigins = ["http://app.example"], ApiKey = "k" });
        using var http = new HttpClient { BaseAddress = server.Address };
        var ct = TestContext.Current.CancellationToken;
        using var preflight = new HttpRequestMessage(HttpMethod.Options, "v1/chat/completions");
        preflight.Headers.Add("Origin", "http://app.example");
        preflight.Headers.Add("Access-Control-Request-Method", "POST");
        preflight.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
        var r = await http.SendAsync(preflight, ct);
        Assert.True(r.IsSuccessStatusCode, $"preflight: {(int)r.StatusCode}");
        Assert.Equal("http://app.example", r.Headers.GetValues("Access-Control-Allow-Origin").Single());

        using var get = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        get.Headers.Add("Origin", "http://other.example");
        get.Headers.Add("Authorization", "Bearer k");
        var other = await http.SendAsync(get, ct);
        Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task HealthIs503WhileLoading()
    {
        using var release = new ManualResetEventSlim();
        var options = new Kaiyuan.AspNetCore.ServerOptions { ModelPath = "slow.gguf", Port = 0, RequestLogging = false };
        await using var server = await Kaiyuan.AspNetCore.KaiyuanServer.StartAsync(options, _ =>
        {
            release.Wait(TimeSpan.FromSeconds(30));
            return new Kaiyuan.Chat.ModelRuntime("slow", new CharCodec(), new Kaiyuan.Chat.ChatMlFormatter(), new ScriptedEngine(_ => "ok"),
                new Kaiyuan.Chat.ModelDescription("test", "F32", 0, 0, 4096, 2, null, new Dictionary<string, object>()));
        }, TestContext.Current.CancellationToken);
        using var http = new HttpClient { BaseAddress = server.Address };
        var ct = TestContext.Current.CancellationToken;
        Assert.Equal(503, (int)(await http.GetAsync("health", ct)).StatusCode);
        Assert.Equal(503, (int)(await http.PostJsonAsync("v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}]}""")).StatusCode);
        release.Set();
        await server.WaitReadyAsync().WaitAsync(ct);
        Assert.Equal(200, (int)(await http.GetAsync("health", ct)).StatusCode);
    }

    [Fact]
    public async Task OllamaEndpoints()
    {
        var engine = new ScriptedEngine(p => p.Contains("<tool_response>", StringComparison.Ordinal) ? "done" : "Hello there!");
        await using var server = await ScriptedEngine.StartAsync(engine);
        using var http = new HttpClient { BaseAddress = server.Address };
        var ct = TestContext.Current.CancellationToken;
        Assert.False(string.IsNullOrEmpty((await (await http.GetAsync("api/version", ct)).JsonAsync()).GetProperty("version").GetString()));
        var tags = await (await http.GetAsync("api/tags", ct)).JsonAsync();
        Assert.Equal("scripted:latest", tags.GetProperty("models")[0].GetProperty("name").GetString());
        Assert.Equal("gguf", tags.GetProperty("models")[0].GetProperty("details").GetProperty("format").GetString());
        var ps = await (await http.GetAsync("api/ps", ct)).JsonAsync();
        Assert.Equal("scripted:latest", ps.GetProperty("models")[0].GetProperty("model").GetString());
        var show = await (await http.PostJsonAsync("api/show", """{"model":"scripted"}""")).JsonAsync();
        Assert.True(show.TryGetProperty("model_info", out _));

        // Streaming generate: NDJSON, one object per line, the last one done.
        var gen = await http.PostJsonAsync("api/generate", """{"model":"scripted:latest","prompt":"Hi"}""");
        Assert.Equal("application/x-ndjson", gen.Content.Headers.ContentType?.MediaType);
        var lines = (await gen.Content.ReadAsStringAsync(ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.True(lines.Length >= 2);
        Assert.All(lines[..^1], l => Assert.False(l.GetProperty("done").GetBoolean()));
        Assert.True(lines[^1].GetProperty("done").GetBoolean());
        Assert.Equal("stop", lines[^1].GetProperty("done_reason").GetString());
        Assert.Equal("Hello there!", string.Concat(lines.Select(l => l.GetProperty("response").GetString())));
        Assert.True(lines[^1].GetProperty("eval_count").GetInt32() > 0);

        // Non-streaming chat.
        var chat = await (await http.PostJsonAsync("api/chat", """{"model":"scripted","stream":false,"messages":[{"role":"user","content":"Hi"}],"options":{"temperature":0,"num_predict":5}}""")).JsonAsync();
        Assert.True(chat.GetProperty("done").GetBoolean());
        Assert.Equal("Hello", chat.GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("length", chat.GetProperty("done_reason").GetString());

        // Streaming chat.
        var streamed = await http.PostJsonAsync("api/chat", """{"model":"scripted","messages":[{"role":"user","content":"Hi"}]}""");
        var chunks = (await streamed.Content.ReadAsStringAsync(ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal("Hello there!", string.Concat(chunks.Select(c => c.GetProperty("message").GetProperty("content").GetString())));

        Assert.Equal(404, (int)(await http.PostJsonAsync("api/chat", """{"model":"llama3","messages":[{"role":"user","content":"Hi"}]}""")).StatusCode);
    }

    [Fact]
    public async Task OllamaToolCalls()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(WeatherScript));
        using var http = new HttpClient { BaseAddress = server.Address };
        var r = await (await http.PostJsonAsync("api/chat", """
            {"model":"scripted","stream":false,"messages":[{"role":"user","content":"weather?"}],
             "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}
            """)).JsonAsync();
        var call = r.GetProperty("message").GetProperty("tool_calls")[0].GetProperty("function");
        Assert.Equal("get_weather", call.GetProperty("name").GetString());
        Assert.Equal("Paris", call.GetProperty("arguments").GetProperty("city").GetString());
    }
}
