using System.Net;
using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Core;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using Kaiyuan.Scheduling;
using Kaiyuan.AspNetCore;
using Microsoft.Extensions.AI;
using OpenAI.Chat;
using AnthropicMessage = Anthropic.Models.Messages.Message;
using OpenAiUser = OpenAI.Chat.UserChatMessage;
using OpenAiSystem = OpenAI.Chat.SystemChatMessage;

namespace Kaiyuan.Tests.Server;

/// <summary>The official Anthropic .NET SDK against a server, and what the tests add to its requests.</summary>
internal static class AnthropicSdk
{
    /// <summary>The SDK's client for a server; no retries, so that a refusal is seen as it was sent.</summary>
    public static AnthropicClient Client(KaiyuanServer server, string key = "unused") =>
        new(new ClientOptions { BaseUrl = server.Address.ToString().TrimEnd('/'), ApiKey = key, MaxRetries = 0 });

    /// <summary>
    /// Body fields the SDK (13.x) no longer models, since Claude's newest models take no sampling parameters: temperature,
    /// top_p, seed. The API still documents them and the server reads them; the SDK sends them as raw body data.
    /// </summary>
    public static MessageCreateParams With(this MessageCreateParams p, params (string Name, object Value)[] fields)
    {
        var body = p.RawBodyData.ToDictionary();
        foreach (var (name, value) in fields) body[name] = JsonSerializer.SerializeToElement(value);
        return MessageCreateParams.FromRawUnchecked(p.RawHeaderData, p.RawQueryData, body);
    }

    public static MessageCreateParams Greedy(this MessageCreateParams p) => p.With(("temperature", 0));

    public static string Text(this AnthropicMessage m) =>
        string.Concat(m.Content.Select(b => b.TryPickText(out var t) ? t.Text : ""));

    public static string Type(this RawMessageStreamEvent e) => e.Json.GetProperty("type").GetString()!;

    public static Tool Tool(string name, string description, string schema) => new()
    {
        Name = name,
        Description = description,
        InputSchema = new InputSchema(JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(schema)!),
    };

    /// <summary>Server-sent events as (event name, data) pairs.</summary>
    public static List<(string Event, JsonElement Data)> Events(string body) =>
        body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Where(e => !e.StartsWith(':')).Select(e =>
        {
            var lines = e.Split('\n');
            Assert.StartsWith("event: ", lines[0], StringComparison.Ordinal);
            Assert.StartsWith("data: ", lines[1], StringComparison.Ordinal);
            return (lines[0][7..], JsonDocument.Parse(lines[1][6..]).RootElement.Clone());
        }).ToList();
}

/// <summary>The real server and stories model through the official Anthropic .NET SDK (and its Microsoft.Extensions.AI adapter).</summary>
public sealed class AnthropicSdkTests(StoriesServer fixture) : IClassFixture<StoriesServer>
{
    private const string System = "You tell stories.";
    private const string Prompt = "Once upon a time";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private AnthropicClient Client() => AnthropicSdk.Client(fixture.Require());

    private MessageCreateParams Params(int maxTokens, string prompt = Prompt) => new()
    {
        Model = fixture.Model,
        MaxTokens = maxTokens,
        System = System,
        Messages = [new UserMessageParam(prompt)],
    };

    [Fact]
    public async Task GreedyTextMatchesTheOpenAiChatRoute()
    {
        AnthropicMessage message = await Client().Messages.Create(Params(12).Greedy(), Ct);
        ChatCompletion openAi = await fixture.OpenAi().GetChatClient(fixture.Model).CompleteChatAsync(
            [new OpenAiSystem(System), new OpenAiUser(Prompt)], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 }, Ct);

