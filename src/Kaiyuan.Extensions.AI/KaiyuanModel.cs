using Kaiyuan.Gguf;
using Kaiyuan.Chat;
using Kaiyuan.Store;
using Microsoft.Extensions.AI;

namespace Kaiyuan.Extensions.AI;

/// <summary>
/// A GGUF model loaded in this process, with its continuous-batching scheduler: one instance serves any number of
/// concurrent chat and embedding callers (<see cref="AsChatClient"/>, <see cref="AsEmbeddingGenerator"/>). Disposing it
/// stops the scheduler and unmaps the file.
/// </summary>
public sealed class KaiyuanModel : IDisposable
{
    private int _disposed;

    private KaiyuanModel(ModelRuntime runtime, KaiyuanModelOptions options, string path)
    {
        Runtime = runtime;
        GrammarTimeout = options.GrammarTimeout;
        FilePath = path;
    }

    /// <summary>The model's id in responses and metadata.</summary>
    public string ModelId => Runtime.Name;

    /// <summary>The GGUF file the model was loaded from.</summary>
    public string FilePath { get; }

    /// <summary>The context window of each sequence, in tokens.</summary>
    public int ContextLength => Runtime.ContextLength;

    /// <summary>The length of the model's embedding vectors.</summary>
    public int EmbeddingLength => Runtime.Description.EmbeddingLength;

    internal ModelRuntime Runtime { get; }
    internal TimeSpan GrammarTimeout { get; }

    /// <summary>Loads a model (a GGUF path or a store reference) with default options.</summary>
    public static KaiyuanModel Load(string model) => Load(new KaiyuanModelOptions { Model = model });

    /// <summary>Loads a model; throws <see cref="FileNotFoundException"/> for a path or reference that names nothing,
    /// <see cref="Gguf.GgufFormatException"/> for a malformed file, <see cref="InvalidDataException"/> (naming the file) for
    /// metadata the model or its tokenizer cannot use, and <see cref="NotSupportedException"/> for an architecture or tensor
    /// type it does not run.</summary>
    public static KaiyuanModel Load(KaiyuanModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrWhiteSpace(options.Model)) throw new ArgumentException("KaiyuanModelOptions.Model names no model (a GGUF path or a store reference)", nameof(options));
        if (options.Threads < 1 || options.Parallel < 1 || options.MaxQueue < 0 || options.ContextLength < 0)
            throw new ArgumentException("Threads and Parallel must be at least 1; MaxQueue and ContextLength not negative", nameof(options));
        var cacheType = options.CacheType.ToLowerInvariant() switch
        {
            "f32" => GgmlType.F32,
            "f16" => GgmlType.F16,
            "q8_0" => GgmlType.Q8_0,
            var other => throw new ArgumentException($"CacheType '{other}' is not f32, f16 or q8_0", nameof(options)),
        };
        var store = options.Store is { } root ? new ModelStore(root) : null;
        string path = ModelReference.Resolve(options.Model, store);
        var runtime = ModelRuntime.Load(new ModelOptions
        {
            LookupDraftTokens = options.LookupDraftTokens,
            DraftModelPath = options.DraftModel is { } draft ? ModelReference.Resolve(draft, store) : null,
            DraftModelTokens = options.DraftMax,
            MtpDraftTokens = options.MultiTokenPrediction ? options.DraftMax : 0,
            ModelPath = path,
            Alias = options.ModelId,
            Threads = options.Threads,
            Parallel = options.Parallel,
            MaxQueue = options.MaxQueue,
            ContextSize = options.ContextLength,
            CacheType = cacheType,
            CacheRamMiB = options.CacheRamMiB,
            PromptCacheDir = options.PromptCacheDirectory,
            ChatTemplateFile = options.ChatTemplateFile,
        });
        return new KaiyuanModel(runtime, options, path);
    }

    /// <summary>Loads a model on a worker thread (loading maps the file and builds the tokenizer: seconds for large models).</summary>
    public static Task<KaiyuanModel> LoadAsync(KaiyuanModelOptions options, CancellationToken cancellationToken = default) =>
        Task.Run(() => Load(options), cancellationToken);

    /// <summary>A chat client over this model; disposing the client leaves the model loaded.</summary>
    public IChatClient AsChatClient() => new KaiyuanChatClient(this);

    /// <summary>An embedding generator over this model; disposing the generator leaves the model loaded.</summary>
    public IEmbeddingGenerator<string, Embedding<float>> AsEmbeddingGenerator() => new KaiyuanEmbeddingGenerator(this);

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Stops the scheduler (running requests end as cancelled) and unmaps the model file.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) Runtime.Dispose();
    }
}
