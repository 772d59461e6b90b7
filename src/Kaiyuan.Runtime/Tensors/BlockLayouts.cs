namespace Kaiyuan.Tensors;

/// <summary>
/// Byte layouts of ggml's quantized blocks (ggml-common.h). All multi-byte fields are little-endian; fp16 scales are
/// stored as raw binary16 bits. Offsets are from the start of a block.
/// </summary>
internal static class BlockLayouts
{
    /// <summary>Elements per block of the simple (legacy) quantizations.</summary>
    public const int QK = 32;

    /// <summary>Elements per super-block of the K-quantizations.</summary>
    public const int QK_K = 256;

    /// <summary>block_q4_0: fp16 d; 16 bytes of nibbles (low nibbles = elements 0..15, high = 16..31). x = d * (q - 8).</summary>
    public static class Q4_0
    {
        public const int Size = 18, D = 0, Qs = 2;
    }

    /// <summary>block_q4_1: fp16 d, fp16 m; 16 bytes of nibbles. x = d * q + m.</summary>
    public static class Q4_1
    {
        public const int Size = 20, D = 0, M = 2, Qs = 4;
    }

    /// <summary>block_q5_0: fp16 d; uint32 qh (bit j = 5th bit of element j); 16 bytes of low nibbles. x = d * (q - 16).</summary>
    public static class Q5_0
    {
        public const int Size = 22, D = 0, Qh = 2, Qs = 6;
    }

    /// <summary>block_q5_1: fp16 d, fp16 m; uint32 qh; 16 bytes of low nibbles. x = d * q + m.</summary>
    public static class Q5_1
    {
        public const int Size = 24, D = 0, M = 2, Qh = 4, Qs = 8;
    }

    /// <summary>block_q8_0: fp16 d; 32 signed bytes. x = d * q.</summary>
    public static class Q8_0
    {
        public const int Size = 34, D = 0, Qs = 2;
    }

    /// <summary>block_q8_1: fp16 d; fp16 s = d * sum(q); 32 signed bytes.</summary>
    public static class Q8_1
    {
        public const int Size = 36, D = 0, S = 2, Qs = 4;
    }

    /// <summary>
    /// block_q2_K: 16 bytes of scales (low nibble = scale, high nibble = min, per 16 elements); 64 bytes of 2-bit quants;
    /// fp16 d (scale of scales); fp16 dmin (scale of mins). x = d * sc * q - dmin * m.
    /// </summary>
    public static class Q2_K
    {
        public const int Size = 84, Scales = 0, Qs = 16, D = 80, DMin = 82;
    }

    /// <summary>
    /// block_q3_K: 32 bytes hmask (high bit of each 3-bit quant); 64 bytes of low 2 bits; 12 bytes of 6-bit scales
    /// (16 of them, biased by 32); fp16 d. x = d * (sc - 32) * (q - (high bit ? 0 : 4)).
    /// </summary>
    public static class Q3_K
    {
        public const int Size = 110, HMask = 0, Qs = 32, Scales = 96, D = 108;
    }

    /// <summary>
    /// block_q4_K: fp16 d; fp16 dmin; 12 bytes packing 8 six-bit scales and 8 six-bit mins; 128 bytes of nibbles
    /// (each 32 bytes hold two sub-blocks of 32: low nibbles first). x = d * sc * q - dmin * m.
    /// </summary>
    public static class Q4_K
    {
        public const int Size = 144, D = 0, DMin = 2, Scales = 4, Qs = 16;
    }

    /// <summary>block_q5_K: as Q4_K plus 32 bytes qh of fifth bits (bit 2k / 2k+1 for sub-blocks 2k / 2k+1).</summary>
    public static class Q5_K
    {
        public const int Size = 176, D = 0, DMin = 2, Scales = 4, Qh = 16, Qs = 48;
    }

    /// <summary>
    /// block_q6_K: 128 bytes of low nibbles; 64 bytes of high 2-bit pairs; 16 signed 8-bit scales; fp16 d.
    /// x = d * sc * (q - 32).
    /// </summary>
    public static class Q6_K
    {
        public const int Size = 210, Ql = 0, Qh = 128, Scales = 192, D = 208;
    }

    /// <summary>IQ4_NL: fp16 d, then 16 bytes of 4-bit indices into <see cref="Iq4Levels"/> (low nibbles elements 0..15, high 16..31).</summary>
    public static class IQ4_NL
    {
        public const int Size = 18, D = 0, Qs = 2;
    }