        // Same template, same tokens, same greedy answer.
        Assert.False(string.IsNullOrEmpty(message.Text()));
        Assert.Equal(openAi.Content[0].Text, message.Text());
        Assert.StartsWith("msg_", message.ID, StringComparison.Ordinal);
        Assert.Equal(fixture.Model, message.Model.Raw());
        Assert.Equal("max_tokens", message.StopReason!.Raw());
        Assert.Null(message.StopSequence);
        var block = Assert.Single(message.Content);
        Assert.True(block.TryPickText(out _));
        Assert.Equal(12, message.Usage.OutputTokens);
        // Anthropic counts the cached part of the prompt apart from input_tokens.
        Assert.Equal(openAi.Usage.InputTokenCount, message.Usage.InputTokens + message.Usage.CacheReadInputTokens);
        Assert.Equal(0, message.Usage.CacheCreationInputTokens);
    }

    [Fact]
    public async Task StreamingGivesTheSameTextAndEvents()
    {
        AnthropicMessage whole = await Client().Messages.Create(Params(12).Greedy(), Ct);
        var events = new List<RawMessageStreamEvent>();
        await foreach (var e in Client().Messages.CreateStreaming(Params(12).Greedy(), Ct)) events.Add(e);

        Assert.Equal("message_start", events[0].Type());
        Assert.True(events[0].TryPickStart(out var start));
        Assert.Equal(whole.ID.Length, start.Message.ID.Length);
        Assert.Empty(start.Message.Content);
        Assert.Null(start.Message.StopReason);
        Assert.Equal("content_block_start", events[1].Type());
        Assert.True(events[1].TryPickContentBlockStart(out var blockStart));
        Assert.Equal(0, blockStart.Index);
        Assert.Equal("text", blockStart.ContentBlock.Type.Raw());
        var deltas = events[2..^3];
        Assert.NotEmpty(deltas);
        Assert.All(deltas, d => Assert.Equal("content_block_delta", d.Type()));
        var text = new StringBuilder();
        foreach (var d in deltas)
        {
            Assert.True(d.TryPickContentBlockDelta(out var delta));
            Assert.Equal(0, delta.Index);
            Assert.True(delta.Delta.TryPickText(out var t));
            text.Append(t.Text);
        }
        Assert.Equal(whole.Text(), text.ToString());
        Assert.Equal("content_block_stop", events[^3].Type());
        Assert.True(events[^2].TryPickDelta(out var messageDelta));
        Assert.Equal("max_tokens", messageDelta.Delta.StopReason!.Raw());
        Assert.Equal(12, messageDelta.Usage.OutputTokens);
        Assert.Equal(whole.Usage.InputTokens + whole.Usage.CacheReadInputTokens, messageDelta.Usage.InputTokens + messageDelta.Usage.CacheReadInputTokens);
        Assert.Equal("message_stop", events[^1].Type());
    }

    [Fact]
    public async Task TheWireHasNamedEventsAndAPingBeforeTheText()
    {
        using var http = fixture.Http();
        var r = await http.PostJsonAsync("v1/messages",
            """{"model":"stories","max_tokens":4,"temperature":0,"stream":true,"messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType?.MediaType);
        var events = AnthropicSdk.Events(await r.Content.ReadAsStringAsync(Ct));
        Assert.All(events, e => Assert.Equal(e.Event, e.Data.GetProperty("type").GetString()));
        // More pings may follow while the prompt is read (a busy machine); then the text.
        Assert.Equal(["message_start", "ping"], events.Take(2).Select(e => e.Event));
        Assert.Equal("content_block_start", events.Skip(2).First(e => e.Event != "ping").Event);
        Assert.Equal(["content_block_stop", "message_delta", "message_stop"], events.TakeLast(3).Select(e => e.Event));
        var message = events[0].Data.GetProperty("message");
        Assert.Equal("message", message.GetProperty("type").GetString());
        Assert.Equal("assistant", message.GetProperty("role").GetString());
        Assert.Equal(0, message.GetProperty("content").GetArrayLength());
        Assert.True(message.GetProperty("usage").GetProperty("input_tokens").GetInt32() > 0);
        Assert.Equal(JsonValueKind.Null, events[^2].Data.GetProperty("delta").GetProperty("stop_sequence").ValueKind);
    }

    [Fact]
    public async Task StopSequencesAndMaxTokensSetTheStopReason()
    {
        var client = Client();
        AnthropicMessage full = await client.Messages.Create(Params(24).Greedy(), Ct);
        Assert.Equal("max_tokens", full.StopReason!.Raw());
        string text = full.Text();
        string stop = text.Substring(text.Length / 2, 2);

        AnthropicMessage stopped = await client.Messages.Create((Params(24) with { StopSequences = ["zzzz", stop] }).Greedy(), Ct);
        Assert.Equal("stop_sequence", stopped.StopReason!.Raw());
        Assert.Equal(stop, stopped.StopSequence);
        Assert.Equal(text[..text.IndexOf(stop, StringComparison.Ordinal)], stopped.Text());

        var events = new List<RawMessageStreamEvent>();
        await foreach (var e in client.Messages.CreateStreaming((Params(24) with { StopSequences = [stop] }).Greedy(), Ct)) events.Add(e);
        Assert.True(events[^2].TryPickDelta(out var delta));
        Assert.Equal("stop_sequence", delta.Delta.StopReason!.Raw());
        Assert.Equal(stop, delta.Delta.StopSequence);
    }

    [Fact]
    public async Task CountTokensMatchesTheUsage()
    {
        var client = Client();
        var count = await client.Messages.CountTokens(new MessageCountTokensParams
        {
            Model = fixture.Model,
            System = System,
            Messages = [new UserMessageParam("A cat and a dog")],
        }, Ct);
        AnthropicMessage message = await client.Messages.Create(Params(3, "A cat and a dog").Greedy(), Ct);
        Assert.True(count.InputTokens > 0);
        Assert.Equal(count.InputTokens, message.Usage.InputTokens + message.Usage.CacheReadInputTokens);

        // The same conversation again: its prompt now comes from the prefix cache, and Anthropic counts that apart.
        AnthropicMessage again = await client.Messages.Create(Params(3, "A cat and a dog").Greedy(), Ct);
        Assert.True(again.Usage.CacheReadInputTokens > 0);
        Assert.Equal(count.InputTokens, again.Usage.InputTokens + again.Usage.CacheReadInputTokens);
    }

    [Fact]
    public async Task ErrorsAreAnthropicShaped()
    {
        var client = Client();
        // max_tokens is required by Anthropic's API; the SDK itself will not send a request without it (it reads it to
        // size its timeout), so that 400 is asked for below over plain HTTP.
        await Assert.ThrowsAsync<AnthropicInvalidDataException>(() => client.Messages.Create(
            MessageCreateParams.FromRawUnchecked(new Dictionary<string, JsonElement>(), new Dictionary<string, JsonElement>(),
                new Dictionary<string, JsonElement>
                {
                    ["model"] = JsonSerializer.SerializeToElement(fixture.Model),
                    ["messages"] = JsonSerializer.SerializeToElement(new[] { new { role = "user", content = "Hi" } }),
                }), Ct));

        var unknown = await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Create(Params(4) with { Model = "claude-sonnet-4-5" }, Ct));
        Assert.Equal("not_found_error", unknown.Type?.Raw());
        Assert.Contains("claude-sonnet-4-5", unknown.ApiMessage);

        var image = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Params(4) with
        {
            Messages = [new UserMessageParam(new List<ContentBlockParam>
            {
                new TextBlockParam("What is this?"),
                new ImageBlockParam(new Base64ImageSource { Data = "iVBORw0KGgo=", MediaType = MediaType.ImagePng }),
            })],
        }, Ct));
        Assert.Equal("invalid_request_error", image.Type?.Raw());
        Assert.Contains("image", image.ApiMessage);

        string huge = string.Concat(Enumerable.Repeat("Once upon a time there was a girl. ", 100));
        var overflow = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Params(4, huge), Ct));
        Assert.Contains("context", overflow.ApiMessage);

        // Bad input is never a 500, and the raw body is Anthropic's shape.
        using var http = fixture.Http();
        var noMaxTokens = await http.PostJsonAsync("v1/messages", """{"model":"stories","messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, noMaxTokens.StatusCode);
        var error = (await noMaxTokens.JsonAsync()).GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Contains("max_tokens", error.GetProperty("message").GetString());
        foreach (string body in new[]
                 {
                     "[1,2]",
                     """{"model":"stories","max_tokens":4,"messages":"Hi"}""",
                     """{"model":"stories","max_tokens":4,"messages":[{"role":"tool","content":"x"}]}""",
                     """{"model":"stories","max_tokens":4,"messages":[{"role":"user","content":[{"type":"tool_result"}]}]}""",
                     """{"model":"stories","max_tokens":4,"messages":[{"role":"user","content":"Hi"}],"tools":[{"name":"f"}]}""",
                     """{"model":"stories","max_tokens":4,"messages":[{"role":"user","content":"Hi"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}""",
                     """{"model":"stories","max_tokens":4,"messages":[{"role":"user","content":"Hi"}],"tool_choice":{"type":"any"}}""",
                     """{"model":"stories","max_tokens":4,"messages":[{"role":"user","content":"Hi"}],"thinking":{"type":"sometimes"}}""",
                     """{"model":"stories","max_tokens":0,"messages":[{"role":"user","content":"Hi"}]}""",
                 })
        {
            var r = await http.PostJsonAsync("v1/messages", body);
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            var json = await r.JsonAsync();
            Assert.Equal("error", json.GetProperty("type").GetString());
            Assert.Equal("invalid_request_error", json.GetProperty("error").GetProperty("type").GetString());
            Assert.False(string.IsNullOrEmpty(json.GetProperty("error").GetProperty("message").GetString()));
        }
        var wrongRoute = await http.GetAsync("v1/messages/nothing-here", Ct);
        Assert.Equal(HttpStatusCode.NotFound, wrongRoute.StatusCode);
        Assert.Equal("not_found_error", (await wrongRoute.JsonAsync()).GetProperty("error").GetProperty("type").GetString());
    }

    [Fact]
    public async Task MicrosoftExtensionsAiChatClient()
    {
        IChatClient chat = Client().AsIChatClient(fixture.Model, defaultMaxOutputTokens: 10);
        // The adapter has no temperature to send (the SDK dropped it): greedy decoding goes in the raw request it starts
        // from, which must then carry the model and max_tokens itself (the adapter adds only the messages).
        var options = new ChatOptions
        {
            RawRepresentationFactory = _ => new MessageCreateParams { Model = fixture.Model, MaxTokens = 10, Messages = [] }.Greedy(),
        };
        ChatResponse response = await chat.GetResponseAsync(Prompt, options, Ct);
        Assert.False(string.IsNullOrEmpty(response.Text));
        Assert.Equal(Microsoft.Extensions.AI.ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(10, response.Usage?.OutputTokenCount);

        var streamed = new StringBuilder();
        await foreach (var update in chat.GetStreamingResponseAsync(Prompt, options, Ct)) streamed.Append(update.Text);
        Assert.Equal(response.Text, streamed.ToString());
    }
}

/// <summary>
/// Forced tool calls through the SDK on a model whose real template (Qwen2.5's) has tool support: the random-weight
/// qwen3 fixture, sampled under the same call constraint as OpenAI's tool_choice "required" and named function.
/// </summary>
public sealed class AnthropicToolTests(StructuredServer fixture) : IClassFixture<StructuredServer>
{
    private const string LookupSchema = """
        {"type":"object","properties":{"query":{"type":"string","maxLength":6},"exact":{"type":"boolean"}},"required":["query","exact"],"additionalProperties":false}
        """;

    private const string WeatherSchema = """
        {"type":"object","properties":{"city":{"type":"string","enum":["Paris","Tokyo","Lima"]}},"required":["city"],"additionalProperties":false}
        """;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task NamedToolChoiceReturnsAValidToolUseAndTakesItsResult()
    {
        var client = AnthropicSdk.Client(fixture.Require());
        var question = new UserMessageParam("Look the word 'sky' up.");
        ToolUseBlock? use = null;
        AnthropicMessage? message = null;
        for (long seed = 1; seed <= 6 && use is null; seed++)
        {
            var request = new MessageCreateParams
            {
                Model = fixture.Model,
                MaxTokens = 300,
                Messages = [question],
                Tools = [AnthropicSdk.Tool("get_weather", "The weather in a city", WeatherSchema), AnthropicSdk.Tool("lookup", "Looks a word up", LookupSchema)],
                ToolChoice = new ToolChoiceTool("lookup") { DisableParallelToolUse = true },
            }.With(("temperature", 1.0), ("top_p", 1.0), ("seed", seed));
            message = await client.Messages.Create(request, Ct);
            // A random model may pad the call with whitespace until it runs out of room; the next seed then.
            if (message.StopReason!.Raw() == "max_tokens") continue;
            Assert.Equal("tool_use", message.StopReason!.Raw());
            Assert.True(message.Content[^1].TryPickToolUse(out use));
        }
        Assert.NotNull(use);
        Assert.Equal("lookup", use.Name);
        Assert.StartsWith("toolu_", use.ID, StringComparison.Ordinal);
        StructuredOutputTests.AssertValid(LookupSchema, JsonSerializer.Serialize(use.Input));

        // The result goes back as a tool_result block after the assistant's tool_use.
        AnthropicMessage answer = await client.Messages.Create(new MessageCreateParams
        {
            Model = fixture.Model,
            MaxTokens = 8,
            Messages =
            [
                question,
                new AssistantMessageParam(new List<ContentBlockParam> { new ToolUseBlockParam { ID = use.ID, Name = use.Name, Input = use.Input } }),
                new UserMessageParam(new List<ContentBlockParam> { new ToolResultBlockParam(use.ID) { Content = "the sky: the region above the earth" } }),
            ],
            Tools = [AnthropicSdk.Tool("lookup", "Looks a word up", LookupSchema)],
        }, Ct);
        Assert.StartsWith("msg_", answer.ID, StringComparison.Ordinal);
        Assert.True(answer.Usage.OutputTokens > 0);
    }

    [Fact]
    public async Task AnyToolChoiceStreamsAToolUseBlock()
    {
        var client = AnthropicSdk.Client(fixture.Require());
        for (long seed = 1; seed <= 6; seed++)
        {
            var request = new MessageCreateParams
            {
                Model = fixture.Model,
                MaxTokens = 300,
                Messages = [new UserMessageParam("What is the weather in Lima?")],
                Tools = [AnthropicSdk.Tool("get_weather", "The weather in a city", WeatherSchema)],
                ToolChoice = new ToolChoiceAny { DisableParallelToolUse = true },
            }.With(("temperature", 1.0), ("top_p", 1.0), ("seed", seed));
            var events = new List<RawMessageStreamEvent>();
            await foreach (var e in client.Messages.CreateStreaming(request, Ct)) events.Add(e);
            Assert.True(events[^2].TryPickDelta(out var end));
            if (end.Delta.StopReason!.Raw() == "max_tokens") continue;
            Assert.Equal("tool_use", end.Delta.StopReason!.Raw());
            var start = events.Select(e => e.TryPickContentBlockStart(out var s) ? s : null).Last(s => s is not null)!;
            Assert.True(start.ContentBlock.TryPickToolUse(out var block));
            Assert.Equal("get_weather", block.Name);
            string json = string.Concat(events.Select(e => e.TryPickContentBlockDelta(out var d) && d.Index == start.Index && d.Delta.TryPickInputJson(out var j) ? j.PartialJson : ""));
            StructuredOutputTests.AssertValid(WeatherSchema, json);
            return;
        }
        Assert.Fail("no seed's answer finished");
    }
}

/// <summary>The Messages API over a scripted engine (exact model output on demand): tool round trips, thinking, refusals, keys.</summary>
public sealed class AnthropicScriptedTests
{
    private const string WeatherCall = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static Tool WeatherTool() => AnthropicSdk.Tool("get_weather", "Current weather of a city",
        """{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""");

    private static string WeatherScript(string prompt) =>
        prompt.Contains("<tool_response>", StringComparison.Ordinal) ? "<think>The tool said sunny.</think>\n\nIt is sunny in Paris." : WeatherCall;

    [Fact]
    public async Task ToolRoundTripWithThinking()
    {
        var engine = new ScriptedEngine(WeatherScript);
        await using var server = await ScriptedEngine.StartAsync(engine);
        var client = AnthropicSdk.Client(server);
        List<MessageParam> messages = [new UserMessageParam("What is the weather in Paris?")];
        var request = new MessageCreateParams { Model = "scripted", MaxTokens = 200, Messages = messages, Tools = [WeatherTool()], System = "Be brief." };
        AnthropicMessage first = await client.Messages.Create(request, Ct);
        Assert.Equal("tool_use", first.StopReason!.Raw());
        var block = Assert.Single(first.Content);
        Assert.True(block.TryPickToolUse(out var use));
        Assert.Equal("get_weather", use.Name);
        Assert.Equal("Paris", use.Input["city"].GetString());
        Assert.Contains("\"get_weather\"", engine.Prompts[0]);
        Assert.StartsWith("<|im_start|>system\nBe brief.", engine.Prompts[0]);

        messages.Add(new AssistantMessageParam(new List<ContentBlockParam> { new ToolUseBlockParam { ID = use.ID, Name = use.Name, Input = use.Input } }));
        messages.Add(new UserMessageParam(new List<ContentBlockParam>
        {
            new ToolResultBlockParam(use.ID) { Content = new List<Block> { new TextBlockParam("sunny, 24 °C") } },
            new TextBlockParam("Thanks!"),
        }));
        AnthropicMessage second = await client.Messages.Create(request with { Messages = messages }, Ct);
        Assert.Equal("end_turn", second.StopReason!.Raw());
        Assert.Equal(2, second.Content.Count);
        Assert.True(second.Content[0].TryPickThinking(out var thinking));
        Assert.Equal("The tool said sunny.", thinking.Thinking);
        Assert.False(string.IsNullOrEmpty(thinking.Signature));
        Assert.Equal("It is sunny in Paris.", second.Text());
        Assert.Contains("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>", engine.Prompts[1]);
        Assert.Contains("<tool_response>\nsunny, 24 °C\n</tool_response><|im_end|>\n<|im_start|>user\nThanks!<|im_end|>", engine.Prompts[1]);

        // An error result reaches the model as one.
        messages[^1] = new UserMessageParam(new List<ContentBlockParam> { new ToolResultBlockParam(use.ID) { Content = "no such city", IsError = true } });
        await client.Messages.Create(request with { Messages = messages }, Ct);
        Assert.Contains("<tool_response>\nError: no such city\n</tool_response>", engine.Prompts[2]);
    }

    [Fact]
    public async Task StreamedThinkingTextAndToolUseBlocks()
    {
        var engine = new ScriptedEngine(_ => "<think>Paris, then.</think>\n\nLet me check." + WeatherCall);
        await using var server = await ScriptedEngine.StartAsync(engine);
        var events = new List<RawMessageStreamEvent>();
        await foreach (var e in AnthropicSdk.Client(server).Messages.CreateStreaming(new MessageCreateParams
        {
            Model = "scripted",
            MaxTokens = 200,
            Messages = [new UserMessageParam("Weather in Paris?")],
            Tools = [WeatherTool()],
        }, Ct))
            events.Add(e);

        var starts = events.Where(e => e.Type() == "content_block_start").Select(e => e.TryPickContentBlockStart(out var s) ? s : null).ToList();
        Assert.Equal(["thinking", "text", "tool_use"], starts.Select(s => s!.ContentBlock.Type.Raw()));
        Assert.Equal([0, 1, 2], starts.Select(s => s!.Index));
        string Deltas(long index, Func<RawContentBlockDelta, string?> pick) =>
            string.Concat(events.Select(e => e.TryPickContentBlockDelta(out var d) && d.Index == index ? pick(d.Delta) : ""));
        Assert.Equal("Paris, then.", Deltas(0, d => d.TryPickThinking(out var t) ? t.Thinking : null));
        Assert.NotEmpty(Deltas(0, d => d.TryPickSignature(out var s) ? s.Signature : null));
        Assert.Equal("Let me check.", Deltas(1, d => d.TryPickText(out var t) ? t.Text : null));
        Assert.True(starts[2]!.ContentBlock.TryPickToolUse(out var use));
        Assert.Equal("get_weather", use.Name);
        Assert.StartsWith("toolu_", use.ID, StringComparison.Ordinal);
        Assert.Equal("Paris", JsonDocument.Parse(Deltas(2, d => d.TryPickInputJson(out var j) ? j.PartialJson : null)).RootElement.GetProperty("city").GetString());
        // Each block stops before the next starts.
        var order = events.Select(e => e.Type()).Where(t => t.StartsWith("content_block_s", StringComparison.Ordinal)).ToList();
        Assert.Equal(["content_block_start", "content_block_stop", "content_block_start", "content_block_stop", "content_block_start", "content_block_stop"], order);
        Assert.True(events[^2].TryPickDelta(out var end));
        Assert.Equal("tool_use", end.Delta.StopReason!.Raw());
    }

    [Fact]
    public async Task ThinkingSetsTheTemplatesReasoningSwitch()
    {
        string template = File.ReadAllText(Fixtures.Require("chat-templates", "Qwen-Qwen3-0.6B.jinja"));
        var engine = new ScriptedEngine(_ => "<think>\nHm.\n</think>\n\nHello.");
        await using var server = await ScriptedEngine.StartAsync(engine, formatter: new Kaiyuan.Chat.JinjaPromptFormatter(template, "", "<|im_end|>"));
        var client = AnthropicSdk.Client(server);
        var request = new MessageCreateParams { Model = "scripted", MaxTokens = 100, Messages = [new UserMessageParam("Hi")] };

        AnthropicMessage off = await client.Messages.Create(request with { Thinking = new ThinkingConfigDisabled() }, Ct);
        Assert.EndsWith("<|im_start|>assistant\n<think>\n\n</think>\n\n", engine.Prompts[0]);
        AnthropicMessage on = await client.Messages.Create(request with { Thinking = new ThinkingConfigEnabled(1024) }, Ct);
        Assert.EndsWith("<|im_start|>assistant\n", engine.Prompts[1]);
        Assert.True(on.Content[0].TryPickThinking(out var thinking));
        Assert.Equal("Hm.", thinking.Thinking.Trim());
        Assert.Equal("Hello.", on.Text());
        _ = off;

        // count_tokens renders the same prompt, switch included.
        var count = await client.Messages.CountTokens(new MessageCountTokensParams
        {
            Model = "scripted",
            Messages = [new UserMessageParam("Hi")],
            Thinking = new ThinkingConfigDisabled(),
        }, Ct);
        Assert.Equal(engine.Prompts[0].Length, count.InputTokens);
    }

    [Fact]
    public async Task AFinalAssistantMessageIsContinued()
    {
        var engine = new ScriptedEngine(_ => " there was a cat.");
        await using var server = await ScriptedEngine.StartAsync(engine);
        var client = AnthropicSdk.Client(server);
        List<MessageParam> messages = [new UserMessageParam("Tell a story."), new AssistantMessageParam("Once upon a time")];
        AnthropicMessage message = await client.Messages.Create(new MessageCreateParams { Model = "scripted", MaxTokens = 50, Messages = messages }, Ct);
        // The prompt ends inside the assistant's turn, and the answer is only what the model added.
        Assert.EndsWith("<|im_start|>user\nTell a story.<|im_end|>\n<|im_start|>assistant\nOnce upon a time", engine.Prompts[0]);
        Assert.Equal(" there was a cat.", message.Text());
        var count = await client.Messages.CountTokens(new MessageCountTokensParams { Model = "scripted", Messages = messages }, Ct);
        Assert.Equal(engine.Prompts[0].Length, count.InputTokens);
    }

    [Fact]
    public async Task PingsGoOutWhileThePromptIsRead()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "Hello there!") { Hold = release.Task },
            o => o with { StreamKeepAlive = TimeSpan.FromMilliseconds(10) });
        using var guard = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        guard.CancelAfter(TimeSpan.FromSeconds(60));
        using var http = new HttpClient { BaseAddress = server.Address };
        using var response = await http.SendAsync(new HttpRequestMessage(HttpMethod.Post, "v1/messages")
        {
            Content = new StringContent("""{"model":"scripted","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"Hi"}]}""", Encoding.UTF8, "application/json"),
        }, HttpCompletionOption.ResponseHeadersRead, guard.Token);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(guard.Token));
        var lines = new List<string>();
        while (lines.Count(l => l == "event: ping") < 3) lines.Add((await reader.ReadLineAsync(guard.Token))!);
        // message_start came first, and everything so far while the engine still held the answer.
        Assert.Equal("event: message_start", lines[0]);
        Assert.False(release.Task.IsCompleted);

        release.SetResult();
        string rest = await reader.ReadToEndAsync(guard.Token);
        var events = AnthropicSdk.Events(string.Join("\n", lines) + "\n" + rest);
        Assert.Equal("Hello there!", string.Concat(events.Where(e => e.Event == "content_block_delta").Select(e => e.Data.GetProperty("delta").GetProperty("text").GetString())));
        Assert.Equal("end_turn", events[^2].Data.GetProperty("delta").GetProperty("stop_reason").GetString());
    }

    [Fact]
    public async Task AFailureMidStreamIsAnErrorEvent()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var engine = new ScriptedEngine(_ => "never") { Hold = release.Task, Fail = new InvalidOperationException("the forward pass broke") };
        await using var server = await ScriptedEngine.StartAsync(engine);
        var client = AnthropicSdk.Client(server);
        var request = new MessageCreateParams { Model = "scripted", MaxTokens = 10, Messages = [new UserMessageParam("Hi")] };
        var stream = client.Messages.CreateStreaming(request, Ct).GetAsyncEnumerator(Ct);
        Assert.True(await stream.MoveNextAsync());
        Assert.Equal("message_start", stream.Current.Type());
        release.SetResult();
        var e = await Assert.ThrowsAsync<AnthropicSseException>(async () =>
        {
            while (await stream.MoveNextAsync())
            {
            }
        });
        Assert.Equal("api_error", e.Type?.Raw());
        Assert.Contains("the forward pass broke", e.Message);
        await stream.DisposeAsync();
    }

    [Fact]
    public async Task RefusalsKeepTheirStatus()
    {
        var engine = new ScriptedEngine(_ => "ok");
        await using var server = await ScriptedEngine.StartAsync(engine);
        var client = AnthropicSdk.Client(server);
        var request = new MessageCreateParams { Model = "scripted", MaxTokens = 10, Messages = [new UserMessageParam("Hi")] };

        engine.Throw = new QueueFullException("the queue is full");
        var busy = await Assert.ThrowsAsync<AnthropicRateLimitException>(() => client.Messages.Create(request, Ct));
        Assert.Equal("rate_limit_error", busy.Type?.Raw());
        // A stream is refused before it starts, with the status.
        await Assert.ThrowsAsync<AnthropicRateLimitException>(async () =>
        {
            await foreach (var _ in client.Messages.CreateStreaming(request, Ct))
            {
            }
        });

        engine.Throw = new SchedulerClosedException("shutting down");
        var closing = await Assert.ThrowsAsync<AnthropicServiceUnavailableException>(() => client.Messages.Create(request, Ct));
        Assert.Equal("overloaded_error", closing.Type?.Raw());
    }

    [Fact]
    public async Task TheApiKeyIsTakenFromXApiKeyOrABearerToken()
    {
        await using var server = await ScriptedEngine.StartAsync(new ScriptedEngine(_ => "ok"), o => o with { ApiKey = "sesame" });
        var request = new MessageCreateParams { Model = "scripted", MaxTokens = 10, Messages = [new UserMessageParam("Hi")] };

        var wrong = await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() => AnthropicSdk.Client(server, "open up").Messages.Create(request, Ct));
        Assert.Equal("authentication_error", wrong.Type?.Raw());
        AnthropicMessage ok = await AnthropicSdk.Client(server, "sesame").Messages.Create(request, Ct);
        Assert.Equal("ok", ok.Text());
        var count = await AnthropicSdk.Client(server, "sesame").Messages.CountTokens(new MessageCountTokensParams { Model = "scripted", Messages = request.Messages }, Ct);
        Assert.True(count.InputTokens > 0);

        // The SDK's auth token is a bearer token; anthropic-version is read by no one.
        var bearer = new AnthropicClient(new ClientOptions { BaseUrl = server.Address.ToString().TrimEnd('/'), AuthToken = "sesame", MaxRetries = 0 });
        Assert.Equal("ok", (await bearer.Messages.Create(request, Ct)).Text());

        using var http = new HttpClient { BaseAddress = server.Address };
        var missing = await http.PostJsonAsync("v1/messages", """{"model":"scripted","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
        var body = await missing.JsonAsync();
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Equal("authentication_error", body.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("x-api-key", body.GetProperty("error").GetProperty("message").GetString());
    }
}
