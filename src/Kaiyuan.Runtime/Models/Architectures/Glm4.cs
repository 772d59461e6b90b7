using Kaiyuan.Kernels;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Models.Architectures;

/// <summary>GLM-4-0414 (<c>glm4</c>): q/k/v biases, partial rotary, fused gate/up FFN, post-attention and post-FFN norms.</summary>
internal sealed class Glm4 : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["glm4"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), b.Attention(i, RopeStyle.Normal), b.Norm(i, "post_attention_norm"),
        b.Norm(i, "ffn_norm"), b.DenseFfn(i), b.Norm(i, "post_ffw_norm"));
}

/// <summary>
/// GLM-4.5 / 4.6 (<c>glm4moe</c>): q/k/v biases, optional per-head q/k norms, partial NeoX rotary; the
/// <c>post_attention_norm</c> tensor is the pre-FFN norm; leading dense layers then sigmoid-routed experts.
/// </summary>
internal sealed class Glm4Moe : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["glm4moe"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), b.Attention(i, RopeStyle.NeoX, b.Has(i, "attn_q_norm") ? QkNorm.PerHead : QkNorm.None), null,
        b.Norm(i, "post_attention_norm"),
        b.DenseOrMoe(i, b.Config.ExpertWeightsNorm, b.Config.ExpertWeightsScale, b.Gating(ExpertGating.Sigmoid)),
        null);
}
