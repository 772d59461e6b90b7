using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Quantization;

/// <summary>The hyper-parameters of a model shape that <see cref="Synth"/> can fill with random weights.</summary>
/// <param name="Name">The shape's name (<c>qwen2.5-0.5b</c>).</param>
/// <param name="Architecture">The GGUF architecture (<c>qwen2</c>).</param>
/// <param name="EmbeddingLength">The hidden size.</param>
/// <param name="Layers">Transformer blocks.</param>
/// <param name="Heads">Attention (query) heads.</param>
/// <param name="KvHeads">Key/value heads.</param>
/// <param name="HeadDim">Dimensions per head.</param>
/// <param name="FeedForwardLength">The feed-forward network's inner size.</param>
/// <param name="VocabSize">Tokens in the vocabulary.</param>
/// <param name="ContextLength">The trained context.</param>
/// <param name="RopeFreqBase">RoPE's frequency base.</param>
/// <param name="RmsEpsilon">RMS norm's epsilon.</param>
/// <param name="QkvBias">Q, K and V projections have biases (Qwen2).</param>
/// <param name="QkNorm">Queries and keys are RMS-normalized per head (Qwen3).</param>
/// <param name="TiedEmbeddings">The output head is the token embedding.</param>
/// <param name="Mla">Multi-head latent attention (DeepSeek) instead of Q/K/V projections; null: none.</param>
/// <param name="Moe">Routed experts after the leading dense layers; null: every layer dense.</param>
/// <param name="Hybrid">Gated DeltaNet linear attention in most layers (Qwen3.5); null: attention everywhere.</param>
public sealed record SynthShape(
    string Name, string Architecture, int EmbeddingLength, int Layers, int Heads, int KvHeads, int HeadDim,
    int FeedForwardLength, int VocabSize, int ContextLength, float RopeFreqBase, float RmsEpsilon,
    bool QkvBias, bool QkNorm, bool TiedEmbeddings, SynthMla? Mla = null, SynthMoe? Moe = null, SynthHybrid? Hybrid = null)
{
    /// <summary>The first two layers hold a circuit that copies earlier text (<see cref="Synth.WithCopying"/>).</summary>
    public bool Copying { get; init; }

    /// <summary>Multi-token-prediction (NextN) layers after the main stack (<see cref="Synth.WithNextn"/>); 0: none.</summary>
    public int NextnLayers { get; init; }
}

/// <summary>The linear-attention layers of a hybrid <see cref="SynthShape"/> (Qwen3.5's Gated DeltaNet).</summary>
/// <param name="KeyHeads">Key (and query) heads.</param>
/// <param name="ValueHeads">Value heads, each with its own state.</param>
/// <param name="HeadDim">Dimensions per key and value head.</param>
/// <param name="ConvKernel">The causal convolution's width.</param>
/// <param name="FullAttentionInterval">Every this-many-th layer is full (gated) attention.</param>
/// <param name="RopeDims">Rotary dimensions of a full-attention head (the rest is not rotated).</param>
public sealed record SynthHybrid(int KeyHeads, int ValueHeads, int HeadDim, int ConvKernel, int FullAttentionInterval, int RopeDims);

/// <summary>Multi-head latent attention of a <see cref="SynthShape"/>, with DeepSeek sparse attention's indexer when <paramref name="IndexerTopK"/> is set.</summary>
/// <param name="QLoraRank">The query latent's rank.</param>
/// <param name="KvLoraRank">The cached key/value latent's rank.</param>
/// <param name="RopeDims">Rotary dimensions per head (shared by the key).</param>
/// <param name="NopeDims">Non-rotary query/key dimensions per head.</param>
/// <param name="ValueDims">Value dimensions per head.</param>
/// <param name="IndexerHeads">Lightning indexer heads (0: dense attention).</param>
/// <param name="IndexerDim">Dimensions of an indexer head and key.</param>
/// <param name="IndexerTopK">Tokens each query attends to.</param>
public sealed record SynthMla(int QLoraRank, int KvLoraRank, int RopeDims, int NopeDims, int ValueDims, int IndexerHeads = 0, int IndexerDim = 0, int IndexerTopK = 0);

