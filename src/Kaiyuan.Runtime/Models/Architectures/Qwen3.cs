using Kaiyuan.Kernels;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Models.Architectures;

/// <summary>Qwen3 (dense) and Qwen3-MoE: per-head q/k RMS norms, NeoX RoPE; the MoE variant routes by softmax, renormalised.</summary>
internal sealed class Qwen3 : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["qwen3", "qwen3moe"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), b.Attention(i, RopeStyle.NeoX, QkNorm.PerHead), null,
        b.Norm(i, "ffn_norm"),
        b.Config.IsMoe ? b.MoeFfn(i, normalize: true, scale: 0, ExpertGating.Softmax) : b.DenseFfn(i),
        null);
}
