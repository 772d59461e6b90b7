using Kaiyuan.Gguf;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Scheduling;
using Kaiyuan.Server.Chat;
using Kaiyuan.Server.Text;

namespace Kaiyuan.Server;

/// <summary>Facts about the served model that the API reports.</summary>
public sealed record ModelDescription(string Architecture, string FileType, long FileSize, long ParameterCount, int ContextLength, int EmbeddingLength,
    string? ChatTemplate, IReadOnlyDictionary<string, object> Info);

/// <summary>The loaded model and everything needed to serve it: codec, chat formatter, scheduler.</summary>
public sealed class ModelRuntime : IDisposable
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

    public IChatOutputParser CreateParser(bool tools) => new TaggedOutputParser(tools);

    /// <summary>Loads a GGUF model and starts its scheduler.</summary>
    public static ModelRuntime Load(ServerOptions options)
    {
        var model = ModelLoader.Load(options.ModelPath);
        // The scheduler's own pool: a pool serves one caller at a time.
        var pool = new WorkerPool(Math.Max(1, options.Threads));
        try
        {
            var meta = model.File.Metadata;
            var codec = new VocabTextCodec(meta);
            string? template = options.ChatTemplateFile is { } file ? File.ReadAllText(file) : meta.GetStringOrNull("tokenizer.chat_template");
            var formatter = PromptFormatters.For(template, options.ChatTemplateFile is not null);
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
            }, pool);
            long parameters = model.File.Tensors.Sum(t => t.ElementCount);
            var info = new Dictionary<string, object>
            {
                ["general.architecture"] = arch,
                [$"{arch}.context_length"] = model.Config.ContextLength,
                [$"{arch}.embedding_length"] = model.Config.EmbeddingLength,
                [$"{arch}.block_count"] = model.Config.BlockCount,
                ["general.parameter_count"] = parameters,
            };
            var description = new ModelDescription(arch, FileType(model.File), model.File.FileSize, parameters, engine.ContextLength,
                model.Config.EmbeddingLength, template, info);
            string name = options.Alias ?? Path.GetFileNameWithoutExtension(options.ModelPath);
            return new ModelRuntime(name, codec, formatter, engine, description, new Owned(engine, model, pool));
        }
        catch
        {
            pool.Dispose();
            model.Dispose();
            throw;
        }
    }

    private static string FileType(GgufFile file) =>
        file.TypeSummary().OrderByDescending(s => s.Bytes).Select(s => s.Type.ToString().ToUpperInvariant()).FirstOrDefault() ?? "unknown";

    public void Dispose() => _owned?.Dispose();

    private sealed class Owned(ContinuousBatchScheduler engine, TransformerModel model, WorkerPool pool) : IDisposable
    {
        public void Dispose()
        {
            engine.Dispose();
            pool.Dispose();
            model.Dispose();
        }
    }
}

/// <summary>Picks the prompt formatter for a model's chat template.</summary>
public static class PromptFormatters
{
    /// <summary>
    /// ChatML when the model has no template or a ChatML one. A template in another dialect needs the Jinja engine,
    /// which this build does not have: a template file given explicitly is refused, a model's own falls back to ChatML.
    /// </summary>
    public static IPromptFormatter For(string? template, bool explicitFile)
    {
        if (template is null || template.Contains("<|im_start|>", StringComparison.Ordinal)) return new ChatMlFormatter();
        if (explicitFile)
            throw new NotSupportedException("--chat-template-file: only ChatML templates (<|im_start|>…) can be rendered by this build");
        return new ChatMlFormatter();
    }
}
