using Kaiyuan.Gguf;
using Kaiyuan.Tensors;

namespace Kaiyuan.Quantization;

/// <summary>The type one tensor is written as, and whether its data changes (false: copied as it is).</summary>
public readonly record struct TensorPlan(GgufTensor Tensor, GgmlType Type, bool Convert, string? Note);

/// <summary>
/// The per-tensor type choices of a quantization mix, following llama.cpp's <c>llama-quant.cpp</c> (as of late 2025) for
/// the mixes Kaiyuan writes: which tensors are left alone (1-D tensors such as norms and biases, <c>*_norm.weight</c>,
/// the MoE router <c>ffn_gate_inp</c>, position embeddings); the output head (and a tied token embedding) in Q6_K (Q8_0
/// when rows do not split into 256-blocks); the <c>attn_v</c> / <c>ffn_down</c> / <c>attn_output</c> / <c>attn_qkv</c>
/// bumps of the Q2_K, Q3_K_*, Q4_K_*, Q5_K_*, IQ4_* and IQ1_*/IQ2_*/IQ3_* mixes (the 1- and 2-bit i-quant mixes by their own
/// rules), with the first/last-eighth-and-every-third-layer rule of
/// the _M mixes; the 8-expert bumps (attention V/K to Q8_0, attention output to Q5_K); and the fallbacks when a row length
/// is not a multiple of the block (Q4_K→Q5_0, Q5_K→Q5_1, Q6_K→Q8_0, Q2_K/Q3_K/IQ4_XS and the grid i-quants→IQ4_NL; F16 when even that does not
/// fit, or for the 32-blocks). The first eighth of <c>ffn_down</c> depends on the importance matrix as in llama.cpp:
/// Q5_K in the IQ4 mixes only without one, Q4_1/Q5_1 in Q4_0/Q5_0 only with one; so do IQ3_XXS's <c>attn_v</c>
/// and <c>ffn_down</c> (IQ3_S and Q3_K/Q4_K without one). The 70B-only attention-V bump of llama.cpp (a model-size check) is left out.
/// </summary>
public static class TensorTypePlan
{
    /// <summary>The mixes Kaiyuan writes.</summary>
    public static IReadOnlyList<FileType> Supported { get; } =
    [
        FileType.F32, FileType.F16, FileType.BF16, FileType.Q8_0, FileType.Q4_0, FileType.Q4_1, FileType.Q5_0, FileType.Q5_1,
        FileType.Q2_K, FileType.Q3_K_S, FileType.Q3_K_M, FileType.Q3_K_L, FileType.Q4_K_S, FileType.Q4_K_M,
        FileType.Q5_K_S, FileType.Q5_K_M, FileType.Q6_K, FileType.IQ4_NL, FileType.IQ4_XS, FileType.TQ1_0, FileType.TQ2_0,
        FileType.IQ2_XXS, FileType.IQ2_XS, FileType.IQ2_S, FileType.IQ2_M, FileType.IQ3_XXS, FileType.IQ3_S, FileType.IQ3_M,
        FileType.IQ1_S, FileType.IQ1_M,
    ];

    /// <summary>The tensor type a mix uses by default.</summary>
    internal static GgmlType DefaultType(FileType mix) => mix switch
    {
        FileType.F32 => GgmlType.F32,
        FileType.F16 => GgmlType.F16,
        FileType.BF16 => GgmlType.BF16,
        FileType.Q8_0 => GgmlType.Q8_0,
        FileType.Q4_0 => GgmlType.Q4_0,
        FileType.Q4_1 => GgmlType.Q4_1,
        FileType.Q5_0 => GgmlType.Q5_0,
        FileType.Q5_1 => GgmlType.Q5_1,
        FileType.Q2_K => GgmlType.Q2_K,
        FileType.Q3_K_S or FileType.Q3_K_M or FileType.Q3_K_L => GgmlType.Q3_K,
        FileType.Q4_K_S or FileType.Q4_K_M => GgmlType.Q4_K,
        FileType.Q5_K_S or FileType.Q5_K_M => GgmlType.Q5_K,
        FileType.Q6_K => GgmlType.Q6_K,
        FileType.IQ4_NL => GgmlType.IQ4_NL,
        FileType.IQ4_XS => GgmlType.IQ4_XS,
        FileType.TQ1_0 => GgmlType.TQ1_0,
        FileType.TQ2_0 => GgmlType.TQ2_0,
        FileType.IQ2_XXS => GgmlType.IQ2_XXS,
        FileType.IQ2_XS or FileType.IQ2_S => GgmlType.IQ2_XS,
        FileType.IQ2_M => GgmlType.IQ2_S,
        FileType.IQ3_XXS => GgmlType.IQ3_XXS,
        FileType.IQ3_S or FileType.IQ3_M => GgmlType.IQ3_S,
        FileType.IQ1_S => GgmlType.IQ1_S,
        FileType.IQ1_M => GgmlType.IQ1_M,
        _ => throw new NotSupportedException($"quantization mix {mix} is not supported (supported: {string.Join(", ", Supported)})"),
    };

