using System.ClientModel;
using System.Net;
using System.Security.Claims;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Threading.RateLimiting;
using Kaiyuan.AspNetCore;
using Kaiyuan.Chat;
using Kaiyuan.AspNetCore.Hosting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OllamaSharp;
using OllamaSharp.Models;
using OpenAI;
using OpenAI.Chat;
using OllamaChatRequest = OllamaSharp.Models.Chat.ChatRequest;
using OllamaChatRole = OllamaSharp.Models.Chat.ChatRole;
using OllamaMessage = OllamaSharp.Models.Chat.Message;

namespace Kaiyuan.Tests.Server;

/// <summary>
/// A user's own ASP.NET Core app hosting Kaiyuan: its own endpoint, authentication and rate limiter, with the OpenAI
/// endpoints behind its authorization policy, the Ollama ones under /ollama behind its rate limiter, and Anthropic's
/// as they are. The same stories260K model as <see cref="StoriesServer"/> (kaiyuan serve).
/// </summary>
public sealed class HostedStoriesApp : IAsyncLifetime
{
    public const string Key = "app-secret";
    public const string Model = "stories";
    private WebApplication? _app;

    public Uri Address { get; private set; } = new("http://unused/");
    public bool Available { get; private set; }

    public async ValueTask InitializeAsync()
    {
        string? path = Fixtures.Root is null ? null : Path.Combine(Fixtures.Root, "models", "stories260K", "stories260K-f32.gguf");
        if (path is null || !File.Exists(path)) return;
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [], ApplicationName = "hosting-test" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddKaiyuan(o =>
        {
            o.ModelPath = path;
            o.Alias = Model;
            o.Parallel = 8;
            o.ContextSize = 256;
            o.Threads = 2;
        });
        builder.Services.AddAuthentication("key").AddScheme<AuthenticationSchemeOptions, KeyHandler>("key", null);
        builder.Services.AddAuthorization(o => o.AddPolicy("llm", p => p.RequireAuthenticatedUser()));
        builder.Services.AddRateLimiter(o =>
        {
            o.RejectionStatusCode = 429;
            // One request an hour for the client that says it is "greedy", plenty for the rest.
            o.AddPolicy("ollama", http => RateLimitPartition.GetFixedWindowLimiter(http.Request.Headers["X-Client"].ToString(),
                client => new FixedWindowRateLimiterOptions { PermitLimit = client == "greedy" ? 1 : 1000, Window = TimeSpan.FromHours(1) }));
        });

        var app = builder.Build();
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRateLimiter();
        app.MapGet("/hello", () => "hello from the app");
        app.MapOpenAIEndpoints().RequireAuthorization("llm");
        app.MapGroup("/ollama").MapOllamaEndpoints().RequireRateLimiting("ollama");
        app.MapAnthropicEndpoints();
        await app.StartAsync();
        _app = app;
        Address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/");
        await app.Services.GetRequiredService<KaiyuanLifetime>().Ready;
        Available = true;
    }

    public Uri Require()
    {
        if (!Available) Fixtures.ModelPath("stories260K", "stories260K-f32.gguf");
        return Address;
    }

    public OpenAIClient OpenAi(string key = Key) => new(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(Require(), "v1") });

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    /// <summary>The app's own authentication: a bearer token it knows.</summary>
    private sealed class KeyHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
        : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
    {
        protected override Task<AuthenticateResult> HandleAuthenticateAsync()
        {
            if (Request.Headers.Authorization.ToString() != "Bearer " + Key) return Task.FromResult(AuthenticateResult.NoResult());
            var user = new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, "tester")], Scheme.Name));
            return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(user, Scheme.Name)));
        }
    }
}

