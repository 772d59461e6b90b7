using Kaiyuan.Gguf;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Kaiyuan.Tensors;

/// <summary>
/// ggml's K-quant quantizers: per-group scale searches, the group scales themselves quantized against one fp16
/// super-scale, then every value re-quantized with the stored (rounded) scales. Without an importance these are the
/// reference quantizers (quantize_row_q2_K_ref … q6_K_ref); with one, the importance-matrix ones (quantize_row_q2_K_impl
/// … q6_K_impl), which weight each value's error by its importance and fit the group scales by weighted least squares.
/// </summary>
internal static class KQuantizer
{
    private const int QK_K = BlockLayouts.QK_K;

    /// <param name="importance">Empty, or one importance per element of <paramref name="src"/> (llama.cpp's quant_weights).</param>
    public static void Row(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        int typeSize = GgmlTypeInfo.Geometry(type).TypeSize;
        Span<byte> levels = stackalloc byte[QK_K];
        for (int b = 0; b < src.Length / QK_K; b++)
        {
            ReadOnlySpan<float> x = src.Slice(b * QK_K, QK_K);
            ReadOnlySpan<float> qw = importance.IsEmpty ? default : importance.Slice(b * QK_K, QK_K);
            Span<byte> y = dst.Slice(b * typeSize, typeSize);
            y.Clear();
            switch (type)
            {
                case GgmlType.Q2_K when qw.IsEmpty: Q2_K(x, y, levels); break;
                case GgmlType.Q2_K: Q2_KWeighted(x, qw, y, levels); break;
                case GgmlType.Q3_K when qw.IsEmpty: Q3_K(x, y, MemoryMarshal.Cast<byte, sbyte>(levels)); break;
                case GgmlType.Q3_K: Q3_KWeighted(x, qw, y, MemoryMarshal.Cast<byte, sbyte>(levels)); break;
                case GgmlType.Q4_K when qw.IsEmpty: Q4OrQ5_K(x, y, levels, fiveBits: false); break;
                case GgmlType.Q4_K: Q4OrQ5_KWeighted(x, qw, y, levels, fiveBits: false); break;
                case GgmlType.Q5_K when qw.IsEmpty: Q4OrQ5_K(x, y, levels, fiveBits: true); break;
                case GgmlType.Q5_K: Q4OrQ5_KWeighted(x, qw, y, levels, fiveBits: true); break;
                // Q6_K's importance path differs only in weighting the group search by the raw importance (no sigma2 term).
                case GgmlType.Q6_K: Q6_K(x, qw, y, MemoryMarshal.Cast<byte, sbyte>(levels)); break;
            }
        }
    }

