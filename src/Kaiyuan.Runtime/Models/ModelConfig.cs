using Kaiyuan.Gguf;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models;

/// <summary>How a mixture-of-experts router turns logits into expert probabilities (llama.cpp's numbering).</summary>
internal enum ExpertGating { Softmax = 1, Sigmoid = 2 }

/// <summary>Hyper-parameters of a transformer, read from GGUF metadata under the architecture's key prefix.</summary>
internal sealed record ModelConfig
{
    public required string Architecture { get; init; }
    public required int EmbeddingLength { get; init; }
    public required int BlockCount { get; init; }
    public required int HeadCount { get; init; }
    public required int HeadCountKv { get; init; }
    public required int KeyLength { get; init; }
    public required int ValueLength { get; init; }
    public int FeedForwardLength { get; init; }
    public required int VocabSize { get; init; }
    public required int ContextLength { get; init; }
    public required float RmsEpsilon { get; init; }
    public required int RopeDimensions { get; init; }
    public float RopeFreqBase { get; init; } = 10000f;
    public string RopeScalingType { get; init; } = "none";
    public float RopeScalingFactor { get; init; } = 1f;
    public int RopeOriginalContext { get; init; }
    public float RopeYarnLogMultiplier { get; init; }
    public float RopeAttnFactor { get; init; } = 1f;
    public float RopeYarnBetaFast { get; init; } = 32f;
    public float RopeYarnBetaSlow { get; init; } = 1f;

    // Mixture of experts.
    public int ExpertCount { get; init; }
    public int ExpertUsedCount { get; init; }
    public int ExpertSharedCount { get; init; }
    public int ExpertFeedForwardLength { get; init; }
    public int LeadingDenseBlockCount { get; init; }
    public float ExpertWeightsScale { get; init; }
    public bool ExpertWeightsNorm { get; init; }
    internal ExpertGating ExpertGating { get; init; } = ExpertGating.Softmax;
    public int ExpertGroupCount { get; init; }
    public int ExpertGroupUsedCount { get; init; }

    // Multi-head latent attention (DeepSeek-V2/V3, Kimi K2).
    /// <summary>DeepSeek sparse attention's lightning indexer: heads, key length and tokens each query attends to (0: dense attention).</summary>
    public int IndexerHeadCount { get; init; }
    public int IndexerKeyLength { get; init; }
    public int IndexerTopK { get; init; }
    /// <summary>
    /// Per layer, whether its indexer scores tokens itself (a "full" layer) or reuses the top-k of the last full layer
    /// before it (GLM-5.2's "shared" layers); null: every layer is full.
    /// </summary>
    public bool[]? IndexerFull { get; init; }

    /// <summary>Whether layer <paramref name="layer"/> runs its own lightning indexer; a layer the table does not list (a NextN layer after the main stack) does.</summary>
    public bool HasOwnIndexer(int layer) => IndexerFull is not { } full || layer >= full.Length || full[layer];
    public int QLoraRank { get; init; }
    public int KvLoraRank { get; init; }
    public int KeyLengthMla { get; init; }
    public int ValueLengthMla { get; init; }

    // Gated delta-net linear attention (Qwen3.5's recurrent layers), llama.cpp's ssm.* keys.
    /// <summary>Width of the causal depthwise convolution over the mixed q/k/v projections.</summary>
    public int SsmConvKernel { get; init; }
    /// <summary>Floats per key and value head (the per-head state is this squared).</summary>
    public int SsmStateSize { get; init; }
    /// <summary>Key (and query) heads of the linear layers.</summary>
    public int SsmGroupCount { get; init; }
    /// <summary>Value heads of the linear layers, each with its own decay and state.</summary>
    public int SsmTimeStepRank { get; init; }
    /// <summary>Value heads × value head size.</summary>
    public int SsmInnerSize { get; init; }
    /// <summary>Per layer, whether it is recurrent (linear attention) rather than full attention; null: none is.</summary>
    public bool[]? RecurrentLayers { get; init; }
    /// <summary>Multimodal RoPE's sections (pairs of rotary dimensions per position axis); for text every axis sees the same position.</summary>
    public int[]? RopeSections { get; init; }
    /// <summary>Multi-token-prediction (NextN) layers stored after the main stack; loaded, not run.</summary>
    public int NextnLayers { get; init; }

