using Kaiyuan.Gguf;
using System.Buffers.Binary;

namespace Kaiyuan.Tensors;

/// <summary>
/// IQ1_S and IQ1_M quantizers reproducing llama.cpp's quantize_iq1_s / quantize_iq1_m. With three levels per element
/// (−1, 0, 1, each shifted by ±1/8 per group) the best weighted least-squares split of a sorted group into three runs is
/// found exhaustively; points the split lands off the 2,048-point grid are replaced by their best listed neighbour
/// (<see cref="IqGridNeighbours"/>) and the scale refitted. IQ1_S works on groups of 32 with one shift each; IQ1_M on
/// groups of 16 with a shift per 8 and refits its block scale to the 3-bit group scales it stores. Arithmetic follows
/// ggml's operation order, one rounding per C operator. Ties in the sort are broken by position (llama.cpp's qsort
/// leaves them to the C library; equal values within a group are all but absent in real weights).
/// </summary>
internal static class Iq1Quantizer
{
    private const int SuperBlock = 256;

    /// <summary>The shift of the 1-bit types' levels (IQ1S_DELTA, IQ1M_DELTA).</summary>
    private const float Delta = 0.125f;

    /// <summary>Groups below this maximum magnitude are stored as zero (GROUP_MAX_EPS_IQ1_S, GROUP_MAX_EPS_IQ1_M).</summary>
    private const float Iq1SEpsilon = 1e-12f, Iq1MEpsilon = 1e-7f;

    /// <summary>The values levels 0, 1, 2 stand for with a positive and with a negative shift.</summary>
    private static ReadOnlySpan<float> Plus => [-1 + Delta, Delta, 1 + Delta];

    private static ReadOnlySpan<float> Minus => [-1 - Delta, -Delta, 1 - Delta];

    /// <summary>Quantizes a row (a multiple of 256) with one importance per element (<paramref name="importance"/>; required).</summary>
    public static void Row(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        var grid = IqGridNeighbours.For(type);
        bool m = type == GgmlType.IQ1_M;
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        Span<float> scales = stackalloc float[16];
        Span<float> weight = stackalloc float[32];
        Span<int> order = stackalloc int[32];
        Span<sbyte> levels = stackalloc sbyte[32];
        Span<int> shifts = stackalloc int[16];
        Span<float> sums = stackalloc float[4 * 17];
        for (int b = 0; b < src.Length / SuperBlock; b++)
        {
            var x = src.Slice(b * SuperBlock, SuperBlock);
            var qw = importance.IsEmpty ? default : importance.Slice(b * SuperBlock, SuperBlock);
            var y = dst.Slice(b * blockBytes, blockBytes);
            y.Clear();
            if (m) Iq1M(x, qw, y, grid, scales, weight, order, levels, shifts, sums);
            else Iq1S(x, qw, y, grid, scales, weight, order, levels, shifts, sums);
        }
    }

    private static float MaxAbs(ReadOnlySpan<float> xb)
    {
        float max = MathF.Abs(xb[0]);
        for (int i = 1; i < xb.Length; i++) max = max > MathF.Abs(xb[i]) ? max : MathF.Abs(xb[i]);
        return max;
    }

    /// <summary>Positions of <paramref name="xb"/> in ascending order of value (insertion sort: the groups are 16 or 32).</summary>
    private static void SortedOrder(ReadOnlySpan<float> xb, Span<int> order)
    {
        for (int j = 0; j < xb.Length; j++)
        {
            int i = j;
            while (i > 0 && xb[order[i - 1]] > xb[j])
            {
                order[i] = order[i - 1];
                i--;
            }

            order[i] = j;
        }
    }

    /// <summary>Levels from a split of the sorted group: below <paramref name="i1"/> 0, below <paramref name="i2"/> 1, the rest 2.</summary>
    private static void SplitLevels(ReadOnlySpan<int> order, int i1, int i2, Span<sbyte> levels)
    {
        for (int j = 0; j < order.Length; j++) levels[order[j]] = (sbyte)(j < i1 ? 0 : j < i2 ? 1 : 2);
    }

