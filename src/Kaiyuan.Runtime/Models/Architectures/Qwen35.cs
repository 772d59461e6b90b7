using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Architectures;

/// <summary>
/// Qwen3.5 / 3.6 (<c>qwen35</c>, <c>qwen35moe</c>), a hybrid: most layers are Gated DeltaNet linear attention with a
/// constant-size state, every <c>full_attention_interval</c>-th is gated full attention (NeoX RoPE on part of each head;
/// the multimodal sections all see the text position). <c>post_attention_norm</c> is the pre-FFN norm; the MoE variant
/// routes by softmax, renormalised, beside a sigmoid-gated shared expert.
/// </summary>
internal sealed class Qwen35 : IModelFamily
{
    public IReadOnlyList<string> Architectures => ["qwen35", "qwen35moe"];

    public TransformerLayer BuildLayer(ModelBuilder b, int i) => new(
        b.Norm(i, "attn_norm"), Recurrent(b, i) ? b.LinearAttention(i) : b.GatedAttention(i, RopeStyle.NeoX), null,
        b.Norm(i, "post_attention_norm"),
        b.Config.IsMoe ? b.MoeFfn(i, normalize: true, scale: 0, ExpertGating.Softmax) : b.DenseFfn(i),
        null);

    // A layer after the main stack (the NextN layer) is full attention.
    private static bool Recurrent(ModelBuilder b, int i) =>
        (b.Config.RecurrentLayers ?? throw new InvalidDataException($"{b.Config.Architecture}: the file has no ssm.* hyper-parameters for its linear-attention layers"))
        is var pattern && i < pattern.Length && pattern[i];
}