public sealed class HostingTests(HostedStoriesApp hosted, StoriesServer served) : IClassFixture<HostedStoriesApp>, IClassFixture<StoriesServer>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task OpenAiSdkGetsTheSameGreedyAnswersAsKaiyuanServe()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };
        var hostedChat = hosted.OpenAi().GetChatClient(HostedStoriesApp.Model);
        var servedChat = served.OpenAi().GetChatClient(served.Model);
        ChatCompletion fromApp = await hostedChat.CompleteChatAsync([new UserChatMessage("Once upon a time")], options, Ct);
        ChatCompletion fromServe = await servedChat.CompleteChatAsync([new UserChatMessage("Once upon a time")], options, Ct);
        Assert.False(string.IsNullOrEmpty(fromApp.Content[0].Text));
        Assert.Equal(fromServe.Content[0].Text, fromApp.Content[0].Text);
        Assert.Equal(fromServe.Usage.InputTokenCount, fromApp.Usage.InputTokenCount);

        var streamed = new StringBuilder();
        await foreach (var update in hostedChat.CompleteChatStreamingAsync([new UserChatMessage("Once upon a time")], options, Ct))
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
        Assert.Equal(fromServe.Content[0].Text, streamed.ToString());

        var models = await hosted.OpenAi().GetOpenAIModelClient().GetModelsAsync(Ct);
        Assert.Contains(models.Value, m => m.Id == HostedStoriesApp.Model);
    }

    [Fact]
    public async Task OllamaSharpGetsTheSameGreedyAnswersUnderTheAppsPrefix()
    {
        OllamaChatRequest Request() => new()
        {
            Model = HostedStoriesApp.Model,
            Messages = [new OllamaMessage(OllamaChatRole.User, "Once upon a time")],
            Stream = false,
            Options = new RequestOptions { Temperature = 0, NumPredict = 12 },
        };
        var fromApp = await new OllamaApiClient(new Uri(hosted.Require(), "ollama/")).ChatAsync(Request(), Ct).StreamToEndAsync();
        var fromServe = await new OllamaApiClient(served.Require().Address).ChatAsync(Request(), Ct).StreamToEndAsync();
        Assert.False(string.IsNullOrEmpty(fromApp!.Message.Content));
        Assert.Equal(fromServe!.Message.Content, fromApp.Message.Content);

        var generated = await new OllamaApiClient(new Uri(hosted.Require(), "ollama/")).GenerateAsync(new GenerateRequest
        {
            Model = HostedStoriesApp.Model,
            Prompt = "Once upon a time",
            Stream = true,
            Options = new RequestOptions { Temperature = 0, NumPredict = 12 },
        }, Ct).StreamToEndAsync();
        var generatedByServe = await new OllamaApiClient(served.Require().Address).GenerateAsync(new GenerateRequest
        {
            Model = served.Model,
            Prompt = "Once upon a time",
            Stream = false,
            Options = new RequestOptions { Temperature = 0, NumPredict = 12 },
        }, Ct).StreamToEndAsync();
        Assert.Equal(generatedByServe!.Response, generated!.Response);
    }

    [Fact]
    public async Task TheAppsAuthorizationGuardsTheOpenAiGroup()
    {
        var error = await Assert.ThrowsAsync<ClientResultException>(() => hosted.OpenAi("wrong").GetChatClient(HostedStoriesApp.Model)
            .CompleteChatAsync([new UserChatMessage("Hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 }, Ct));
        Assert.Equal(401, error.Status);

        using var http = new HttpClient { BaseAddress = hosted.Require() };
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("v1/models", Ct)).StatusCode);
        // The app's own endpoint and the groups it did not guard answer without a key.
        Assert.Equal("hello from the app", await http.GetStringAsync("hello", Ct));
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("ollama/api/tags", Ct)).StatusCode);
        // Kaiyuan's own chat page and health were not mapped (MapOpenAIEndpoints maps the API alone).
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("health", Ct)).StatusCode);
    }

    [Fact]
    public async Task TheAppsRateLimiterGuardsTheOllamaGroup()
    {
        using var http = new HttpClient { BaseAddress = hosted.Require() };
        http.DefaultRequestHeaders.Add("X-Client", "greedy");
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("ollama/api/version", Ct)).StatusCode);
        Assert.Equal((HttpStatusCode)429, (await http.GetAsync("ollama/api/version", Ct)).StatusCode);
    }

    [Fact]
    public async Task BadRequestsGetTheirApisErrorShape()
    {
        using var http = new HttpClient { BaseAddress = hosted.Require() };
        http.DefaultRequestHeaders.Authorization = new("Bearer", HostedStoriesApp.Key);

        var openAi = await http.PostJsonAsync("v1/chat/completions", "{not json");
        Assert.Equal(HttpStatusCode.BadRequest, openAi.StatusCode);
        var openAiError = (await openAi.JsonAsync()).GetProperty("error");
        Assert.Equal("invalid_json", openAiError.GetProperty("code").GetString());
        Assert.Equal("invalid_request_error", openAiError.GetProperty("type").GetString());

        var unknown = await Assert.ThrowsAsync<ClientResultException>(() => hosted.OpenAi().GetChatClient("llama3")
            .CompleteChatAsync([new UserChatMessage("Hi")], new ChatCompletionOptions { MaxOutputTokenCount = 2 }, Ct));
        Assert.Equal(404, unknown.Status);

        var ollama = await http.PostJsonAsync("ollama/api/generate", "{not json");
        Assert.Equal(HttpStatusCode.BadRequest, ollama.StatusCode);
        Assert.Equal(JsonValueKind.String, (await ollama.JsonAsync()).GetProperty("error").ValueKind);
        var ollamaUnknown = await http.PostJsonAsync("ollama/api/chat", """{"model":"llama3","messages":[{"role":"user","content":"Hi"}]}""");
        Assert.Equal(HttpStatusCode.NotFound, ollamaUnknown.StatusCode);
        Assert.Contains("llama3", (await ollamaUnknown.JsonAsync()).GetProperty("error").GetString(), StringComparison.Ordinal);

        var anthropic = await http.PostJsonAsync("v1/messages", """{"model":"stories"}""");
        Assert.Equal(HttpStatusCode.BadRequest, anthropic.StatusCode);
        var body = await anthropic.JsonAsync();
        Assert.Equal("error", body.GetProperty("type").GetString());
        Assert.Equal("invalid_request_error", body.GetProperty("error").GetProperty("type").GetString());
    }
}

