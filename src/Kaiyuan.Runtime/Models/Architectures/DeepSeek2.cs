using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Architectures;

/// <summary>
/// DeepSeek-V2/V3/R1 and Kimi K2 (<c>deepseek2</c>): multi-head latent attention, leading dense layers, then routed
/// experts (sigmoid or softmax gating, selection bias, expert groups) plus shared experts.
/// </summary>
internal sealed class DeepSeek2 : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["deepseek2"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), b.LatentAttention(i, RopeStyle.Normal), null,
        b.Norm(i, "ffn_norm"),
        b.DenseOrMoe(i, b.Config.ExpertWeightsNorm, b.Config.ExpertWeightsScale, b.Gating(ExpertGating.Softmax)),
        null);
}
