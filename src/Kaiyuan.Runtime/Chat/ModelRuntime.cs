using System.Text.Json;
using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Scheduling;
using Kaiyuan.Templates;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Chat;

/// <summary>Facts about a model file that an API reports.</summary>
/// <param name="Architecture">The GGUF architecture (<c>qwen3</c>, <c>llama</c>, …).</param>
/// <param name="FileType">The quantization of most of its bytes (<c>Q4_K</c>, <c>F16</c>, …).</param>
/// <param name="FileSize">The file's size in bytes.</param>
/// <param name="ParameterCount">Weights in all its tensors.</param>
/// <param name="ContextLength">The context each sequence gets as loaded (not the trained one).</param>
/// <param name="EmbeddingLength">The width of its hidden states.</param>
/// <param name="ChatTemplate">The Jinja chat template it is served with; null when it has none.</param>
/// <param name="Info">GGUF-style facts (<c>general.architecture</c>, <c>{arch}.context_length</c>, …) for Ollama's model_info.</param>
public sealed record ModelDescription(string Architecture, string FileType, long FileSize, long ParameterCount, int ContextLength, int EmbeddingLength,
    string? ChatTemplate, IReadOnlyDictionary<string, object> Info);

/// <summary>
/// A loaded model and everything needed to serve it: its tokenizer, its chat template and output parser, and the
/// continuous-batching scheduler that runs many requests over it at once. What the OpenAI and Ollama endpoints, the
/// Microsoft.Extensions.AI client and the <c>kaiyuan</c> tool all build on; start a request with
/// <see cref="ChatGeneration.StartAsync"/> or <see cref="TextGeneration.Start"/>.
/// </summary>
public sealed class ModelRuntime : IDisposable
{
    private readonly IDisposable? _owned;

    internal ModelRuntime(string name, ITextCodec codec, IPromptFormatter formatter, IGenerationEngine engine, ModelDescription description, IDisposable? owned = null)
    {
        Name = name;
        Codec = codec;
        Formatter = formatter;
        Engine = engine;
        Description = description;
        _owned = owned;
    }

    /// <summary>The model's name in an API (<see cref="ModelOptions.Alias"/>, or the file name without .gguf).</summary>
    public string Name { get; }
    internal ITextCodec Codec { get; }
    internal IPromptFormatter Formatter { get; }
    internal IGenerationEngine Engine { get; }
    /// <summary>Facts about the model file.</summary>
    public ModelDescription Description { get; }
    /// <summary>When it was loaded.</summary>
    public DateTimeOffset LoadedAt { get; } = DateTimeOffset.UtcNow;

    /// <summary>The chat format prompts are rendered in: the model's Jinja template, or ChatML when it has none.</summary>
    public string ChatFormat => Formatter.Name;

    /// <summary>Tokens each sequence may hold, prompt and answer together.</summary>
    public int ContextLength => Engine.ContextLength;

    /// <summary>The number of token ids (ids run from 0 to one less).</summary>
    public int VocabSize => Engine.VocabSize;

    /// <summary>The scheduler's queue and busy slots now.</summary>
    public SchedulerLoad CurrentLoad => Engine.Load;

    /// <summary>The KV pool and prefix cache now: blocks used, cached and free, hits and evictions so far.</summary>
    public KvCacheReport? Cache => Engine.Cache;

    /// <summary>Speculation so far (<see cref="ModelOptions.LookupDraftTokens"/>, <see cref="ModelOptions.DraftModelPath"/> or <see cref="ModelOptions.MtpDraftTokens"/>): tokens drafted and accepted; null where it is off.</summary>
    public SpeculationReport? Speculation => Engine.Speculation;
    /// <summary>Decode steps so far by the threads they ran on (fewer than <see cref="ModelOptions.Threads"/> where timing showed fewer faster, as beside another busy process).</summary>
    public DecodeThreadsReport? DecodeThreads => Engine.DecodeThreads;

    /// <summary>Token ids for <paramref name="text"/>.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addSpecial">Adds the BOS token where the model asks for one.</param>
    /// <param name="parseSpecial">Reads control-token text such as <c>&lt;|im_start|&gt;</c> as those tokens rather than as plain text.</param>
    public int[] Tokenize(string text, bool addSpecial = true, bool parseSpecial = true) => Codec.Encode(text, addSpecial, parseSpecial);

    /// <summary>The text of token ids (control tokens render as nothing).</summary>
    public string Detokenize(ReadOnlySpan<int> ids) => Codec.Decode(ids);

    /// <summary>The raw bytes a token renders to (part of a UTF-8 character, for a byte token).</summary>
    public byte[] TokenBytes(int id) => Codec.TokenBytes(id);

    /// <summary>The prompt text the model's chat template renders for a conversation and the tools on offer.</summary>
    /// <param name="messages">The conversation so far.</param>
    /// <param name="tools">OpenAI-style tool definitions (<c>{"type":"function","function":{…}}</c>); empty for none.</param>
    /// <param name="addGenerationPrompt">Opens the assistant's turn at the end (false renders the conversation as it stands).</param>
    /// <param name="thinking">The template's reasoning switch (<c>enable_thinking</c>); null keeps its default.</param>
    public string FormatChat(IReadOnlyList<ChatMessage> messages, IReadOnlyList<JsonElement> tools, bool addGenerationPrompt = true, bool? thinking = null) =>
        Formatter.Format(messages, tools, addGenerationPrompt, thinking);