    /// <summary>Snaps group <paramref name="k"/> of 8 to the grid (its best neighbour when off it). Returns the index and whether it was on the grid.</summary>
    private static int Snap(IqGridNeighbours grid, int k, ReadOnlySpan<float> xb, ReadOnlySpan<float> weight, float scale, ReadOnlySpan<float> values,
        Span<sbyte> levels, out bool onGrid)
    {
        int key = 0;
        for (int j = 0; j < 8; j++) key |= levels[8 * k + j] << (2 * j);
        int index = grid.IndexOf(key);
        onGrid = index >= 0;
        if (!onGrid) index = grid.NearestByValues(key, xb.Slice(8 * k, 8), weight.Slice(8 * k, 8), scale, values, levels.Slice(8 * k, 8));
        return index;
    }

    /// <summary>quantize_row_iq1_s_impl: groups of 32, one shift sign and a 3-bit multiplier each, d stored ×1.125.</summary>
    private static void Iq1S(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, IqGridNeighbours grid, Span<float> scales,
        Span<float> weight, Span<int> order, Span<sbyte> levels, Span<int> shifts, Span<float> sums)
    {
        const int size = 32;
        Span<float> sumx = sums[..(size + 1)], sumw = sums.Slice(size + 1, size + 1);
        Span<int> index = stackalloc int[4];
        float maxScale = 0;
        float sigma2 = 2 * ScaleSearch.SumOfSquares(x) / SuperBlock;
        for (int ib = 0; ib < SuperBlock / size; ib++)
        {
            var xb = x.Slice(size * ib, size);
            ScaleSearch.ElementWeights(xb, qw.Slice(size * ib, size), sigma2, weight);
            scales[ib] = 0;
            shifts[ib] = 1;
            float max = MaxAbs(xb);
            if (max < Iq1SEpsilon) continue;
            SortedOrder(xb, order);
            sumx[0] = sumw[0] = 0;
            for (int j = 0; j < size; j++)
            {
                int i = order[j];
                sumx[j + 1] = sumx[j] + weight[i] * xb[i];
                sumw[j + 1] = sumw[j] + weight[i];
            }

            float bestScore = -float.MaxValue, scale = max;
            int best1 = -1, best2 = -1, bestShift = 0;
            for (int i1 = 0; i1 <= size; i1++)
            {
                for (int i2 = i1; i2 <= size; i2++)
                {
                    for (int sign = 1; sign >= -1; sign -= 2)
                    {
                        var v = sign == 1 ? Plus : Minus;
                        float sumqx = (sumx[i1] - sumx[0]) * v[0] + (sumx[i2] - sumx[i1]) * v[1] + (sumx[size] - sumx[i2]) * v[2];
                        float sumq2 = (sumw[i1] - sumw[0]) * v[0] * v[0] + (sumw[i2] - sumw[i1]) * v[1] * v[1] + (sumw[size] - sumw[i2]) * v[2] * v[2];
                        if (sumq2 > 0 && sumqx * sumqx > bestScore * sumq2)
                        {
                            scale = sumqx / sumq2;
                            bestScore = scale * sumqx;
                            best1 = i1;
                            best2 = i2;
                            bestShift = sign;
                        }
                    }
                }
            }

            if (best1 < 0 || best2 < 0 || bestShift == 0) continue;
            SplitLevels(order, best1, best2, levels);
            if (scale < 0)
            {
                // A negative scale mirrors the levels; the shift flips with them.
                for (int j = 0; j < size; j++) levels[j] = (sbyte)(2 - levels[j]);
                scale = -scale;
                bestShift = -bestShift;
            }

            var values = bestShift == 1 ? Plus : Minus;
            bool allOnGrid = true;
            for (int k = 0; k < size / 8; k++)
            {
                index[k] = Snap(grid, k, xb, weight, scale, values, levels, out bool onGrid);
                allOnGrid &= onGrid;
            }

            if (!allOnGrid)
            {
                float sumqx = 0, sumq2 = 0;
                for (int k = 0; k < size / 8; k++)
                {
                    for (int j = 0; j < 8; j++)
                    {
                        float w = weight[8 * k + j];
                        float q = values[(grid.Coordinate(index[k], j) - 1) / 2];
                        sumqx += w * q * xb[8 * k + j];
                        sumq2 += w * q * q;
                    }
                }

                if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
            }

            int high = 0;
            for (int k = 0; k < size / 8; k++)
            {
                y[BlockLayouts.IQ1_S.Qs + 4 * ib + k] = (byte)index[k];
                high |= (index[k] >> 8) << (3 * k);
            }

            BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(BlockLayouts.IQ1_S.Qh + 2 * ib, 2), (ushort)high);
            scales[ib] = scale;
            shifts[ib] = bestShift;
            maxScale = maxScale > scale ? maxScale : scale;
        }

