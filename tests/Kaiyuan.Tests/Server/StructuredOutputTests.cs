using System.ClientModel;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Kaiyuan.Scheduling;
using Kaiyuan.AspNetCore;
using Kaiyuan.Chat;
using static Kaiyuan.Tests.Server.Bodies;
using OpenAI;
using OpenAI.Chat;
using ChatMessage = OpenAI.Chat.ChatMessage;

#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed: evaluation-only in the SDK, and what makes these runs reproducible

namespace Kaiyuan.Tests.Server;

/// <summary>
/// A real server over the random-weight qwen3 fixture with a real chat template (Qwen2.5's, Hermes tool calls). Its
/// 512-token vocabulary spells every marker byte by byte, so constraints are exercised on multi-token markers.
/// </summary>
public sealed class StructuredServer : IAsyncLifetime
{
    private KaiyuanServer? _server;

    public string Model => "qwen3-synth";
    internal KaiyuanServer Server => _server ?? throw new InvalidOperationException("not started");

    public async ValueTask InitializeAsync()
    {
        if (Fixtures.Root is null) return;
        string model = Path.Combine(Fixtures.Root, "models", "qwen3", "qwen3-f32.gguf");
        string template = Path.Combine(Fixtures.Root, "chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja");
        if (!File.Exists(model) || !File.Exists(template)) return;
        _server = await KaiyuanServer.StartAsync(new ServerOptions
        {
            ModelPath = model,
            Port = 0,
            Alias = Model,
            Parallel = 4,
            ContextSize = 1024,
            Threads = 2,
            RequestLogging = false,
            ChatTemplateFile = template,
        });
        await _server.WaitReadyAsync();
    }

    internal KaiyuanServer Require()
    {
        if (_server is null) Fixtures.Require("models", "qwen3", "qwen3-f32.gguf");
        return Server;
    }

    public HttpClient Http() => new() { BaseAddress = Require().Address, Timeout = TimeSpan.FromSeconds(60) };

    public ChatClient Chat() =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(Require().Address, "v1") }).GetChatClient(Model);

    public async ValueTask DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
    }
}

/// <summary>
/// Writes fixed text first, as if the model had (through the request's constraint, which must allow it), then lets the
/// real engine continue from there: how a test gets a random-weight model past a <c>&lt;/think&gt;</c> or a call's opening.
/// </summary>
internal sealed class PrefixEngine(IGenerationEngine inner, ITextCodec codec, string prefix) : IGenerationEngine
{
    public int ContextLength => inner.ContextLength;
    public int VocabSize => inner.VocabSize;
    public SchedulerLoad Load => inner.Load;

    public GenerationStream Submit(GenerationRequest request, CancellationToken cancel)
    {
        int[] ids = codec.Encode(prefix, addSpecial: false, parseSpecial: true);
        // SentencePiece vocabularies put a space before the text; a model continuing an answer would not.
        if (ids.Length > 0 && codec.Decode(ids.AsSpan(0, 1)).Trim().Length == 0 && !prefix.StartsWith(' ')) ids = ids[1..];
        var outer = new GenerationStream(request.Prompt.Count);
        foreach (int id in ids)
        {
            if (request.Constraint is { } c && !c.Accept(id)) throw new InvalidOperationException($"the constraint refused prefix token {id}");
            outer.Write(new GeneratedToken(id, false, float.NaN, null));
        }
        var rest = inner.Submit(request with
        {
            Prompt = [.. request.Prompt, .. ids],
            MaxTokens = request.MaxTokens < 0 ? -1 : Math.Max(1, request.MaxTokens - ids.Length),
        }, cancel);
        _ = Task.Run(async () =>
        {
            await foreach (var t in rest.WithCancellation(CancellationToken.None)) outer.Write(t);
            outer.Complete(rest.Finish ?? FinishReason.Error, rest.Error);
        }, CancellationToken.None);
        return outer;
    }

    public Task<float[][]> EmbedAsync(IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancel) => inner.EmbedAsync(inputs, cancel);
    public Task DrainAsync(CancellationToken cancel) => inner.DrainAsync(cancel);