    public bool IsMoe => ExpertCount > 0;
    public bool IsHybrid => RecurrentLayers is not null;
    public bool IsMla => KvLoraRank > 0;

    /// <summary>Layers a model may have at most.</summary>
    public const int MaxLayers = 65536;

    public static ModelConfig FromMetadata(GgufMetadata m)
    {
        string arch = m.GetString("general.architecture");
        string K(string suffix) => $"{arch}.{suffix}";
        int embd = m.GetInt32(K("embedding_length"), min: 1);
        int heads = m.GetInt32(K("attention.head_count"), min: 1);
        int headsKv = m.GetInt32(K("attention.head_count_kv"), heads, min: 1);
        int headDim = embd / heads;
        int keyLength = m.GetInt32(K("attention.key_length"), headDim, min: 1);
        int vocab = m.Contains(K("vocab_size"))
            ? m.GetInt32(K("vocab_size"), min: 1)
            : m.GetArray("tokenizer.ggml.tokens").Count;
        string scaling = m.GetStringOrNull(K("rope.scaling.type")) ?? "none";
        int context = m.GetInt32(K("context_length"), 4096, min: 1);
        if (headsKv > heads || heads % headsKv != 0)
            throw new GgufMetadataException($"{arch}: head_count {heads} is not a multiple of head_count_kv {headsKv}");
        int allLayers = m.GetInt32(K("block_count"), min: 1);
        // Per-layer tables are sized by it before any tensor is looked at: far beyond any model (a few hundred layers), a
        // corrupt count is refused here rather than allocated.
        if (allLayers > MaxLayers) throw new GgufMetadataException($"{arch}: block_count is {allLayers}, more than this runtime supports ({MaxLayers} layers)");
        int nextn = m.GetInt32(K("nextn_predict_layers"), 0, min: 0);
        if (nextn >= allLayers) throw new GgufMetadataException($"{arch}: nextn_predict_layers {nextn} leaves no main layers of {allLayers}");
        int layers = allLayers - nextn;
        return new ModelConfig
        {
            Architecture = arch,
            EmbeddingLength = embd,
            BlockCount = layers,
            NextnLayers = nextn,
            HeadCount = heads,
            HeadCountKv = headsKv,
            KeyLength = keyLength,
            ValueLength = m.GetInt32(K("attention.value_length"), headDim, min: 1),
            FeedForwardLength = m.GetInt32(K("feed_forward_length"), 0, min: 0),
            VocabSize = vocab,
            ContextLength = context,
            RmsEpsilon = m.GetFloat(K("attention.layer_norm_rms_epsilon"), 1e-5f),
            RopeDimensions = m.GetInt32(K("rope.dimension_count"), keyLength, min: 0),
            RopeFreqBase = m.GetFloat(K("rope.freq_base"), 10000f),
            RopeScalingType = scaling,
            RopeScalingFactor = m.GetFloat(K("rope.scaling.factor"), 1f),
            RopeOriginalContext = m.GetInt32(K("rope.scaling.original_context_length"), context, min: 1),
            RopeYarnLogMultiplier = m.GetFloat(K("rope.scaling.yarn_log_multiplier"), 0f),
            RopeAttnFactor = m.GetFloat(K("rope.scaling.attn_factor"), 1f),
            RopeYarnBetaFast = m.GetFloat(K("rope.scaling.yarn_beta_fast"), 32f),
            RopeYarnBetaSlow = m.GetFloat(K("rope.scaling.yarn_beta_slow"), 1f),
            ExpertCount = m.GetInt32(K("expert_count"), 0, min: 0),
            ExpertUsedCount = m.GetInt32(K("expert_used_count"), 0, min: 0),
            ExpertSharedCount = m.GetInt32(K("expert_shared_count"), 0, min: 0),
            ExpertFeedForwardLength = m.GetInt32(K("expert_feed_forward_length"), 0, min: 0),
            LeadingDenseBlockCount = m.GetInt32(K("leading_dense_block_count"), 0, min: 0),
            ExpertWeightsScale = m.GetFloat(K("expert_weights_scale"), 0f),
            ExpertWeightsNorm = m.GetBool(K("expert_weights_norm"), false),
            ExpertGating = (ExpertGating)m.GetInt32(K("expert_gating_func"), 0, min: 0),
            ExpertGroupCount = m.GetInt32(K("expert_group_count"), 0, min: 0),
            ExpertGroupUsedCount = m.GetInt32(K("expert_group_used_count"), 0, min: 0),
            IndexerHeadCount = m.GetInt32(K("attention.indexer.head_count"), 0, min: 0),
            IndexerKeyLength = m.GetInt32(K("attention.indexer.key_length"), 0, min: 0),
            IndexerTopK = m.GetInt32(K("attention.indexer.top_k"), 0, min: 0),
            IndexerFull = IndexerTypes(m, arch, layers, allLayers, context),
            SsmConvKernel = m.GetInt32(K("ssm.conv_kernel"), 0, min: 0),
            SsmStateSize = m.GetInt32(K("ssm.state_size"), 0, min: 0),
            SsmGroupCount = m.GetInt32(K("ssm.group_count"), 0, min: 0),
            SsmTimeStepRank = m.GetInt32(K("ssm.time_step_rank"), 0, min: 0),
            SsmInnerSize = m.GetInt32(K("ssm.inner_size"), 0, min: 0),
            RecurrentLayers = RecurrentPattern(m, arch, layers),
            RopeSections = m.GetArrayOrNull(K("rope.dimension_sections")) is { } sections ? IntArray(sections, K("rope.dimension_sections")) : null,
            QLoraRank = m.GetInt32(K("attention.q_lora_rank"), 0, min: 0),
            KvLoraRank = m.GetInt32(K("attention.kv_lora_rank"), 0, min: 0),
            KeyLengthMla = m.GetInt32(K("attention.key_length_mla"), 0, min: 0),
            ValueLengthMla = m.GetInt32(K("attention.value_length_mla"), 0, min: 0),
        };
    }