        if (maxScale == 0) return;
        float d = maxScale / 15;
        BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(BlockLayouts.IQ1_S.D, 2), Half16.FromSingle(d * 1.125f));
        float id = 1 / d;
        for (int ib = 0; ib < SuperBlock / size; ib++)
        {
            int l = Math.Max(0, Math.Min(7, Rounding.NearestInt(0.5f * (id * scales[ib] - 1))));
            if (shifts[ib] == -1) l |= 8;
            y[BlockLayouts.IQ1_S.Qh + 2 * ib + 1] |= (byte)(l << 4);
        }
    }

    /// <summary>
    /// quantize_row_iq1_m_impl: groups of 16, a shift sign per 8 (four combinations searched at once from prefix sums
    /// kept per half), 3-bit multipliers; d refitted to the stored multipliers and stored ×1.1125.
    /// </summary>
    private static void Iq1M(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, IqGridNeighbours grid, Span<float> scales,
        Span<float> weight, Span<int> order, Span<sbyte> levels, Span<int> shifts, Span<float> sums)
    {
        const int size = 16;
        // px[17h + j], pw[17h + j]: prefix sums over the sorted group of the elements of half h only.
        Span<float> px = sums[..34], pw = sums.Slice(34, 34);
        Span<int> index = stackalloc int[2];
        Span<float> sumqx = stackalloc float[4], sumq2 = stackalloc float[4];
        Span<float> qxP = stackalloc float[2], qxM = stackalloc float[2], q2P = stackalloc float[2], q2M = stackalloc float[2];
        float maxScale = 0;
        float sigma2 = 2 * ScaleSearch.SumOfSquares(x) / SuperBlock;
        float p2 = Plus[2], m2 = Minus[2];
        float cp1 = Plus[0] * Plus[0] - Plus[1] * Plus[1], cp2 = Plus[1] * Plus[1] - Plus[2] * Plus[2];
        float cm1 = Minus[0] * Minus[0] - Minus[1] * Minus[1], cm2 = Minus[1] * Minus[1] - Minus[2] * Minus[2];
        for (int ib = 0; ib < SuperBlock / size; ib++)
        {
            var xb = x.Slice(size * ib, size);
            ScaleSearch.ElementWeights(xb, qw.IsEmpty ? default : qw.Slice(size * ib, size), sigma2, weight);
            scales[ib] = 0;
            shifts[ib] = 0;
            float max = MaxAbs(xb[..size]);
            if (max < Iq1MEpsilon) continue;
            SortedOrder(xb, order[..size]);
            px[0] = px[17] = pw[0] = pw[17] = 0;
            for (int j = 0; j < size; j++)
            {
                int i = order[j];
                int h = i < size / 2 ? 0 : 17, o = 17 - h;
                px[h + j + 1] = px[h + j] + weight[i] * xb[i];
                px[o + j + 1] = px[o + j];
                pw[h + j + 1] = pw[h + j] + weight[i];
                pw[o + j + 1] = pw[o + j];
            }
            float bestScore = -float.MaxValue, scale = max;
            int best1 = -1, best2 = -1, bestK = -1;
            for (int i1 = 0; i1 <= size; i1++)
            {
                for (int i2 = i1; i2 <= size; i2++)
                {
                    for (int h = 0; h < 2; h++)
                    {
                        // Totals per half: weight·x and weight.
                        float tx = px[17 * h + size], tw = pw[17 * h + size];
                        float sx = px[17 * h + i1] + px[17 * h + i2];
                        qxP[h] = tx * p2 - sx;
                        qxM[h] = tx * m2 - sx;
                        q2P[h] = tw * p2 * p2 + pw[17 * h + i1] * cp1 + pw[17 * h + i2] * cp2;
                        q2M[h] = tw * m2 * m2 + pw[17 * h + i1] * cm1 + pw[17 * h + i2] * cm2;
                    }

                    // k: the shifts of the two halves, bit 1 the first's and bit 0 the second's (set: negative).
                    sumqx[0] = qxP[0] + qxP[1];
                    sumqx[1] = qxP[0] + qxM[1];
                    sumqx[2] = qxM[0] + qxP[1];
                    sumqx[3] = qxM[0] + qxM[1];
                    sumq2[0] = q2P[0] + q2P[1];
                    sumq2[1] = q2P[0] + q2M[1];
                    sumq2[2] = q2M[0] + q2P[1];
                    sumq2[3] = q2M[0] + q2M[1];
                    for (int k = 0; k < 4; k++)
                    {
                        if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > bestScore * sumq2[k])
                        {
                            scale = sumqx[k] / sumq2[k];
                            bestScore = scale * sumqx[k];
                            best1 = i1;
                            best2 = i2;
                            bestK = k;
                        }
                    }
                }
            }

            if (best1 < 0 || best2 < 0 || bestK < 0) continue;
            SplitLevels(order[..size], best1, best2, levels);
            if (scale < 0)
            {
                for (int j = 0; j < size; j++) levels[j] = (sbyte)(2 - levels[j]);
                scale = -scale;
                bestK = 3 - bestK;
            }

            bool allOnGrid = true;
            for (int k = 0; k < 2; k++)
            {
                index[k] = Snap(grid, k, xb, weight, scale, HalfValues(bestK, k), levels, out bool onGrid);
                allOnGrid &= onGrid;
            }

            if (!allOnGrid)
            {
                float sx = 0, s2 = 0;
                for (int k = 0; k < 2; k++)
                {
                    var values = HalfValues(bestK, k);
                    for (int j = 0; j < 8; j++)
                    {
                        float w = weight[8 * k + j];
                        float q = values[(grid.Coordinate(index[k], j) - 1) / 2];
                        sx += w * q * xb[8 * k + j];
                        s2 += w * q * q;
                    }
                }

                if (sx > 0 && s2 > 0) scale = sx / s2;
            }

            y[BlockLayouts.IQ1_M.Qs + 2 * ib] = (byte)index[0];
            y[BlockLayouts.IQ1_M.Qs + 2 * ib + 1] = (byte)index[1];
            y[BlockLayouts.IQ1_M.Qh + ib] = (byte)((index[0] >> 8) | ((index[1] >> 8) << 4));
            scales[ib] = scale;
            shifts[ib] = bestK;
            maxScale = maxScale > scale ? maxScale : scale;
        }

        if (maxScale == 0) return;
        float d = maxScale / 15;
        float id = 1 / d;
        float fitX = 0, fitQ2 = 0;
        ReadOnlySpan<byte> masks = [0x00, 0x80, 0x08, 0x88];
        for (int ib = 0; ib < SuperBlock / size; ib++)
        {
            int l = Math.Max(0, Math.Min(7, Rounding.NearestInt(0.5f * (id * scales[ib] - 1))));
            int word = BlockLayouts.IQ1_M.Scales + 2 * (ib / 4);
            BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(word, 2), (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(y.Slice(word, 2)) | l << (3 * (ib % 4))));
            y[BlockLayouts.IQ1_M.Qh + ib] |= masks[shifts[ib]];
            // Refit d to the multipliers as stored, over the whole block, reading the points back as written.
            var xb = x.Slice(size * ib, size);
            ScaleSearch.ElementWeights(xb, qw.IsEmpty ? default : qw.Slice(size * ib, size), sigma2, weight);
            for (int k = 0; k < 2; k++)
            {
                var values = HalfValues(shifts[ib], k);
                int point = y[BlockLayouts.IQ1_M.Qs + 2 * ib + k] + ((y[BlockLayouts.IQ1_M.Qh + ib] << (8 - 4 * k)) & 0x700);
                for (int j = 0; j < 8; j++)
                {
                    float w = weight[8 * k + j];
                    float q = values[(grid.Coordinate(point, j) - 1) / 2] * (2 * l + 1);
                    fitX += w * q * xb[8 * k + j];
                    fitQ2 += w * q * q;
                }
            }
        }

        if (fitQ2 > 0) d = fitX / fitQ2;
        IqGridDecoder.WriteIq1MScale(y, Half16.FromSingle(d * 1.1125f));
    }

    /// <summary>The level values of half <paramref name="k"/> of an IQ1_M group under shift combination <paramref name="shiftCode"/>.</summary>
    private static ReadOnlySpan<float> HalfValues(int shiftCode, int k) =>
        (k == 0 ? shiftCode < 2 : shiftCode % 2 == 0) ? Plus : Minus;
}
