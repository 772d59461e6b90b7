using System.Text.Json;
using Kaiyuan.AspNetCore;
using Kaiyuan.Chat;
using OllamaSharp;
using OllamaSharp.Models;

namespace Kaiyuan.Tests.Server;

/// <summary>Several models behind one server: on-demand loads, LRU swaps, keep_alive and expiry, the memory check.</summary>
public sealed class MultiModelTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    /// <summary>Set when a model's runtime is disposed (unloaded).</summary>
    private sealed class Unloaded : IDisposable
    {
        public volatile bool Done;
        public void Dispose() => Done = true;
    }

    private static ModelRuntime Scripted(string name, ScriptedEngine engine, IDisposable? owned = null) =>
        new(name, new CharCodec(), new ChatMlFormatter(), engine, new ModelDescription("test", "F32", 0, 0, 4096, 2, null, new Dictionary<string, object>()), owned);

    private static ServerOptions Two(Func<ServerOptions, ServerOptions>? configure = null)
    {
        var options = new ServerOptions
        {
            ModelPath = "alpha.gguf",
            Models = [new ServedModel("alpha", "alpha.gguf"), new ServedModel("beta", "beta.gguf")],
            Port = 0,
            RequestLogging = false,
        };
        return configure is null ? options : configure(options);
    }

    private static async Task<string[]> Loaded(HttpClient http) =>
        (await (await http.GetAsync("api/ps", Ct)).JsonAsync()).GetProperty("models").EnumerateArray().Select(m => m.GetProperty("name").GetString()!).ToArray();

    private static async Task<string> Chat(HttpClient http, string model, string extra = "")
    {
        var response = await http.PostJsonAsync("api/chat", $$"""{"model":"{{model}}","stream":false,"messages":[{"role":"user","content":"Hi"}]{{extra}}}""");
        string body = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("message").GetProperty("content").GetString()!;
    }

    private static async Task Eventually(Func<Task<bool>> condition, string what)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(10)) Assert.Fail($"not within 10 s: {what}");
            await Task.Delay(50, Ct);
        }
    }

    [Fact]
    public async Task TwoRealModelsAnswerWithTheirOwnGoldenTokens()
    {
        string stories = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        string aidreams = Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf");
        await using var server = await KaiyuanServer.StartAsync(new ServerOptions
        {
            ModelPath = stories,
            Models = [ServedModel.ForFile(stories, "stories"), ServedModel.ForFile(aidreams, "aidreams")],
            Port = 0,
            Parallel = 2,
            ContextSize = 256,
            Threads = 2,
            RequestLogging = false,
        }, Ct);
        await server.WaitReadyAsync();
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = TimeSpan.FromSeconds(60) };
        // Several models: nothing is loaded until asked for, and the server is ready at once.
        Assert.Equal(200, (int)(await http.GetAsync("health", Ct)).StatusCode);
        Assert.Empty(await Loaded(http));
        var tags = (await (await http.GetAsync("api/tags", Ct)).JsonAsync()).GetProperty("models").EnumerateArray().ToArray();
        Assert.Equal(["stories:latest", "aidreams:latest"], tags.Select(t => t.GetProperty("name").GetString()));
        Assert.Equal(new FileInfo(aidreams).Length, tags[1].GetProperty("size").GetInt64());
        var ids = (await (await http.GetAsync("v1/models", Ct)).JsonAsync()).GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString());
        Assert.Equal(["stories", "aidreams"], ids);

        var storiesGolden = Models.Goldens.Load("stories260K", "f32")[0];
        var aidreamsGolden = Models.Goldens.Load("aidreams260K", "f32")[0];
        string Prompt(Models.GoldenCase c) => c.Prompt["text:".Length..];

        // Both at once: stories through the OpenAI completions route, aidreams through OllamaSharp's raw generate.
        var viaOpenAi = http.PostJsonAsync("v1/completions", JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["model"] = "stories",
            ["prompt"] = Prompt(storiesGolden),
            ["max_tokens"] = storiesGolden.Ids.Length,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
        }));
        var ollama = new OllamaApiClient(server.Address);
        var viaOllama = ollama.GenerateAsync(new GenerateRequest
        {
            Model = "aidreams",
            Prompt = Prompt(aidreamsGolden),
            Raw = true,
            Stream = false,
            Options = new RequestOptions { Temperature = 0, NumPredict = aidreamsGolden.Ids.Length },
        }, Ct).StreamToEndAsync();
        var completion = await (await viaOpenAi).JsonAsync();
        Assert.Equal(storiesGolden.Text, completion.GetProperty("choices")[0].GetProperty("text").GetString());
        Assert.Equal(aidreamsGolden.Text, (await viaOllama)!.Response);

        var ps = (await (await http.GetAsync("api/ps", Ct)).JsonAsync()).GetProperty("models").EnumerateArray().ToArray();
        Assert.Equal(["aidreams:latest", "stories:latest"], ps.Select(m => m.GetProperty("name").GetString()).Order());
        Assert.All(ps, m => Assert.Equal(0, m.GetProperty("size_vram").GetInt64()));
        Assert.All(ps, m => Assert.True(m.GetProperty("size").GetInt64() > new FileInfo(stories).Length / 2));
        // The default keep-alive with several models is Ollama's five minutes.
        Assert.All(ps, m => Assert.InRange(m.GetProperty("expires_at").GetDateTimeOffset(), DateTimeOffset.UtcNow.AddMinutes(4), DateTimeOffset.UtcNow.AddMinutes(6)));
        Assert.Equal(200, (int)(await http.GetAsync("metrics", Ct)).StatusCode);
    }

    [Fact]
    public async Task AModelLoadsOnDemandAndRequestsWaitForItsLoad()
    {
        using var gate = new ManualResetEventSlim();
        int loads = 0;
        await using var server = await KaiyuanServer.StartAsync(Two(), m =>
        {
            Interlocked.Increment(ref loads);
            if (m.Name == "beta") gate.Wait(TimeSpan.FromSeconds(30));
            return Scripted(m.Name, new ScriptedEngine(_ => $"I am {m.Name}"));
        }, Ct);
        await server.WaitReadyAsync();
        using var http = new HttpClient { BaseAddress = server.Address };
        Assert.Equal("I am alpha", await Chat(http, "alpha"));
        // An empty model picks the first, as Ollama's default.
        var openAi = await (await http.PostJsonAsync("v1/chat/completions", """{"messages":[{"role":"user","content":"Hi"}]}""")).JsonAsync();
        Assert.Equal("I am alpha", openAi.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        var first = Chat(http, "beta");
        var second = Chat(http, "beta:latest");
        await Task.Delay(300, Ct);
        Assert.False(first.IsCompleted || second.IsCompleted, "a request for a model that is loading waits for it");
        gate.Set();
        Assert.Equal("I am beta", await first);
        Assert.Equal("I am beta", await second);
        Assert.Equal(2, loads);
        Assert.Equal(["alpha:latest", "beta:latest"], (await Loaded(http)).Order());
    }

    [Fact]
    public async Task AFailedLoadAnswersAClearErrorAndTheNextRequestTriesAgain()
    {
        int attempts = 0;
        await using var server = await KaiyuanServer.StartAsync(Two(), m => m.Name == "beta" && Interlocked.Increment(ref attempts) == 1
            ? throw new InvalidDataException("beta.gguf: truncated")
            : Scripted(m.Name, new ScriptedEngine(_ => "ok")), Ct);
        using var http = new HttpClient { BaseAddress = server.Address };
        var failed = await http.PostJsonAsync("api/chat", """{"model":"beta","messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal(500, (int)failed.StatusCode);
        string error = (await failed.JsonAsync()).GetProperty("error").GetString()!;
        Assert.Contains("cannot load the model 'beta'", error, StringComparison.Ordinal);
        Assert.Contains("truncated", error, StringComparison.Ordinal);
        Assert.Equal("ok", await Chat(http, "beta"));
    }

    [Fact]
    public async Task AnUnknownModelIs404NamingTheServedOnes()
    {
        await using var server = await KaiyuanServer.StartAsync(Two(), m => Scripted(m.Name, new ScriptedEngine(_ => "ok")), Ct);
        using var http = new HttpClient { BaseAddress = server.Address };
        var openAi = await http.PostJsonAsync("v1/chat/completions", """{"model":"gamma","messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal(404, (int)openAi.StatusCode);
        var error = (await openAi.JsonAsync()).GetProperty("error");
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
        Assert.Contains("'alpha', 'beta'", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        var ollama = await http.PostJsonAsync("api/generate", """{"model":"gamma","prompt":"Hi"}""");
        Assert.Equal(404, (int)ollama.StatusCode);
        Assert.Contains("'alpha', 'beta'", (await ollama.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);
        Assert.Equal(404, (int)(await http.GetAsync("v1/models/gamma", Ct)).StatusCode);
        Assert.Equal("beta", (await (await http.GetAsync("v1/models/beta", Ct)).JsonAsync()).GetProperty("id").GetString());
        Assert.Empty(await Loaded(http));
    }

    [Fact]
    public async Task MaxModelsOneSwapsButNeverUnloadsAModelInUse()
    {
        var alphaGone = new Unloaded();
        var hold = new TaskCompletionSource();
        var alpha = new ScriptedEngine(_ => "I am alpha") { Hold = hold.Task };
        await using var server = await KaiyuanServer.StartAsync(Two(o => o with { MaxModels = 1 }),
            m => m.Name == "alpha" ? Scripted("alpha", alpha, alphaGone) : Scripted("beta", new ScriptedEngine(_ => "I am beta")), Ct);
        using var http = new HttpClient { BaseAddress = server.Address };

        // alpha is busy (its answer held back): beta's load waits rather than unload it.
        var busy = Chat(http, "alpha");
        await Eventually(() => Task.FromResult(alpha.Prompts.Count == 1), "alpha's request reaches its engine");
        var waiting = Chat(http, "beta");
        await Task.Delay(300, Ct);
        Assert.False(waiting.IsCompleted);
        Assert.False(alphaGone.Done);
        Assert.Equal(["alpha:latest"], await Loaded(http));

        hold.SetResult();
        Assert.Equal("I am alpha", await busy);
        Assert.Equal("I am beta", await waiting);
        Assert.True(alphaGone.Done);
        Assert.Equal(["beta:latest"], await Loaded(http));
        Assert.Equal("I am alpha", await Chat(http, "alpha"));
        Assert.Equal(["alpha:latest"], await Loaded(http));
    }

    [Fact]
    public async Task KeepAliveZeroUnloadsAndTenMinutesShowsWhenItExpires()
    {
        var unloaded = new List<Unloaded>();
        await using var server = await KaiyuanServer.StartAsync(Two(), m =>
        {
            var gone = new Unloaded();
            lock (unloaded) unloaded.Add(gone);
            return Scripted(m.Name, new ScriptedEngine(_ => "ok"), gone);
        }, Ct);
        using var http = new HttpClient { BaseAddress = server.Address };
        var ollama = new OllamaApiClient(server.Address);

        // No prompt: load only (Ollama's preload), with its keep_alive.
        var load = await (await http.PostJsonAsync("api/generate", """{"model":"beta","keep_alive":"10m"}""")).JsonAsync();
        Assert.Equal("load", load.GetProperty("done_reason").GetString());
        var running = (await ollama.ListRunningModelsAsync(Ct)).Single();
        Assert.Equal("beta:latest", running.Name);
        Assert.InRange(running.ExpiresAt, DateTime.UtcNow.AddMinutes(9), DateTime.UtcNow.AddMinutes(11));
        Assert.Equal(0, running.SizeVram);

        // No messages and keep_alive 0: unloaded before the answer.
        var unload = await (await http.PostJsonAsync("api/chat", """{"model":"beta","messages":[],"keep_alive":0}""")).JsonAsync();
        Assert.Equal("unload", unload.GetProperty("done_reason").GetString());
        Assert.Empty(await ollama.ListRunningModelsAsync(Ct));
        Assert.True(unloaded.Single().Done);

        // A generation with keep_alive 0 unloads once it is done.
        Assert.Equal("ok", await Chat(http, "alpha", ""","keep_alive":"0s" """));
        await Eventually(async () => (await Loaded(http)).Length == 0, "alpha unloaded after its request");
        // A negative keep_alive keeps it until the server stops.
        Assert.Equal("ok", await Chat(http, "alpha", ""","keep_alive":-1"""));
        Assert.True((await ollama.ListRunningModelsAsync(Ct)).Single().ExpiresAt > DateTime.UtcNow.AddYears(10));

        var bad = await http.PostJsonAsync("api/chat", """{"model":"alpha","messages":[],"keep_alive":"soon"}""");
        Assert.Equal(400, (int)bad.StatusCode);
        Assert.Contains("keep_alive", (await bad.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnIdleModelExpiresAfterAShortKeepAlive()
    {
        var gone = new Unloaded();
        await using var server = await KaiyuanServer.StartAsync(Two(o => o with { KeepAlive = TimeSpan.FromMinutes(30) }),
            m => Scripted(m.Name, new ScriptedEngine(_ => "ok"), m.Name == "beta" ? gone : null), Ct);
        using var http = new HttpClient { BaseAddress = server.Address };
        Assert.Equal("ok", await Chat(http, "alpha"));
        Assert.Equal("ok", await Chat(http, "beta", ""","keep_alive":"1s" """));
        Assert.Equal(2, (await Loaded(http)).Length);
        await Eventually(async () => (await Loaded(http)).SequenceEqual(["alpha:latest"]), "beta expires after 1 s; alpha (30 min) stays");
        Assert.True(gone.Done);
        // Expired is not gone: the next request loads it again.
        Assert.Equal("ok", await Chat(http, "beta"));
    }

    [Fact]
    public async Task AModelThatCannotFitInMemoryIs503()
    {
        string stories = Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        string aidreams = Fixtures.ModelPath("aidreams260K", "aidreams260K-f32.gguf");
        var options = new ServerOptions
        {
            ModelPath = stories,
            Models = [ServedModel.ForFile(stories, "stories"), ServedModel.ForFile(aidreams, "aidreams")],
            Port = 0,
            Parallel = 1,
            ContextSize = 128,
            Threads = 1,
            RequestLogging = false,
        };
        long storiesBytes = ModelRuntime.Inspect(stories, options).Bytes, aidreamsBytes = ModelRuntime.Inspect(aidreams, options).Bytes;
        Assert.True(storiesBytes > new FileInfo(stories).Length, "the estimate counts the KV cache besides the weights");

        // Room for either model but not both: loading the second unloads the idle first.
        await using (var server = await KaiyuanServer.StartAsync(options with { MemoryBudgetBytes = Math.Max(storiesBytes, aidreamsBytes) + 1024 }, Ct))
        {
            using var http = new HttpClient { BaseAddress = server.Address };
            const string Body = """{"model":"{0}","prompt":"Once upon a time","max_tokens":4}""";
            Assert.Equal(200, (int)(await http.PostJsonAsync("v1/completions", Body.Replace("{0}", "stories", StringComparison.Ordinal))).StatusCode);
            Assert.Equal(200, (int)(await http.PostJsonAsync("v1/completions", Body.Replace("{0}", "aidreams", StringComparison.Ordinal))).StatusCode);
            Assert.Equal(["aidreams:latest"], await Loaded(http));
        }

        // Room for neither: 503, OpenAI-shaped on /v1 and Ollama-shaped on /api.
        await using (var server = await KaiyuanServer.StartAsync(options with { MemoryBudgetBytes = storiesBytes / 2 }, Ct))
        {
            using var http = new HttpClient { BaseAddress = server.Address };
            var openAi = await http.PostJsonAsync("v1/completions", """{"model":"stories","prompt":"Once upon a time","max_tokens":4}""");
            Assert.Equal(503, (int)openAi.StatusCode);
            var error = (await openAi.JsonAsync()).GetProperty("error");
            Assert.Equal("insufficient_memory", error.GetProperty("code").GetString());
            Assert.Contains("not enough memory to load 'stories'", error.GetProperty("message").GetString(), StringComparison.Ordinal);
            var ollama = await http.PostJsonAsync("api/generate", """{"model":"aidreams","prompt":"Hi"}""");
            Assert.Equal(503, (int)ollama.StatusCode);
            Assert.Contains("not enough memory", (await ollama.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);
            Assert.Empty(await Loaded(http));
            Assert.Equal(200, (int)(await http.GetAsync("health", Ct)).StatusCode);
        }
    }

    [Fact]
    public async Task OneModelStaysLoadedForeverUnlessKeepAliveSaysOtherwise()
    {
        var gone = new Unloaded();
        await using var server = await KaiyuanServer.StartAsync(new ServerOptions { ModelPath = "solo.gguf", Port = 0, RequestLogging = false },
            _ => Scripted("solo", new ScriptedEngine(_ => "ok"), gone), Ct);
        await server.WaitReadyAsync();
        using var http = new HttpClient { BaseAddress = server.Address };
        // One model: any name (and none) picks it... as long as it names it; another name is 404 as before.
        Assert.Equal("ok", await Chat(http, "solo"));
        Assert.Equal(404, (int)(await http.PostJsonAsync("api/chat", """{"model":"other","messages":[{"role":"user","content":"Hi"}]}""")).StatusCode);
        var ps = (await (await http.GetAsync("api/ps", Ct)).JsonAsync()).GetProperty("models")[0];
        Assert.True(ps.GetProperty("expires_at").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddYears(10));

        // keep_alive 0 unloads it; health stays ready and the next request loads it again.
        await http.PostJsonAsync("api/generate", """{"model":"solo","keep_alive":0}""");
        Assert.Empty(await Loaded(http));
        Assert.True(gone.Done);
        Assert.Equal(200, (int)(await http.GetAsync("health", Ct)).StatusCode);
        Assert.Equal("ok", await Chat(http, "solo"));
        Assert.Equal(["solo:latest"], await Loaded(http));
    }

    [Theory]
    [InlineData("5m", 300)]
    [InlineData("30s", 30)]
    [InlineData("1h30m", 5400)]
    [InlineData("250ms", 0.25)]
    [InlineData("90", 90)]
    [InlineData("0", 0)]
    public void KeepAliveDurationsParseAsOllamas(string text, double seconds) => Assert.Equal(TimeSpan.FromSeconds(seconds), KeepAlive.Parse(text));

    [Fact]
    public void NegativeKeepAliveIsForeverAndNonsenseIsRefused()
    {
        Assert.Equal(KeepAlive.Forever, KeepAlive.Parse("-1"));
        Assert.Equal(KeepAlive.Forever, KeepAlive.Parse("-5m"));
        Assert.Throws<RequestException>(() => KeepAlive.Parse("soon"));
        Assert.Throws<RequestException>(() => KeepAlive.Parse("5 minutes"));
        Assert.Throws<RequestException>(() => KeepAlive.Parse(""));
    }
}
