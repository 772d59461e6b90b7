using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Architectures;

/// <summary>Llama 1/2/3 (and Mistral-style llama files): GQA with adjacent-pair RoPE, SwiGLU FFN.</summary>
internal sealed class Llama : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["llama"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), b.Attention(i, RopeStyle.Normal), null,
        b.Norm(i, "ffn_norm"), b.DenseFfn(i), null);
}
