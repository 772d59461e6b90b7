using Kaiyuan.Gguf;
using Kaiyuan.Kernels;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Models;

/// <summary>
/// Builds blocks from a GGUF file's tensors by llama.cpp's tensor names (<c>blk.N.attn_q.weight</c>, …). Family
/// definitions call these to wire a layer; each method checks that the tensors it needs exist and fit.
/// </summary>
internal sealed class ModelBuilder(GgufFile file, ModelConfig config, WeightCopies? copies = null)
{
    public GgufFile File { get; } = file;
    public ModelConfig Config { get; } = config;

    /// <summary>Where the model keeps the weights it copies into the kernels' layout (<see cref="QuantMatrix.ForMultiply"/>); null keeps the file's layout.</summary>
    public WeightCopies? Copies { get; } = copies;

    public GgufTensor Tensor(string name) =>
        File.FindTensor(name) ?? throw new NotSupportedException($"{Config.Architecture}: required tensor '{name}' is missing from {Path.GetFileName(File.Path)}");

    public GgufTensor? OptionalTensor(string name) => File.FindTensor(name);

    public bool Has(int layer, string name) => File.FindTensor($"blk.{layer}.{name}.weight") is not null;

    public Linear Linear(string name) => new(Tensor(name + ".weight"), OptionalTensor(name + ".bias"), Copies);
    public Linear Linear(int layer, string name) => Linear($"blk.{layer}.{name}");
    public Linear? OptionalLinear(int layer, string name) => Has(layer, name) ? Linear(layer, name) : null;

    public float[] Norm(int layer, string name) => Vectors.ReadF32(Tensor($"blk.{layer}.{name}.weight"));
    public float[]? OptionalNorm(int layer, string name) => Has(layer, name) ? Norm(layer, name) : null;

    public QuantMatrix Matrix(int layer, string name) => QuantMatrix.Of(Tensor($"blk.{layer}.{name}.weight"));

    /// <summary>A stacked expert tensor, only ever multiplied by: in the kernels' layout (<see cref="QuantMatrix.ForMultiply"/>).</summary>
    public QuantMatrix Experts(int layer, string name) => QuantMatrix.ForMultiply(Tensor($"blk.{layer}.{name}.weight"), Copies);

    /// <summary>Rope frequency factors (Llama 3.1's <c>rope_freqs</c>) when present.</summary>
    public float[]? RopeFreqFactors() => OptionalTensor("rope_freqs.weight") is { } t ? Vectors.ReadF32(t) : null;

    /// <summary>Standard attention with optional q/k/v biases (found by presence) and q/k norms.</summary>
    public GqaAttention Attention(int layer, RopeStyle style, QkNorm qkNorm = QkNorm.None) =>
        new(Config, Linear(layer, "attn_q"), Linear(layer, "attn_k"), Linear(layer, "attn_v"), Linear(layer, "attn_output"),
            new Rope(Config.Rope(style, freqFactors: RopeFreqFactors())), qkNorm,
            qkNorm == QkNorm.None ? null : Norm(layer, "attn_q_norm"),
            qkNorm == QkNorm.None ? null : Norm(layer, "attn_k_norm"));

    /// <summary>Qwen3.5's full attention: a sigmoid output gate fused into <c>attn_q</c>, per-head q/k norms.</summary>
    public GqaAttention GatedAttention(int layer, RopeStyle style) =>
        new(Config, Linear(layer, "attn_q"), Linear(layer, "attn_k"), Linear(layer, "attn_v"), Linear(layer, "attn_output"),
            new Rope(Config.Rope(style)), QkNorm.PerHead, Norm(layer, "attn_q_norm"), Norm(layer, "attn_k_norm"), outputGate: true);

    /// <summary>Gated DeltaNet linear attention (a recurrent layer of a hybrid model).</summary>
    public GatedDeltaNet LinearAttention(int layer) =>
        new(Config, Linear(layer, "attn_qkv"), Linear(layer, "attn_gate"), Linear(layer, "ssm_alpha"), Linear(layer, "ssm_beta"), Linear(layer, "ssm_out"),
            Vectors.ReadF32(Tensor($"blk.{layer}.ssm_conv1d.weight")), Vectors.ReadF32(Tensor($"blk.{layer}.ssm_dt.bias")),
            Vectors.ReadF32(Tensor($"blk.{layer}.ssm_a")), Norm(layer, "ssm_norm"));

