namespace Kaiyuan.Server;

/// <summary>What the endpoints share: the options, the metrics, and the model once it is loaded.</summary>
public sealed class ServerState(ServerOptions options)
{
    private volatile ModelRuntime? _runtime;

    public ServerOptions Options { get; } = options;
    public ServerMetrics Metrics { get; } = new();
    /// <summary>The Responses API's stored responses (for previous_response_id, GET and DELETE).</summary>
    public Api.ResponseStore Responses { get; } = new();
    public DateTimeOffset Started { get; } = DateTimeOffset.UtcNow;
    public string? LoadError { get; set; }
    public bool IsReady => _runtime is not null;
    public ModelRuntime? RuntimeOrNull => _runtime;

    /// <summary>The model, or a 503 while it is still loading.</summary>
    public ModelRuntime Runtime => _runtime ?? throw new ApiException(503,
        LoadError is null ? "the model is still loading" : $"the model failed to load: {LoadError}", code: "model_loading");

    public void SetRuntime(ModelRuntime runtime) => _runtime = runtime;

    /// <summary>Checks a request's "model" against the served one (404 when it names another).</summary>
    public ModelRuntime RuntimeFor(string? requested, string param = "model")
    {
        var runtime = Runtime;
        if (string.IsNullOrEmpty(requested) || Matches(runtime, requested)) return runtime;
        throw new ApiException(404, $"the model '{requested}' does not exist; this server serves '{runtime.Name}'", param, "model_not_found");
    }

    private bool Matches(ModelRuntime runtime, string requested)
    {
        string name = requested.EndsWith(":latest", StringComparison.Ordinal) ? requested[..^":latest".Length] : requested;
        string file = Path.GetFileName(Options.ModelPath);
        return string.Equals(name, runtime.Name, StringComparison.OrdinalIgnoreCase)
            || string.Equals(name, file, StringComparison.OrdinalIgnoreCase)
            || string.Equals(name, Path.GetFileNameWithoutExtension(file), StringComparison.OrdinalIgnoreCase);
    }
}