    /// <summary>A server over the qwen3 fixture whose answers start with <paramref name="prefix"/>.</summary>
    public static async Task<KaiyuanServer> StartAsync(string template, string prefix, Func<ServerOptions, ServerOptions>? configure = null)
    {
        var options = new ServerOptions
        {
            ModelPath = Fixtures.ModelPath("qwen3", "qwen3-f32.gguf"),
            Port = 0,
            Alias = "qwen3-synth",
            Parallel = 2,
            ContextSize = 1024,
            Threads = 2,
            RequestLogging = false,
            ChatTemplateFile = template,
        };
        if (configure is not null) options = configure(options);
        var server = await KaiyuanServer.StartAsync(options, _ =>
        {
            var real = ModelRuntime.Load(options);
            return new ModelRuntime(real.Name, real.Codec, real.Formatter, new PrefixEngine(real.Engine, real.Codec, prefix), real.Description, real);
        });
        await server.WaitReadyAsync();
        return server;
    }
}

internal static class Bodies
{
    /// <summary>Puts values into a JSON body written with @name@ placeholders (JSON's braces make interpolation unreadable).</summary>
    public static string Fill(string template, params (string Name, object Value)[] values)
    {
        foreach (var (name, value) in values) template = template.Replace("@" + name + "@", Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture));
        return template;
    }
}

/// <summary>
/// Structured output end to end: a random-weight model sampling at temperature 1 under a schema, grammar or forced tool
/// call, through the official OpenAI SDK, Microsoft.Extensions.AI and Ollama's HTTP API; every answer that ends with
/// "stop" is checked by an independent JSON Schema validator (JsonSchema.Net).
/// </summary>
public sealed class StructuredOutputTests(StructuredServer fixture) : IClassFixture<StructuredServer>
{
    private const string Verdict = """
        {"type":"object","properties":{"answer":{"type":"string","enum":["yes","no","maybe"]},"sure":{"type":"boolean"}},
         "required":["answer","sure"],"additionalProperties":false}
        """;

    private const string WeatherParameters = """
        {"type":"object","properties":{"city":{"type":"string","enum":["Paris","Tokyo","Lima"]},"unit":{"type":"string","enum":["C","F"]}},
         "required":["city","unit"],"additionalProperties":false}
        """;

    private const string LookupParameters = """
        {"type":"object","properties":{"query":{"type":"string","maxLength":6},"exact":{"type":"boolean"}},"required":["query","exact"],"additionalProperties":false}
        """;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static readonly ChatMessage[] Question = [new UserChatMessage("Is the sky blue?")];

