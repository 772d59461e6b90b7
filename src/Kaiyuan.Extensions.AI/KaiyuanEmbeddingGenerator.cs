using Kaiyuan.Chat;
using Microsoft.Extensions.AI;

namespace Kaiyuan.Extensions.AI;

/// <summary>
/// <see cref="IEmbeddingGenerator{TInput, TEmbedding}"/> over a model running in this process: the model's pooled,
/// L2-normalised final hidden states (its GGUF's pooling type: mean, CLS or last token), the vectors
/// <c>/v1/embeddings</c> returns.
/// </summary>
public sealed class KaiyuanEmbeddingGenerator : IEmbeddingGenerator<string, Embedding<float>>
{
    private readonly KaiyuanModel _model;
    private readonly bool _ownsModel;

    /// <summary>A generator over a loaded model, which stays loaded when the generator is disposed.</summary>
    public KaiyuanEmbeddingGenerator(KaiyuanModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        Metadata = new EmbeddingGeneratorMetadata("kaiyuan", null, model.ModelId, model.EmbeddingLength);
    }

    /// <summary>Loads a model that this generator owns: disposing the generator unloads it.</summary>
    public KaiyuanEmbeddingGenerator(KaiyuanModelOptions options) : this(KaiyuanModel.Load(options)) => _ownsModel = true;

    /// <summary>The provider ("kaiyuan"), the model's id and its embedding length.</summary>
    public EmbeddingGeneratorMetadata Metadata { get; }

    /// <inheritdoc />
    public async Task<GeneratedEmbeddings<Embedding<float>>> GenerateAsync(IEnumerable<string> values, EmbeddingGenerationOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(values);
        _model.ThrowIfDisposed();
        if (options?.Dimensions is { } dims && dims != _model.EmbeddingLength)
            throw new NotSupportedException($"Dimensions {dims}: this model's embeddings have {_model.EmbeddingLength}");
        var runtime = _model.Runtime;
        var inputs = new List<IReadOnlyList<int>>();
        int tokens = 0;
        foreach (string value in values)
        {
            ArgumentNullException.ThrowIfNull(value, nameof(values));
            // As /v1/embeddings encodes its inputs, so both give the same vectors.
            int[] ids = runtime.Tokenize(value, addSpecial: true, parseSpecial: true);
            if (ids.Length == 0) throw new ArgumentException("an input is empty", nameof(values));
            if (ids.Length > runtime.ContextLength)
                throw new ArgumentException($"an input has {ids.Length} tokens, more than the context of {runtime.ContextLength}", nameof(values));
            inputs.Add(ids);
            tokens += ids.Length;
        }
        var result = new GeneratedEmbeddings<Embedding<float>>(inputs.Count)
        {
            Usage = new UsageDetails { InputTokenCount = tokens, TotalTokenCount = tokens },
        };
        if (inputs.Count == 0) return result;
        var vectors = await runtime.EmbedAsync(inputs, cancellationToken).ConfigureAwait(false);
        var created = DateTimeOffset.UtcNow;
        foreach (var vector in vectors) result.Add(new Embedding<float>(vector) { ModelId = _model.ModelId, CreatedAt = created });
        return result;
    }

    /// <inheritdoc />
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(EmbeddingGeneratorMetadata)) return Metadata;
        if (serviceType == typeof(KaiyuanModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Unloads the model when this generator loaded it.</summary>
    public void Dispose()
    {
        if (_ownsModel) _model.Dispose();
    }
}