    /// <summary>
    /// Which layers are recurrent in a hybrid model: <c>attention.recurrent_layers</c> where the file lists them, else every
    /// layer but each <c>full_attention_interval</c>-th (Qwen3.5: three linear layers, then one full attention).
    /// </summary>
    private static bool[]? RecurrentPattern(GgufMetadata m, string arch, int layers)
    {
        if (!m.Contains($"{arch}.ssm.state_size")) return null;
        if (m.GetArrayOrNull($"{arch}.attention.recurrent_layers") is { } listed)
        {
            var flags = IntArray(listed, $"{arch}.attention.recurrent_layers");
            if (flags.Length < layers) throw new GgufMetadataException($"{arch}.attention.recurrent_layers has {flags.Length} entries for {layers} layers");
            return flags[..layers].Select(f => f != 0).ToArray();
        }
        int interval = m.GetInt32($"{arch}.full_attention_interval", 4, min: 1);
        return Enumerable.Range(0, layers).Select(i => (i + 1) % interval != 0).ToArray();
    }

    private static int[] IntArray(GgufArray array, string key)
    {
        var values = new int[array.Count];
        for (int i = 0; i < values.Length; i++)
            values[i] = array.Items.GetValue(i) switch
            {
                bool b => b ? 1 : 0,
                IConvertible number when Convert.ToInt64(number, System.Globalization.CultureInfo.InvariantCulture) is var v && v is >= int.MinValue and <= int.MaxValue => (int)v,
                _ => throw new GgufMetadataException($"{key} must hold numbers"),
            };
        return values;
    }