    /// <summary>
    /// IQ4_XS: fp16 d; the eight 32-element sub-blocks' 6-bit scales, their high 2 bits in a uint16 (2 per sub-block) and
    /// low 4 bits in 4 bytes (2 per byte, low nibble first); then 128 bytes of indices laid out as IQ4_NL's per sub-block.
    /// </summary>
    public static class IQ4_XS
    {
        public const int Size = 136, D = 0, ScalesH = 2, ScalesL = 4, Qs = 8;
    }

    /// <summary>
    /// TQ1_0 (ternary, 1.69 bits): 48 bytes holding five base-3 digits each (240 elements), 4 bytes holding four each
    /// (the last 16), then fp16 d; an element is d·(digit − 1). See <see cref="Ternary"/> for the digit order.
    /// </summary>
    public static class TQ1_0
    {
        public const int Size = 54, Qs = 0, Qh = 48, D = 52;
    }

    /// <summary>TQ2_0 (ternary, 2 bits): 64 bytes of 2-bit codes (element 128c + 32l + m in bits 2l of byte 32c + m), then fp16 d; an element is d·(code − 1).</summary>
    public static class TQ2_0
    {
        public const int Size = 66, Qs = 0, D = 64;
    }

    /// <summary>
    /// IQ2_XXS: fp16 d, then per 32-element sub-block two uint32: the first holds four 8-bit grid indices (8 elements
    /// each, <see cref="IqGrids.Iq2Xxs"/>), the second four 7-bit sign fields and, in its top 4 bits, the scale s
    /// (x = d·(2s+1)/8·grid·sign).
    /// </summary>
    public static class IQ2_XXS
    {
        public const int Size = 66, D = 0, Qs = 2;
    }

    /// <summary>
    /// IQ2_XS: fp16 d; 32 uint16 (a 9-bit grid index into <see cref="IqGrids.Iq2Xs"/> and a 7-bit sign field per 8
    /// elements); 8 bytes of two 4-bit scales per sub-block of 32 (one per 16 elements).
    /// </summary>
    public static class IQ2_XS
    {
        public const int Size = 74, D = 0, Qs = 2, Scales = 66;
    }

    /// <summary>
    /// IQ2_S: fp16 d; 32 bytes of grid index low bits and 32 bytes of plain 8-bit signs (one per 8 elements); 8 bytes of
    /// index high bits (2 per group of 8); 8 bytes of two 4-bit scales per sub-block. Grid <see cref="IqGrids.Iq2S"/>.
    /// </summary>
    public static class IQ2_S
    {
        public const int Size = 82, D = 0, Qs = 2, Signs = 34, Qh = 66, Scales = 74;
    }

    /// <summary>
    /// IQ3_XXS: fp16 d; 64 bytes of grid indices (4 elements each, <see cref="IqGrids.Iq3Xxs"/>); per sub-block a uint32
    /// of four 7-bit sign fields and a 4-bit scale s on top (x = d·(2s+1)/4·grid·sign).
    /// </summary>
    public static class IQ3_XXS
    {
        public const int Size = 98, D = 0, Qs = 2, ScalesAndSigns = 66;
    }

    /// <summary>
    /// IQ3_S: fp16 d; 64 bytes of grid index low bits; 8 bytes of their ninth bits (one byte per sub-block); 32 bytes of
    /// plain signs; 4 bytes of 4-bit scales, one per sub-block (x = d·(2s+1)·grid·sign). Grid <see cref="IqGrids.Iq3S"/>.
    /// </summary>
    public static class IQ3_S
    {
        public const int Size = 110, D = 0, Qs = 2, Qh = 66, Signs = 74, Scales = 106;
    }

    /// <summary>
    /// IQ1_S: fp16 d; 32 bytes of grid index low bits; per sub-block a uint16 holding the index high bits (3 per group of
    /// 8), a 3-bit scale s (bits 12–14) and the sign of the shift (bit 15): x = d·(2s+1)·(grid ± 1/8).
    /// </summary>
    public static class IQ1_S
    {
        public const int Size = 50, D = 0, Qs = 2, Qh = 34;
    }

    /// <summary>
    /// IQ1_M: 32 bytes of grid index low bits; 16 bytes of high bits and shift signs (a nibble per group of 8); 8 bytes
    /// of 3-bit scales (two per sub-block) whose four top nibbles together form the fp16 d.
    /// </summary>
    public static class IQ1_M
    {
        public const int Size = 56, Qs = 0, Qh = 32, Scales = 48;
    }

    /// <summary>block_q8_K (activations only): float d; 256 signed bytes; 16 int16 sums of each group of 16 quants.</summary>
    public static class Q8_K
    {
        public const int Size = 292, D = 0, Qs = 4, BSums = 260;
    }
}
