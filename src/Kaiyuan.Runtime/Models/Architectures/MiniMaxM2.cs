using Kaiyuan.Kernels;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Models.Architectures;

/// <summary>MiniMax-M2: q/k RMS norms over the whole projection, partial NeoX rotary, sigmoid-routed experts, renormalised.</summary>
internal sealed class MiniMaxM2 : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["minimax-m2"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), b.Attention(i, RopeStyle.NeoX, QkNorm.Whole), null,
        b.Norm(i, "ffn_norm"),
        b.MoeFfn(i, normalize: true, b.Config.ExpertWeightsScale, b.Gating(ExpertGating.Sigmoid)),
        null);
}
