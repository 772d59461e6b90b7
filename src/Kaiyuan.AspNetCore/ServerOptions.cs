namespace Kaiyuan.AspNetCore;

/// <summary>Everything <c>kaiyuan serve</c> can be told.</summary>
public sealed record ServerOptions : ModelOptions
{
    /// <summary>The address to listen on: an IP address, <c>localhost</c>, or a name this machine resolves.</summary>
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>The port to listen on; 0 picks a free one (tests, benchmarks).</summary>
    public int Port { get; init; } = 8080;
    /// <summary>
    /// Every model served, the default (<see cref="ModelOptions.ModelPath"/>) first: a request's "model" picks one, loaded on demand.
    /// Empty: <see cref="ModelOptions.ModelPath"/> alone, named <see cref="ModelOptions.Alias"/>.
    /// </summary>
    public IReadOnlyList<ServedModel> Models { get; init; } = [];
    /// <summary>Models loaded at once at most (0: no limit); loading one more unloads the least recently used idle one.</summary>
    public int MaxModels { get; init; }
    /// <summary>
    /// How long a model stays loaded after its last request when the request sets no keep_alive (<see cref="KeepAlive.Forever"/>:
    /// until the server stops); null: forever with one model, 5 minutes (as Ollama) with several.
    /// </summary>
    public TimeSpan? KeepAlive { get; init; }
    /// <summary>
    /// Bytes the loaded models may take together (weights and KV budget, as estimated before loading); null: the memory
    /// this process may use, with several models (one alone is not checked). A model that cannot fit beside the busy ones gets 503.
    /// </summary>
    public long? MemoryBudgetBytes { get; init; }
    /// <summary>A key requests must carry (<c>Authorization: Bearer KEY</c> or Anthropic's <c>x-api-key</c>); null: none.</summary>
    public string? ApiKey { get; init; }
    /// <summary>Origins allowed by CORS ("*" for any); none: CORS off.</summary>
    public IReadOnlyList<string> CorsOrigins { get; init; } = [];
    /// <summary>The largest request body taken, in bytes (413 beyond).</summary>
    public long MaxRequestBodyBytes { get; init; } = 8 * 1024 * 1024;
    /// <summary>How long Ctrl-C waits for running streams to finish.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>
    /// How often a stream whose first token is still to come (queued, or a long prompt prefilling) says it is alive: an
    /// SSE comment, or Ollama's empty not-done object. Clients and proxies that hear nothing for long give up.
    /// </summary>
    public TimeSpan StreamKeepAlive { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>
    /// The model store Ollama's <c>/api/pull</c>, <c>/api/delete</c> and <c>/api/copy</c> work on; null: <c>KAIYUAN_HOME</c>,
    /// else <c>~/.kaiyuan</c> (<c>kaiyuan serve --store</c> sets it).
    /// </summary>
    public string? StoreRoot { get; init; }
    /// <summary>The Hugging Face Hub <c>/api/pull</c> downloads from; null: <c>HF_ENDPOINT</c> and <c>HF_TOKEN</c>, else huggingface.co.</summary>
    public Hub.HubOptions? Hub { get; init; }
    /// <summary>Log each request (off in tests).</summary>
    public bool RequestLogging { get; init; } = true;
}
