using System.ClientModel;
using System.ComponentModel;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Kaiyuan.Extensions.AI;
using Kaiyuan.Tests.Server;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenAI;

namespace Kaiyuan.Tests.Extensions;

/// <summary>The stories260K model loaded in process, beside the same model behind a real server (<see cref="StoriesServer"/>).</summary>
public sealed class InProcessStories : IAsyncLifetime
{
    public KaiyuanModel? Model { get; private set; }

    public ValueTask InitializeAsync()
    {
        string? path = Fixtures.Root is null ? null : Path.Combine(Fixtures.Root, "models", "stories260K", "stories260K-f32.gguf");
        // The server fixture's settings, so both render and sample alike.
        if (path is not null && File.Exists(path))
            Model = KaiyuanModel.Load(new KaiyuanModelOptions { Model = path, ModelId = "stories", Parallel = 4, ContextLength = 256, Threads = 2 });
        return ValueTask.CompletedTask;
    }

    public KaiyuanModel Require() => Model ?? throw new InvalidOperationException(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));

    public ValueTask DisposeAsync()
    {
        Model?.Dispose();
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// The in-process Microsoft.Extensions.AI provider: the same answers as the server gives through MEAI's OpenAI adapter,
/// streaming equal to non-streaming, concurrency, cancellation, embeddings and dependency injection.
/// </summary>
public sealed class InProcessChatClientTests(StoriesServer server, InProcessStories local) : IClassFixture<StoriesServer>, IClassFixture<InProcessStories>
{
    private static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 24 };

    [Fact]
    public async Task GreedyAnswerEqualsTheServersThroughTheOpenAiAdapter()
    {
        var ct = TestContext.Current.CancellationToken;
        IChatClient remote = server.OpenAi().GetChatClient(server.Model).AsIChatClient();
        using IChatClient inProcess = local.Require().AsChatClient();
        List<ChatMessage> conversation =
        [
            new(ChatRole.System, "You tell short stories."),
            new(ChatRole.User, "Once upon a time"),
        ];
        var expected = await remote.GetResponseAsync(conversation, Greedy, ct);
        var actual = await inProcess.GetResponseAsync(conversation, Greedy, ct);
        Assert.False(string.IsNullOrEmpty(actual.Text));
        Assert.Equal(expected.Text, actual.Text);
        Assert.Equal(expected.FinishReason, actual.FinishReason);
        Assert.Equal(ChatFinishReason.Length, actual.FinishReason);
        Assert.Equal(expected.Usage?.InputTokenCount, actual.Usage?.InputTokenCount);
        Assert.Equal(24, actual.Usage?.OutputTokenCount);
        Assert.Equal("stories", actual.ModelId);

        var streamed = new StringBuilder();
        ChatResponseUpdate? last = null;
        await foreach (var update in inProcess.GetStreamingResponseAsync(conversation, Greedy, ct))
        {
            streamed.Append(update.Text);
            last = update;
        }
        Assert.Equal(actual.Text, streamed.ToString());
        Assert.Equal(ChatFinishReason.Length, last?.FinishReason);
        Assert.Equal(24, last!.Contents.OfType<UsageContent>().Single().Details.OutputTokenCount);
    }

    [Fact]
    public async Task SixteenConcurrentCallersEachGetTheirAnswerAlone()
    {
        var ct = TestContext.Current.CancellationToken;
        using IChatClient client = local.Require().AsChatClient();
        string[] prompts = Enumerable.Range(0, 16).Select(i => $"Tom had {i} red apples and").ToArray();
        var alone = new List<string>();
        foreach (string p in prompts) alone.Add((await client.GetResponseAsync(p, Greedy, ct)).Text);
        var together = await Task.WhenAll(prompts.Select(p => client.GetResponseAsync(p, Greedy, ct)));
        Assert.Equal(alone, together.Select(r => r.Text));
        Assert.True(alone.Distinct().Count() > 1, "different prompts should not all give one answer");
    }

    [Fact]
    public async Task CancellingAStreamFreesItsSequence()
    {
        var model = local.Require();
        using IChatClient client = model.AsChatClient();
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        int updates = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            // Seeded: unseeded, a sampled end of text within three tokens now and then finished the stream before the cancel.
            await foreach (var _ in client.GetStreamingResponseAsync("Once upon a time", new ChatOptions { MaxOutputTokens = 200, Temperature = 1, Seed = 11 }, cancel.Token))
                if (++updates == 3) cancel.Cancel();
        });
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (model.Runtime.Engine.Load.BusySlots > 0 && DateTime.UtcNow < deadline) await Task.Delay(20, TestContext.Current.CancellationToken);
        Assert.Equal(0, model.Runtime.Engine.Load.BusySlots);
    }

    [Fact]
    public async Task EmbeddingsEqualTheServers()
    {
        var ct = TestContext.Current.CancellationToken;
        using var generator = local.Require().AsEmbeddingGenerator();
        string[] inputs = ["Lily likes cats.", "The sun is hot."];
        var embeddings = await generator.GenerateAsync(inputs, cancellationToken: ct);
        using var http = server.Http();
        var response = await http.PostAsJsonAsync("v1/embeddings", new { model = server.Model, input = inputs }, ct);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
        for (int i = 0; i < inputs.Length; i++)
        {
            float[] expected = json.RootElement.GetProperty("data")[i].GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle()).ToArray();
            Assert.Equal(expected, embeddings[i].Vector.ToArray());
        }
        Assert.Equal(json.RootElement.GetProperty("usage").GetProperty("prompt_tokens").GetInt32(), embeddings.Usage?.InputTokenCount);
        Assert.Equal(local.Require().EmbeddingLength, generator.GetService<EmbeddingGeneratorMetadata>()?.DefaultModelDimensions);
    }

    [Fact]
    public async Task BadRequestsAreArgumentErrors()
    {
        var ct = TestContext.Current.CancellationToken;
        using IChatClient client = local.Require().AsChatClient();
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(new string('x', 4000), Greedy, ct));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetResponseAsync("hi", new ChatOptions { Temperature = 5 }, ct));
        await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(
            [new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "image/png")])], Greedy, ct));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync("hi", new ChatOptions { ToolMode = ChatToolMode.RequireAny }, ct));
    }

    [Fact]
    public async Task DependencyInjectionLoadsOneModelFromConfigurationAndDisposesIt()
    {
        var ct = TestContext.Current.CancellationToken;
        string path = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Kaiyuan:Model"] = path,
            ["Kaiyuan:ModelId"] = "configured",
            ["Kaiyuan:Threads"] = "1",
            ["Kaiyuan:ContextLength"] = "256",
        }).Build();
        var services = new ServiceCollection();
        services.AddKaiyuanChatClient(configuration.GetSection("Kaiyuan")).UseFunctionInvocation();
        services.AddKaiyuanEmbeddingGenerator(configuration.GetSection("Kaiyuan"));
        KaiyuanModel model;
        await using (var provider = services.BuildServiceProvider())
        {
            var chat = provider.GetRequiredService<IChatClient>();
            var embeddings = provider.GetRequiredService<IEmbeddingGenerator<string, Embedding<float>>>();
            Assert.Equal("configured", chat.GetService<ChatClientMetadata>()?.DefaultModelId);
            model = provider.GetRequiredService<KaiyuanModel>();
            Assert.Same(model, chat.GetService<KaiyuanModel>());
            Assert.Same(model, embeddings.GetService<KaiyuanModel>());
            Assert.Equal(256, model.ContextLength);
            var response = await chat.GetResponseAsync("Once upon a time", Greedy, ct);
            Assert.Equal(24, response.Usage?.OutputTokenCount);
        }
        await Assert.ThrowsAsync<ObjectDisposedException>(() => new KaiyuanChatClient(model).GetResponseAsync("hi", Greedy, ct));
    }
}

