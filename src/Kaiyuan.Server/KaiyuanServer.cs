using System.Diagnostics;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Inference;
using Kaiyuan.Scheduling;
using Kaiyuan.Server.Api;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Kaiyuan.Server;

/// <summary>
/// The HTTP server: Kestrel with the OpenAI (chat, completions, Responses), Anthropic and Ollama endpoints, health,
/// metrics and the chat page. It starts listening at once; one model loads in the background (<c>/health</c> answers
/// 503 until it is ready), several load on demand (<see cref="ModelRegistry"/>).
/// </summary>
public sealed class KaiyuanServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Task _loading;
    private int _stopped;

    private KaiyuanServer(WebApplication app, ServerState state, Task loading, Uri address)
    {
        _app = app;
        State = state;
        _loading = loading;
        Address = address;
    }

    public ServerState State { get; }
    /// <summary>The bound address, e.g. http://127.0.0.1:8080/ (the real port when 0 was asked for).</summary>
    public Uri Address { get; }

    /// <summary>Completes when the model is loaded (throws if loading failed); with several models, at once.</summary>
    public Task WaitReadyAsync() => _loading;

    /// <summary>Completes when the application is asked to stop (Ctrl-C, SIGTERM).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel = default) => _app.WaitForShutdownAsync(cancel);

    /// <summary>Starts a server for GGUF models on disk.</summary>
    public static Task<KaiyuanServer> StartAsync(ServerOptions options, CancellationToken cancel = default) =>
        StartAsync(options, model => ModelRuntime.Load(options with { ModelPath = model.Path, Alias = model.Name }), cancel);

    /// <summary>Starts a server whose models come from <paramref name="load"/> (tests pass scripted engines).</summary>
    public static async Task<KaiyuanServer> StartAsync(ServerOptions options, Func<ServedModel, ModelRuntime> load, CancellationToken cancel = default)
    {
        var state = new ServerState(options, load);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "kaiyuan" });
        string host = ListenHost(options.Host);
        builder.WebHost.UseUrls($"http://{(host.Contains(':', StringComparison.Ordinal) ? $"[{host}]" : host)}:{options.Port}");
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
        });
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.DrainTimeout);
        builder.Logging.ClearProviders();
        builder.Logging.Configure(o => o.ActivityTrackingOptions = ActivityTrackingOptions.None);
        if (options.RequestLogging)
            builder.Logging.AddSimpleConsole(o => { o.IncludeScopes = true; o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; });
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.None);
        // A failed start (port in use) is thrown to the caller, who reports it; the host's own log of it is a stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.None);
        builder.Services.AddSingleton(state);
        if (options.CorsOrigins.Count > 0) builder.Services.AddCors();

        var app = builder.Build();
        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("kaiyuan.server");
        app.Use((http, next) => Guard(http, next, state, log));
        if (options.CorsOrigins.Count > 0)
        {
            app.UseCors(p =>
            {
                if (options.CorsOrigins.Contains("*")) p.AllowAnyOrigin(); else p.WithOrigins([.. options.CorsOrigins]);
                p.AllowAnyHeader().AllowAnyMethod().WithExposedHeaders("X-Request-Id");
            });
        }
        app.Use((http, next) => Authorize(http, next, options));
        MapOperations(app);
        OpenAiApi.Map(app);
        ResponsesApi.Map(app);
        AnthropicApi.Map(app);
        OllamaApi.Map(app);
        LlamaCppApi.Map(app);

        // Stop taking new work when asked to stop; Kestrel then lets running streams finish (up to DrainTimeout).
        app.Lifetime.ApplicationStopping.Register(state.Models.Drain);

        await app.StartAsync(cancel).ConfigureAwait(false);
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/");
        var loading = state.Models.Several ? Task.CompletedTask : LoadAtStartup(state, log);
        return new KaiyuanServer(app, state, loading, address);
    }

    private static async Task LoadAtStartup(ServerState state, ILogger log)
    {
        try
        {
            await state.Models.LoadAtStartup().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // Whoever awaits WaitReadyAsync reports the error (and /health tells it), so the log keeps it out of the way.
            log.LogDebug("cannot load the model: {Message}", e.Message);
            throw;
        }
    }

    /// <summary>
    /// The address to bind. Kestrel takes any name it does not know as "all interfaces", so a mistyped host would
    /// silently listen everywhere: only IP addresses and localhost pass as given; other names must resolve, and the
    /// server listens on their first address.
    /// </summary>
    public static string ListenHost(string host)
    {
        if (System.Net.IPAddress.TryParse(host, out var ip)) return ip.ToString();
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase)) return "localhost";
        System.Net.IPAddress[] resolved;
        try
        {
            resolved = Uri.CheckHostName(host) == UriHostNameType.Dns ? System.Net.Dns.GetHostAddresses(host) : [];
        }
        catch (System.Net.Sockets.SocketException)
        {
            resolved = [];
        }
        return resolved.Length > 0 ? resolved[0].ToString()
            : throw new ArgumentException($"cannot listen on '{host}': it is neither an IP address nor a name this machine resolves");
    }

    private static void MapOperations(WebApplication app)
    {
        app.MapGet("/health", (HttpContext http, ServerState state) => state.IsReady
            ? HttpOutput.Json(http, new JsonObject { ["status"] = "ok" })
            : HttpOutput.Json(http, HttpOutput.Error(503, state.LoadError ?? "Loading model", "unavailable_error", null, "model_loading"), 503));
        app.MapGet("/metrics", (HttpContext http, ServerState state) =>
        {
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            return http.Response.WriteAsync(state.Metrics.Render(state.RuntimeOrNull?.Engine.Load, state.RuntimeOrNull?.Engine.Cache));
        });
        app.MapGet("/", async (HttpContext http) =>
        {
            http.Response.ContentType = "text/html; charset=utf-8";
            await using var page = Assembly.GetExecutingAssembly().GetManifestResourceStream("Kaiyuan.Server.index.html")!;
            await page.CopyToAsync(http.Response.Body, http.RequestAborted);
        });
    }

    private static Task Authorize(HttpContext http, RequestDelegate next, ServerOptions options)
    {
        if (options.ApiKey is { Length: > 0 } key && IsGuarded(http.Request.Path))
        {
            // OpenAI's clients send a bearer token, Anthropic's an x-api-key header; some send both, one of them a placeholder.
            string header = http.Request.Headers.Authorization.ToString();
            string? bearer = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
            string? apiKey = http.Request.Headers["x-api-key"].FirstOrDefault();
            if (bearer is null && apiKey is null)
                throw new ApiException(401, "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'", code: "invalid_api_key");
            if (!Matches(bearer, key) && !Matches(apiKey, key)) throw new ApiException(401, "invalid API key", code: "invalid_api_key");
        }
        return next(http);
    }

    private static bool Matches(string? given, string key) => given is not null && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
        System.Text.Encoding.UTF8.GetBytes(given), System.Text.Encoding.UTF8.GetBytes(key));

    private static bool IsGuarded(PathString path) =>
        path.StartsWithSegments("/v1") || path.StartsWithSegments("/api") || LlamaCppApi.Paths.Any(p => path.StartsWithSegments(p));

    /// <summary>Request ids, logs, metrics, and the one place every failure becomes an error (OpenAI-, Anthropic- or Ollama-shaped by route).</summary>
    private static async Task Guard(HttpContext http, RequestDelegate next, ServerState state, ILogger log)
    {
        string id = http.Request.Headers["X-Request-Id"].FirstOrDefault() is { Length: > 0 and <= 128 } given ? given : Guid.NewGuid().ToString("N")[..16];
        http.TraceIdentifier = id;
        http.Response.Headers["X-Request-Id"] = id;
        using var scope = log.BeginScope("request {RequestId}", id);
        var clock = Stopwatch.StartNew();
        try
        {
            if (http.Request.ContentLength > state.Options.MaxRequestBodyBytes)
                throw new ApiException(413, $"the request body is larger than {state.Options.MaxRequestBodyBytes} bytes", code: "request_too_large");
            await next(http).ConfigureAwait(false);
            if (!http.Response.HasStarted && http.Response.StatusCode is 404 or 405)
            {
                int status = http.Response.StatusCode;
                await HttpOutput.Json(http, ErrorBody(http, status, status == 404 ? $"no endpoint {http.Request.Method} {http.Request.Path}" : $"method {http.Request.Method} is not allowed on {http.Request.Path}",
                    "invalid_request_error", null, status == 404 ? "not_found" : "method_not_allowed"), status).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its sequence is already cancelled. Nothing can be sent (a started response's status
            // cannot change), so it is only counted and logged as cancelled, in the finally below.
            log.LogDebug("client disconnected: {Type}", e.GetType().Name);
        }
        catch (Exception e)
        {
            var (status, message, type, param, code) = Describe(e);
            if (status >= 500) log.LogError(e, "request failed");
            if (http.RequestAborted.IsCancellationRequested)
            {
                // Gone while failing: nobody to tell.
            }
            else if (!http.Response.HasStarted)
            {
                http.Response.Clear();
                http.Response.Headers["X-Request-Id"] = id;
                await HttpOutput.Json(http, ErrorBody(http, status, message, type, param, code), status).ConfigureAwait(false);
            }
            else
            {
                // Mid-stream: say so in the stream's own framing and end it.
                var error = ErrorBody(http, status, message, type, param, code);
                try
                {
                    if (http.Response.ContentType?.StartsWith("text/event-stream", StringComparison.Ordinal) == true)
                        await (AnthropicApi.Owns(http.Request.Path) ? HttpOutput.Event(http, "error", error) : HttpOutput.Event(http, error)).ConfigureAwait(false);
                    else if (http.Response.ContentType == "application/x-ndjson") await HttpOutput.Line(http, error).ConfigureAwait(false);
                }
                catch (Exception) when (http.RequestAborted.IsCancellationRequested)
                {
                    // Nothing more can be said to a client that is gone.
                }
            }
        }
        finally
        {
            var endpoint = http.GetEndpoint() as RouteEndpoint;
            string route = endpoint?.RoutePattern.RawText ?? "other";
            // 499 (nginx's "client closed request") for a client that left, whatever status had already been sent.
            int status = http.RequestAborted.IsCancellationRequested ? 499 : http.Response.StatusCode;
            state.Metrics.Request(route, status);
            if (state.Options.RequestLogging)
                log.LogInformation("{Method} {Path} {Status} {ElapsedMs:F1} ms", http.Request.Method, http.Request.Path.Value, status, clock.Elapsed.TotalMilliseconds);
        }
    }

    /// <summary>
    /// Ollama clients read <c>{"error":"message"}</c> on its routes, Anthropic's <c>{"type":"error","error":{…}}</c> on
    /// theirs; everything else gets OpenAI's error object.
    /// </summary>
    private static JsonObject ErrorBody(HttpContext http, int status, string message, string type, string? param, string? code)
    {
        // Ollama's and Anthropic's shapes have no "param": the message names the field instead.
        string Named() => param is { Length: > 0 } && !message.Contains(param, StringComparison.Ordinal) ? $"{param}: {message}" : message;
        if (http.Request.Path.StartsWithSegments("/api")) return new JsonObject { ["error"] = Named() };
        if (AnthropicApi.Owns(http.Request.Path)) return AnthropicApi.Error(status, Named());
        return HttpOutput.Error(status, message, type, param, code);
    }

    private static (int Status, string Message, string Type, string? Param, string? Code) Describe(Exception e)
    {
        var api = e switch
        {
            ApiException a => a,
            BadHttpRequestException b => new ApiException(b.StatusCode, b.StatusCode == 413 ? "the request body is too large" : b.Message,
                code: b.StatusCode == 413 ? "request_too_large" : "bad_request"),
            QueueFullException q => new ApiException(429, q.Message, code: "queue_full"),
            SchedulerClosedException c => new ApiException(503, c.Message, code: "shutting_down"),
            ContextOverflowException o => new ApiException(400, o.Message, code: "context_length_exceeded"),
            JsonException j => ApiException.BadRequest($"invalid JSON: {j.Message}", code: "invalid_json"),
            Constraints.GrammarException g => ApiException.BadRequest(g.Message, code: "invalid_grammar"),
            ArgumentException or NotSupportedException or FormatException => ApiException.BadRequest(e.Message),
            _ => new ApiException(500, $"internal error: {e.Message}", code: "internal_error"),
        };
        return (api.Status, api.Message, api.Type, api.Param, api.Code);
    }

    /// <summary>Stops taking requests, lets running streams finish, then stops and frees the model.</summary>
    public async Task StopAsync(CancellationToken cancel = default)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0) return;
        await _app.StopAsync(cancel).ConfigureAwait(false);
        try
        {
            await _loading.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // The load error was logged and reported by /health.
        }
        State.Models.Dispose();
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