    /// <summary>DeepSeek-style multi-head latent attention (absorbed form; needs split attn_k_b / attn_v_b).</summary>
    public MlaAttention LatentAttention(int layer, RopeStyle style) => LatentAttention(layer, style, indexer: null);

    /// <summary>
    /// MLA whose queries attend only to the tokens a lightning indexer picks (DeepSeek sparse attention); the indexer's
    /// RoPE pairs dimensions as <paramref name="indexerStyle"/> says.
    /// </summary>
    public MlaAttention SparseLatentAttention(int layer, RopeStyle style, RopeStyle indexerStyle) =>
        !Config.HasOwnIndexer(layer)
            ? LatentAttention(layer, style, indexer: null, sharedTopK: Config.IndexerTopK)
            : LatentAttention(layer, style, new LightningIndexer(Config,
                Linear(layer, "indexer.attn_q_b"), Linear(layer, "indexer.attn_k"),
                Norm(layer, "indexer.k_norm"), Vectors.ReadF32(Tensor($"blk.{layer}.indexer.k_norm.bias")),
                Linear(layer, "indexer.proj"), new Rope(Config.Rope(indexerStyle))));

    private MlaAttention LatentAttention(int layer, RopeStyle style, LightningIndexer? indexer, int sharedTopK = 0)
    {
        if (!Has(layer, "attn_k_b"))
            throw new NotSupportedException($"{Config.Architecture}: this file stores MLA as a combined attn_kv_b tensor; re-convert it with a current llama.cpp (split attn_k_b/attn_v_b)");
        bool lowRankQ = Has(layer, "attn_q_a");
        return new MlaAttention(Config,
            lowRankQ ? Linear(layer, "attn_q_a") : null,
            lowRankQ ? Norm(layer, "attn_q_a_norm") : null,
            lowRankQ ? Linear(layer, "attn_q_b") : null,
            lowRankQ ? null : Linear(layer, "attn_q"),
            Linear(layer, "attn_kv_a_mqa"), Norm(layer, "attn_kv_a_norm"),
            Matrix(layer, "attn_k_b"), Matrix(layer, "attn_v_b"),
            Linear(layer, "attn_output"), new Rope(Config.Rope(style)), indexer, sharedTopK);
    }

    /// <summary>Gated FFN; a missing <c>ffn_gate</c> means gate and up are fused in <c>ffn_up</c>.</summary>
    public DenseFeedForward DenseFfn(int layer, string suffix = "") =>
        new(OptionalLinear(layer, "ffn_gate" + suffix), Linear(layer, "ffn_up" + suffix), Linear(layer, "ffn_down" + suffix));

    /// <summary>Routed experts plus shared experts when the file has them.</summary>
    public MoeFeedForward MoeFfn(int layer, bool normalize, float scale, ExpertGating gating) =>
        new(Config, Linear(layer, "ffn_gate_inp"),
            OptionalTensor($"blk.{layer}.exp_probs_b.bias") is { } b ? Vectors.ReadF32(b) : null,
            Experts(layer, "ffn_gate_exps"), Experts(layer, "ffn_up_exps"), Experts(layer, "ffn_down_exps"),
            Has(layer, "ffn_up_shexp") ? DenseFfn(layer, "_shexp") : null,
            normalize, scale, gating, OptionalNorm(layer, "ffn_gate_inp_shexp"));

    /// <summary>Dense for the leading layers, MoE after (DeepSeek-V2/V3, GLM-4.5).</summary>
    public IFeedForwardBlock DenseOrMoe(int layer, bool normalize, float scale, ExpertGating gating) =>
        layer < Config.LeadingDenseBlockCount ? DenseFfn(layer) : MoeFfn(layer, normalize, scale, gating);

    /// <summary>The gating function from metadata, or the family's default when the file does not say.</summary>
    public ExpertGating Gating(ExpertGating fallback) => Config.ExpertGating is ExpertGating.Softmax or ExpertGating.Sigmoid ? Config.ExpertGating : fallback;
}