/// <summary>Tools and structured output in process, on the qwen3 fixture with Qwen2.5's real template (<see cref="StructuredServer"/>).</summary>
public sealed class InProcessToolTests(StructuredServer server) : IClassFixture<StructuredServer>
{
    [Description("Gets the weather in a city")]
    private static string GetWeather([Description("The city")] string city, [Description("Celsius or Fahrenheit")] Unit unit) => $"sunny in {city}, 21 {unit}";

    private enum Unit { Celsius, Fahrenheit }

    private enum Mood { Happy, Sad, Neutral }

    private sealed record Verdict(bool Approved, Mood Mood);

    private static KaiyuanModel Load() => KaiyuanModel.Load(new KaiyuanModelOptions
    {
        Model = Fixtures.ModelPath("qwen3", "qwen3-f32.gguf"),
        ModelId = "qwen3-synth",
        ChatTemplateFile = Fixtures.Require("chat-templates", "Qwen-Qwen2.5-7B-Instruct.jinja"),
        // The server fixture's settings: the same slots give the same prompt chunks, so the same float sums.
        Parallel = 4,
        ContextLength = 1024,
        Threads = 2,
    });

    // A random-weight model under a grammar still wanders (JSON allows whitespace between tokens), so each test samples a
    // few seeds and checks every answer that ends, as StructuredOutputTests does.
    private static IEnumerable<int> Seeds => Enumerable.Range(1, 6);

