using System.Diagnostics;
using Kaiyuan.AspNetCore.Api;
using Kaiyuan.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Kaiyuan.AspNetCore;

/// <summary>
/// The HTTP server: Kestrel with the OpenAI (chat, completions, Responses), Anthropic and Ollama endpoints, health,
/// metrics and the chat page. It starts listening at once; one model loads in the background (<c>/health</c> answers
/// 503 until it is ready), several load on demand. This is <c>kaiyuan serve</c>; an application with its own
/// ASP.NET Core host maps the same endpoints with <c>AddKaiyuan</c> and <c>MapKaiyuanEndpoints</c> instead.
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

    internal ServerState State { get; }

    /// <summary>The models served, the default first (one, named after its file, when only a path was given).</summary>
    public IReadOnlyList<ServedModel> Models => State.Models.Models;

    /// <summary>How long a model stays loaded after its last request when the request does not say.</summary>
    public TimeSpan DefaultKeepAlive => State.Models.DefaultKeepAlive;

    /// <summary>The default model, once loaded (after <see cref="WaitReadyAsync"/>).</summary>
    /// <exception cref="RequestException">It is not loaded (yet), or failed to load (status 503).</exception>
    public ModelRuntime Runtime => State.Runtime;
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
    internal static async Task<KaiyuanServer> StartAsync(ServerOptions options, Func<ServedModel, ModelRuntime> load, CancellationToken cancel = default)
    {
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
        // The same pieces any ASP.NET Core app hosts (AddKaiyuan, MapKaiyuanEndpoints), with kaiyuan serve's own
        // request ids, request log, API key and CORS around them.
        builder.Services.AddKaiyuan(options, load);
        if (options.CorsOrigins.Count > 0) builder.Services.AddCors();

        var app = builder.Build();
        var state = app.Services.GetRequiredService<ServerState>();
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
        app.MapKaiyuanEndpoints();

        await app.StartAsync(cancel).ConfigureAwait(false);
        var address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/");
        // The default model started loading when the app started (KaiyuanLifetime); with several, they load on demand.
        return new KaiyuanServer(app, state, app.Services.GetRequiredService<KaiyuanLifetime>().Ready, address);
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

    private static Task Authorize(HttpContext http, RequestDelegate next, ServerOptions options)
    {
        if (options.ApiKey is { Length: > 0 } key && IsGuarded(http.Request.Path))
        {
            // OpenAI's clients send a bearer token, Anthropic's an x-api-key header; some send both, one of them a placeholder.
            string header = http.Request.Headers.Authorization.ToString();
            string? bearer = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
            string? apiKey = http.Request.Headers["x-api-key"].FirstOrDefault();
            if (bearer is null && apiKey is null)
                throw new RequestException(401, "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'", code: "invalid_api_key");
            if (!Matches(bearer, key) && !Matches(apiKey, key)) throw new RequestException(401, "invalid API key", code: "invalid_api_key");
        }
        return next(http);
    }

    private static bool Matches(string? given, string key) => given is not null && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
        System.Text.Encoding.UTF8.GetBytes(given), System.Text.Encoding.UTF8.GetBytes(key));

    private static bool IsGuarded(PathString path) =>
        path.StartsWithSegments("/v1") || path.StartsWithSegments("/api") || LlamaCppApi.Paths.Any(p => path.StartsWithSegments(p));

    /// <summary>
    /// Request ids, the request log, and errors for what no endpoint answered (no route, the API key, a body too large),
    /// shaped by route; the endpoints answer their own failures and count themselves (<see cref="ApiErrors.Wrap"/>).
    /// </summary>
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
                throw new RequestException(413, $"the request body is larger than {state.Options.MaxRequestBodyBytes} bytes", code: "request_too_large");
            await next(http).ConfigureAwait(false);
            if (!http.Response.HasStarted && http.Response.StatusCode is 404 or 405)
            {
                int status = http.Response.StatusCode;
                await HttpOutput.Json(http, ApiErrors.Body(ApiErrors.ShapeOf(http.Request.Path), status,
                    status == 404 ? $"no endpoint {http.Request.Method} {http.Request.Path}" : $"method {http.Request.Method} is not allowed on {http.Request.Path}",
                    "invalid_request_error", null, status == 404 ? "not_found" : "method_not_allowed"), status).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            await ApiErrors.WriteAsync(http, ApiErrors.ShapeOf(http.Request.Path), e, log).ConfigureAwait(false);
        }
        finally
        {
            int status = ApiErrors.Status(http);
            if (!http.Items.ContainsKey(ApiErrors.EndpointRan)) state.Metrics.Request(ApiErrors.Route(http), status);
            if (state.Options.RequestLogging)
                log.LogInformation("{Method} {Path} {Status} {ElapsedMs:F1} ms", http.Request.Method, http.Request.Path.Value, status, clock.Elapsed.TotalMilliseconds);
        }
    }

    /// <summary>Stops taking requests, lets running streams finish, then stops and frees the model.</summary>
    public async Task StopAsync(CancellationToken cancel = default)
    {
        if (Interlocked.Exchange(ref _stopped, 1) != 0) return;
        // The models are freed once the app has stopped (KaiyuanLifetime), after the running streams have finished.
        await _app.StopAsync(cancel).ConfigureAwait(false);
    }

    /// <summary>Stops the server (as <see cref="StopAsync"/>) and frees its models.</summary>
    public async ValueTask DisposeAsync()
    {
        await StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
