namespace Kaiyuan.Quantization;

/// <summary>
/// <c>general.file_type</c>: the mix a GGUF was quantized as, numbered as llama.cpp's <c>llama_ftype</c> (the numbers are
/// part of the file format; gaps are retired values).
/// </summary>
/// <remarks>
/// The mixes are described as <see cref="ModelQuantizer"/> writes them for a dense model (MoE models with 8 experts get
/// more bits for attention; rows that do not split into blocks fall back to another type). It writes F32, F16, BF16,
/// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, the Q2_K to Q6_K mixes, IQ4_NL, IQ4_XS, TQ1_0/TQ2_0 and the IQ1_S, IQ1_M, IQ2_XXS,
/// IQ2_XS, IQ2_S, IQ2_M, IQ3_XXS, IQ3_S and IQ3_M mixes (the 1- and 2-bit ones only with an importance matrix) but not
/// Q2_K_S or IQ3_XS; the other values name mixes other tools write.
/// </remarks>
public enum FileType : uint
{
    /// <summary>All weights in F32.</summary>
    F32 = 0,
    /// <summary>Weight matrices in F16.</summary>
    F16 = 1,
    /// <summary>Q4_0 for the weight matrices, the output in Q6_K.</summary>
    Q4_0 = 2,
    /// <summary>Q4_1 for the weight matrices, the output in Q6_K.</summary>
    Q4_1 = 3,
    /// <summary>Q8_0 for the weight matrices, the output included.</summary>
    Q8_0 = 7,
    /// <summary>Q5_0 for the weight matrices, the output in Q6_K.</summary>
    Q5_0 = 8,
    /// <summary>Q5_1 for the weight matrices, the output in Q6_K.</summary>
    Q5_1 = 9,
    /// <summary>
    /// Mostly Q2_K; Q3_K for <c>ffn_down</c>, <c>attn_output</c> and <c>attn_v</c> (Q4_K with four or more query heads per KV
    /// head), Q6_K for the output.
    /// </summary>
    Q2_K = 10,
    /// <summary>Q3_K, small mix: Q6_K for the output.</summary>
    Q3_K_S = 11,
    /// <summary>
    /// Mostly Q3_K, medium mix: Q4_K for <c>attn_output</c>, <c>attn_qkv</c> and most of <c>attn_v</c> and <c>ffn_down</c>
    /// (Q5_K for the first two <c>attn_v</c> and the first sixteenth of <c>ffn_down</c>), Q6_K for the output.
    /// </summary>
    Q3_K_M = 12,
    /// <summary>Mostly Q3_K, large mix: Q5_K for <c>attn_v</c>, <c>ffn_down</c> and <c>attn_output</c>, Q4_K for <c>attn_qkv</c>, Q6_K for the output.</summary>
    Q3_K_L = 13,
    /// <summary>Mostly Q4_K, small mix: Q5_K for the first four <c>attn_v</c> and the first eighth of <c>ffn_down</c>, Q6_K for the output.</summary>
    Q4_K_S = 14,
    /// <summary>
    /// Mostly Q4_K, medium mix: Q6_K for about half of <c>attn_v</c> and <c>ffn_down</c> (the first and last eighth of the
    /// layers and every third between) and for the output, Q5_K for <c>attn_qkv</c>.
    /// </summary>
    Q4_K_M = 15,
    /// <summary>Q5_K, small mix: Q6_K for the output.</summary>
    Q5_K_S = 16,
    /// <summary>
    /// Mostly Q5_K, medium mix: Q6_K for about half of <c>attn_v</c> and <c>ffn_down</c> (as <see cref="Q4_K_M"/>), for
    /// <c>attn_qkv</c> and for the output.
    /// </summary>
    Q5_K_M = 17,
    /// <summary>Q6_K for the weight matrices.</summary>
    Q6_K = 18,
    /// <summary>
    /// Mostly IQ2_XXS (needs an importance matrix): Q2_K for <c>attn_v</c> (Q4_K with four or more query heads per KV head
    /// or experts), the first eighth of <c>ffn_down</c> and the token embedding, Q5_K for the output.
    /// </summary>
    IQ2_XXS = 19,
    /// <summary>Mostly IQ2_XS (needs an importance matrix), bumped as <see cref="IQ2_XXS"/>.</summary>
    IQ2_XS = 20,
    /// <summary>Mostly Q2_K, small mix.</summary>
    Q2_K_S = 21,
    /// <summary>IQ3 mix, extra small.</summary>
    IQ3_XS = 22,
    /// <summary>
    /// Mostly IQ3_XXS: IQ2_S for <c>attn_q</c> and <c>attn_k</c>, IQ3_S for <c>attn_output</c> and the token embedding,
    /// Q4_K for <c>attn_v</c> with four or more query heads per KV head, Q5_K for the output. Without an importance
    /// matrix <c>attn_v</c> is IQ3_S and <c>ffn_down</c> Q3_K (Q4_K in the first eighth).
    /// </summary>
    IQ3_XXS = 23,
    /// <summary>Mostly IQ1_S (needs an importance matrix): IQ2_XXS for <c>attn_output</c>, otherwise bumped as <see cref="IQ2_XXS"/>.</summary>
    IQ1_S = 24,
    /// <summary>
    /// Mostly IQ4_NL (4-bit non-linear levels, 32-element blocks): Q5_K for <c>attn_v</c> with four or more query heads per
    /// KV head and for the first eighth of <c>ffn_down</c>, Q6_K for the output.
    /// </summary>
    IQ4_NL = 25,
    /// <summary>Mostly IQ3_S: Q4_K for <c>attn_v</c> with four or more query heads per KV head, Q6_K for the output.</summary>
    IQ3_S = 26,
    /// <summary>Mostly IQ3_S, medium mix: Q4_K for <c>attn_v</c>, <c>attn_output</c>, <c>attn_qkv</c> and the first eighth of <c>ffn_down</c>, Q6_K for the output.</summary>
    IQ3_M = 27,
    /// <summary>
    /// IQ2 mix, small (needs an importance matrix): mostly IQ2_XS, IQ3_S for <c>attn_v</c> (Q4_K as <see cref="IQ2_XXS"/>),
    /// <c>attn_output</c>, the first eighth of <c>ffn_down</c> and the token embedding, Q5_K for the output.
    /// </summary>
    IQ2_S = 28,
    /// <summary>IQ2 mix, medium (needs an importance matrix): as <see cref="IQ2_S"/> with IQ2_S for most tensors.</summary>
    IQ2_M = 29,
    /// <summary>Mostly IQ4_XS (IQ4_NL's levels with 6-bit block scales in 256-element super-blocks), bumped as <see cref="IQ4_NL"/>.</summary>
    IQ4_XS = 30,
    /// <summary>Mostly IQ1_M (needs an importance matrix), bumped as <see cref="IQ1_S"/>.</summary>
    IQ1_M = 31,
    /// <summary>Weight matrices in BF16.</summary>
    BF16 = 32,
    /// <summary>Mostly TQ1_0 (ternary weights, for models trained ternary): the token embedding in Q4_K, the output in Q6_K.</summary>
    TQ1_0 = 36,
    /// <summary>Mostly TQ2_0 (ternary weights, as <see cref="TQ1_0"/> in 2 bits each, faster to compute).</summary>
    TQ2_0 = 37,
    /// <summary>MXFP4 for the MoE expert weights.</summary>
    MXFP4_MOE = 38,
}

/// <summary>Names of quantization mixes (<c>general.file_type</c>), as llama.cpp spells them.</summary>
public static class FileTypes
{
    /// <summary>The name of a <c>general.file_type</c> value, or "unknown (N)".</summary>
    public static string Name(long value) =>
        value is >= 0 and <= uint.MaxValue && Enum.IsDefined((FileType)(uint)value) ? ((FileType)(uint)value).ToString() : $"unknown ({value})";

    /// <summary>Parses a mix name such as <c>q4_k_m</c> (case-insensitive).</summary>
    public static bool TryParse(string text, out FileType type) =>
        Enum.TryParse(text.Trim(), ignoreCase: true, out type) && Enum.IsDefined(type) && !uint.TryParse(text, out _);
}