    private static bool IsQuantized(GgmlType t) => t is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.F64
        or GgmlType.I8 or GgmlType.I16 or GgmlType.I32 or GgmlType.I64);

    private static readonly string[] NeverQuantizedParts =
    [
        "_norm.weight", "ffn_gate_inp.weight", "altup", "laurel", "per_layer_model_proj", "ssm_conv1d.weight",
        "shortconv.conv.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight", "time_mix_a1.weight",
        "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd.",
    ];

    /// <summary>
    /// Plans every tensor of <paramref name="file"/>, in the order llama.cpp writes them (and counts layers in): tensors
    /// outside the blocks first, then block by block by number, each group by name (ordinal).
    /// </summary>
    public static IReadOnlyList<TensorPlan> Plan(GgufFile file, FileType mix) => Plan(file.Metadata, file.Tensors, mix);

    /// <summary>
    /// <see cref="Plan(GgufFile, FileType)"/> for a run with an importance matrix when <paramref name="withImportance"/>:
    /// llama.cpp then leaves the first eighth of <c>ffn_down</c> at IQ4 in the IQ4 mixes, and lifts it from Q4_0/Q5_0
    /// to Q4_1/Q5_1 in those mixes.
    /// </summary>
    public static IReadOnlyList<TensorPlan> Plan(GgufFile file, FileType mix, bool withImportance) =>
        Plan(file.Metadata, file.Tensors, mix, withImportance);

    /// <summary>Plans tensors described by metadata and tensor infos alone (no data needed), e.g. for synthesized models.</summary>
    internal static IReadOnlyList<TensorPlan> Plan(GgufMetadata md, IReadOnlyList<GgufTensor> tensors, FileType mix, bool withImportance = false)
    {
        var defaultType = DefaultType(mix);
        string arch = md.GetStringOrNull("general.architecture") ?? "";
        int nLayer = (int)md.GetInteger($"{arch}.block_count", 0);
        int nExpert = (int)md.GetInteger($"{arch}.expert_count", 0);
        int nHead = FirstInt(md, $"{arch}.attention.head_count");
        int nHeadKv = FirstInt(md, $"{arch}.attention.head_count_kv", nHead);
        int nGqa = nHeadKv > 0 ? nHead / nHeadKv : 1;
        bool hasOutput = tensors.Any(t => t.Name == "output.weight");
        int nAttentionWv = tensors.Count(t => t.Name.Contains("attn_v.weight") || t.Name.Contains("attn_qkv.weight") || t.Name.Contains("attn_kv_b.weight"));
        var state = new State { NLayer = nLayer, NExpert = Math.Max(1, nExpert), NGqa = nGqa, HasOutput = hasOutput, NAttentionWv = nAttentionWv, Arch = arch, HasImportance = withImportance };

        var plans = new List<TensorPlan>(tensors.Count);
        foreach (var t in tensors.OrderBy(t => t.Name, WriteOrder.Instance))
        {
            bool quantize = Dims(t) >= 2
                            && !NeverQuantizedParts.Any(p => t.Name.Contains(p, StringComparison.Ordinal))
                            && t.Name is not ("position_embd.weight" or "token_types.weight");
            if (!quantize || mix == FileType.F32 && t.Type == GgmlType.F32)
            {
                plans.Add(new TensorPlan(t, t.Type, false, null));
                continue;
            }
            var type = defaultType;
            string? note = null;
            if (IsQuantized(defaultType)) (type, note) = Choose(state, type, t, mix);
            plans.Add(new TensorPlan(t, type, type != t.Type, note));
        }
        return plans;
    }

    /// <summary>llama.cpp's tensor order: by block number (-1 outside the blocks), then by name.</summary>
    internal sealed class WriteOrder : IComparer<string>
    {
        public static readonly WriteOrder Instance = new();

        public int Compare(string? a, string? b)
        {
            int la = Block(a ?? ""), lb = Block(b ?? "");
            return la != lb ? la.CompareTo(lb) : string.CompareOrdinal(a, b);
        }

        private static int Block(string name)
        {
            if (!name.StartsWith("blk.", StringComparison.Ordinal)) return -1;
            int end = 4;
            while (end < name.Length && char.IsAsciiDigit(name[end])) end++;
            return end > 4 && end < name.Length && name[end] == '.' && int.TryParse(name.AsSpan(4, end - 4), out int n) ? n : -1;
        }
    }

    private sealed class State
    {
        public int NLayer, NExpert, NGqa, NAttentionWv, IAttentionWv, IFfnDown;
        public bool HasOutput, HasImportance;
        public string Arch = "";
    }

    private static int Dims(GgufTensor t)
    {
        int n = t.Dimensions.Length;
        while (n > 1 && t.Dimensions[n - 1] == 1) n--;
        return n;
    }

    private static int FirstInt(GgufMetadata md, string key, int fallback = 0)
    {
        if (!md.TryGet(key, out var v)) return fallback;
        if (v.Value is GgufArray a) return a.Count > 0 ? System.Convert.ToInt32(a.Items.GetValue(0), System.Globalization.CultureInfo.InvariantCulture) : fallback;
        return (int)md.GetInteger(key);
    }

    /// <summary>Attention V and the tensors that hold it (fused QKV, MLA's kv_b), which llama.cpp's IQ mixes treat alike.</summary>
    private static bool IsAttentionV(string name) => name.Contains("attn_v.weight", StringComparison.Ordinal)
        || name.Contains("attn_qkv.weight", StringComparison.Ordinal) || name.Contains("attn_kv_b.weight", StringComparison.Ordinal);

    /// <summary>llama.cpp's first, eighth-from-each-end and every-third-layer rule for the _M mixes.</summary>
    private static bool UseMoreBits(int layer, int layers) => layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;

    private static int LayerOf(State s, string name, int counter)
    {
        if (s.NExpert <= 1) return counter;
        if (!name.StartsWith("blk.", StringComparison.Ordinal)) throw new InvalidDataException($"cannot tell the layer of tensor '{name}'");
        int dot = name.IndexOf('.', 4);
        if (dot < 0 || !int.TryParse(name.AsSpan(4, dot - 4), out int layer) || layer < 0 || layer >= s.NLayer)
            throw new InvalidDataException($"cannot tell the layer of tensor '{name}'");
        return layer;
    }

    private static (GgmlType, string?) Choose(State s, GgmlType type, GgufTensor t, FileType mix)
    {
        string name = t.Name;
        long nx = t.Dimensions[0];
        if (name == "output.weight" || !s.HasOutput && name == "token_embd.weight")
        {
            if (s.Arch == "falcon" || nx % GgmlTypeInfo.Geometry(type).BlockSize != 0) type = GgmlType.Q8_0;
            // The low-bit i-quant mixes spend less on the output head.
            else if (mix is FileType.IQ2_XXS or FileType.IQ2_XS or FileType.IQ3_XXS or FileType.IQ1_S or FileType.IQ2_S
                     or FileType.IQ2_M or FileType.IQ1_M) type = GgmlType.Q5_K;
            else if (type != GgmlType.Q8_0) type = GgmlType.Q6_K;
        }
        else if (name == "token_embd.weight" || name == "per_layer_token_embd.weight")
        {
            // The ternary and low-bit i-quant mixes change the token embedding: it is looked up, never covered by an
            // importance matrix, so it gets a type that needs none.
            if (mix is FileType.TQ1_0 or FileType.TQ2_0) type = GgmlType.Q4_K;
            else if (mix is FileType.IQ2_XXS or FileType.IQ2_XS or FileType.IQ1_S or FileType.IQ1_M) type = GgmlType.Q2_K;
            else if (mix is FileType.IQ2_S or FileType.IQ2_M or FileType.IQ3_XXS) type = GgmlType.IQ3_S;
        }
        else if (mix is FileType.IQ2_XXS or FileType.IQ2_XS or FileType.IQ2_S or FileType.IQ2_M or FileType.IQ1_S or FileType.IQ1_M)
        {
            // The 1- and 2-bit mixes have rules of their own (and none of the later branches apply to them).
            bool iq2sOrM = mix is FileType.IQ2_S or FileType.IQ2_M;
            if (IsAttentionV(name))
            {
                if (s.NGqa >= 4 || s.NExpert >= 4) type = GgmlType.Q4_K;
                else type = iq2sOrM ? GgmlType.IQ3_S : GgmlType.Q2_K;
                s.IAttentionWv++;
            }
            else if (s.NExpert == 8 && name.Contains("attn_k.weight", StringComparison.Ordinal)) type = GgmlType.Q4_K;
            else if (name.Contains("ffn_down", StringComparison.Ordinal))
            {
                // Counted in tensors, not layers, as llama.cpp does here.
                if (s.IFfnDown < s.NLayer / 8) type = iq2sOrM ? GgmlType.IQ3_S : GgmlType.Q2_K;
                s.IFfnDown++;
            }
            else if (name.Contains("attn_output.weight", StringComparison.Ordinal))
            {
                if (s.NExpert == 8) type = GgmlType.Q5_K;
                else if (mix is FileType.IQ1_S or FileType.IQ1_M) type = GgmlType.IQ2_XXS;
                else if (iq2sOrM) type = GgmlType.IQ3_S;
            }
        }
        else if (name.Contains("attn_v.weight", StringComparison.Ordinal))
        {
            if (mix == FileType.Q2_K) type = s.NGqa >= 4 ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (mix == FileType.Q3_K_M) type = s.IAttentionWv < 2 ? GgmlType.Q5_K : GgmlType.Q4_K;
            else if (mix == FileType.Q3_K_L) type = GgmlType.Q5_K;
            // Without an importance matrix IQ3_XXS would be too coarse for V.
            else if (mix == FileType.IQ3_XXS) type = s.NGqa >= 4 ? GgmlType.Q4_K : !s.HasImportance ? GgmlType.IQ3_S : GgmlType.IQ3_XXS;
            else if (mix == FileType.IQ3_S && s.NGqa >= 4 || mix == FileType.IQ3_M) type = GgmlType.Q4_K;
            else if (mix is FileType.IQ4_NL or FileType.IQ4_XS && s.NGqa >= 4) type = GgmlType.Q5_K;
            else if (mix is FileType.Q4_K_M or FileType.Q5_K_M && UseMoreBits(s.IAttentionWv, s.NAttentionWv)) type = GgmlType.Q6_K;
            else if (mix == FileType.Q4_K_S && s.IAttentionWv < 4) type = GgmlType.Q5_K;
            if (s.NExpert == 8) type = GgmlType.Q8_0;
            s.IAttentionWv++;
        }
        else if (name.Contains("attn_k.weight", StringComparison.Ordinal))
        {
            if (s.NExpert == 8) type = GgmlType.Q8_0;
            else if (mix == FileType.IQ3_XXS) type = GgmlType.IQ2_S;
        }
        else if (name.Contains("attn_q.weight", StringComparison.Ordinal))
        {
            if (mix == FileType.IQ3_XXS) type = GgmlType.IQ2_S;
        }
        else if (name.Contains("ffn_down", StringComparison.Ordinal))
        {
            int layer = LayerOf(s, name, s.IFfnDown), n = s.NLayer;
            bool falcon = s.Arch == "falcon";
            if (mix == FileType.Q2_K) type = GgmlType.Q3_K;
            else if (mix == FileType.IQ3_XXS && !s.HasImportance) type = layer < n / 8 ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (mix == FileType.Q3_K_M)
                type = layer < n / 16 ? GgmlType.Q5_K : !falcon || UseMoreBits(layer, n) ? GgmlType.Q4_K : GgmlType.Q3_K;
            else if (mix == FileType.IQ3_M && (layer < n / 8 || s.NExpert == 8 && UseMoreBits(layer, n))) type = GgmlType.Q4_K;
            else if (mix == FileType.Q3_K_L) type = falcon ? GgmlType.Q4_K : GgmlType.Q5_K;
            else if (mix == FileType.Q4_K_M)
            {
                if (falcon) type = layer < n / 16 ? GgmlType.Q6_K : UseMoreBits(layer, n) ? GgmlType.Q5_K : GgmlType.Q4_K;
                else if (UseMoreBits(layer, n)) type = GgmlType.Q6_K;
            }
            else if (mix is FileType.IQ4_NL or FileType.IQ4_XS && layer < n / 8 && !s.HasImportance) type = GgmlType.Q5_K;
            else if (mix == FileType.Q5_K_M && UseMoreBits(layer, n)) type = GgmlType.Q6_K;
            else if (mix == FileType.Q4_K_S && !falcon && layer < n / 8) type = GgmlType.Q5_K;
            // Guards the first ffn_down layers, which go wrong even with an importance matrix in Q4_0/Q5_0.
            else if (mix is FileType.Q4_0 or FileType.Q5_0 && s.HasImportance && layer < n / 8)
                type = mix == FileType.Q4_0 ? GgmlType.Q4_1 : GgmlType.Q5_1;
            s.IFfnDown++;
        }
        else if (name.Contains("attn_output.weight", StringComparison.Ordinal))
        {
            if (s.Arch != "falcon")
            {
                if (s.NExpert == 8)
                {
                    if (mix is FileType.Q2_K or FileType.Q3_K_S or FileType.Q3_K_M or FileType.Q4_K_S or FileType.Q4_K_M
                        or FileType.IQ4_NL or FileType.IQ4_XS or FileType.IQ3_XXS or FileType.IQ3_S or FileType.IQ3_M) type = GgmlType.Q5_K;
                }
                else if (mix == FileType.Q2_K) type = GgmlType.Q3_K;
                else if (mix == FileType.IQ3_XXS) type = GgmlType.IQ3_S;
                else if (mix == FileType.IQ3_M) type = GgmlType.Q4_K;
                else if (mix == FileType.Q3_K_M) type = GgmlType.Q4_K;
                else if (mix == FileType.Q3_K_L) type = GgmlType.Q5_K;
            }
            else if (mix == FileType.Q3_K_L) type = GgmlType.Q4_K;
        }
        else if (name.Contains("attn_qkv.weight", StringComparison.Ordinal))
        {
            if (mix is FileType.Q3_K_M or FileType.Q3_K_L or FileType.IQ3_M) type = GgmlType.Q4_K;
            else if (mix == FileType.Q4_K_M) type = GgmlType.Q5_K;
            else if (mix == FileType.Q5_K_M) type = GgmlType.Q6_K;
        }

        if (nx % GgmlTypeInfo.Geometry(type).BlockSize == 0) return (type, null);
        var wanted = type;
        type = type switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.IQ4_XS or GgmlType.IQ1_S or GgmlType.IQ1_M or GgmlType.IQ2_XXS
                or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ3_XXS or GgmlType.IQ3_S => GgmlType.IQ4_NL,
            GgmlType.TQ1_0 or GgmlType.TQ2_0 => GgmlType.Q4_0,
            GgmlType.Q4_K => GgmlType.Q5_0,
            GgmlType.Q5_K => GgmlType.Q5_1,
            GgmlType.Q6_K => GgmlType.Q8_0,
            _ => type,
        };
        if (nx % GgmlTypeInfo.Geometry(type).BlockSize != 0) type = GgmlType.F16;
        return (type, $"rows of {nx} are not a multiple of {GgmlTypeInfo.Geometry(wanted).BlockSize}: {wanted} → {type}");
    }
}