    private static float ReadHalf(Span<byte> block, int offset) =>
        Half16.ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(block.Slice(offset, 2)));

    private static void WriteHalf(Span<byte> block, int offset, float value) =>
        BinaryPrimitives.WriteUInt16LittleEndian(block.Slice(offset, 2), Half16.FromSingle(value));

    /// <summary>Packs 256 levels of 2 bits: byte l of each 32-byte half holds elements l, l+32, l+64, l+96.</summary>
    private static void PackTwoBitPlanes(ReadOnlySpan<byte> levels, Span<byte> qs)
    {
        for (int j = 0; j < QK_K; j += 128)
        {
            for (int l = 0; l < 32; l++)
            {
                qs[j / 4 + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 2) | (levels[j + l + 64] << 4) | (levels[j + l + 96] << 6));
            }
        }
    }

    private static void Q2_K(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels)
    {
        const float levelsOfScale = 15f;
        Span<float> scales = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> weights = stackalloc float[16];
        Span<byte> scratch = stackalloc byte[16];

        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 16; j++)
        {
            ReadOnlySpan<float> group = x.Slice(16 * j, 16);
            for (int l = 0; l < 16; l++)
            {
                weights[l] = MathF.Abs(group[l]);
            }

            scales[j] = ScaleSearch.AsymmetricWithMin(group, weights, 3, levels.Slice(16 * j, 16), scratch, out mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > maxScale)
            {
                maxScale = scales[j];
            }

            if (mins[j] > maxMin)
            {
                maxMin = mins[j];
            }
        }

        Span<byte> packedScales = y.Slice(BlockLayouts.Q2_K.Scales, 16);
        if (maxScale > 0)
        {
            float iscale = levelsOfScale / maxScale;
            for (int j = 0; j < 16; j++)
            {
                packedScales[j] = (byte)Rounding.NearestInt(iscale * scales[j]);
            }

            WriteHalf(y, BlockLayouts.Q2_K.D, maxScale / levelsOfScale);
        }
        else
        {
            WriteHalf(y, BlockLayouts.Q2_K.D, 0f);
        }

        if (maxMin > 0)
        {
            float iscale = levelsOfScale / maxMin;
            for (int j = 0; j < 16; j++)
            {
                packedScales[j] |= (byte)(Rounding.NearestInt(iscale * mins[j]) << 4);
            }

            WriteHalf(y, BlockLayouts.Q2_K.DMin, maxMin / levelsOfScale);
        }
        else
        {
            WriteHalf(y, BlockLayouts.Q2_K.DMin, 0f);
        }

        FinishQ2_K(x, y, levels);
    }

    private static void Q2_KWeighted(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, Span<byte> levels)
    {
        Span<float> scales = stackalloc float[16];
        Span<float> mins = stackalloc float[16];
        Span<float> groupWeights = stackalloc float[16];
        Span<float> weights = stackalloc float[16];
        Span<byte> scratch = stackalloc byte[16];
        Span<byte> scaleLevels = stackalloc byte[16];
        Span<byte> minLevels = stackalloc byte[16];

        float sigma2 = ScaleSearch.SumOfSquares(x) / QK_K;
        for (int j = 0; j < 16; j++)
        {
            ReadOnlySpan<float> group = x.Slice(16 * j, 16);
            groupWeights[j] = ScaleSearch.ImportanceWeights(group, qw.Slice(16 * j, 16), sigma2, weights);
            scales[j] = ScaleSearch.AsymmetricWithMin(group, weights, 3, levels.Slice(16 * j, 16), scratch, out mins[j], -0.9f, 0.05f, 36, false, boundedLevels: true);
        }

        // The 4-bit group scales and mins are fitted to the groups' summed weights rather than scaled to their maximum.
        float d = ScaleSearch.NonNegativeWeighted(scales, groupWeights, 15, scaleLevels);
        float dmin = ScaleSearch.NonNegativeWeighted(mins, groupWeights, 15, minLevels);
        WriteHalf(y, BlockLayouts.Q2_K.D, d);
        WriteHalf(y, BlockLayouts.Q2_K.DMin, dmin);
        Span<byte> packedScales = y.Slice(BlockLayouts.Q2_K.Scales, 16);
        for (int j = 0; j < 16; j++)
        {
            packedScales[j] = (byte)(scaleLevels[j] | (minLevels[j] << 4));
        }

        FinishQ2_K(x, y, levels);
    }

    /// <summary>
    /// Re-quantizes with the stored scales, so the levels fit what dequantization will reconstruct (a group whose scale
    /// came out 0 keeps its search's levels), and packs them.
    /// </summary>
    private static void FinishQ2_K(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels)
    {
        ReadOnlySpan<byte> packedScales = y.Slice(BlockLayouts.Q2_K.Scales, 16);
        for (int j = 0; j < 16; j++)
        {
            float d = ReadHalf(y, BlockLayouts.Q2_K.D) * (packedScales[j] & 0xF);
            if (d == 0)
            {
                continue;
            }

            float dm = ReadHalf(y, BlockLayouts.Q2_K.DMin) * (packedScales[j] >> 4);
            for (int i = 0; i < 16; i++)
            {
                levels[16 * j + i] = (byte)Math.Clamp(Rounding.NearestInt((x[16 * j + i] + dm) / d), 0, 3);
            }
        }

        PackTwoBitPlanes(levels, y.Slice(BlockLayouts.Q2_K.Qs, 64));
    }

    private static void Q3_K(ReadOnlySpan<float> x, Span<byte> y, Span<sbyte> levels)
    {
        Span<float> scales = stackalloc float[16];
        float maxScale = 0, amax = 0;
        for (int j = 0; j < 16; j++)
        {
            scales[j] = ScaleSearch.SymmetricIterative(x.Slice(16 * j, 16), 4, levels.Slice(16 * j, 16));
            float scale = MathF.Abs(scales[j]);
            if (scale > amax)
            {
                amax = scale;
                maxScale = scales[j];
            }
        }

        Span<byte> packedScales = y.Slice(BlockLayouts.Q3_K.Scales, 12);
        if (maxScale != 0)
        {
            float iscale = -32f / maxScale;
            for (int j = 0; j < 16; j++)
            {
                PackQ3_KScale(packedScales, j, Math.Clamp((int)(sbyte)Rounding.NearestInt(iscale * scales[j]), -32, 31) + 32);
            }

            WriteHalf(y, BlockLayouts.Q3_K.D, 1 / iscale);
        }
        else
        {
            WriteHalf(y, BlockLayouts.Q3_K.D, 0f);
        }

        FinishQ3_K(x, y, levels);
    }

    private static void Q3_KWeighted(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, Span<sbyte> levels)
    {
        Span<float> scales = stackalloc float[16];
        Span<float> groupWeights = stackalloc float[16];
        Span<float> weights = stackalloc float[16];
        Span<sbyte> scaleLevels = stackalloc sbyte[16];

        float sigma2 = 2 * ScaleSearch.SumOfSquares(x) / QK_K;
        for (int j = 0; j < 16; j++)
        {
            ReadOnlySpan<float> group = x.Slice(16 * j, 16);
            groupWeights[j] = ScaleSearch.ImportanceWeights(group, qw.Slice(16 * j, 16), sigma2, weights);
            scales[j] = ScaleSearch.SymmetricWeighted(group, weights, 4, levels.Slice(16 * j, 16));
        }

        // The signed 6-bit group scales get the same weighted search as the values, weighted by the groups' summed weights.
        float d = ScaleSearch.SymmetricWeighted(scales, groupWeights, 32, scaleLevels);
        Span<byte> packedScales = y.Slice(BlockLayouts.Q3_K.Scales, 12);
        for (int j = 0; j < 16; j++)
        {
            PackQ3_KScale(packedScales, j, scaleLevels[j]);
        }

        WriteHalf(y, BlockLayouts.Q3_K.D, d);
        FinishQ3_K(x, y, levels);
    }

    /// <summary>Stores the biased 6-bit scale <paramref name="l"/> of group j: its low nibble in bytes 0..7, its top 2 bits in bytes 8..11.</summary>
    private static void PackQ3_KScale(Span<byte> packedScales, int j, int l)
    {
        if (j < 8)
        {
            packedScales[j] = (byte)(l & 0xF);
        }
        else
        {
            packedScales[j - 8] |= (byte)((l & 0xF) << 4);
        }

        packedScales[j % 4 + 8] |= (byte)((l >> 4) << (2 * (j / 4)));
    }

    /// <summary>Re-quantizes with the stored scales (groups whose scale is 0 keep their search's levels) and packs the levels.</summary>
    private static void FinishQ3_K(ReadOnlySpan<float> x, Span<byte> y, Span<sbyte> levels)
    {
        ReadOnlySpan<byte> packedScales = y.Slice(BlockLayouts.Q3_K.Scales, 12);
        for (int j = 0; j < 16; j++)
        {
            float d = ReadHalf(y, BlockLayouts.Q3_K.D) * KQuantScales.ScaleQ3K(j, packedScales);
            if (d == 0)
            {
                continue;
            }

            for (int i = 0; i < 16; i++)
            {
                levels[16 * j + i] = (sbyte)(Math.Clamp(Rounding.NearestInt(x[16 * j + i] / d), -4, 3) + 4);
            }
        }

        // The third bit of element j goes to hmask[j % 32], bit j / 32; the low two bits are packed like Q2_K.
        Span<byte> hmask = y.Slice(BlockLayouts.Q3_K.HMask, 32);
        Span<byte> lowLevels = MemoryMarshal.Cast<sbyte, byte>(levels);
        for (int j = 0; j < QK_K; j++)
        {
            if (lowLevels[j] > 3)
            {
                hmask[j % 32] |= (byte)(1 << (j / 32));
                lowLevels[j] -= 4;
            }
        }

        PackTwoBitPlanes(lowLevels, y.Slice(BlockLayouts.Q3_K.Qs, 64));
    }

    private static void Q4OrQ5_K(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels, bool fiveBits)
    {
        int nmax = fiveBits ? 31 : 15;
        Span<float> scales = stackalloc float[8];
        Span<float> mins = stackalloc float[8];
        Span<float> weights = stackalloc float[32];
        Span<byte> scratch = stackalloc byte[32];

        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++)
        {
            ReadOnlySpan<float> group = x.Slice(32 * j, 32);
            float sumSquares = 0;
            for (int l = 0; l < 32; l++)
            {
                sumSquares += group[l] * group[l];
            }

            // Weight each value by the group's RMS plus its own magnitude.
            float rms = MathF.Sqrt(sumSquares / 32);
            for (int l = 0; l < 32; l++)
            {
                weights[l] = rms + MathF.Abs(group[l]);
            }

            scales[j] = fiveBits
                ? ScaleSearch.AsymmetricWithMin(group, weights, nmax, levels.Slice(32 * j, 32), scratch, out mins[j], -0.5f, 0.1f, 15, false)
                : ScaleSearch.AsymmetricWithMin(group, weights, nmax, levels.Slice(32 * j, 32), scratch, out mins[j], -1f, 0.1f, 20, false);
            if (scales[j] > maxScale)
            {
                maxScale = scales[j];
            }

            if (mins[j] > maxMin)
            {
                maxMin = mins[j];
            }
        }

        int scalesOffset = fiveBits ? BlockLayouts.Q5_K.Scales : BlockLayouts.Q4_K.Scales;
        Span<byte> packedScales = y.Slice(scalesOffset, 12);
        float inverseScale = maxScale > 0 ? 63f / maxScale : 0f;
        float inverseMin = maxMin > 0 ? 63f / maxMin : 0f;
        for (int j = 0; j < 8; j++)
        {
            int ls = Math.Min(63, (int)(byte)Rounding.NearestInt(inverseScale * scales[j]));
            int lm = Math.Min(63, (int)(byte)Rounding.NearestInt(inverseMin * mins[j]));
            PackScaleMinK4(packedScales, j, ls, lm);
        }

        // Q4_K and Q5_K share the offsets of d and dmin.
        WriteHalf(y, BlockLayouts.Q4_K.D, maxScale / 63f);
        WriteHalf(y, BlockLayouts.Q4_K.DMin, maxMin / 63f);
        FinishQ4OrQ5_K(x, y, levels, fiveBits);
    }

    private static void Q4OrQ5_KWeighted(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, Span<byte> levels, bool fiveBits)
    {
        int nmax = fiveBits ? 31 : 15;
        Span<float> scales = stackalloc float[8];
        Span<float> mins = stackalloc float[8];
        Span<float> groupWeights = stackalloc float[8];
        Span<float> weights = stackalloc float[32];
        Span<byte> scratch = stackalloc byte[32];
        Span<byte> scaleLevels = stackalloc byte[8];
        Span<byte> minLevels = stackalloc byte[8];

        float sigma2 = 2 * ScaleSearch.SumOfSquares(x) / QK_K;
        for (int j = 0; j < 8; j++)
        {
            ReadOnlySpan<float> group = x.Slice(32 * j, 32);
            groupWeights[j] = ScaleSearch.ImportanceWeights(group, qw.Slice(32 * j, 32), sigma2, weights);
            scales[j] = ScaleSearch.AsymmetricWithMin(group, weights, nmax, levels.Slice(32 * j, 32), scratch, out mins[j], -0.9f, 0.05f, 36, false, boundedLevels: true);
        }

        float d = ScaleSearch.NonNegativeWeighted(scales, groupWeights, 63, scaleLevels);
        float dmin = ScaleSearch.NonNegativeWeighted(mins, groupWeights, 63, minLevels);
        Span<byte> packedScales = y.Slice(fiveBits ? BlockLayouts.Q5_K.Scales : BlockLayouts.Q4_K.Scales, 12);
        for (int j = 0; j < 8; j++)
        {
            // ggml bounds the levels to 63 for Q5_K only; they exceed it only if a search returned a negative scale.
            int ls = fiveBits ? Math.Min(63, (int)scaleLevels[j]) : scaleLevels[j];
            int lm = fiveBits ? Math.Min(63, (int)minLevels[j]) : minLevels[j];
            PackScaleMinK4(packedScales, j, ls, lm);
        }

        WriteHalf(y, BlockLayouts.Q4_K.D, d);
        WriteHalf(y, BlockLayouts.Q4_K.DMin, dmin);
        FinishQ4OrQ5_K(x, y, levels, fiveBits);
    }

    /// <summary>Stores the 6-bit scale and min of sub-block j as <see cref="KQuantScales.ScaleMinK4"/> reads them (byte arithmetic, as ggml's uint8_t).</summary>
    private static void PackScaleMinK4(Span<byte> packedScales, int j, int ls, int lm)
    {
        if (j < 4)
        {
            packedScales[j] = (byte)ls;
            packedScales[j + 4] = (byte)lm;
        }
        else
        {
            packedScales[j + 4] = (byte)((ls & 0xF) | ((lm & 0xF) << 4));
            packedScales[j - 4] |= (byte)((ls >> 4) << 6);
            packedScales[j] |= (byte)((lm >> 4) << 6);
        }
    }

    /// <summary>Re-quantizes with the stored scales and mins (sub-blocks whose scale is 0 keep their search's levels) and packs the levels.</summary>
    private static void FinishQ4OrQ5_K(ReadOnlySpan<float> x, Span<byte> y, Span<byte> levels, bool fiveBits)
    {
        int nmax = fiveBits ? 31 : 15;
        ReadOnlySpan<byte> packedScales = y.Slice(fiveBits ? BlockLayouts.Q5_K.Scales : BlockLayouts.Q4_K.Scales, 12);
        for (int j = 0; j < 8; j++)
        {
            var (sc, m) = KQuantScales.ScaleMinK4(j, packedScales);
            float d = ReadHalf(y, BlockLayouts.Q4_K.D) * sc;
            if (d == 0)
            {
                continue;
            }

            float dm = ReadHalf(y, BlockLayouts.Q4_K.DMin) * m;
            for (int i = 0; i < 32; i++)
            {
                levels[32 * j + i] = (byte)Math.Clamp(Rounding.NearestInt((x[32 * j + i] + dm) / d), 0, nmax);
            }
        }

        if (!fiveBits)
        {
            Span<byte> qs = y.Slice(BlockLayouts.Q4_K.Qs, 128);
            for (int j = 0; j < QK_K; j += 64)
            {
                for (int l = 0; l < 32; l++)
                {
                    qs[j / 2 + l] = (byte)(levels[j + l] | (levels[j + l + 32] << 4));
                }
            }

            return;
        }

        // Q5_K: low nibbles as Q4_K; the fifth bit of sub-block s goes to bit s of qh[l].
        Span<byte> qh = y.Slice(BlockLayouts.Q5_K.Qh, 32);
        Span<byte> ql = y.Slice(BlockLayouts.Q5_K.Qs, 128);
        for (int pair = 0; pair < 4; pair++)
        {
            for (int l = 0; l < 32; l++)
            {
                int low = levels[64 * pair + l];
                int high = levels[64 * pair + l + 32];
                if (low > 15)
                {
                    low -= 16;
                    qh[l] |= (byte)(1 << (2 * pair));
                }

                if (high > 15)
                {
                    high -= 16;
                    qh[l] |= (byte)(2 << (2 * pair));
                }

                ql[32 * pair + l] = (byte)(low | (high << 4));
            }
        }
    }

    /// <param name="qw">Empty for the reference quantizer; else the block's importance, which weights each group's search directly.</param>
    private static void Q6_K(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, Span<sbyte> levels)
    {
        Span<float> scales = stackalloc float[16];
        float maxScale = 0, maxAbsScale = 0;
        for (int j = 0; j < 16; j++)
        {
            scales[j] = ScaleSearch.SymmetricWeighted(x.Slice(16 * j, 16), qw.IsEmpty ? default : qw.Slice(16 * j, 16), 32, levels.Slice(16 * j, 16));
            float absScale = MathF.Abs(scales[j]);
            if (absScale > maxAbsScale)
            {
                maxAbsScale = absScale;
                maxScale = scales[j];
            }
        }

        if (maxAbsScale < ScaleSearch.GroupMaxEpsilon)
        {
            return; // the block stays all zero, d = 0
        }

        float iscale = -128f / maxScale;
        WriteHalf(y, BlockLayouts.Q6_K.D, 1 / iscale);
        Span<sbyte> packedScales = MemoryMarshal.Cast<byte, sbyte>(y.Slice(BlockLayouts.Q6_K.Scales, 16));
        for (int j = 0; j < 16; j++)
        {
            packedScales[j] = (sbyte)Math.Min(127, Rounding.NearestInt(iscale * scales[j]));
        }

        for (int j = 0; j < 16; j++)
        {
            float d = ReadHalf(y, BlockLayouts.Q6_K.D) * packedScales[j];
            if (d == 0)
            {
                continue;
            }

            for (int i = 0; i < 16; i++)
            {
                levels[16 * j + i] = (sbyte)(Math.Clamp(Rounding.NearestInt(x[16 * j + i] / d), -32, 31) + 32);
            }
        }

        Span<byte> ql = y.Slice(BlockLayouts.Q6_K.Ql, 128);
        Span<byte> qh = y.Slice(BlockLayouts.Q6_K.Qh, 64);
        for (int half = 0; half < 2; half++)
        {
            for (int l = 0; l < 32; l++)
            {
                int e = 128 * half + l;
                int q1 = levels[e], q2 = levels[e + 32], q3 = levels[e + 64], q4 = levels[e + 96];
                ql[64 * half + l] = (byte)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[64 * half + l + 32] = (byte)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[32 * half + l] = (byte)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}
