using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Inference;
using Kaiyuan.Scheduling;
using Microsoft.AspNetCore.Http.Features;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>Whose error object a route answers with.</summary>
internal enum ApiShape
{
    /// <summary><c>{"error":{"message","type","param","code"}}</c> (also llama.cpp's helpers, health and metrics).</summary>
    OpenAi,
    /// <summary><c>{"error":"message"}</c>.</summary>
    Ollama,
    /// <summary><c>{"type":"error","error":{"type","message"}}</c>.</summary>
    Anthropic,
}

/// <summary>
/// Where every failure becomes an error in its API's shape. Each mapped endpoint is wrapped (<see cref="Wrap"/>), so
/// this works in any ASP.NET Core app, not only in <c>kaiyuan serve</c>'s own pipeline.
/// </summary>
internal static class ApiErrors
{
    /// <summary>The key in <see cref="HttpContext.Items"/> that says a Kaiyuan endpoint ran (and counted the request).</summary>
    public const string EndpointRan = "kaiyuan.endpoint";

    /// <summary>The shape a path's clients expect when no endpoint says (<c>kaiyuan serve</c>'s own 401, 404, 413).</summary>
    public static ApiShape ShapeOf(PathString path) =>
        path.StartsWithSegments("/api") ? ApiShape.Ollama : AnthropicApi.Owns(path) ? ApiShape.Anthropic : ApiShape.OpenAi;

    /// <summary>
    /// Wraps an endpoint: checks the body size, turns its failures into <paramref name="shape"/>'s errors (in a stream's own
    /// framing once it has started) and counts it in the metrics.
    /// </summary>
    public static RequestDelegate Wrap(RequestDelegate inner, ApiShape shape, ServerState state, ILogger log) => async http =>
    {
        http.Items[EndpointRan] = true;
        try
        {
            long max = state.Options.MaxRequestBodyBytes;
            if (http.Request.ContentLength > max)
                throw new RequestException(413, $"the request body is larger than {max} bytes", code: "request_too_large");
            if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit && (limit.MaxRequestBodySize is null || limit.MaxRequestBodySize > max))
                limit.MaxRequestBodySize = max;
            await inner(http).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await WriteAsync(http, shape, e, log).ConfigureAwait(false);
        }
        finally
        {
            state.Metrics.Request(Route(http), Status(http));
        }
    };

    /// <summary>The route a request is counted under in the metrics.</summary>
    public static string Route(HttpContext http) => (http.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "other";

    /// <summary>The status counted and logged: 499 (nginx's "client closed request") for a client that left, whatever had been sent.</summary>
    public static int Status(HttpContext http) => http.RequestAborted.IsCancellationRequested ? 499 : http.Response.StatusCode;

    /// <summary>Answers a failure: a JSON error before the response started, an error event or line in a started stream.</summary>
    public static async Task WriteAsync(HttpContext http, ApiShape shape, Exception e, ILogger log)
    {
        if (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its sequence is already cancelled. Nothing can be sent (a started response's status
            // cannot change), so it is only counted and logged as cancelled.
            log.LogDebug("client disconnected: {Type}", e.GetType().Name);
            return;
        }
        var api = Describe(e);
        if (api.Status >= 500) log.LogError(e, "request failed");
        var error = Body(shape, api.Status, api.Message, api.Type, api.Param, api.Code);
        if (!http.Response.HasStarted)
        {
            string? id = http.Response.Headers["X-Request-Id"].FirstOrDefault();
            http.Response.Clear();
            if (id is not null) http.Response.Headers["X-Request-Id"] = id;
            await HttpOutput.Json(http, error, api.Status).ConfigureAwait(false);
            return;
        }
        // Mid-stream: say so in the stream's own framing and end it.
        try
        {
            if (http.Response.ContentType?.StartsWith("text/event-stream", StringComparison.Ordinal) == true)
                await (shape == ApiShape.Anthropic ? HttpOutput.Event(http, "error", error) : HttpOutput.Event(http, error)).ConfigureAwait(false);
            else if (http.Response.ContentType == "application/x-ndjson") await HttpOutput.Line(http, error).ConfigureAwait(false);
        }
        catch (Exception) when (http.RequestAborted.IsCancellationRequested)
        {
            // Nothing more can be said to a client that is gone.
        }
    }

    /// <summary>
    /// Ollama clients read <c>{"error":"message"}</c>, Anthropic's <c>{"type":"error","error":{…}}</c>; everything else
    /// gets OpenAI's error object.
    /// </summary>
    public static JsonObject Body(ApiShape shape, int status, string message, string type, string? param, string? code)
    {
        // Ollama's and Anthropic's shapes have no "param": the message names the field instead.
        string Named() => param is { Length: > 0 } && !message.Contains(param, StringComparison.Ordinal) ? $"{param}: {message}" : message;
        return shape switch
        {
            ApiShape.Ollama => new JsonObject { ["error"] = Named() },
            ApiShape.Anthropic => AnthropicApi.Error(status, Named()),
            _ => HttpOutput.Error(status, message, type, param, code),
        };
    }

    public static RequestException Describe(Exception e) => e switch
    {
        RequestException a => a,
        BadHttpRequestException b => new RequestException(b.StatusCode, b.StatusCode == 413 ? "the request body is too large" : b.Message,
            code: b.StatusCode == 413 ? "request_too_large" : "bad_request"),
        QueueFullException q => new RequestException(429, q.Message, code: "queue_full"),
        SchedulerClosedException c => new RequestException(503, c.Message, code: "shutting_down"),
        ContextOverflowException o => new RequestException(400, o.Message, code: "context_length_exceeded"),
        JsonException j => RequestException.BadRequest($"invalid JSON: {j.Message}", code: "invalid_json"),
        Constraints.GrammarException g => RequestException.BadRequest(g.Message, code: "invalid_grammar"),
        ArgumentException or NotSupportedException or FormatException => RequestException.BadRequest(e.Message),
        _ => new RequestException(500, $"internal error: {e.Message}", code: "internal_error"),
    };
}
