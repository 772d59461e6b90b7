using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Models;

/// <summary>
/// One decoder block: x += [PostAttnNorm](Attention(AttnNorm(x))); x += [PostFfnNorm](FFN(FfnNorm(x))).
/// The bracketed norms exist only in families that use them (GLM-4).
/// </summary>
internal sealed record TransformerLayer(
    float[] AttentionNorm,
    IAttentionBlock Attention,
    float[]? PostAttentionNorm,
    float[] FeedForwardNorm,
    IFeedForwardBlock FeedForward,
    float[]? PostFeedForwardNorm);