    /// <summary>The control-token spellings the chat format writes its tool calls and reasoning with (shown in the text
    /// given to <see cref="CreateOutputParser"/>); empty when the format is unknown.</summary>
    public IReadOnlyList<string> OutputMarkers => Formatter.OutputFormat?.Markers.ToArray() ?? [];

    /// <summary>A parser that splits the model's output for <paramref name="renderedPrompt"/> into content, reasoning and tool calls.</summary>
    /// <param name="renderedPrompt">The prompt the output answers (it says whether the answer starts inside a reasoning block).</param>
    /// <param name="toolsOffered">Tools were offered, so tool-call syntax is read as calls.</param>
    public IChatOutputParser CreateOutputParser(string renderedPrompt, bool toolsOffered) => Formatter.CreateParser(renderedPrompt, toolsOffered);

    /// <summary>One L2-normalised embedding per input (the final hidden states pooled as the model says), computed in the scheduler's batches.</summary>
    public Task<float[][]> EmbedAsync(IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancel = default) => Engine.EmbedAsync(inputs, cancel);

    /// <summary>Stops accepting requests and waits until every queued and running one has finished (a graceful shutdown).</summary>
    public Task DrainAsync(CancellationToken cancel = default) => Engine.DrainAsync(cancel);

    /// <summary>Loads a GGUF model and starts its scheduler.</summary>
    /// <exception cref="InvalidDataException">The file is not a model this runtime can read.</exception>
    /// <exception cref="NotSupportedException">Its architecture or a tensor type is not supported.</exception>
    public static ModelRuntime Load(ModelOptions options)
    {
        var model = ModelLoader.Load(options.ModelPath);
        // The scheduler's own pool: a pool serves one caller at a time.
        var pool = new WorkerPool(Math.Max(1, options.Threads));
        PromptCacheStore? store = null;
        TransformerModel? draftModel = null;
        try
        {
            Speculative.DraftModel? draft = null;
            if (options.DraftModelPath is { } draftPath)
            {
                if (options.LookupDraftTokens > 0) throw new ArgumentException("choose one kind of speculation: prompt lookup or a draft model");
                draftModel = ModelLoader.Load(draftPath);
                draft = new Speculative.DraftModel(draftModel, model, Math.Max(1, options.DraftModelTokens));
            }
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
                LookupDraft = options.LookupDraftTokens,
                DraftModel = draft,
                MtpDraft = options.MtpDraftTokens,
                BackgroundPrefill = options.LowPriorityPrefill,
            }, pool);
            var description = Describe(model.File, engine.ContextLength, template);
            string name = options.Alias ?? Path.GetFileNameWithoutExtension(options.ModelPath);
            return new ModelRuntime(name, codec, formatter, engine, description, new Owned(engine, store, model, pool, draftModel));
        }
        catch
        {
            store?.Dispose();
            pool.Dispose();
            model.Dispose();
            draftModel?.Dispose();
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
    /// <param name="path">The GGUF file.</param>
    /// <param name="options">How it would be loaded (context, slots, cache type and size).</param>
    public static (ModelDescription Description, long Bytes) Inspect(string path, ModelOptions options)
    {
        using var file = GgufFile.Open(path);
        var config = ModelConfig.FromMetadata(file.Metadata);
        int context = options.ContextSize > 0 ? options.ContextSize : Math.Min(config.ContextLength, 4096);
        string? template = options.ChatTemplateFile is { } templateFile ? File.ReadAllText(templateFile) : file.Metadata.GetStringOrNull("tokenizer.chat_template");
        // Bytes per cached token as the scheduler sizes its pool: the attention blocks' own rows (an MLA latent is far
        // smaller than its heads would be). Building the model maps the file; it reads no weights (none are copied).
        long perToken;
        try
        {
            perToken = ModelLoader.Load(file, copyWeights: false).CacheRowWidths.Sum(w => Gguf.GgmlTypeInfo.RowBytes(options.CacheType, w));
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
    /// <param name="promptTokens">The prompt's length in tokens.</param>
    /// <param name="param">The request field that holds the prompt, named by the error.</param>
    /// <exception cref="RequestException">400 <c>context_length_exceeded</c>.</exception>
    public void CheckContext(int promptTokens, string param)
    {
        if (promptTokens >= Engine.ContextLength)
            throw RequestException.BadRequest($"the prompt has {promptTokens} tokens, which does not fit the context of {Engine.ContextLength} tokens",
                param, "context_length_exceeded");
    }

    private static string FileType(GgufFile file) =>
        file.TypeSummary().OrderByDescending(s => s.Bytes).Select(s => s.Type.ToString().ToUpperInvariant()).FirstOrDefault() ?? "unknown";

    /// <summary>Stops the scheduler and unmaps the model file.</summary>
    public void Dispose() => _owned?.Dispose();

    private sealed class Owned(ContinuousBatchScheduler engine, PromptCacheStore? store, TransformerModel model, WorkerPool pool, TransformerModel? draft) : IDisposable
    {
        public void Dispose()
        {
            engine.Dispose();
            store?.Dispose();
            pool.Dispose();
            model.Dispose();
            draft?.Dispose();
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
