using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Scheduling;
using Kaiyuan.Templates;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Chat;

/// <summary>Facts about the served model that the API reports.</summary>
internal sealed record ModelDescription(string Architecture, string FileType, long FileSize, long ParameterCount, int ContextLength, int EmbeddingLength,
    string? ChatTemplate, IReadOnlyDictionary<string, object> Info);

/// <summary>The loaded model and everything needed to serve it: codec, chat formatter, scheduler.</summary>
internal sealed class ModelRuntime : IDisposable
{
    private readonly IDisposable? _owned;

    public ModelRuntime(string name, ITextCodec codec, IPromptFormatter formatter, IGenerationEngine engine, ModelDescription description, IDisposable? owned = null)
    {
        Name = name;
        Codec = codec;
        Formatter = formatter;
        Engine = engine;
        Description = description;
        _owned = owned;
    }

    public string Name { get; }
    public ITextCodec Codec { get; }
    public IPromptFormatter Formatter { get; }
    public IGenerationEngine Engine { get; }
    public ModelDescription Description { get; }
    public DateTimeOffset LoadedAt { get; } = DateTimeOffset.UtcNow;

    /// <summary>Loads a GGUF model and starts its scheduler.</summary>
    public static ModelRuntime Load(ModelOptions options)
    {
        var model = ModelLoader.Load(options.ModelPath);
        // The scheduler's own pool: a pool serves one caller at a time.
        var pool = new WorkerPool(Math.Max(1, options.Threads));
        PromptCacheStore? store = null;
        try
        {
            // The model's fingerprint is computed once, here, and only when the prompt cache is asked for.
            if (options.PromptCacheDir is { } dir)
                store = PromptCacheStore.Open(dir, model, options.CacheType, options.PromptCacheMaxMiB << 20,
                    message => Console.Error.WriteLine($"kaiyuan: {message}"));
            var meta = model.File.Metadata;
            Tokenizer tokenizer;
            try
            {
                tokenizer = Tokenizer.FromGguf(meta);
            }
            catch (GgufMetadataException e)
            {
                throw new InvalidDataException($"{Path.GetFileName(options.ModelPath)}: {e.Message}", e);
            }
            var codec = new TokenizerCodec(tokenizer);
            string? template = options.ChatTemplateFile is { } file ? File.ReadAllText(file) : meta.GetStringOrNull("tokenizer.chat_template");
            var formatter = PromptFormatters.For(template, options.ChatTemplateFile is not null, codec.TokenText(codec.BosId), codec.TokenText(codec.EosId));
            string arch = model.File.Architecture;
            var pooling = meta.GetInteger($"{arch}.pooling_type", 1) switch
            {
                2 => EmbeddingPooling.Cls,
                3 => EmbeddingPooling.Last,
                _ => EmbeddingPooling.Mean,
            };
            var engine = new ContinuousBatchScheduler(model, new SchedulerOptions
            {
                Slots = Math.Max(1, options.Parallel),
                ContextLength = options.ContextSize,
                MaxQueue = options.MaxQueue,
                Pooling = pooling,
                CacheType = options.CacheType,
                CacheBytes = options.CacheRamMiB < 0 ? -1 : options.CacheRamMiB << 20,
                PromptCache = store,
            }, pool);
            var description = Describe(model.File, engine.ContextLength, template);
            string name = options.Alias ?? Path.GetFileNameWithoutExtension(options.ModelPath);
            return new ModelRuntime(name, codec, formatter, engine, description, new Owned(engine, store, model, pool));
        }
        catch
        {
            store?.Dispose();
            pool.Dispose();
            model.Dispose();
            throw;
        }
    }

