using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.Server.Api;

/// <summary>Writing JSON bodies, Server-Sent Events and NDJSON lines.</summary>
public static class HttpOutput
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

    public static async Task Event(HttpContext http, JsonNode node)
    {
        await http.Response.WriteAsync("data: " + Serialize(node) + "\n\n", Encoding.UTF8, http.RequestAborted).ConfigureAwait(false);
        await http.Response.Body.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    public static async Task Done(HttpContext http)
    {
        await http.Response.WriteAsync("data: [DONE]\n\n", Encoding.UTF8, http.RequestAborted).ConfigureAwait(false);
        await http.Response.Body.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }

    public static void StartNdjson(HttpContext http)
    {
        http.Response.StatusCode = 200;
        http.Response.ContentType = "application/x-ndjson";
    }

    public static async Task Line(HttpContext http, JsonNode node)
    {
        await http.Response.WriteAsync(Serialize(node) + "\n", Encoding.UTF8, http.RequestAborted).ConfigureAwait(false);
        await http.Response.Body.FlushAsync(http.RequestAborted).ConfigureAwait(false);
    }
}