/// <summary>The wrapper the mapping installs answers failures in each API's shape with no kaiyuan serve pipeline around it.</summary>
public sealed class HostedErrorTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static async Task<(WebApplication App, HttpClient Http)> StartAsync(ScriptedEngine engine)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "hosting-test" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddKaiyuan(new ServerOptions { ModelPath = "scripted.gguf", Alias = "scripted", RequestLogging = false },
            _ => new ModelRuntime("scripted", new CharCodec(), new ChatMlFormatter(), engine,
                new ModelDescription("test", "F32", 0, 0, 4096, 2, null, new Dictionary<string, object>())));
        var app = builder.Build();
        app.MapGroup("/llm").MapKaiyuanEndpoints();
        await app.StartAsync(Ct);
        await app.Services.GetRequiredService<KaiyuanLifetime>().Ready;
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return (app, new HttpClient { BaseAddress = new Uri(address + "/llm/") });
    }

    [Fact]
    public async Task EngineFailuresKeepEachApisShapeUnderAPrefix()
    {
        var engine = new ScriptedEngine(_ => "hello") { Throw = new Kaiyuan.Scheduling.QueueFullException("the queue is full") };
        var (app, http) = await StartAsync(engine);
        await using (app)
        using (http)
        {
            var openAi = await http.PostJsonAsync("v1/chat/completions", """{"model":"scripted","messages":[{"role":"user","content":"Hi"}]}""");
            Assert.Equal((HttpStatusCode)429, openAi.StatusCode);
            Assert.Equal("queue_full", (await openAi.JsonAsync()).GetProperty("error").GetProperty("code").GetString());

            var ollama = await http.PostJsonAsync("api/chat", """{"model":"scripted","messages":[{"role":"user","content":"Hi"}],"stream":false}""");
            Assert.Equal((HttpStatusCode)429, ollama.StatusCode);
            Assert.Equal("the queue is full", (await ollama.JsonAsync()).GetProperty("error").GetString());

            var anthropic = await http.PostJsonAsync("v1/messages", """{"model":"scripted","max_tokens":5,"messages":[{"role":"user","content":"Hi"}]}""");
            Assert.Equal((HttpStatusCode)429, anthropic.StatusCode);
            Assert.Equal("rate_limit_error", (await anthropic.JsonAsync()).GetProperty("error").GetProperty("type").GetString());

            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("health", Ct)).StatusCode);
            string metrics = await http.GetStringAsync("metrics", Ct);
            Assert.Contains("/llm/v1/chat/completions", metrics, StringComparison.Ordinal);
            Assert.Equal(0, metrics.Split('\n').Count(l => l.Contains("status=\"500\"", StringComparison.Ordinal)));
        }
    }

    [Fact]
    public async Task AFailureMidStreamEndsTheStreamWithAnErrorEvent()
    {
        var engine = new ScriptedEngine(_ => "hello") { Hold = Task.Delay(300, TestContext.Current.CancellationToken), Fail = new InvalidOperationException("the forward pass broke") };
        var (app, http) = await StartAsync(engine);
        await using (app)
        using (http)
        {
            var response = await http.PostJsonAsync("v1/messages", """{"model":"scripted","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"Hi"}]}""");
            string text = await response.Content.ReadAsStringAsync(Ct);
            Assert.Contains("event: error", text, StringComparison.Ordinal);

            var ollama = await http.PostJsonAsync("api/generate", """{"model":"scripted","prompt":"Hi"}""");
            string lines = await ollama.Content.ReadAsStringAsync(Ct);
            Assert.Contains("\"error\"", lines, StringComparison.Ordinal);
        }
    }
}