    [Fact]
    public async Task ForcedToolCallEqualsTheServersThroughTheOpenAiAdapter()
    {
        var ct = TestContext.Current.CancellationToken;
        server.Require();
        using var model = Load();
        // The schema as a caller would write it for a strict tool (only these arguments), its keys in the order the OpenAI
        // adapter rewrites them to, so that both sides render the same prompt.
        var tool = AIFunctionFactory.CreateDeclaration("get_weather", "Gets the weather in a city", JsonDocument.Parse("""
            {"type":"object","required":["city","unit"],"properties":{"city":{"type":"string"},"unit":{"enum":["Celsius","Fahrenheit"]}},"additionalProperties":false}
            """).RootElement);
        IChatClient remote = new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.Server.Address, "v1") })
            .GetChatClient(server.Model).AsIChatClient();
        int calls = 0;
        foreach (int seed in Seeds)
        {
            var options = new ChatOptions { Temperature = 1, TopP = 1, Seed = seed, MaxOutputTokens = 300, Tools = [tool], ToolMode = ChatToolMode.RequireSpecific("get_weather"), AllowMultipleToolCalls = false };
            var expected = await remote.GetResponseAsync("What is the weather in Paris?", options, ct);
            var actual = await model.AsChatClient().GetResponseAsync("What is the weather in Paris?", options, ct);
            Assert.Equal(expected.FinishReason, actual.FinishReason);
            Assert.Equal(expected.Usage?.OutputTokenCount, actual.Usage?.OutputTokenCount);
            if (actual.FinishReason != ChatFinishReason.ToolCalls) continue;
            var call = Assert.Single(actual.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
            var expectedCall = Assert.Single(expected.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>());
            Assert.Equal("get_weather", call.Name);
            Assert.Equal(expectedCall.Name, call.Name);
            Assert.Null(call.Exception);
            Assert.Equal(JsonSerializer.Serialize(expectedCall.Arguments), JsonSerializer.Serialize(call.Arguments));
            Assert.Contains("city", call.Arguments!.Keys);
            calls++;
        }
        Assert.True(calls > 0, "no seed ended its forced call within the token limit");
    }

    [Fact]
    public async Task FunctionInvocationRunsTheToolAndAnswersWithItsResult()
    {
        var ct = TestContext.Current.CancellationToken;
        server.Require();
        using var model = Load();
        var invoked = new List<string>();
        var tool = AIFunctionFactory.Create((string city, Unit unit) => { lock (invoked) invoked.Add(city); return GetWeather(city, unit); }, "get_weather", "Gets the weather in a city");
        using IChatClient client = model.AsChatClient().AsBuilder().UseFunctionInvocation(configure: f => f.MaximumIterationsPerRequest = 2).Build();
        foreach (int seed in Seeds)
        {
            var response = await client.GetResponseAsync("What is the weather in Paris?",
                new ChatOptions
                {
                    Temperature = 1,
                    TopP = 1,
                    Seed = seed,
                    MaxOutputTokens = 300,
                    Tools = [tool],
                    ToolMode = ChatToolMode.RequireAny,
                    AllowMultipleToolCalls = false,
                    AdditionalProperties = new() { ["strictJsonSchema"] = true },
                }, ct);
            if (invoked.Count == 0) continue;
            var result = response.Messages.SelectMany(m => m.Contents).OfType<FunctionResultContent>().First();
            Assert.StartsWith("sunny in ", result.Result?.ToString());
            // The tool's answer went back to the model, which then wrote a last assistant message.
            Assert.Equal(ChatRole.Assistant, response.Messages[^1].Role);
            return;
        }
        Assert.Fail("no seed completed a forced call for the function invocation to run");
    }

    [Fact]
    public async Task TypedResponsesFollowTheSchema()
    {
        var ct = TestContext.Current.CancellationToken;
        server.Require();
        using var model = Load();
        IChatClient client = model.AsChatClient();
        int parsed = 0;
        foreach (int seed in Seeds)
        {
            // Strict, as MEAI's OpenAI adapter reads it: no properties beyond the record's (a random model would add some).
            var options = new ChatOptions { Temperature = 1, TopP = 1, Seed = seed, MaxOutputTokens = 300, AdditionalProperties = new() { ["strictJsonSchema"] = true } };
            var response = await client.GetResponseAsync<Verdict>("Judge this: the cake is great.", options, cancellationToken: ct);
            if (response.FinishReason != ChatFinishReason.Stop) continue;
            Assert.True(response.TryGetResult(out var verdict), response.Text);
            Assert.True(Enum.IsDefined(verdict!.Mood));
            parsed++;
        }
        Assert.True(parsed > 0, "no seed finished its answer within the token limit");
    }
}
