namespace Kaiyuan.Gguf;

/// <summary>Tensor element types, numbered exactly as ggml numbers them in GGUF files.</summary>
public enum GgmlType : uint
{
    /// <summary>32-bit IEEE float (4 bytes per element).</summary>
    F32 = 0,
    /// <summary>16-bit IEEE half-precision float (2 bytes per element).</summary>
    F16 = 1,
    /// <summary>4-bit quantization in blocks of 32 with one f16 scale (18 bytes per block, 4.5 bits per weight).</summary>
    Q4_0 = 2,
    /// <summary>4-bit quantization in blocks of 32 with an f16 scale and an f16 minimum (20 bytes per block).</summary>
    Q4_1 = 3,
    /// <summary>5-bit quantization in blocks of 32 with one f16 scale (22 bytes per block).</summary>
    Q5_0 = 6,
    /// <summary>5-bit quantization in blocks of 32 with an f16 scale and an f16 minimum (24 bytes per block).</summary>
    Q5_1 = 7,
    /// <summary>8-bit quantization in blocks of 32 with one f16 scale (34 bytes per block).</summary>
    Q8_0 = 8,
    /// <summary>8-bit quantization in blocks of 32 with an f16 scale and the f16 scaled sum of its values (36 bytes per block); ggml's intermediate type for activations.</summary>
    Q8_1 = 9,
    /// <summary>2-bit K-quant: super-blocks of 256 in 16 sub-blocks of 16 with 4-bit scales and minimums (84 bytes per super-block, 2.625 bits per weight).</summary>
    Q2_K = 10,
    /// <summary>3-bit K-quant: super-blocks of 256 in 16 sub-blocks of 16 with 6-bit scales (110 bytes per super-block, 3.4375 bits per weight).</summary>
    Q3_K = 11,
    /// <summary>4-bit K-quant: super-blocks of 256 in 8 sub-blocks of 32 with 6-bit scales and minimums (144 bytes per super-block, 4.5 bits per weight).</summary>
    Q4_K = 12,
    /// <summary>5-bit K-quant: super-blocks of 256 in 8 sub-blocks of 32 with 6-bit scales and minimums (176 bytes per super-block, 5.5 bits per weight).</summary>
    Q5_K = 13,
    /// <summary>6-bit K-quant: super-blocks of 256 in 16 sub-blocks of 16 with 8-bit scales (210 bytes per super-block, 6.5625 bits per weight).</summary>
    Q6_K = 14,
    /// <summary>8-bit K-quant: super-blocks of 256 with an f32 scale and sums of each 16 (292 bytes per super-block); ggml's intermediate type for activations.</summary>
    Q8_K = 15,
    /// <summary>2-bit i-quant from a lattice codebook, super-blocks of 256 (66 bytes per super-block, 2.0625 bits per weight).</summary>
    IQ2_XXS = 16,
    /// <summary>2-bit i-quant from a lattice codebook, super-blocks of 256 (74 bytes per super-block, 2.3125 bits per weight).</summary>
    IQ2_XS = 17,
    /// <summary>3-bit i-quant from a lattice codebook, super-blocks of 256 (98 bytes per super-block, 3.0625 bits per weight).</summary>
    IQ3_XXS = 18,
    /// <summary>1-bit i-quant, super-blocks of 256 (50 bytes per super-block, 1.5625 bits per weight).</summary>
    IQ1_S = 19,
    /// <summary>4-bit non-linear quantization (a fixed 16-value codebook) in blocks of 32 with one f16 scale (18 bytes per block).</summary>
    IQ4_NL = 20,
    /// <summary>3-bit i-quant, super-blocks of 256 (110 bytes per super-block, 3.4375 bits per weight).</summary>
    IQ3_S = 21,
    /// <summary>2-bit i-quant, super-blocks of 256 (82 bytes per super-block, 2.5625 bits per weight).</summary>
    IQ2_S = 22,
    /// <summary>4-bit non-linear quantization in super-blocks of 256 with 6-bit sub-block scales (136 bytes per super-block, 4.25 bits per weight).</summary>
    IQ4_XS = 23,
    /// <summary>8-bit signed integer (1 byte per element).</summary>
    I8 = 24,
    /// <summary>16-bit signed integer (2 bytes per element).</summary>
    I16 = 25,
    /// <summary>32-bit signed integer (4 bytes per element).</summary>
    I32 = 26,
    /// <summary>64-bit signed integer (8 bytes per element).</summary>
    I64 = 27,
    /// <summary>64-bit IEEE double (8 bytes per element).</summary>
    F64 = 28,
    /// <summary>1-bit i-quant, super-blocks of 256 (56 bytes per super-block, 1.75 bits per weight).</summary>
    IQ1_M = 29,
    /// <summary>16-bit bfloat16, a float32 with its low 16 mantissa bits dropped (2 bytes per element).</summary>
    BF16 = 30,
    /// <summary>Ternary (-1, 0, 1) quantization packed about 1.69 bits per weight, super-blocks of 256 (54 bytes per super-block).</summary>
    TQ1_0 = 34,
    /// <summary>Ternary (-1, 0, 1) quantization at 2 bits per value, super-blocks of 256 (66 bytes per super-block).</summary>
    TQ2_0 = 35,
    /// <summary>Microscaling FP4: blocks of 32 four-bit E2M1 floats sharing one 8-bit power-of-two scale (17 bytes per block).</summary>
    MXFP4 = 39,
}