    /// <summary>Validates with JsonSchema.Net, an implementation independent of ours; the failure names the instance.</summary>
    internal static void AssertValid(string schema, string instance)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(instance);
        }
        catch (JsonException e)
        {
            Assert.Fail($"not JSON ({e.Message}): {instance}");
            return;
        }
        var result = JsonSchema.FromText(schema).Evaluate(node, new EvaluationOptions { OutputFormat = OutputFormat.List });
        Assert.True(result.IsValid, $"does not validate against {schema}: {instance}");
    }

    private static ChatCompletionOptions Sampled(long seed, ChatResponseFormat? format = null) => new()
    {
        Temperature = 1.0f,
        TopP = 1,
        MaxOutputTokenCount = 300,
        Seed = seed,
        ResponseFormat = format,
    };

    private static ChatResponseFormat VerdictFormat() =>
        ChatResponseFormat.CreateJsonSchemaFormat("verdict", BinaryData.FromString(Verdict), jsonSchemaIsStrict: true);

    [Fact]
    public async Task JsonSchemaAnswersValidateAcrossSeeds()
    {
        var chat = fixture.Chat();
        int stopped = 0;
        for (long seed = 1; seed <= 6; seed++)
        {
            ChatCompletion c = await chat.CompleteChatAsync(Question, Sampled(seed, VerdictFormat()), Ct);
            if (c.FinishReason != ChatFinishReason.Stop) continue;
            stopped++;
            AssertValid(Verdict, c.Content[0].Text);
        }
        Assert.True(stopped >= 3, $"only {stopped} of 6 answers finished");
    }

    [Fact]
    public async Task JsonObjectAnswersParse()
    {
        var chat = fixture.Chat();
        int stopped = 0;
        for (long seed = 1; seed <= 4; seed++)
        {
            ChatCompletion c = await chat.CompleteChatAsync(Question, Sampled(seed, ChatResponseFormat.CreateJsonObjectFormat()), Ct);
            if (c.FinishReason != ChatFinishReason.Stop) continue;
            stopped++;
            Assert.IsType<JsonObject>(JsonNode.Parse(c.Content[0].Text));
        }
        Assert.True(stopped >= 1, "no answer finished");
    }

    [Fact]
    public async Task StreamedDeltasMatchTheWholeAnswer()
    {
        var chat = fixture.Chat();
        ChatCompletion whole = await chat.CompleteChatAsync(Question, Sampled(3, VerdictFormat()), Ct);
        var streamed = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in chat.CompleteChatStreamingAsync(Question, Sampled(3, VerdictFormat()), Ct))
        {
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(whole.Content[0].Text, streamed.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.Equal(ChatFinishReason.Stop, finish);
        AssertValid(Verdict, streamed.ToString());
    }

    private static ChatTool[] Tools() =>
    [
        ChatTool.CreateFunctionTool("get_weather", "The weather in a city", BinaryData.FromString(WeatherParameters)),
        ChatTool.CreateFunctionTool("lookup", "Looks a word up", BinaryData.FromString(LookupParameters)),
    ];

    private static string ParametersOf(string name) => name switch
    {
        "get_weather" => WeatherParameters,
        "lookup" => LookupParameters,
        _ => throw new Xunit.Sdk.XunitException($"the model called an unknown function '{name}'"),
    };

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RequiredToolCallArgumentsValidate(bool parallel)
    {
        var chat = fixture.Chat();
        int called = 0;
        for (long seed = 1; seed <= 8; seed++)
        {
            var options = Sampled(seed);
            options.MaxOutputTokenCount = 1000; // several calls, each padded with whitespace by a random model
            foreach (var tool in Tools()) options.Tools.Add(tool);
            options.ToolChoice = ChatToolChoice.CreateRequiredChoice();
            options.AllowParallelToolCalls = parallel;
            ChatCompletion c = await chat.CompleteChatAsync(Question, options, Ct);
            if (c.FinishReason == ChatFinishReason.Length) continue;
            Assert.Equal(ChatFinishReason.ToolCalls, c.FinishReason);
            if (!parallel) Assert.Single(c.ToolCalls);
            Assert.NotEmpty(c.ToolCalls);
            foreach (var call in c.ToolCalls) AssertValid(ParametersOf(call.FunctionName), call.FunctionArguments.ToString());
            called++;
        }
        // A random model that may call again often does until it runs out of room; one finished answer is enough there.
        Assert.True(called >= (parallel ? 1 : 2), $"only {called} of 8 answers finished");
    }

    [Fact]
    public async Task NamedToolChoiceCallsThatFunction()
    {
        var options = Sampled(2);
        foreach (var tool in Tools()) options.Tools.Add(tool);
        options.ToolChoice = ChatToolChoice.CreateFunctionChoice("lookup");
        options.AllowParallelToolCalls = false;
        ChatCompletion c = await fixture.Chat().CompleteChatAsync(Question, options, Ct);
        Assert.Equal(ChatFinishReason.ToolCalls, c.FinishReason);
        var call = Assert.Single(c.ToolCalls);
        Assert.Equal("lookup", call.FunctionName);
        AssertValid(LookupParameters, call.FunctionArguments.ToString());
    }

    [Fact]
    public async Task MicrosoftExtensionsAiGetsATypedResult()
    {
        Microsoft.Extensions.AI.IChatClient client = Microsoft.Extensions.AI.OpenAIClientExtensions.AsIChatClient(fixture.Chat());
        int parsed = 0;
        for (long seed = 1; seed <= 4; seed++)
        {
            var options = new Microsoft.Extensions.AI.ChatOptions { Temperature = 1, TopP = 1, Seed = seed, MaxOutputTokens = 300 };
            var response = await Microsoft.Extensions.AI.ChatClientStructuredOutputExtensions.GetResponseAsync<Forecast>(
                client, "Will it rain?", options, useJsonSchemaResponseFormat: true, cancellationToken: Ct);
            if (response.FinishReason != Microsoft.Extensions.AI.ChatFinishReason.Stop) continue;
            Assert.True(response.TryGetResult(out var forecast), response.Text);
            Assert.NotNull(forecast);
            parsed++;
        }
        Assert.True(parsed >= 1, "no answer finished");
    }

    public sealed record Forecast(bool Rain, bool Wind);

    [Fact]
    public async Task BadSchemasAndGrammarsAre400sThatNameTheField()
    {
        using var http = fixture.Http();
        async Task Expect(string url, string body, string param)
        {
            var r = await http.PostJsonAsync(url, body);
            string text = await r.Content.ReadAsStringAsync(Ct);
            Assert.True(400 == (int)r.StatusCode, text);
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            if (url.StartsWith("api/", StringComparison.Ordinal))
            {
                // Ollama's shape: the message alone, which names the field.
                Assert.Contains(param, error.GetString(), StringComparison.Ordinal);
                return;
            }
            Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
            Assert.Equal(param, error.GetProperty("param").GetString());
            Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        }
        const string Hi = "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]";
        const string BadSchema = """{"type":"object","properties":{"a":{"type":"no-such-type"}}}""";
        await Expect("v1/chat/completions", Fill("""{"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":@BadSchema@}},@Hi@}""", ("BadSchema", BadSchema), ("Hi", Hi)),
            "response_format.json_schema.schema");
        await Expect("v1/chat/completions", Fill("""{"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":"nope"}},@Hi@}""", ("Hi", Hi)),
            "response_format.json_schema.schema");
        await Expect("v1/chat/completions", Fill("""{"response_format":{"type":"xml"},@Hi@}""", ("Hi", Hi)), "response_format");
        await Expect("v1/chat/completions", Fill("""{"json_schema":@BadSchema@,@Hi@}""", ("BadSchema", BadSchema), ("Hi", Hi)), "json_schema");
        await Expect("v1/chat/completions", Fill("""{"grammar":"root ::= undefined-rule",@Hi@}""", ("Hi", Hi)), "grammar");
        await Expect("v1/chat/completions", Fill("""{"grammar":"root ::= \"a\"","json_schema":{},@Hi@}""", ("Hi", Hi)), "grammar");
        await Expect("v1/completions", Fill("""{"prompt":"Hi","json_schema":@BadSchema@}""", ("BadSchema", BadSchema)), "json_schema");
        await Expect("api/chat", Fill("""{"format":@BadSchema@,"stream":false,@Hi@}""", ("BadSchema", BadSchema), ("Hi", Hi)), "format");
        await Expect("api/generate", """{"prompt":"Hi","format":"yaml","stream":false}""", "format");
        await Expect("v1/chat/completions", Fill("""{"tools":[{"type":"function","function":{"name":"f","parameters":@BadSchema@}}],"tool_choice":"required",@Hi@}""", ("BadSchema", BadSchema), ("Hi", Hi)),
            "tools");
        await Expect("v1/chat/completions", Fill("""{"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}},@Hi@}""", ("Hi", Hi)),
            "tool_choice");

        // The SDK surfaces the same 400.
        var sdk = await Assert.ThrowsAsync<ClientResultException>(() => fixture.Chat().CompleteChatAsync(Question,
            Sampled(1, ChatResponseFormat.CreateJsonSchemaFormat("bad", BinaryData.FromString(BadSchema))), Ct));
        Assert.Equal(400, sdk.Status);
        Assert.Contains("no-such-type", sdk.Message);
    }

    [Fact]
    public async Task AnOverlongPromptIsRefusedBeforeItsGrammarIsCompiled()
    {
        using var http = fixture.Http();
        // The grammar would fail to compile: an overflow found first is what the client hears, naming the conversation.
        string huge = string.Concat(Enumerable.Repeat("Once upon a time there was a girl. ", 200));
        async Task Expect(string url, string body, string param)
        {
            var r = await http.PostJsonAsync(url, body);
            string text = await r.Content.ReadAsStringAsync(Ct);
            Assert.True(400 == (int)r.StatusCode, text);
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            Assert.Equal("context_length_exceeded", error.GetProperty("code").GetString());
            Assert.Equal(param, error.GetProperty("param").GetString());
        }
        await Expect("v1/chat/completions", Fill("""{"messages":[{"role":"user","content":"@huge@"}],"grammar":"root ::= undefined-rule"}""", ("huge", huge)),
            "messages");
        await Expect("v1/responses", Fill("""{"input":"@huge@","text":{"format":{"type":"json_schema","name":"x","schema":{"type":"no-such-type"}}}}""",
            ("huge", huge)), "input");
    }

    [Fact]
    public async Task OllamaFormatConstrainsChatAndGenerate()
    {
        using var http = fixture.Http();
        int stopped = 0;
        for (int seed = 1; seed <= 3; seed++)
        {
            var chat = await (await http.PostJsonAsync("api/chat",
                Fill("""{"model":"qwen3-synth","messages":[{"role":"user","content":"Hi"}],"format":@Verdict@,"stream":false,"options":{"temperature":1,"top_p":1,"seed":@seed@,"num_predict":300}}""", ("Verdict", Verdict), ("seed", seed)))).JsonAsync();
            if (chat.GetProperty("done_reason").GetString() != "stop") continue;
            stopped++;
            AssertValid(Verdict, chat.GetProperty("message").GetProperty("content").GetString()!);
        }
        Assert.True(stopped >= 1, "no chat answer finished");

        // Streamed NDJSON lines concatenate to a whole answer.
        var r = await http.PostJsonAsync("api/generate",
            """{"model":"qwen3-synth","prompt":"Hi","format":"json","options":{"temperature":1,"top_p":1,"seed":4,"num_predict":300}}""");
        var text = new StringBuilder();
        string? reason = null;
        foreach (var line in (await r.Content.ReadAsStringAsync(Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var json = JsonDocument.Parse(line).RootElement;
            text.Append(json.GetProperty("response").GetString());
            if (json.GetProperty("done").GetBoolean()) reason = json.GetProperty("done_reason").GetString();
        }
        if (reason == "stop") Assert.IsType<JsonObject>(JsonNode.Parse(text.ToString()));
    }

    [Fact]
    public async Task CompletionsTakeLlamaCppJsonSchema()
    {
        using var http = fixture.Http();
        int stopped = 0;
        for (int seed = 1; seed <= 3; seed++)
        {
            var json = await (await http.PostJsonAsync("v1/completions",
                Fill("""{"prompt":"Answer:","json_schema":@Verdict@,"max_tokens":300,"temperature":1,"top_p":1,"seed":@seed@}""", ("Verdict", Verdict), ("seed", seed)))).JsonAsync();
            var choice = json.GetProperty("choices")[0];
            if (choice.GetProperty("finish_reason").GetString() != "stop") continue;
            stopped++;
            AssertValid(Verdict, choice.GetProperty("text").GetString()!);
        }
        Assert.True(stopped >= 1, "no completion finished");
    }

    [Fact]
    public async Task ValidGbnfGrammarConstrainsTheAnswer()
    {
        using var http = fixture.Http();
        var r = await http.PostJsonAsync("v1/chat/completions",
            """{"messages":[{"role":"user","content":"Hi"}],"grammar":"root ::= (\"ab\" | \"cd\") \"!\"","temperature":1,"seed":1,"max_tokens":50}""");
        string body = await r.Content.ReadAsStringAsync(Ct);
        if (body.Contains("not supported yet", StringComparison.Ordinal)) Assert.Skip("the GBNF front end is still a stand-in");
        var json = JsonDocument.Parse(body).RootElement.GetProperty("choices")[0];
        Assert.Equal("stop", json.GetProperty("finish_reason").GetString());
        Assert.Contains(json.GetProperty("message").GetProperty("content").GetString(), new[] { "ab!", "cd!" });
    }
}

/// <summary>Constraints that start late: after a reasoning block, at a tool call's opening, or past a compile time limit.</summary>
public sealed class StructuredOutputTriggerTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Verdict = """
        {"type":"object","properties":{"answer":{"type":"string","enum":["yes","no","maybe"]},"sure":{"type":"boolean"}},
         "required":["answer","sure"],"additionalProperties":false}
        """;

    /// <summary>ChatML whose generation prompt opens a reasoning block, as DeepSeek-R1's and QwQ's (thinking on) do.</summary>
    private static string ThinkingTemplate()
    {
        string file = Path.Combine(Path.GetTempPath(), $"kaiyuan-thinking-{Guid.NewGuid():N}.jinja");
        File.WriteAllText(file, "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" +
                                "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}");
        return file;
    }

    private static async Task<JsonElement> Chat(KaiyuanServer server, string extra, int seed = 1, int maxTokens = 300)
    {
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        var r = await http.PostJsonAsync("v1/chat/completions",
            Fill("""{"messages":[{"role":"user","content":"Is the sky blue?"}],"temperature":1,"top_p":1,"seed":@seed@,"max_tokens":@maxTokens@@extra@}""", ("seed", seed), ("maxTokens", maxTokens), ("extra", extra)));
        string body = await r.Content.ReadAsStringAsync(Ct);
        Assert.True(r.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("choices")[0];
    }

    [Fact]
    public async Task SchemaAppliesOnlyAfterTheReasoningBlockCloses()
    {
        string template = ThinkingTemplate();
        try
        {
            // The prompt leaves <think> open: the model's own first tokens are free, exactly as without a schema.
            await using (var plain = await PrefixEngine.StartAsync(template, ""))
            {
                var free = await Chat(plain, "", seed: 7, maxTokens: 24);
                var gated = await Chat(plain, Fill(""","response_format":{"type":"json_schema","json_schema":{"name":"v","schema":@Verdict@}}""", ("Verdict", Verdict)), seed: 7, maxTokens: 24);
                Assert.Equal(free.GetProperty("message").GetProperty("reasoning_content").GetString(),
                    gated.GetProperty("message").GetProperty("reasoning_content").GetString());
            }
            // Past </think> (text no schema allows before it), the answer follows the schema.
            await using var server = await PrefixEngine.StartAsync(template, "I think {{ not json ]]\n</think>\n\n");
            int stopped = 0;
            for (int seed = 1; seed <= 3; seed++)
            {
                var choice = await Chat(server, Fill(""","response_format":{"type":"json_schema","json_schema":{"name":"v","schema":@Verdict@}}""", ("Verdict", Verdict)), seed);
                Assert.Contains("not json", choice.GetProperty("message").GetProperty("reasoning_content").GetString());
                if (choice.GetProperty("finish_reason").GetString() != "stop") continue;
                stopped++;
                StructuredOutputTests.AssertValid(Verdict, choice.GetProperty("message").GetProperty("content").GetString()!);
            }
            Assert.True(stopped >= 1, "no answer finished");
        }
        finally
        {
            File.Delete(template);
        }
    }

    [Fact]
    public async Task AModelMayOpenItsOwnReasoningFirst()
    {
        // Qwen3's template leaves thinking to the model: "<think>" is allowed beside the schema's first token.
        string template = Fixtures.Require("chat-templates", "Qwen-Qwen3-0.6B.jinja");
        await using var server = await PrefixEngine.StartAsync(template, "<think>\nmaybe <b>\n</think>\n\n");
        var choice = await Chat(server, Fill(""","response_format":{"type":"json_schema","json_schema":{"name":"v","schema":@Verdict@}}""", ("Verdict", Verdict)), seed: 2);
        Assert.Contains("maybe <b>", choice.GetProperty("message").GetProperty("reasoning_content").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        StructuredOutputTests.AssertValid(Verdict, choice.GetProperty("message").GetProperty("content").GetString()!);
    }

    [Fact]
    public async Task OptionalToolCallIsConstrainedFromItsOpening()
    {
        // tool_choice auto: free text, then once the model opens <tool_call> the call must be well formed.
        string template = Fixtures.Require("chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja");
        await using var server = await PrefixEngine.StartAsync(template, "Let me check that.\n<tool_call>");
        const string Tools = """
            ,"parallel_tool_calls":false,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string","enum":["Paris","Lima"]}},"required":["city"],"additionalProperties":false}}}]
            """;
        int called = 0;
        string last = "";
        for (int seed = 1; seed <= 8; seed++)
        {
            var choice = await Chat(server, Tools, seed);
            last = choice.ToString();
            if (choice.GetProperty("finish_reason").GetString() == "length") continue;
            Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
            var message = choice.GetProperty("message");
            Assert.Equal("Let me check that.", message.GetProperty("content").GetString()!.Trim());
            foreach (var call in message.GetProperty("tool_calls").EnumerateArray())
            {
                Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
                string city = JsonDocument.Parse(call.GetProperty("function").GetProperty("arguments").GetString()!).RootElement.GetProperty("city").GetString()!;
                Assert.Contains(city, new[] { "Paris", "Lima" });
            }
            called++;
        }
        Assert.True(called >= 1, "no call finished: " + last);
    }

    [Fact]
    public async Task CompileTimeLimitIsA400()
    {
        string template = Fixtures.Require("chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja");
        await using var server = await PrefixEngine.StartAsync(template, "", o => o with { GrammarTimeout = TimeSpan.FromTicks(1) });
        using var http = new HttpClient { BaseAddress = server.Address };
        // A schema no test compiled before, so the cache cannot answer at once.
        string key = "k" + Guid.NewGuid().ToString("N");
        string schema = Fill("""{"type":"object","properties":{"@key@":{"type":"boolean"}},"required":["@key@"]}""", ("key", key));
        var r = await http.PostJsonAsync("v1/chat/completions", Fill("""{"messages":[{"role":"user","content":"Hi"}],"json_schema":@schema@}""", ("schema", schema)));
        string body = await r.Content.ReadAsStringAsync(Ct);
        Assert.True(400 == (int)r.StatusCode, body);
        Assert.Contains("too complex to compile in time", body);
    }
}