/// <summary>
/// The mixture of experts of a <see cref="SynthShape"/>: DeepSeek's (sigmoid gating with a selection bias, shared
/// experts) or, with <paramref name="DeepSeekGating"/> false, Qwen3-MoE's (softmax over the router, no bias, whose
/// architecture fixes the gating rather than the file's metadata).
/// </summary>
/// <param name="Experts">Routed experts.</param>
/// <param name="Used">Experts per token.</param>
/// <param name="Shared">Shared experts.</param>
/// <param name="ExpertFfn">An expert's feed-forward size.</param>
/// <param name="LeadingDense">Dense layers before the first expert layer.</param>
/// <param name="DeepSeekGating">DeepSeek's gating metadata and selection bias.</param>
public sealed record SynthMoe(int Experts, int Used, int Shared, int ExpertFfn, int LeadingDense, bool DeepSeekGating = true);

/// <summary>
/// <c>kaiyuan synth</c>: writes a GGUF with the real shapes and metadata of a known model but seeded random weights
/// (matrices N(0, 1/fan_in)-like, norms ≈ 1, small biases), each tensor in the type <see cref="TensorTypePlan"/> picks for
/// the mix and quantized row by row on several threads while it streams to disk. Without a vocabulary the file runs on
/// token ids only (<c>{arch}.vocab_size</c> gives the vocabulary size); with one (<see cref="AddVocabulary"/>) it can
/// be served and chatted with like the real model.
/// </summary>
public static class Synth
{
    /// <summary>Every known shape, the test shapes (<c>tiny</c>…) included.</summary>
    public static IReadOnlyList<SynthShape> Shapes { get; } =
    [
        new("qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 64, 4864, 151936, 32768, 1e6f, 1e-6f, QkvBias: true, QkNorm: false, TiedEmbeddings: true),
        new("qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 128, 3072, 151936, 40960, 1e6f, 1e-6f, QkvBias: false, QkNorm: true, TiedEmbeddings: true),
        new("llama-1b", "llama", 2048, 16, 32, 8, 64, 8192, 128256, 131072, 5e5f, 1e-5f, QkvBias: false, QkNorm: false, TiedEmbeddings: true),
        // A few-kilobyte model for tests.
        new("tiny", "qwen2", 256, 2, 4, 2, 64, 512, 512, 1024, 1e6f, 1e-6f, QkvBias: true, QkNorm: false, TiedEmbeddings: true),
        new("tiny-qwen3", "qwen3", 256, 2, 4, 2, 64, 512, 512, 1024, 1e6f, 1e-6f, QkvBias: false, QkNorm: true, TiedEmbeddings: true),
        new("tiny-deepseek32", "deepseek32", 256, 2, 4, 1, 96, 512, 512, 1024, 1e4f, 1e-6f, QkvBias: false, QkNorm: false, TiedEmbeddings: false,
            new SynthMla(256, 256, 32, 64, 64, 4, 64, 8), new SynthMoe(8, 2, 1, 256, 1)),
        new("tiny-qwen3moe", "qwen3moe", 256, 2, 4, 2, 64, 512, 512, 1024, 1e6f, 1e-6f, QkvBias: false, QkNorm: true, TiedEmbeddings: false,
            Moe: new SynthMoe(8, 2, 0, 128, 0, DeepSeekGating: false)),
        new("tiny-qwen35", "qwen35", 256, 4, 4, 2, 64, 512, 512, 1024, 1e7f, 1e-6f, QkvBias: false, QkNorm: true, TiedEmbeddings: true,
            Hybrid: new SynthHybrid(2, 4, 32, 4, 4, 16)),
        // Qwen3.5-0.8B: 24 layers (18 Gated DeltaNet with 16 key and 16 value heads of 128, 6 gated attention with 8 heads
        // and 2 KV heads of 256, a quarter of each rotated), a 248k vocabulary.
        new("qwen3.5-0.8b", "qwen35", 1024, 24, 8, 2, 256, 3584, 248320, 262144, 1e7f, 1e-6f, QkvBias: false, QkNorm: true, TiedEmbeddings: true,
            Hybrid: new SynthHybrid(16, 16, 128, 4, 4, 64)),
        // DeepSeek-V3.2's attention as it is (128 heads, latent 512 + rope 64, q latent 1536, indexer 64 × 128, top-2048)
        // at a 2048 width, with two layers (one dense, one of small experts) and a 32k vocabulary: a model to measure
        // sparse attention at long context with, in a file of a few hundred MB.
        new("deepseek-v3.2-attention", "deepseek32", 2048, 2, 128, 1, 192, 4096, 32768, 163840, 1e4f, 1e-6f, QkvBias: false, QkNorm: false,
            TiedEmbeddings: false, new SynthMla(1536, 512, 64, 128, 128, 64, 128, 2048), new SynthMoe(16, 2, 1, 512, 1)),
        // The same model with dense attention (DeepSeek-V3's), the baseline for it.
        new("deepseek-v3-attention", "deepseek2", 2048, 2, 128, 1, 192, 4096, 32768, 163840, 1e4f, 1e-6f, QkvBias: false, QkNorm: false,
            TiedEmbeddings: false, new SynthMla(1536, 512, 64, 128, 128), new SynthMoe(16, 2, 1, 512, 1)),
        // Qwen3-30B-A3B: 48 layers of 128 experts (8 active, 768 wide) behind 32-head GQA attention; with --layers a few
        // of them make a file that fits a small machine and decodes like the whole model per layer.
        new("qwen3moe-30b-a3b", "qwen3moe", 2048, 48, 32, 4, 128, 6144, 151936, 40960, 1e6f, 1e-6f, QkvBias: false, QkNorm: true,
            TiedEmbeddings: false, Moe: new SynthMoe(128, 8, 0, 768, 0, DeepSeekGating: false)),
    ];

    /// <summary>The shapes offered on the command line (the test shapes are accepted but not listed).</summary>
    public static IEnumerable<string> PublicNames => Shapes.Select(s => s.Name).Where(n => !n.StartsWith("tiny", StringComparison.Ordinal));

    /// <summary>The shape named <paramref name="like"/> (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No shape has that name.</exception>
    public static SynthShape Shape(string like) =>
        Shapes.FirstOrDefault(s => string.Equals(s.Name, like.Trim(), StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"unknown model shape '{like}' (known: {string.Join(", ", PublicNames)})");

    /// <summary>
    /// <paramref name="shape"/> cut to its first <paramref name="layers"/> layers (its name says so). A hybrid keeps
    /// whole groups of linear layers and their full-attention layer, a MoE model at least one expert layer.
    /// </summary>
    /// <exception cref="ArgumentException">The cut would leave no layer of a kind the shape has, or adds layers.</exception>
    public static SynthShape WithLayers(SynthShape shape, int layers)
    {
        if (layers < 1 || layers > shape.Layers) throw new ArgumentException($"--layers {layers}: the {shape.Name} shape has 1…{shape.Layers} layers");
        if (shape.Hybrid is { } h && layers % h.FullAttentionInterval != 0)
            throw new ArgumentException($"--layers {layers}: the {shape.Name} shape repeats in groups of {h.FullAttentionInterval} layers");
        if (shape.Moe is { } moe && layers <= moe.LeadingDense)
            throw new ArgumentException($"--layers {layers}: the {shape.Name} shape's first {moe.LeadingDense} layers are dense; keep at least one expert layer");
        return layers == shape.Layers ? shape : shape with { Name = $"{shape.Name} (first {layers} of {shape.Layers} layers)", Layers = layers };
    }

    /// <summary>
    /// <paramref name="shape"/> with an induction-head circuit in its first two layers, so that its greedy continuation
    /// copies earlier text (<see cref="CopyCircuit"/>): a model to measure prompt-lookup speculation with. Its output head
    /// is untied from the embedding (the same size and cost), and its rotary dimensions and base are the circuit's.
    /// </summary>
    /// <exception cref="ArgumentException">The shape is not a plain dense qwen2 or llama shape big enough for the circuit.</exception>
    public static SynthShape WithCopying(SynthShape shape)
    {
        var copying = shape with { Name = $"{shape.Name} (copying)", TiedEmbeddings = false, Copying = true };
        _ = new CopyCircuit(copying);
        return copying;
    }

    /// <summary>
    /// <paramref name="shape"/> with one multi-token-prediction (NextN) layer after its main stack, as DeepSeek-V3 and
    /// GLM-4.5 ship it (llama.cpp's <c>nextn_predict_layers</c> and <c>blk.N.nextn.*</c> tensors; the layer itself is
    /// like the last main one, and the module shares the token embedding and output head): a model to run
    /// <c>--mtp</c> with.
    /// </summary>
    /// <exception cref="ArgumentException">The shape is hybrid (its recurrent state cannot take back draft tokens).</exception>
    public static SynthShape WithNextn(SynthShape shape)
    {
        if (shape.Hybrid is not null) throw new ArgumentException($"--nextn: {shape.Name} is a hybrid model, which cannot speculate");
        return shape with { Name = $"{shape.Name} + NextN", NextnLayers = 1 };
    }

    /// <summary>The metadata of a synthesized file in <paramref name="mix"/>.</summary>
    internal static GgufMetadata Metadata(SynthShape s, FileType mix)
    {
        var md = new GgufMetadata();
        string a = s.Architecture;
        md.Set("general.architecture", GgufValue.Of(a));
        md.Set("general.name", GgufValue.Of($"synthetic {s.Name}"));
        md.Set($"{a}.context_length", GgufValue.Of((uint)s.ContextLength));
        md.Set($"{a}.embedding_length", GgufValue.Of((uint)s.EmbeddingLength));
        md.Set($"{a}.block_count", GgufValue.Of((uint)(s.Layers + s.NextnLayers)));
        if (s.NextnLayers > 0) md.Set($"{a}.nextn_predict_layers", GgufValue.Of((uint)s.NextnLayers));
        md.Set($"{a}.feed_forward_length", GgufValue.Of((uint)s.FeedForwardLength));
        md.Set($"{a}.attention.head_count", GgufValue.Of((uint)s.Heads));
        md.Set($"{a}.attention.head_count_kv", GgufValue.Of((uint)s.KvHeads));
        if (s.Mla is { } mla)
        {
            // The absorbed form llama.cpp writes: one KV head whose key is the latent plus the rotary key.
            md.Set($"{a}.attention.key_length", GgufValue.Of((uint)(mla.KvLoraRank + mla.RopeDims)));
            md.Set($"{a}.attention.value_length", GgufValue.Of((uint)mla.KvLoraRank));
            md.Set($"{a}.attention.key_length_mla", GgufValue.Of((uint)(mla.NopeDims + mla.RopeDims)));
            md.Set($"{a}.attention.value_length_mla", GgufValue.Of((uint)mla.ValueDims));
            md.Set($"{a}.attention.q_lora_rank", GgufValue.Of((uint)mla.QLoraRank));
            md.Set($"{a}.attention.kv_lora_rank", GgufValue.Of((uint)mla.KvLoraRank));
            md.Set($"{a}.rope.dimension_count", GgufValue.Of((uint)mla.RopeDims));
            if (mla.IndexerTopK > 0)
            {
                md.Set($"{a}.attention.indexer.head_count", GgufValue.Of((uint)mla.IndexerHeads));
                md.Set($"{a}.attention.indexer.key_length", GgufValue.Of((uint)mla.IndexerDim));
                md.Set($"{a}.attention.indexer.top_k", GgufValue.Of((uint)mla.IndexerTopK));
            }
        }
        else
        {
            md.Set($"{a}.attention.key_length", GgufValue.Of((uint)s.HeadDim));
            md.Set($"{a}.attention.value_length", GgufValue.Of((uint)s.HeadDim));
            md.Set($"{a}.rope.dimension_count", GgufValue.Of((uint)(s.Hybrid?.RopeDims ?? (s.Copying ? new CopyCircuit(s).RopeDims : s.HeadDim))));
        }
        if (s.Hybrid is { } h)
        {
            md.Set($"{a}.ssm.conv_kernel", GgufValue.Of((uint)h.ConvKernel));
            md.Set($"{a}.ssm.state_size", GgufValue.Of((uint)h.HeadDim));
            md.Set($"{a}.ssm.group_count", GgufValue.Of((uint)h.KeyHeads));
            md.Set($"{a}.ssm.time_step_rank", GgufValue.Of((uint)h.ValueHeads));
            md.Set($"{a}.ssm.inner_size", GgufValue.Of((uint)(h.ValueHeads * h.HeadDim)));
            md.Set($"{a}.full_attention_interval", GgufValue.Of((uint)h.FullAttentionInterval));
            // Multimodal RoPE's sections over the rotary pairs, as Qwen3.5 splits them (text sees one position in all).
            int pairs = h.RopeDims / 2, third = (pairs + 2) / 3;
            md.Set($"{a}.rope.dimension_sections", GgufValue.Of(GgufArray.Of(new[] { third, third, pairs - 2 * third, 0 })));
        }
        if (s.Moe is { } moe)
        {
            md.Set($"{a}.expert_count", GgufValue.Of((uint)moe.Experts));
            md.Set($"{a}.expert_used_count", GgufValue.Of((uint)moe.Used));
            md.Set($"{a}.expert_feed_forward_length", GgufValue.Of((uint)moe.ExpertFfn));
            if (moe.DeepSeekGating)
            {
                md.Set($"{a}.expert_shared_count", GgufValue.Of((uint)moe.Shared));
                md.Set($"{a}.leading_dense_block_count", GgufValue.Of((uint)moe.LeadingDense));
                md.Set($"{a}.expert_weights_scale", GgufValue.Of(2.5f));
                md.Set($"{a}.expert_weights_norm", GgufValue.Of(true));
                md.Set($"{a}.expert_gating_func", GgufValue.Of(2u)); // sigmoid
            }
        }
        md.Set($"{a}.rope.freq_base", GgufValue.Of(s.Copying ? new CopyCircuit(s).RopeBase : s.RopeFreqBase));
        md.Set($"{a}.attention.layer_norm_rms_epsilon", GgufValue.Of(s.RmsEpsilon));
        md.Set($"{a}.vocab_size", GgufValue.Of((uint)s.VocabSize));
        md.Set("general.quantization_version", GgufValue.Of(ModelQuantizer.QuantizationVersion));
        md.Set("general.file_type", GgufValue.Of((uint)mix));
        return md;
    }

    /// <summary>
    /// Copies a tokenizer (every <c>tokenizer.*</c> key, chat template included) from another GGUF, such as a vocab-only
    /// file. Shorter vocabularies are padded to the shape's with unused <c>[PAD{id}]</c> tokens, as converters pad real
    /// models whose embedding has spare rows, so every id the model can produce decodes.
    /// </summary>
    internal static void AddVocabulary(GgufMetadata md, SynthShape s, GgufMetadata vocabulary)
    {
        if (!vocabulary.TryGet("tokenizer.ggml.tokens", out var tokensValue) || tokensValue.Value is not GgufArray { Items: string[] tokens })
            throw new InvalidDataException("the vocabulary file has no tokenizer.ggml.tokens");
        if (tokens.Length > s.VocabSize)
            throw new InvalidDataException($"the vocabulary has {tokens.Length} tokens; the {s.Name} shape has room for {s.VocabSize}");
        int pad = s.VocabSize - tokens.Length;
        foreach (var (key, value) in vocabulary.Entries)
        {
            if (!key.StartsWith("tokenizer.", StringComparison.Ordinal)) continue;
            md.Set(key, (key, value.Value) switch
            {
                ("tokenizer.ggml.tokens", _) => GgufValue.Of(GgufArray.Of([.. tokens, .. Enumerable.Range(tokens.Length, pad).Select(i => $"[PAD{i}]")])),
                ("tokenizer.ggml.token_type", GgufArray { Items: int[] types }) => GgufValue.Of(GgufArray.Of([.. types, .. Enumerable.Repeat(5, pad)])), // 5: unused
                ("tokenizer.ggml.scores", GgufArray { Items: float[] scores }) => GgufValue.Of(GgufArray.Of([.. scores, .. new float[pad]])),
                _ => value,
            });
        }
    }

    /// <summary>The tensors of the shape as F32 descriptions (name and dimensions, no data).</summary>
    internal static IReadOnlyList<GgufTensor> Tensors(SynthShape s)
    {
        var list = new List<GgufTensor>();
        void Add(string name, params long[] dims) =>
            list.Add(new GgufTensor(name, GgmlType.F32, dims, 0, GgmlTypeInfo.RowBytes(GgmlType.F32, dims.Aggregate(1L, (x, d) => x * d))));
        int e = s.EmbeddingLength, q = s.Heads * s.HeadDim, kv = s.KvHeads * s.HeadDim;
        Add("token_embd.weight", e, s.VocabSize);
        Add("output_norm.weight", e);
        if (!s.TiedEmbeddings) Add("output.weight", e, s.VocabSize);
        for (int i = 0; i < s.Layers + s.NextnLayers; i++)
        {
            string p = $"blk.{i}.";
            if (i >= s.Layers)
            {
                // A NextN layer: the projection of [embedding; hidden state] and its norms, then a decoder layer as usual.
                Add(p + "nextn.eh_proj.weight", 2 * e, e);
                Add(p + "nextn.enorm.weight", e);
                Add(p + "nextn.hnorm.weight", e);
                Add(p + "nextn.shared_head_norm.weight", e);
            }
            Add(p + "attn_norm.weight", e);
            if (s.Hybrid is { } h)
            {
                Add(p + "post_attention_norm.weight", e);
                if ((i + 1) % h.FullAttentionInterval != 0)
                {
                    int keys = h.KeyHeads * h.HeadDim, values = h.ValueHeads * h.HeadDim;
                    Add(p + "attn_qkv.weight", e, 2 * keys + values);
                    Add(p + "attn_gate.weight", e, values);
                    Add(p + "ssm_conv1d.weight", h.ConvKernel, 2 * keys + values);
                    Add(p + "ssm_dt.bias", h.ValueHeads);
                    Add(p + "ssm_a", h.ValueHeads);
                    Add(p + "ssm_alpha.weight", e, h.ValueHeads);
                    Add(p + "ssm_beta.weight", e, h.ValueHeads);
                    Add(p + "ssm_norm.weight", h.HeadDim);
                    Add(p + "ssm_out.weight", values, e);
                }
                else
                {
                    Add(p + "attn_q.weight", e, 2 * q);
                    Add(p + "attn_k.weight", e, kv);
                    Add(p + "attn_v.weight", e, kv);
                    Add(p + "attn_q_norm.weight", s.HeadDim);
                    Add(p + "attn_k_norm.weight", s.HeadDim);
                    Add(p + "attn_output.weight", q, e);
                }
                Add(p + "ffn_gate.weight", e, s.FeedForwardLength);
                Add(p + "ffn_up.weight", e, s.FeedForwardLength);
                Add(p + "ffn_down.weight", s.FeedForwardLength, e);
                continue;
            }
            if (s.Mla is { } mla)
            {
                Add(p + "attn_q_a.weight", e, mla.QLoraRank);
                Add(p + "attn_q_a_norm.weight", mla.QLoraRank);
                Add(p + "attn_q_b.weight", mla.QLoraRank, s.Heads * (mla.NopeDims + mla.RopeDims));
                Add(p + "attn_kv_a_mqa.weight", e, mla.KvLoraRank + mla.RopeDims);
                Add(p + "attn_kv_a_norm.weight", mla.KvLoraRank);
                Add(p + "attn_k_b.weight", mla.NopeDims, mla.KvLoraRank, s.Heads);
                Add(p + "attn_v_b.weight", mla.KvLoraRank, mla.ValueDims, s.Heads);
                Add(p + "attn_output.weight", s.Heads * mla.ValueDims, e);
                if (mla.IndexerTopK > 0)
                {
                    Add(p + "indexer.attn_q_b.weight", mla.QLoraRank, mla.IndexerHeads * mla.IndexerDim);
                    Add(p + "indexer.attn_k.weight", e, mla.IndexerDim);
                    Add(p + "indexer.k_norm.weight", mla.IndexerDim);
                    Add(p + "indexer.k_norm.bias", mla.IndexerDim);
                    Add(p + "indexer.proj.weight", e, mla.IndexerHeads);
                }
                AddFfn(p, i);
                continue;
            }
            Add(p + "attn_q.weight", e, q);
            Add(p + "attn_k.weight", e, kv);
            Add(p + "attn_v.weight", e, kv);
            if (s.QkvBias)
            {
                Add(p + "attn_q.bias", q);
                Add(p + "attn_k.bias", kv);
                Add(p + "attn_v.bias", kv);
            }
            if (s.QkNorm)
            {
                Add(p + "attn_q_norm.weight", s.HeadDim);
                Add(p + "attn_k_norm.weight", s.HeadDim);
            }
            Add(p + "attn_output.weight", q, e);
            AddFfn(p, i);
        }
        return list;

        void AddFfn(string p, int layer)
        {
            Add(p + "ffn_norm.weight", e);
            if (s.Moe is { } moe && layer >= moe.LeadingDense)
            {
                Add(p + "ffn_gate_inp.weight", e, moe.Experts);
                if (moe.DeepSeekGating) Add(p + "exp_probs_b.bias", moe.Experts);
                Add(p + "ffn_gate_exps.weight", e, moe.ExpertFfn, moe.Experts);
                Add(p + "ffn_up_exps.weight", e, moe.ExpertFfn, moe.Experts);
                Add(p + "ffn_down_exps.weight", moe.ExpertFfn, e, moe.Experts);
                if (moe.Shared == 0) return;
                Add(p + "ffn_gate_shexp.weight", e, moe.ExpertFfn * moe.Shared);
                Add(p + "ffn_up_shexp.weight", e, moe.ExpertFfn * moe.Shared);
                Add(p + "ffn_down_shexp.weight", moe.ExpertFfn * moe.Shared, e);
                return;
            }
            Add(p + "ffn_gate.weight", e, s.FeedForwardLength);
            Add(p + "ffn_up.weight", e, s.FeedForwardLength);
            Add(p + "ffn_down.weight", s.FeedForwardLength, e);
        }
    }

    /// <summary>
    /// Synthesizes <paramref name="shape"/> in <paramref name="mix"/> and writes it to <paramref name="path"/> (atomically).
    /// The same seed gives the same file. <paramref name="progress"/> gets elements written so far and in all.
    /// </summary>
    public static IReadOnlyList<TensorPlan> Write(SynthShape shape, FileType mix, string path, ulong seed = 1, int threads = 0,
        Action<long, long>? progress = null, GgufMetadata? vocabulary = null)
    {
        if (!TensorTypePlan.Supported.Contains(mix)) throw new ArgumentException($"unsupported mix {mix} (supported: {string.Join(", ", TensorTypePlan.Supported)})");
        var md = Metadata(shape, mix);
        if (vocabulary is not null) AddVocabulary(md, shape, vocabulary);
        var plan = TensorTypePlan.Plan(md, Tensors(shape), mix);
        foreach (var p in plan)
            if (!Quantize.IsSupported(p.Type)) throw new NotSupportedException($"tensor '{p.Tensor.Name}' would be {p.Type}, which Kaiyuan cannot write");
        var writer = new GgufWriter();
        foreach (var (key, value) in md.Entries) writer.Metadata.Set(key, value);
        long total = plan.Sum(p => p.Tensor.ElementCount), done = 0;
        progress?.Invoke(0, total);
        int workers = threads > 0 ? threads : Environment.ProcessorCount;
        var circuit = shape.Copying ? new CopyCircuit(shape) : null;
        for (int index = 0; index < plan.Count; index++)
        {
            var p = plan[index];
            ulong tensorSeed = Mix(seed, (ulong)index + 1);
            writer.AddTensor(p.Tensor.Name, p.Type, p.Tensor.Dimensions, stream =>
                WriteTensor(p.Tensor, p.Type, tensorSeed, workers, circuit, stream, rows => progress?.Invoke(done += rows * p.Tensor.RowLength, total)));
        }
        writer.Write(path);
        return plan;
    }

    private enum Fill { Matrix, Norm, Bias, Decay }

    private static Fill KindOf(GgufTensor t) =>
        t.Name.EndsWith(".ssm_a", StringComparison.Ordinal) ? Fill.Decay
        : t.Name.EndsWith(".bias", StringComparison.Ordinal) ? Fill.Bias
        : t.Dimensions.Length == 1 ? Fill.Norm
        : Fill.Matrix;

    private static void WriteTensor(GgufTensor t, GgmlType type, ulong seed, int threads, CopyCircuit? circuit, Stream stream, Action<long> rowsDone)
    {
        int rowLength = checked((int)t.RowLength);
        var kind = KindOf(t);
        // A token embedding row is a vector of the model width; weights scale by the input width (the row length).
        float sigma = kind switch { Fill.Matrix => 1f / MathF.Sqrt(rowLength), Fill.Norm or Fill.Decay => 0.05f, _ => 0.02f };
        // A linear layer's A is −exp(A_log): negative, so its state decays rather than grows.
        float mean = kind switch { Fill.Norm => 1f, Fill.Decay => -1f, _ => 0f };
        RowConverter.Write(stream, t.RowCount, rowLength, type, threads,
            (r, values) =>
            {
                if (circuit?.TryFill(t.Name, r, values) != true) FillRow(values, Mix(seed, (ulong)r), mean, sigma);
            }, Quantize.Row, rowsDone, batchBytes: 8L << 20);
    }

    /// <summary>Approximately normal values (a sum of four uniforms, variance matched) from a splitmix64 stream.</summary>
    internal static void FillRow(Span<float> row, ulong state, float mean, float sigma)
    {
        // Each 16-bit uniform has variance 1/12 of its range²; four of them summed and centred have variance 1/3.
        float scale = sigma * MathF.Sqrt(3f) / 32768f;
        for (int i = 0; i < row.Length; i++)
        {
            ulong r = Next(ref state);
            int sum = (int)(r & 0xffff) + (int)((r >> 16) & 0xffff) + (int)((r >> 32) & 0xffff) + (int)(r >> 48) - 2 * 65535;
            row[i] = mean + sum * scale * 0.5f;
        }
    }

    private static ulong Next(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Mix(ulong a, ulong b)
    {
        ulong s = a * 0x9E3779B97F4A7C15UL + b;
        return Next(ref s);
    }
}