/// <summary>Block geometry of each type: a row of n elements is n / BlockSize blocks of TypeSize bytes.</summary>
public static class GgmlTypeInfo
{
    /// <summary>Elements per block and bytes per block; (0, 0) for a number ggml does not define.</summary>
    public static (int BlockSize, int TypeSize) Geometry(GgmlType type) => type switch
    {
        GgmlType.F32 => (1, 4),
        GgmlType.F16 => (1, 2),
        GgmlType.BF16 => (1, 2),
        GgmlType.F64 => (1, 8),
        GgmlType.I8 => (1, 1),
        GgmlType.I16 => (1, 2),
        GgmlType.I32 => (1, 4),
        GgmlType.I64 => (1, 8),
        GgmlType.Q4_0 => (32, 18),
        GgmlType.Q4_1 => (32, 20),
        GgmlType.Q5_0 => (32, 22),
        GgmlType.Q5_1 => (32, 24),
        GgmlType.Q8_0 => (32, 34),
        GgmlType.Q8_1 => (32, 36),
        GgmlType.Q2_K => (256, 84),
        GgmlType.Q3_K => (256, 110),
        GgmlType.Q4_K => (256, 144),
        GgmlType.Q5_K => (256, 176),
        GgmlType.Q6_K => (256, 210),
        GgmlType.Q8_K => (256, 292),
        GgmlType.IQ2_XXS => (256, 66),
        GgmlType.IQ2_XS => (256, 74),
        GgmlType.IQ3_XXS => (256, 98),
        GgmlType.IQ1_S => (256, 50),
        GgmlType.IQ4_NL => (32, 18),
        GgmlType.IQ3_S => (256, 110),
        GgmlType.IQ2_S => (256, 82),
        GgmlType.IQ4_XS => (256, 136),
        GgmlType.IQ1_M => (256, 56),
        GgmlType.TQ1_0 => (256, 54),
        GgmlType.TQ2_0 => (256, 66),
        GgmlType.MXFP4 => (32, 17),
        _ => (0, 0),
    };

    /// <summary>True when ggml defines this type number (the file can be read and its size known).</summary>
    public static bool IsKnown(GgmlType type) => Geometry(type).BlockSize != 0;

    /// <summary>Bytes of a row of <paramref name="elements"/> elements; the caller guarantees divisibility.</summary>
    public static long RowBytes(GgmlType type, long elements)
    {
        var (block, size) = Geometry(type);
        return elements / block * size;
    }
}
