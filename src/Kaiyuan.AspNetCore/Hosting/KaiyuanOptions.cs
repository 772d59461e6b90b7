namespace Kaiyuan.AspNetCore;

/// <summary>
/// What <c>builder.Services.AddKaiyuan(o => …)</c> can be told: the models and how they run. The app owns everything
/// HTTP (addresses, TLS, authentication, CORS, rate limits, logging, shutdown timeout), so those settings of
/// <see cref="ServerOptions"/> are not here.
/// </summary>
public sealed class KaiyuanOptions
{
    /// <summary>The GGUF file served (the default model when <see cref="Models"/> lists more).</summary>
    public string? ModelPath { get; set; }
    /// <summary>The model's name in the API (default: the file name without .gguf).</summary>
    public string? Alias { get; set; }
    /// <summary>Every model served, the default first: a request's "model" picks one, loaded on demand. Empty: <see cref="ModelPath"/> alone.</summary>
    public IList<ServedModel> Models { get; } = [];
    /// <inheritdoc cref="ServerOptions.MaxModels"/>
    public int MaxModels { get; set; }
    /// <inheritdoc cref="ServerOptions.KeepAlive"/>
    public TimeSpan? KeepAlive { get; set; }
    /// <inheritdoc cref="ServerOptions.MemoryBudgetBytes"/>
    public long? MemoryBudgetBytes { get; set; }
    /// <summary>Sequences decoded together (slots) per model.</summary>
    public int Parallel { get; set; } = 4;
    /// <inheritdoc cref="ModelOptions.ContextSize"/>
    public int ContextSize { get; set; }
    /// <summary>Worker threads each model computes with (values below 1 count as 1); the processor count by default.</summary>
    public int Threads { get; set; } = Environment.ProcessorCount;
    /// <inheritdoc cref="ModelOptions.CacheType"/>
    public Gguf.GgmlType CacheType { get; set; } = Gguf.GgmlType.F32;
    /// <inheritdoc cref="ModelOptions.CacheRamMiB"/>
    public long CacheRamMiB { get; set; } = -1;
    /// <inheritdoc cref="ModelOptions.PromptCacheDir"/>
    public string? PromptCacheDir { get; set; }
    /// <inheritdoc cref="ModelOptions.PromptCacheMaxMiB"/>
    public long PromptCacheMaxMiB { get; set; } = ModelOptions.DefaultPromptCacheMaxMiB;
    /// <summary>A Jinja chat template file used instead of the one in the GGUF (<c>tokenizer.chat_template</c>); null: the model's own.</summary>
    public string? ChatTemplateFile { get; set; }
    /// <summary>Bodies larger than this get 413 in the API's error shape (the app's own Kestrel limit applies too).</summary>
    public long MaxRequestBodyBytes { get; set; } = 8 * 1024 * 1024;
    /// <inheritdoc cref="ModelOptions.MaxQueue"/>
    public int MaxQueue { get; set; } = 64;
    /// <inheritdoc cref="ModelOptions.GrammarTimeout"/>
    public TimeSpan GrammarTimeout { get; set; } = TimeSpan.FromSeconds(10);
    /// <inheritdoc cref="ServerOptions.StreamKeepAlive"/>
    public TimeSpan StreamKeepAlive { get; set; } = TimeSpan.FromSeconds(5);
    /// <inheritdoc cref="ServerOptions.StoreRoot"/>
    public string? StoreRoot { get; set; }
    /// <inheritdoc cref="ServerOptions.Hub"/>
    public Hub.HubOptions? Hub { get; set; }

    /// <summary>The equivalent <see cref="ServerOptions"/> (what the endpoints read).</summary>
    internal ServerOptions ToServerOptions()
    {
        string path = ModelPath ?? (Models.Count > 0 ? Models[0].Path
            : throw new InvalidOperationException("AddKaiyuan: set ModelPath (or Models) to the GGUF file to serve"));
        return new ServerOptions
        {
            ModelPath = path,
            Alias = Alias,
            Models = [.. Models],
            MaxModels = MaxModels,
            KeepAlive = KeepAlive,
            MemoryBudgetBytes = MemoryBudgetBytes,
            Parallel = Parallel,
            ContextSize = ContextSize,
            Threads = Threads,
            CacheType = CacheType,
            CacheRamMiB = CacheRamMiB,
            PromptCacheDir = PromptCacheDir,
            PromptCacheMaxMiB = PromptCacheMaxMiB,
            ChatTemplateFile = ChatTemplateFile,
            MaxRequestBodyBytes = MaxRequestBodyBytes,
            MaxQueue = MaxQueue,
            GrammarTimeout = GrammarTimeout,
            StreamKeepAlive = StreamKeepAlive,
            StoreRoot = StoreRoot,
            Hub = Hub,
            // The app logs its requests as it likes; Kaiyuan's own request lines are kaiyuan serve's.
            RequestLogging = false,
        };
    }
}
