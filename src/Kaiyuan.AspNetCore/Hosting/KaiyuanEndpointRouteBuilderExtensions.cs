using System.Reflection;
using System.Text.Json.Nodes;
using Kaiyuan.AspNetCore;
using Kaiyuan.AspNetCore.Api;

namespace Microsoft.AspNetCore.Builder;

/// <summary>
/// Maps Kaiyuan's endpoints into an ASP.NET Core app (after <c>builder.Services.AddKaiyuan(…)</c>). Each method returns
/// the group it mapped, so the app applies its own policies: <c>.RequireAuthorization()</c>, <c>.RequireCors(…)</c>,
/// <c>.RequireRateLimiting(…)</c>, endpoint filters. Every endpoint answers its failures in its API's error shape.
/// </summary>
public static class KaiyuanEndpointRouteBuilderExtensions
{
    /// <summary>OpenAI's API: <c>/v1/chat/completions</c>, <c>/v1/completions</c>, <c>/v1/embeddings</c>, <c>/v1/models</c>, <c>/v1/responses</c>.</summary>
    public static RouteGroupBuilder MapOpenAIEndpoints(this IEndpointRouteBuilder endpoints) =>
        Group(endpoints, ApiShape.OpenAi, g =>
        {
            OpenAiApi.Map(g);
            ResponsesApi.Map(g);
        });

    /// <summary>Ollama's API: <c>/api/chat</c>, <c>/api/generate</c>, <c>/api/embed</c>, <c>/api/tags</c>, <c>/api/show</c>, <c>/api/pull</c>, … .</summary>
    public static RouteGroupBuilder MapOllamaEndpoints(this IEndpointRouteBuilder endpoints) => Group(endpoints, ApiShape.Ollama, OllamaApi.Map);

    /// <summary>Anthropic's Messages API: <c>/v1/messages</c> and <c>/v1/messages/count_tokens</c>.</summary>
    public static RouteGroupBuilder MapAnthropicEndpoints(this IEndpointRouteBuilder endpoints) => Group(endpoints, ApiShape.Anthropic, AnthropicApi.Map);

    /// <summary>llama.cpp server's helpers: <c>/tokenize</c>, <c>/detokenize</c>, <c>/apply-template</c> (OpenAI-shaped errors).</summary>
    public static RouteGroupBuilder MapLlamaCppEndpoints(this IEndpointRouteBuilder endpoints) => Group(endpoints, ApiShape.OpenAi, LlamaCppApi.Map);

    /// <summary>
    /// Everything <c>kaiyuan serve</c> serves: the OpenAI, Anthropic, Ollama and llama.cpp endpoints, <c>/health</c>,
    /// <c>/metrics</c> (Prometheus) and the chat page at <c>/</c>.
    /// </summary>
    public static RouteGroupBuilder MapKaiyuanEndpoints(this IEndpointRouteBuilder endpoints)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var group = endpoints.MapGroup("");
        group.MapOpenAIEndpoints();
        group.MapAnthropicEndpoints();
        group.MapOllamaEndpoints();
        group.MapLlamaCppEndpoints();
        Group(group, ApiShape.OpenAi, MapOperations);
        return group;
    }

    private static RouteGroupBuilder Group(IEndpointRouteBuilder endpoints, ApiShape shape, Action<IEndpointRouteBuilder> map)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        var state = endpoints.ServiceProvider.GetService<ServerState>()
            ?? throw new InvalidOperationException("Kaiyuan's endpoints need its models: call builder.Services.AddKaiyuan(…) first");
        var log = endpoints.ServiceProvider.GetRequiredService<ILoggerFactory>().CreateLogger("kaiyuan.server");
        var group = endpoints.MapGroup("");
        map(group);
        // After the handler (and any endpoint filters) is built: the wrapper sees every failure, whatever the app adds.
        ((IEndpointConventionBuilder)group).Finally(b =>
        {
            if (b.RequestDelegate is { } inner) b.RequestDelegate = ApiErrors.Wrap(inner, shape, state, log);
        });
        return group;
    }

    private static void MapOperations(IEndpointRouteBuilder app)
    {
        app.MapGet("/health", (HttpContext http, ServerState state) => state.IsReady
            ? HttpOutput.Json(http, new JsonObject { ["status"] = "ok" })
            : HttpOutput.Json(http, HttpOutput.Error(503, state.LoadError ?? "Loading model", "unavailable_error", null, "model_loading"), 503));
        app.MapGet("/metrics", (HttpContext http, ServerState state) =>
        {
            http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            return http.Response.WriteAsync(state.Metrics.Render(state.RuntimeOrNull?.CurrentLoad, state.RuntimeOrNull?.Cache, state.RuntimeOrNull?.Speculation, state.RuntimeOrNull?.DecodeThreads));
        });
        app.MapGet("/", async (HttpContext http) =>
        {
            http.Response.ContentType = "text/html; charset=utf-8";
            await using var page = Assembly.GetExecutingAssembly().GetManifestResourceStream("Kaiyuan.AspNetCore.index.html")!;
            await page.CopyToAsync(http.Response.Body, http.RequestAborted);
        });
    }
}
