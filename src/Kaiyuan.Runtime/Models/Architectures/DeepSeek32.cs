using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Architectures;

/// <summary>
/// DeepSeek-V3.2 (<c>deepseek32</c>) and GLM-5 (<c>glm-dsa</c>): DeepSeek-V3's layers with DeepSeek sparse attention,
/// where each query's latent attention reads only the top-k tokens of a lightning indexer.
/// </summary>
internal sealed class DeepSeek32 : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["deepseek32", "glm-dsa"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), b.SparseLatentAttention(i, RopeStyle.Normal, b.Config.Architecture == "glm-dsa" ? RopeStyle.Normal : RopeStyle.NeoX), null,
        b.Norm(i, "ffn_norm"),
        b.DenseOrMoe(i, b.Config.ExpertWeightsNorm, b.Config.ExpertWeightsScale, b.Gating(ExpertGating.Sigmoid)),
        null);
}