    private static ModelDescription Describe(GgufFile file, int contextLength, string? template)
    {
        var config = ModelConfig.FromMetadata(file.Metadata);
        string arch = file.Architecture;
        long parameters = file.Tensors.Sum(t => t.ElementCount);
        var info = new Dictionary<string, object>
        {
            ["general.architecture"] = arch,
            [$"{arch}.context_length"] = config.ContextLength,
            [$"{arch}.embedding_length"] = config.EmbeddingLength,
            [$"{arch}.block_count"] = config.BlockCount,
            ["general.parameter_count"] = parameters,
        };
        return new ModelDescription(arch, FileType(file), file.FileSize, parameters, contextLength, config.EmbeddingLength, template, info);
    }

    /// <summary>
    /// What a model file says about itself without loading it (its GGUF header only), and the memory it would take
    /// loaded: the weights, plus its KV budget (<c>--cache-ram</c>, or every slot at the full context, at least one).
    /// </summary>
    public static (ModelDescription Description, long Bytes) Inspect(string path, ModelOptions options)
    {
        using var file = GgufFile.Open(path);
        var config = ModelConfig.FromMetadata(file.Metadata);
        int context = options.ContextSize > 0 ? options.ContextSize : Math.Min(config.ContextLength, 4096);
        string? template = options.ChatTemplateFile is { } templateFile ? File.ReadAllText(templateFile) : file.Metadata.GetStringOrNull("tokenizer.chat_template");
        // Bytes per cached token as the scheduler sizes its pool: the attention blocks' own rows (an MLA latent is far
        // smaller than its heads would be). Building the model maps the file; it reads no weights.
        long perToken;
        try
        {
            perToken = ModelLoader.Load(file).CacheRowWidths.Sum(w => Gguf.GgmlTypeInfo.RowBytes(options.CacheType, w));
        }
        catch (NotSupportedException)
        {
            perToken = 0; // loading it says why
        }
        long perContext = perToken * context;
        long everySlot = perContext * Math.Max(1, options.Parallel);
        long kv = options.CacheRamMiB switch
        {
            > 0 => Math.Max(options.CacheRamMiB << 20, perContext),
            0 => everySlot,
            // The scheduler's own cap for a pool sized from free memory.
            _ => Math.Min(everySlot, Math.Max(perContext, Math.Min(8L << 30, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4))),
        };
        return (Describe(file, context, template), file.FileSize + kv);
    }

    /// <summary>Refuses a prompt that leaves no room in the context for an answer.</summary>
    public void CheckContext(int promptTokens, string param)
    {
        if (promptTokens >= Engine.ContextLength)
            throw RequestException.BadRequest($"the prompt has {promptTokens} tokens, which does not fit the context of {Engine.ContextLength} tokens",
                param, "context_length_exceeded");
    }

    private static string FileType(GgufFile file) =>
        file.TypeSummary().OrderByDescending(s => s.Bytes).Select(s => s.Type.ToString().ToUpperInvariant()).FirstOrDefault() ?? "unknown";

    public void Dispose() => _owned?.Dispose();

    private sealed class Owned(ContinuousBatchScheduler engine, PromptCacheStore? store, TransformerModel model, WorkerPool pool) : IDisposable
    {
        public void Dispose()
        {
            engine.Dispose();
            store?.Dispose();
            pool.Dispose();
            model.Dispose();
        }
    }
}

/// <summary>Picks the prompt formatter for a model's chat template.</summary>
internal static class PromptFormatters
{
    /// <summary>
    /// The Jinja template when there is one (a file given explicitly must compile); ChatML, as llama-server, when the model
    /// has none or its own template does not compile.
    /// </summary>
    public static IPromptFormatter For(string? template, bool explicitFile, string bosToken, string eosToken)
    {
        if (string.IsNullOrWhiteSpace(template)) return new ChatMlFormatter();
        try
        {
            return new JinjaPromptFormatter(template, bosToken, eosToken);
        }
        catch (TemplateException e) when (!explicitFile)
        {
            Console.Error.WriteLine($"kaiyuan: the model's chat template does not compile ({e.Message}); using ChatML");
            return new ChatMlFormatter();
        }
    }
}
