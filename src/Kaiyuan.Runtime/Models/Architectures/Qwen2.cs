using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Architectures;

/// <summary>Qwen2 / Qwen2.5: Llama's layout with q/k/v biases and NeoX-style RoPE.</summary>
internal sealed class Qwen2 : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["qwen2"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), b.Attention(i, RopeStyle.NeoX), null,
        b.Norm(i, "ffn_norm"), b.DenseFfn(i), null);
}
