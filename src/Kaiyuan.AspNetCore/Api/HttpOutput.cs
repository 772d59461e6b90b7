using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>Writing JSON bodies, Server-Sent Events and NDJSON lines.</summary>
internal static class HttpOutput
{
    private static readonly JsonSerializerOptions Compact = new() { WriteIndented = false, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Serialize(JsonNode node) => node.ToJsonString(Compact);

    public static Task Json(HttpContext http, JsonNode node, int status = 200)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json; charset=utf-8";
        return http.Response.WriteAsync(Serialize(node), Encoding.UTF8, http.RequestAborted);
    }

    public static JsonObject Error(int status, string message, string type, string? param, string? code) => new()
    {
        ["error"] = new JsonObject
        {
            ["message"] = message,
            ["type"] = type,
            ["param"] = param,
            ["code"] = code ?? (JsonNode?)status.ToString(System.Globalization.CultureInfo.InvariantCulture),
        },
    };

    public static void StartEventStream(HttpContext http)
    {
        http.Response.StatusCode = 200;
        http.Response.ContentType = "text/event-stream; charset=utf-8";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
    }

    public static Task Event(HttpContext http, JsonNode node) => Send(http, "data: " + Serialize(node) + "\n\n");

    /// <summary>
    /// A named event: Anthropic's and the Responses API's streams give each event's type on an <c>event:</c> line, which
    /// their clients dispatch on.
    /// </summary>
    public static Task Event(HttpContext http, string name, JsonNode node) => Send(http, "event: " + name + "\ndata: " + Serialize(node) + "\n\n");

    public static Task Done(HttpContext http) => Send(http, "data: [DONE]\n\n");

    /// <summary>An SSE comment: clients skip it, but it shows the connection is alive while the model has nothing to say yet.</summary>
    public static Task KeepAlive(HttpContext http) => Send(http, ": keep-alive\n\n");

    public static void StartNdjson(HttpContext http)
    {
        http.Response.StatusCode = 200;
        http.Response.ContentType = "application/x-ndjson";
    }

    public static Task Line(HttpContext http, JsonNode node) => Send(http, Serialize(node) + "\n");

    /// <summary>Writes and flushes at once: a stream's client reads each event as it is produced.</summary>
    private static async Task Send(HttpContext http, string text)
    {
        await http.Response.WriteAsync(text, Encoding.UTF8, http.RequestAborted).ConfigureAwait(false);
        await http.Response.Body.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }
}
