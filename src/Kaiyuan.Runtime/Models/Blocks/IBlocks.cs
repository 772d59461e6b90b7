using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>Everything a block needs besides its weights for one forward pass.</summary>
internal sealed record ForwardContext(ForwardBatch Batch, KvCache Cache, Workspace Workspace, WorkerPool Pool)
{
    /// <summary>
    /// How many of the pool's threads this context's small passes use (see <see cref="ThreadTuner"/>). A copy made
    /// with another pool (<c>with { Pool = … }</c>) must be given its own.
    /// </summary>
    public ThreadTuner Tuner { get; init; } = new(Pool.Threads);
}

/// <summary>Self-attention: reads normalised hidden rows, writes one output row per token.</summary>
internal interface IAttentionBlock
{
    /// <summary>Floats cached per token by this layer.</summary>
    int CacheRowWidth { get; }
    /// <summary>Floats of constant-size recurrent state per sequence (linear attention); 0 for attention over cached rows.</summary>
    int StateWidth => 0;
    void Forward(ForwardContext ctx, int layer, ReadOnlySpan<float> x, Span<float> output);
    /// <summary>Refuses, at load, tensors whose shapes do not fit each other and rows of <paramref name="embedding"/> values.</summary>
    void CheckShapes(int embedding);
}

/// <summary>Position-wise feed-forward network (dense or mixture of experts).</summary>
internal interface IFeedForwardBlock
{
    void Forward(ForwardContext ctx, ReadOnlySpan<float> x, int tokens, Span<float> output);
    /// <inheritdoc cref="IAttentionBlock.CheckShapes"/>
    void CheckShapes(int embedding);
}
