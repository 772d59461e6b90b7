using Kaiyuan.Gguf;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Kaiyuan.Tensors;

/// <summary>
/// Weight quantizers reproducing llama.cpp's: without an importance matrix its reference quantizers (quantize_row_*_ref,
/// which is what quantize_q*_K / quantize_q4_0 … run when no imatrix is given), so a tensor quantized here is
/// byte-identical to llama-quantize's output; with one, its importance-matrix paths (quantize_row_*_impl) for the legacy
/// and K-quant types; IQ4_NL / IQ4_XS and the grid types IQ3_XXS / IQ3_S with or without one; IQ1_S / IQ1_M /
/// IQ2_XXS / IQ2_XS / IQ2_S only with one (see <see cref="IqGridQuantizer"/>). The arithmetic keeps ggml's operation order (see
/// <see cref="ScaleSearch"/>).
/// </summary>
internal static class Quantize
{
    /// <summary>True for the types <see cref="Row(GgmlType, ReadOnlySpan{float}, Span{byte}, ReadOnlySpan{float})"/> can produce.</summary>
    public static bool IsSupported(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q8_1
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.TQ1_0 or GgmlType.TQ2_0
        or GgmlType.IQ4_NL or GgmlType.IQ4_XS or GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S
        or GgmlType.IQ3_XXS or GgmlType.IQ3_S or GgmlType.IQ1_S or GgmlType.IQ1_M;

    /// <summary>
    /// Quantizes <paramref name="src"/> (a multiple of the type's block size) into <paramref name="dst"/>, which needs
    /// <c>GgmlTypeInfo.RowBytes(type, src.Length)</c> bytes.
    /// </summary>
    public static void Row(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst) => Row(type, src, dst, default);

    /// <summary>
    /// <see cref="Row(GgmlType, ReadOnlySpan{float}, Span{byte})"/> with an importance per column (an importance
    /// matrix's mean squared activation of each input feature, as llama.cpp's <c>quant_weights</c>), which weights the
    /// error each quantizer minimises; empty for none, else one value per element of <paramref name="src"/>. Types
    /// whose llama.cpp quantizer ignores it (F32, F16, BF16, Q8_0, TQ1_0, TQ2_0) ignore it here too.
    /// </summary>
    public static void Row(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        if (!importance.IsEmpty && importance.Length != src.Length)
        {
            throw new ArgumentException($"Importance has {importance.Length} values for a row of {src.Length}.", nameof(importance));
        }

        if (!IsSupported(type))
        {
            throw new NotSupportedException($"Quantization to {type} is not supported.");
        }

        var (blockSize, typeSize) = GgmlTypeInfo.Geometry(type);
        if (src.Length % blockSize != 0)
        {
            throw new ArgumentException($"Row length {src.Length} is not a multiple of the {type} block size {blockSize}.", nameof(src));
        }

        long needed = GgmlTypeInfo.RowBytes(type, src.Length);
        if (dst.Length < needed)
        {
            throw new ArgumentException($"Destination holds {dst.Length} bytes; {needed} are needed.", nameof(dst));
        }

        switch (type)
        {
            case GgmlType.F32:
                for (int i = 0; i < src.Length; i++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(dst.Slice(4 * i, 4), src[i]);
                }

                return;
            case GgmlType.F16:
                for (int i = 0; i < src.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(2 * i, 2), Half16.FromSingle(src[i]));
                }

                return;
            case GgmlType.BF16:
                for (int i = 0; i < src.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(dst.Slice(2 * i, 2), BFloat16.FromSingle(src[i]));
                }

                return;
            case GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K:
                KQuantizer.Row(type, src, dst, importance);
                return;
            case GgmlType.IQ4_NL or GgmlType.IQ4_XS:
                Iq4Quantizer.Row(type, src, dst, importance);
                return;
            case GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ3_XXS or GgmlType.IQ3_S or GgmlType.IQ1_S or GgmlType.IQ1_M:
                IqGridQuantizer.Row(type, src, dst, importance);
                return;
        }

        if (!importance.IsEmpty && type is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1)
        {
            LegacyWeighted(type, src, dst, importance);
            return;
        }

        for (int b = 0; b < src.Length / blockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * blockSize, blockSize);
            Span<byte> y = dst.Slice(b * typeSize, typeSize);
            switch (type)
            {
                case GgmlType.Q4_0: Q4_0(x, y); break;
                case GgmlType.Q4_1: Q4_1(x, y); break;
                case GgmlType.Q5_0: Q5_0(x, y); break;
                case GgmlType.Q5_1: Q5_1(x, y); break;
                case GgmlType.Q8_0: Q8(x, y, withSum: false); break;
                case GgmlType.Q8_1: Q8(x, y, withSum: true); break;
                case GgmlType.TQ1_0: TQ1_0(x, y); break;
                case GgmlType.TQ2_0: TQ2_0(x, y); break;
            }
        }
    }

    /// <summary>
    /// quantize_row_q4_0_impl … q5_1_impl: every element weighted by its importance times sqrt(sigma2 + x²), sigma2 the
    /// row's mean square (so the importance decides, and small values still count), then the types' levels fitted by
    /// weighted least squares: symmetric (make_qx_quants) for Q4_0/Q5_0, with a min (make_qkx3_quants) for Q4_1/Q5_1.
    /// </summary>
    private static void LegacyWeighted(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        const int blockSize = 32;
        int typeSize = GgmlTypeInfo.Geometry(type).TypeSize;
        Span<float> weights = stackalloc float[blockSize];
        Span<byte> levels = stackalloc byte[blockSize];
        Span<byte> scratch = stackalloc byte[blockSize];
        float sigma2 = ScaleSearch.SumOfSquares(src) / src.Length;
        for (int b = 0; b < src.Length / blockSize; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * blockSize, blockSize);
            Span<byte> y = dst.Slice(b * typeSize, typeSize);
            ScaleSearch.ImportanceWeights(x, importance.Slice(b * blockSize, blockSize), sigma2, weights);
            switch (type)
            {
                case GgmlType.Q4_0:
                    WriteHalf(y, BlockLayouts.Q4_0.D, ScaleSearch.SymmetricWeighted(x, weights, 8, MemoryMarshal.Cast<byte, sbyte>(levels)));
                    PackNibbles(levels, y.Slice(BlockLayouts.Q4_0.Qs, 16));
                    break;
                case GgmlType.Q5_0:
                    WriteHalf(y, BlockLayouts.Q5_0.D, ScaleSearch.SymmetricWeighted(x, weights, 16, MemoryMarshal.Cast<byte, sbyte>(levels)));
                    PackNibbles(levels, y.Slice(BlockLayouts.Q5_0.Qs, 16));
                    BinaryPrimitives.WriteUInt32LittleEndian(y.Slice(BlockLayouts.Q5_0.Qh, 4), FifthBits(levels));
                    break;
                case GgmlType.Q4_1:
                    {
                        float d = ScaleSearch.AsymmetricWithMin(x, weights, 15, levels, scratch, out float negatedMin, -0.9f, 0.05f, 36, false, boundedLevels: true);
                        WriteHalf(y, BlockLayouts.Q4_1.D, d);
                        WriteHalf(y, BlockLayouts.Q4_1.M, -negatedMin);
                        PackNibbles(levels, y.Slice(BlockLayouts.Q4_1.Qs, 16));
                        break;
                    }
                case GgmlType.Q5_1:
                    {
                        float d = ScaleSearch.AsymmetricWithMin(x, weights, 31, levels, scratch, out float negatedMin, -0.9f, 0.05f, 36, false, boundedLevels: true);
                        WriteHalf(y, BlockLayouts.Q5_1.D, d);
                        WriteHalf(y, BlockLayouts.Q5_1.M, -negatedMin);
                        PackNibbles(levels, y.Slice(BlockLayouts.Q5_1.Qs, 16));
                        BinaryPrimitives.WriteUInt32LittleEndian(y.Slice(BlockLayouts.Q5_1.Qh, 4), FifthBits(levels));
                        break;
                    }
            }
        }
    }

    /// <summary>The low nibbles of 32 levels, element j in the low and j + 16 in the high half of byte j.</summary>
    private static void PackNibbles(ReadOnlySpan<byte> levels, Span<byte> qs)
    {
        for (int j = 0; j < 16; j++)
        {
            qs[j] = (byte)((levels[j] & 0xF) | ((levels[j + 16] & 0xF) << 4));
        }
    }

    /// <summary>The fifth bit of each of 32 levels, element j at bit j.</summary>
    private static uint FifthBits(ReadOnlySpan<byte> levels)
    {
        uint qh = 0;
        for (int j = 0; j < 32; j++)
        {
            qh |= (uint)((levels[j] >> 4) & 1) << j;
        }

        return qh;
    }

    private static void WriteHalf(Span<byte> block, int offset, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(offset, 2), Half16.FromSingle(value));

    /// <summary>The signed value of largest magnitude (first on ties), which symmetric types map to the most negative level.</summary>
    private static float SignedMaximum(ReadOnlySpan<float> x)
    {
        float amax = 0, max = 0;
        foreach (float v in x)
        {
            if (amax < MathF.Abs(v))
            {
                amax = MathF.Abs(v);
                max = v;
            }
        }

        return max;
    }

    private static (float Min, float Max) Range(ReadOnlySpan<float> x)
    {
        float min = float.MaxValue, max = -float.MaxValue;
        foreach (float v in x)
        {
            if (v < min)
            {
                min = v;
            }

            if (v > max)
            {
                max = v;
            }
        }

        return (min, max);
    }

    /// <summary>
    /// The ternary level of an element, 0..2 for −1, 0, 1: x/max|x| rounded half away from zero (lroundf, as
    /// quantize_row_tq*_ref), plus one. The types are meant for models trained ternary, where this is exact.
    /// </summary>
    private static int TernaryLevel(float x, float inverseScale) => (int)MathF.Round(x * inverseScale, MidpointRounding.AwayFromZero) + 1;

    private static float MaxAbs(ReadOnlySpan<float> x)
    {
        float amax = 0;
        foreach (float v in x) amax = MathF.Max(amax, MathF.Abs(v));
        return amax;
    }

    /// <summary>TQ1_0: five levels per byte as base-3 digits, the byte the ceiling of their value·256/243 (see <see cref="Ternary"/>).</summary>
    private static void TQ1_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float d = MaxAbs(x);
        float id = d != 0 ? 1.0f / d : 0.0f;
        for (int index = 0; index < BlockLayouts.TQ1_0.D; index++)
        {
            int digits = Ternary.DigitsOf(index), value = 0;
            for (int n = 0; n < digits; n++) value = value * 3 + TernaryLevel(x[Ternary.Element(index, n)], id);
            // The qh bytes' four digits take the top places (the fifth, least significant, is 0).
            if (digits == 4) value *= 3;
            y[index] = (byte)((value * 256 + 242) / 243);
        }

        WriteHalf(y, BlockLayouts.TQ1_0.D, d);
    }

    /// <summary>TQ2_0: levels as 2-bit codes, element 128c + 32l + m in bits 2l of byte 32c + m.</summary>
    private static void TQ2_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float d = MaxAbs(x);
        float id = d != 0 ? 1.0f / d : 0.0f;
        for (int c = 0; c < 2; c++)
        {
            for (int m = 0; m < 32; m++)
            {
                int packed = 0;
                for (int l = 0; l < 4; l++) packed |= (TernaryLevel(x[128 * c + 32 * l + m], id) & 3) << (2 * l);
                y[BlockLayouts.TQ2_0.Qs + 32 * c + m] = (byte)packed;
            }
        }

        WriteHalf(y, BlockLayouts.TQ2_0.D, d);
    }

    private static void Q4_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float d = SignedMaximum(x) / -8;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, BlockLayouts.Q4_0.D, d);
        for (int j = 0; j < 16; j++)
        {
            // +8.5 then truncation rounds half up into [0, 16]; 16 (only at x = max) is clamped to 15.
            int q0 = Math.Min(15, (int)(x[j] * id + 8.5f));
            int q1 = Math.Min(15, (int)(x[j + 16] * id + 8.5f));
            y[BlockLayouts.Q4_0.Qs + j] = (byte)(q0 | (q1 << 4));
        }
    }

    private static void Q4_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        var (min, max) = Range(x);
        float d = (max - min) / 15;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, BlockLayouts.Q4_1.D, d);
        WriteHalf(y, BlockLayouts.Q4_1.M, min);
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(15, (int)((x[j] - min) * id + 0.5f));
            int q1 = Math.Min(15, (int)((x[j + 16] - min) * id + 0.5f));
            y[BlockLayouts.Q4_1.Qs + j] = (byte)(q0 | (q1 << 4));
        }
    }

    private static void Q5_0(ReadOnlySpan<float> x, Span<byte> y)
    {
        float d = SignedMaximum(x) / -16;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, BlockLayouts.Q5_0.D, d);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            int q0 = Math.Min(31, (int)(x[j] * id + 16.5f));
            int q1 = Math.Min(31, (int)(x[j + 16] * id + 16.5f));
            y[BlockLayouts.Q5_0.Qs + j] = (byte)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint)((q0 >> 4) & 1) << j;
            qh |= (uint)((q1 >> 4) & 1) << (j + 16);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(y.Slice(BlockLayouts.Q5_0.Qh, 4), qh);
    }

    private static void Q5_1(ReadOnlySpan<float> x, Span<byte> y)
    {
        var (min, max) = Range(x);
        float d = (max - min) / 31;
        float id = d != 0 ? 1.0f / d : 0.0f;
        WriteHalf(y, BlockLayouts.Q5_1.D, d);
        WriteHalf(y, BlockLayouts.Q5_1.M, min);
        uint qh = 0;
        for (int j = 0; j < 16; j++)
        {
            // ggml does not clamp here: (x - min) / d never exceeds 31 + 0.5 by more than rounding.
            int q0 = (byte)(int)((x[j] - min) * id + 0.5f);
            int q1 = (byte)(int)((x[j + 16] - min) * id + 0.5f);
            y[BlockLayouts.Q5_1.Qs + j] = (byte)((q0 & 0xF) | ((q1 & 0xF) << 4));
            qh |= (uint)((q0 >> 4) & 1) << j;
            qh |= (uint)((q1 >> 4) & 1) << (j + 16);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(y.Slice(BlockLayouts.Q5_1.Qh, 4), qh);
    }

    /// <summary>quantize_row_q8_0_ref / q8_1_ref: d = max|x| / 127, q = roundf(x / d) (halves away from zero).</summary>
    private static void Q8(ReadOnlySpan<float> x, Span<byte> y, bool withSum)
    {
        float amax = 0;
        foreach (float v in x)
        {
            amax = MathF.Max(amax, MathF.Abs(v));
        }

        float d = amax / 127;
        float id = d != 0 ? 1.0f / d : 0.0f;
        int qs = withSum ? BlockLayouts.Q8_1.Qs : BlockLayouts.Q8_0.Qs;
        int sum = 0;
        for (int j = 0; j < 32; j++)
        {
            int q = (int)MathF.Round(x[j] * id, MidpointRounding.AwayFromZero);
            y[qs + j] = (byte)(sbyte)q;
            sum += (sbyte)q;
        }

        WriteHalf(y, 0, d);
        if (withSum)
        {
            WriteHalf(y, BlockLayouts.Q8_1.S, sum * d);
        }
    }
}
