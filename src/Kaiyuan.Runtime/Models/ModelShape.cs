using Kaiyuan.Gguf;

namespace Kaiyuan.Models;

/// <summary>
/// A model's hyper-parameters as its GGUF metadata gives them (what <c>kaiyuan info</c> and llama.cpp's load log
/// print), read without touching the weights.
/// </summary>
public sealed record ModelShape
{
    /// <summary>The GGUF architecture (<c>qwen2</c>, <c>deepseek2</c>, …).</summary>
    public required string Architecture { get; init; }
    /// <summary>Transformer blocks.</summary>
    public required int Layers { get; init; }
    /// <summary>The hidden size.</summary>
    public required int EmbeddingLength { get; init; }
    /// <summary>Tokens in the vocabulary.</summary>
    public required int VocabSize { get; init; }
    /// <summary>The trained context, in tokens.</summary>
    public required int ContextLength { get; init; }
    /// <summary>Attention (query) heads.</summary>
    public required int Heads { get; init; }
    /// <summary>Key/value heads (fewer than <see cref="Heads"/> with grouped-query attention).</summary>
    public required int KvHeads { get; init; }
    /// <summary>Dimensions of a key head.</summary>
    public required int KeyLength { get; init; }
    /// <summary>Dimensions of a value head.</summary>
    public required int ValueLength { get; init; }
    /// <summary>Dimensions rotated by RoPE.</summary>
    public required int RopeDimensions { get; init; }
    /// <summary>RoPE's frequency base.</summary>
    public required float RopeFreqBase { get; init; }
    /// <summary>RoPE scaling: "none", "linear" or "yarn".</summary>
    public required string RopeScaling { get; init; }
    /// <summary>The RoPE scaling factor (1 without scaling).</summary>
    public required float RopeScalingFactor { get; init; }
    /// <summary>The context the model was trained at before scaling (0 when not given).</summary>
    public required int RopeOriginalContext { get; init; }
    /// <summary>The dense feed-forward network's inner size (0: none, all layers are experts).</summary>
    public required int FeedForwardLength { get; init; }
    /// <summary>Multi-head latent attention's query LoRA rank (0: none).</summary>
    public required int QLoraRank { get; init; }
    /// <summary>Multi-head latent attention's compressed KV rank (0: not MLA).</summary>
    public required int KvLoraRank { get; init; }
    /// <summary>MLA's query/key head dimensions (with the RoPE part).</summary>
    public required int KeyLengthMla { get; init; }
    /// <summary>MLA's value head dimensions.</summary>
    public required int ValueLengthMla { get; init; }
    /// <summary>DeepSeek sparse attention's lightning indexer heads (0: dense attention).</summary>
    public required int IndexerHeads { get; init; }
    /// <summary>Dimensions of an indexer head and of the key it caches per token.</summary>
    public required int IndexerKeyLength { get; init; }
    /// <summary>Tokens each query attends to at most with sparse attention.</summary>
    public required int IndexerTopK { get; init; }
    /// <summary>Routed experts (0: a dense model).</summary>
    public required int ExpertCount { get; init; }
    /// <summary>Experts each token uses.</summary>
    public required int ExpertUsedCount { get; init; }
    /// <summary>Experts every token uses besides the routed ones.</summary>
    public required int ExpertSharedCount { get; init; }
    /// <summary>An expert's feed-forward inner size.</summary>
    public required int ExpertFeedForwardLength { get; init; }
    /// <summary>Dense layers before the first expert layer.</summary>
    public required int LeadingDenseBlockCount { get; init; }
    /// <summary>How the router turns scores into weights: "Softmax" or "Sigmoid".</summary>
    public required string ExpertGating { get; init; }
    /// <summary>The chosen experts' weights are normalized to sum to 1.</summary>
    public required bool ExpertWeightsNorm { get; init; }
    /// <summary>The factor the experts' weighted sum is scaled by.</summary>
    public required float ExpertWeightsScale { get; init; }

    /// <summary>Per layer, whether it is a recurrent linear-attention layer (Qwen3.5's Gated DeltaNet); null when none is.</summary>
    public IReadOnlyList<bool>? RecurrentLayers { get; init; }
    /// <summary>Floats per key and value head of the linear layers (each head's state is this squared).</summary>
    public int SsmStateSize { get; init; }
    /// <summary>Key heads of the linear layers.</summary>
    public int SsmKeyHeads { get; init; }
    /// <summary>Value heads of the linear layers.</summary>
    public int SsmValueHeads { get; init; }
    /// <summary>The linear layers' causal convolution width.</summary>
    public int SsmConvKernel { get; init; }
    /// <summary>Multi-token-prediction (NextN) layers after the main stack (loaded, not run).</summary>
    public int NextnLayers { get; init; }

    /// <summary>A hybrid of recurrent linear-attention layers and full attention (Qwen3.5).</summary>
    public bool IsHybrid => RecurrentLayers is not null;
    /// <summary>A mixture-of-experts model.</summary>
    public bool IsMoe => ExpertCount > 0;
    /// <summary>Each query attends only to the top-k tokens a lightning indexer picks (DeepSeek-V3.2, GLM-5).</summary>
    public bool IsSparse => IndexerTopK > 0;
    /// <summary>Attention caches a compressed latent (DeepSeek's multi-head latent attention).</summary>
    public bool IsMla => KvLoraRank > 0;

    /// <summary>Reads the shape from a model file's metadata.</summary>
    /// <exception cref="InvalidDataException">A key the architecture needs is missing or malformed.</exception>
    public static ModelShape FromMetadata(GgufMetadata metadata) => From(ModelConfig.FromMetadata(metadata));

    internal static ModelShape From(ModelConfig c) => new()
    {
        Architecture = c.Architecture,
        Layers = c.BlockCount,
        EmbeddingLength = c.EmbeddingLength,
        VocabSize = c.VocabSize,
        ContextLength = c.ContextLength,
        Heads = c.HeadCount,
        KvHeads = c.HeadCountKv,
        KeyLength = c.KeyLength,
        ValueLength = c.ValueLength,
        RopeDimensions = c.RopeDimensions,
        RopeFreqBase = c.RopeFreqBase,
        RopeScaling = c.RopeScalingType,
        RopeScalingFactor = c.RopeScalingFactor,
        RopeOriginalContext = c.RopeOriginalContext,
        FeedForwardLength = c.FeedForwardLength,
        QLoraRank = c.QLoraRank,
        KvLoraRank = c.KvLoraRank,
        KeyLengthMla = c.KeyLengthMla,
        ValueLengthMla = c.ValueLengthMla,
        IndexerHeads = c.IndexerHeadCount,
        IndexerKeyLength = c.IndexerKeyLength,
        IndexerTopK = c.IndexerTopK,
        ExpertCount = c.ExpertCount,
        ExpertUsedCount = c.ExpertUsedCount,
        ExpertSharedCount = c.ExpertSharedCount,
        ExpertFeedForwardLength = c.ExpertFeedForwardLength,
        LeadingDenseBlockCount = c.LeadingDenseBlockCount,
        ExpertGating = c.ExpertGating.ToString(),
        ExpertWeightsNorm = c.ExpertWeightsNorm,
        ExpertWeightsScale = c.ExpertWeightsScale,
        RecurrentLayers = c.RecurrentLayers,
        SsmStateSize = c.SsmStateSize,
        SsmKeyHeads = c.SsmGroupCount,
        SsmValueHeads = c.SsmTimeStepRank,
        SsmConvKernel = c.SsmConvKernel,
        NextnLayers = c.NextnLayers,
    };
}
