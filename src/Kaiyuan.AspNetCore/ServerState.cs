namespace Kaiyuan.AspNetCore;

/// <summary>What the endpoints share: the options, the metrics, and the models (loaded on demand by <see cref="Models"/>).</summary>
internal sealed class ServerState(ServerOptions options, Func<ServedModel, ModelRuntime> load)
{
    public ServerOptions Options { get; } = options;
    public ServerMetrics Metrics { get; } = new();
    /// <summary>The Responses API's stored responses (for previous_response_id, GET and DELETE).</summary>
    public Api.ResponseStore Responses { get; } = new();
    public DateTimeOffset Started { get; } = DateTimeOffset.UtcNow;
    public ModelRegistry Models { get; } = new(options, load);
    public string? LoadError => Models.StartupError;
    public bool IsReady => Models.Ready;
    /// <summary>The default model when it is loaded, else another loaded one; null when none is.</summary>
    public ModelRuntime? RuntimeOrNull => Models.AnyLoaded();

    /// <summary>The default model, or a 503 while it is still loading (or not loaded).</summary>
    public ModelRuntime Runtime => Models.DefaultRuntime ?? throw new RequestException(503,
        LoadError is null ? "the model is still loading" : $"the model failed to load: {LoadError}", code: "model_loading");

    /// <summary>
    /// The model a request names (404 when it names none this server serves), loaded if it is not; it stays loaded at
    /// least until the request ends, then for <paramref name="keepAlive"/> (Ollama's keep_alive; null: the server's default).
    /// </summary>
    public async Task<ModelRuntime> RuntimeForAsync(HttpContext http, string? requested, string param = "model", TimeSpan? keepAlive = null) =>
        (await LeaseAsync(http, requested, param, keepAlive).ConfigureAwait(false)).Runtime;

    /// <summary>As <see cref="RuntimeForAsync"/>, with the lease itself (to release it before the request ends).</summary>
    public async Task<ModelRegistry.Lease> LeaseAsync(HttpContext http, string? requested, string param = "model", TimeSpan? keepAlive = null)
    {
        var lease = await Models.AcquireAsync(Models.Find(requested, param), keepAlive, http.RequestAborted).ConfigureAwait(false);
        http.Response.RegisterForDispose(lease);
        return lease;
    }
}