    /// <summary>
    /// <c>attention.indexer.types</c> (1 or "full": the layer's own indexer; 0 or "shared": the previous full layer's
    /// choice). GLM-5.2 files without it use GLM-5.2's pattern (two full layers, then one in four), recognised as
    /// llama.cpp does by a trained context of 1M tokens; earlier GLM-5 files have full indexers everywhere.
    /// </summary>
    private static bool[]? IndexerTypes(GgufMetadata m, string arch, int layers, int allLayers, int context)
    {
        if (m.GetArrayOrNull($"{arch}.attention.indexer.types") is { } types)
        {
            // One entry per block, as llama.cpp writes per-layer arrays (NextN layers included), or per main layer.
            if (types.Count != layers && types.Count != allLayers)
                throw new GgufMetadataException($"{arch}.attention.indexer.types has {types.Count} entries for {allLayers} layers");
            var full = new bool[types.Count];
            for (int i = 0; i < full.Length; i++)
                full[i] = types.Items.GetValue(i) switch
                {
                    string text => text == "full" || (text != "shared" ? throw new GgufMetadataException($"{arch}.attention.indexer.types: unknown type '{text}'") : false),
                    IConvertible number => Convert.ToInt64(number, System.Globalization.CultureInfo.InvariantCulture) != 0,
                    _ => throw new GgufMetadataException($"{arch}.attention.indexer.types must hold numbers or \"full\"/\"shared\""),
                };
            if (!full[0]) throw new GgufMetadataException($"{arch}.attention.indexer.types: the first layer cannot share a previous layer's choice");
            return full;
        }
        if (arch == "glm-dsa" && context >= 1 << 20)
            return Enumerable.Range(0, allLayers).Select(i => i < 2 || (i - 2) % 4 == 0).ToArray();
        return null;
    }

    /// <summary>
    /// Rotary parameters with llama.cpp's context-time YaRN adjustments: ext_factor 1 for YaRN, and an attention
    /// factor that cancels the magnitude correction ggml's rope applies when YaRN is on.
    /// </summary>
    internal RopeConfig Rope(RopeStyle style, int? dimensions = null, float[]? freqFactors = null)
    {
        float freqScale = RopeScalingType is "linear" or "yarn" && RopeScalingFactor > 0 ? 1f / RopeScalingFactor : 1f;
        float extFactor = RopeScalingType == "yarn" ? 1f : 0f;
        float attnFactor = 1f;
        if (extFactor != 0)
        {
            static float MScale(float scale, float m) => scale <= 1f ? 1f : 0.1f * m * MathF.Log(scale) + 1f;
            float factor = 1f / freqScale;
            float logMul = EffectiveYarnLogMultiplier;
            if (logMul != 0)
            {
                float mscale = Architecture == "deepseek2" && logMul != 1f ? logMul : 1f;
                attnFactor = MScale(factor, mscale) / MScale(factor, logMul);
            }
            else attnFactor = MScale(factor, 1f);
            attnFactor *= 1f / (1f + 0.1f * MathF.Log(factor));
        }
        attnFactor *= RopeAttnFactor;
        return new RopeConfig
        {
            Dimensions = dimensions ?? RopeDimensions,
            Style = style,
            FreqBase = RopeFreqBase,
            FreqScale = freqScale,
            ExtFactor = extFactor,
            AttnFactor = attnFactor,
            BetaFast = RopeYarnBetaFast,
            BetaSlow = RopeYarnBetaSlow,
            OriginalContext = RopeOriginalContext,
            FreqFactors = freqFactors,
        };
    }

    /// <summary>DeepSeek-V2 converters store yarn_log_multiplier pre-multiplied by 0.1; llama.cpp undoes that.</summary>
    public float EffectiveYarnLogMultiplier => Architecture == "deepseek2" ? RopeYarnLogMultiplier / 0.1f : RopeYarnLogMultiplier;
}
