using Kaiyuan.Gguf;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Kaiyuan.Tensors;

/// <summary>
/// Quantizers for the grid i-quants reproducing llama.cpp's (quantize_iq2_xxs, quantize_iq2_xs, quantize_iq2_s,
/// quantize_iq3_xxs, quantize_iq3_s; IQ1_S and IQ1_M are <see cref="Iq1Quantizer"/>'s), so that with the same importance
/// they write the same bytes. Each group of 32 (IQ2_XS, IQ2_S: 16) is folded to magnitudes with signs kept apart (where
/// the format stores 7-bit sign fields, an even count of negatives is forced by flipping the least important element),
/// then a range of scales is tried: every group of 8 (IQ3: 4) magnitudes is rounded to odd lattice
/// levels and, when that point is not on the grid, replaced by its best listed neighbour (<see cref="IqGridNeighbours"/>);
/// the scale with the best weighted least-squares fit wins and is refined once. The groups' scales are finally stored as
/// 4-bit odd multiples of one fp16 block scale. Arithmetic follows ggml's operation order, one rounding per C operator.
/// </summary>
internal static class IqGridQuantizer
{
    private const int SuperBlock = 256;

    /// <summary>Groups below this maximum magnitude are stored as zero in IQ3_XXS (GROUP_MAX_EPS_IQ3_XXS).</summary>
    private const float Iq3XxsEpsilon = 1e-8f;

    /// <summary>The same for IQ2_S (GROUP_MAX_EPS_IQ2_S).</summary>
    private const float Iq2SEpsilon = 1e-8f;

    /// <summary>
    /// The types llama.cpp refuses to make without an importance matrix (llama-quant.cpp): their few levels lose too much
    /// without one (IQ1_S/IQ1_M are allowed there for token_embd/output only, a choice made by the mix, not here).
    /// </summary>
    public static bool RequiresImportance(GgmlType type) => type is GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S
        or GgmlType.IQ1_S or GgmlType.IQ1_M;

    /// <summary>
    /// Quantizes a row (a multiple of 256) into <paramref name="dst"/>; <paramref name="importance"/> is empty or one weight
    /// per element (llama.cpp's <c>quant_weights</c>), and must be given for the types of <see cref="RequiresImportance"/>.
    /// </summary>
    public static void Row(GgmlType type, ReadOnlySpan<float> src, Span<byte> dst, ReadOnlySpan<float> importance)
    {
        if (importance.IsEmpty && RequiresImportance(type))
        {
            throw new ArgumentException(
                $"{type} needs an importance matrix (kaiyuan quantize --imatrix FILE), as llama.cpp's quantizer does.", nameof(importance));
        }

        if (type is GgmlType.IQ1_S or GgmlType.IQ1_M)
        {
            Iq1Quantizer.Row(type, src, dst, importance);
            return;
        }

        var grid = IqGridNeighbours.For(type);
        int blockBytes = GgmlTypeInfo.Geometry(type).TypeSize;
        var s = new Scratch(stackalloc float[SuperBlock / 16], stackalloc float[32], stackalloc float[32], stackalloc float[32],
            stackalloc sbyte[32], stackalloc sbyte[32], stackalloc bool[8], stackalloc bool[8], stackalloc byte[4]);
        for (int b = 0; b < src.Length / SuperBlock; b++)
        {
            var x = src.Slice(b * SuperBlock, SuperBlock);
            var qw = importance.IsEmpty ? default : importance.Slice(b * SuperBlock, SuperBlock);
            var y = dst.Slice(b * blockBytes, blockBytes);
            y.Clear();
            switch (type)
            {
                case GgmlType.IQ2_XXS: Iq2Xxs(x, qw, y, grid, s); break;
                case GgmlType.IQ2_XS: Iq2XsOrS(x, qw, y, grid, s, xs: true); break;
                case GgmlType.IQ2_S: Iq2XsOrS(x, qw, y, grid, s, xs: false); break;
                case GgmlType.IQ3_XXS: Iq3(x, qw, y, grid, s, xxs: true); break;
                case GgmlType.IQ3_S: Iq3(x, qw, y, grid, s, xxs: false); break;
                default: throw new NotSupportedException($"Quantization to {type} is not supported.");
            }
        }
    }

    /// <summary>Per-row scratch, allocated once on the stack and reused for every block.</summary>
    private readonly ref struct Scratch(Span<float> scales, Span<float> weight, Span<float> xval, Span<float> waux,
        Span<sbyte> levels, Span<sbyte> trial, Span<bool> onGrid, Span<bool> trialOnGrid, Span<byte> signs)
    {
        public readonly Span<float> Scales = scales;
        public readonly Span<float> Weight = weight;
        public readonly Span<float> XVal = xval;
        public readonly Span<float> WAux = waux;
        public readonly Span<sbyte> Levels = levels;
        public readonly Span<sbyte> Trial = trial;
        public readonly Span<bool> OnGrid = onGrid;
        public readonly Span<bool> TrialOnGrid = trialOnGrid;
        public readonly Span<byte> Signs = signs;
    }

    /// <summary>
    /// <see cref="ScaleSearch.ElementWeights"/> (x² without an importance: the IQ3 types' fallback) and their square roots,
    /// which weigh the neighbour searches.
    /// </summary>
    private static void Weights(ReadOnlySpan<float> xb, ReadOnlySpan<float> qw, float sigma2, Span<float> weight, Span<float> waux)
    {
        ScaleSearch.ElementWeights(xb, qw, sigma2, weight);
        for (int i = 0; i < xb.Length; i++) waux[i] = MathF.Sqrt(weight[i]);
    }

    /// <summary>
    /// Folds 8 values to magnitudes and returns their 7-bit sign field: the format stores 7 signs and implies the eighth
    /// from even parity, so with an odd count of negatives the element of least weighted square is flipped (stored with
    /// the wrong sign) — the cheapest error.
    /// </summary>
    private static byte EvenSigns(ReadOnlySpan<float> xb, ReadOnlySpan<float> weight, Span<float> xval)
    {
        int flips = 0, s = 0;
        for (int i = 0; i < 8; i++)
        {
            if (xb[i] >= 0) xval[i] = xb[i];
            else
            {
                xval[i] = -xb[i];
                flips++;
                s |= 1 << i;
            }
        }

        if (flips % 2 != 0)
        {
            int imin = 0;
            float min = weight[0] * xb[0] * xb[0];
            for (int i = 1; i < 8; i++)
            {
                float ax = weight[i] * xb[i] * xb[i];
                if (ax < min)
                {
                    min = ax;
                    imin = i;
                }
            }

            xval[imin] = -xval[imin];
            s ^= 1 << imin;
        }

        return (byte)(s & 127);
    }

    private static float Max(ReadOnlySpan<float> x)
    {
        float max = x[0];
        for (int i = 1; i < x.Length; i++) max = max > x[i] ? max : x[i];
        return max;
    }

    /// <summary>The level an element rounds to at inverse scale id on the odd lattice 2l+1, clamped to [0, top].</summary>
    private static int Level(float id, float x, int top) => Math.Max(0, Math.Min(top, Rounding.NearestInt(0.5f * (id * x - 1))));

    /// <summary>
    /// Rounds group <paramref name="k"/> (of the grid's dimension) at inverse scale id, packing its levels into a lattice
    /// key; off the grid, the best neighbour at <paramref name="scale"/> replaces them. Returns the grid index, and whether
    /// the rounded point was on the grid.
    /// </summary>
    private static int RoundGroup(IqGridNeighbours grid, int k, float id, float scale, int top, ReadOnlySpan<float> xval,
        ReadOnlySpan<float> waux, Span<sbyte> levels, out bool onGrid)
    {
        int n = grid.Dimension, key = 0;
        for (int i = 0; i < n; i++)
        {
            int l = Level(id, xval[n * k + i], top);
            levels[n * k + i] = (sbyte)l;
            key |= l << (grid.Bits * i);
        }

        int index = grid.IndexOf(key);
        onGrid = index >= 0;
        if (!onGrid) index = grid.Nearest(key, xval.Slice(n * k, n), waux.Slice(n * k, n), scale, levels.Slice(n * k, n));
        return index;
    }

    /// <summary>Weighted least-squares sums of the odd levels 2l+1 against the magnitudes.</summary>
    /// <summary>
    /// The IQ2_XS/IQ2_S/IQ3 scale search: every group rounded at the inverse scales (2·kMaxQ − 1 + step·stepSize)/max for
    /// step in ±steps, keeping the levels of the best weighted least-squares fit (and which groups were on the grid).
    /// Returns the fitted scale, or max/(2·kMaxQ − 1) when no candidate fits.
    /// </summary>
    private static float SearchScale(IqGridNeighbours grid, int groups, int steps, float stepSize, float max, int kMaxQ, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> xval, ReadOnlySpan<float> waux, Span<sbyte> levels, Span<sbyte> trial, Span<bool> onGrid, Span<bool> trialOnGrid)
    {
        float best = 0;
        float scale = max / (2 * kMaxQ - 1);
        for (int step = -steps; step <= steps; step++)
        {
            float id = (2 * kMaxQ - 1 + step * stepSize) / max;
            float thisScale = 1 / id;
            for (int k = 0; k < groups; k++) RoundGroup(grid, k, id, thisScale, kMaxQ - 1, xval, waux, trial, out trialOnGrid[k]);
            var (sumqx, sumq2) = Fit(weight, xval, trial);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
            {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                trial.CopyTo(levels);
                trialOnGrid[..groups].CopyTo(onGrid);
            }
        }

        return scale;
    }

    private static (float SumQX, float SumQ2) Fit(ReadOnlySpan<float> weight, ReadOnlySpan<float> xval, ReadOnlySpan<sbyte> levels)
    {
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < weight.Length; i++)
        {
            float w = weight[i];
            float q = 2 * levels[i] + 1;
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }

        return (sumqx, sumq2);
    }

    /// <summary>The grid index of the levels already in group <paramref name="k"/> (which the searches keep on the grid).</summary>
    private static int IndexOfGroup(IqGridNeighbours grid, int k, ReadOnlySpan<sbyte> levels)
    {
        int n = grid.Dimension, key = 0;
        for (int i = 0; i < n; i++) key |= levels[n * k + i] << (grid.Bits * i);
        int index = grid.IndexOf(key);
        return index >= 0 ? index : throw new InvalidOperationException($"Levels {key} are not on the grid.");
    }

    /// <summary>The 4-bit odd multiplier of a group scale in units of d (2l+1 ≈ scale/d).</summary>
    private static int ScaleCode(float id, float scale) => Math.Max(0, Math.Min(15, Rounding.NearestInt(0.5f * (id * scale - 1))));

    /// <summary>
    /// IQ2_XXS (quantize_row_iq2_xxs_impl): groups of 32, levels 0..2; the first scale from the non-negative weighted
    /// fit (make_qp_quants), 13 scales around it, then every group re-rounded with the winner.
    /// </summary>
    private static void Iq2Xxs(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, IqGridNeighbours grid, Scratch s)
    {
        const int kMaxQ = 3;
        Span<float> weight = s.Weight, xval = s.XVal, waux = s.WAux;
        Span<sbyte> levels = s.Levels, trial = s.Trial;
        Span<byte> qs = y.Slice(BlockLayouts.IQ2_XXS.Qs, 64);
        float maxScale = 0;
        float sigma2 = ScaleSearch.SumOfSquares(x) / SuperBlock;
        for (int ib = 0; ib < 8; ib++)
        {
            var xb = x.Slice(32 * ib, 32);
            Weights(xb, qw.Slice(32 * ib, 32), sigma2, weight, waux);
            for (int k = 0; k < 4; k++) s.Signs[k] = EvenSigns(xb.Slice(8 * k, 8), weight.Slice(8 * k, 8), xval.Slice(8 * k, 8));
            float max = Max(xval);
            s.Scales[ib] = 0;
            if (max < ScaleSearch.GroupMaxEpsilon) continue;
            float scale = ScaleSearch.NonNegativeWeighted(xval, weight, kMaxQ + 1, MemoryMarshal.AsBytes(levels));
            float effMax = scale * kMaxQ;
            if (effMax <= 0) continue;
            float best = 0;
            for (int step = -6; step <= 6; step++)
            {
                float id = (2 * kMaxQ - 1 + step * 0.1f) / effMax;
                float thisScale = 1 / id;
                for (int k = 0; k < 4; k++) RoundGroup(grid, k, id, thisScale, kMaxQ - 1, xval, waux, trial, out _);
                var (sumqx, sumq2) = Fit(weight, xval, trial);
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2)
                {
                    scale = sumqx / sumq2;
                    best = scale * sumqx;
                    trial.CopyTo(levels);
                }
            }

            if (scale > 0)
            {
                float id = 1 / scale;
                for (int k = 0; k < 4; k++) grid.Levels(RoundGroup(grid, k, id, scale, kMaxQ - 1, xval, waux, levels, out _), levels.Slice(8 * k, 8));
                var (sumqx, sumq2) = Fit(weight, xval, levels);
                if (sumq2 > 0) scale = sumqx / sumq2;
            }

            if (scale < 0)
            {
                // Cannot happen with non-negative magnitudes; kept as llama.cpp: a positive scale with all signs flipped.
                scale = -scale;
                for (int k = 0; k < 4; k++) s.Signs[k] = (byte)(~s.Signs[k] & 127);
            }

            uint indices = 0, signs = 0;
            for (int k = 0; k < 4; k++)
            {
                indices |= (uint)IndexOfGroup(grid, k, levels) << (8 * k);
                signs |= (uint)s.Signs[k] << (7 * k);
            }

            BinaryPrimitives.WriteUInt32LittleEndian(qs.Slice(8 * ib, 4), indices);
            BinaryPrimitives.WriteUInt32LittleEndian(qs.Slice(8 * ib + 4, 4), signs);
            s.Scales[ib] = scale;
            maxScale = maxScale > scale ? maxScale : scale;
        }

        if (maxScale == 0)
        {
            qs.Clear();
            return;
        }

        float d = maxScale / 31;
        BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(BlockLayouts.IQ2_XXS.D, 2), Half16.FromSingle(d));
        float inverse = 1 / d;
        for (int ib = 0; ib < 8; ib++) qs[8 * ib + 7] |= (byte)(ScaleCode(inverse, s.Scales[ib]) << 4);
    }

    /// <summary>
    /// IQ2_XS and IQ2_S (quantize_row_iq2_xs_impl, quantize_row_iq2_s_impl): groups of 16, levels 0..2, 19 scales around
    /// max/5; only the groups that fell off the grid are re-rounded with the winner. IQ2_XS keeps 7-bit parity signs
    /// beside a 9-bit grid index; IQ2_S plain 8-bit signs, a 10-bit index, a sigma2 twice as large (and, without an
    /// importance, weights sigma2/4 + x²) and d stored with a 0.9875 fudge factor.
    /// </summary>
    private static void Iq2XsOrS(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, IqGridNeighbours grid, Scratch s, bool xs)
    {
        const int kMaxQ = 3;
        Span<float> weight = s.Weight[..16], xval = s.XVal[..16], waux = s.WAux[..16];
        Span<sbyte> levels = s.Levels[..16], trial = s.Trial[..16];
        float maxScale = 0;
        float sumx2 = ScaleSearch.SumOfSquares(x);
        float sigma2 = xs ? sumx2 / SuperBlock : 2 * sumx2 / SuperBlock;
        for (int ib = 0; ib < 16; ib++)
        {
            var xb = x.Slice(16 * ib, 16);
            if (xs || !qw.IsEmpty) Weights(xb, qw.Slice(16 * ib, 16), sigma2, weight, waux);
            else
            {
                for (int i = 0; i < 16; i++) weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
                for (int i = 0; i < 16; i++) waux[i] = MathF.Sqrt(weight[i]);
            }

            for (int k = 0; k < 2; k++)
            {
                s.Signs[k] = xs ? EvenSigns(xb.Slice(8 * k, 8), weight.Slice(8 * k, 8), xval.Slice(8 * k, 8)) : PlainSigns(xb.Slice(8 * k, 8), xval.Slice(8 * k, 8));
            }

            float max = Max(xval);
            levels.Clear();
            s.Scales[ib] = 0;
            if (max < (xs ? ScaleSearch.GroupMaxEpsilon : Iq2SEpsilon)) continue;
            s.OnGrid[..2].Fill(true);
            float scale = SearchScale(grid, 2, 9, 0.1f, max, kMaxQ, weight, xval, waux, levels, trial, s.OnGrid, s.TrialOnGrid);

            scale = RefineOffGrid(grid, 2, scale, kMaxQ - 1, weight, xval, waux, levels, s.OnGrid, refineAll: false);
            if (scale < 0)
            {
                scale = -scale;
                for (int k = 0; k < 2; k++) s.Signs[k] = (byte)(xs ? ~s.Signs[k] & 127 : ~s.Signs[k]);
            }

            for (int k = 0; k < 2; k++)
            {
                int index = IndexOfGroup(grid, k, levels), group = 2 * ib + k;
                if (xs)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(y.Slice(BlockLayouts.IQ2_XS.Qs + 2 * group, 2), (ushort)(index | s.Signs[k] << 9));
                    continue;
                }

                y[BlockLayouts.IQ2_S.Qs + group] = (byte)index;
                y[BlockLayouts.IQ2_S.Qh + group / 4] |= (byte)((index >> 8) << (2 * (group % 4)));
                y[BlockLayouts.IQ2_S.Signs + group] = s.Signs[k];
            }

            s.Scales[ib] = scale;
            maxScale = maxScale > scale ? maxScale : scale;
        }

        if (maxScale == 0)
        {
            // IQ2_XS zeroes its quants; IQ2_S leaves what it wrote (both with d = 0, so it all decodes to zero).
            if (xs) y.Slice(BlockLayouts.IQ2_XS.Qs, 64).Clear();
            return;
        }

        float d = maxScale / 31;
        BinaryPrimitives.WriteUInt16LittleEndian(y[..2], Half16.FromSingle(xs ? d : d * 0.9875f));
        float inverse = 1 / d;
        int scalesAt = xs ? BlockLayouts.IQ2_XS.Scales : BlockLayouts.IQ2_S.Scales;
        for (int ib = 0; ib < 16; ib++) y[scalesAt + ib / 2] |= (byte)(ScaleCode(inverse, s.Scales[ib]) << (4 * (ib % 2)));
    }

    /// <summary>Folds 8 values to magnitudes and returns their plain 8-bit sign field (IQ2_S, IQ3_S).</summary>
    private static byte PlainSigns(ReadOnlySpan<float> xb, Span<float> xval)
    {
        int bits = 0;
        for (int i = 0; i < 8; i++)
        {
            if (xb[i] >= 0) xval[i] = xb[i];
            else
            {
                xval[i] = -xb[i];
                bits |= 1 << i;
            }
        }

        return (byte)bits;
    }

    /// <summary>
    /// After the scale search: with any group off the grid (and a positive scale), re-rounds the off-grid groups (all
    /// groups when <paramref name="refineAll"/>, as IQ3_S) at the winning scale, snapping them to the grid, and refits
    /// the scale. Returns the scale.
    /// </summary>
    private static float RefineOffGrid(IqGridNeighbours grid, int groups, float scale, int top, ReadOnlySpan<float> weight,
        ReadOnlySpan<float> xval, ReadOnlySpan<float> waux, Span<sbyte> levels, ReadOnlySpan<bool> onGrid, bool refineAll)
    {
        bool anyOff = false;
        for (int k = 0; k < groups; k++) anyOff |= !onGrid[k];
        if (!anyOff || !(scale > 0)) return scale;
        float id = 1 / scale;
        int n = grid.Dimension;
        for (int k = 0; k < groups; k++)
        {
            if (onGrid[k] && !refineAll) continue;
            grid.Levels(RoundGroup(grid, k, id, scale, top, xval, waux, levels, out _), levels.Slice(n * k, n));
        }

        var (sumqx, sumq2) = Fit(weight, xval, levels);
        return sumq2 > 0 ? sumqx / sumq2 : scale;
    }

    /// <summary>
    /// IQ3_XXS and IQ3_S (quantize_row_iq3_xxs_impl, quantize_row_iq3_s_impl with 32-element groups): levels 0..7 on a 4-D
    /// grid, scales around max/15 (31 for IQ3_XXS, 19 for IQ3_S). IQ3_XXS keeps 7-bit parity signs and an 8-bit grid
    /// index; IQ3_S plain 8-bit signs and a 9-bit index. Both store d with a small fudge factor (1.0125, 1.033) that
    /// llama.cpp found to lower the error.
    /// </summary>
    private static void Iq3(ReadOnlySpan<float> x, ReadOnlySpan<float> qw, Span<byte> y, IqGridNeighbours grid, Scratch s, bool xxs)
    {
        const int kMaxQ = 8;
        Span<float> weight = s.Weight, xval = s.XVal, waux = s.WAux;
        Span<sbyte> levels = s.Levels, trial = s.Trial;
        float maxScale = 0;
        float sigma2 = 2 * ScaleSearch.SumOfSquares(x) / SuperBlock;
        int steps = xxs ? 15 : 9;
        for (int ib = 0; ib < 8; ib++)
        {
            var xb = x.Slice(32 * ib, 32);
            Weights(xb, qw.IsEmpty ? default : qw.Slice(32 * ib, 32), sigma2, weight, waux);
            for (int k = 0; k < 4; k++)
            {
                s.Signs[k] = xxs ? EvenSigns(xb.Slice(8 * k, 8), weight.Slice(8 * k, 8), xval.Slice(8 * k, 8)) : PlainSigns(xb.Slice(8 * k, 8), xval.Slice(8 * k, 8));
            }

            float max = Max(xval);
            levels.Clear();
            s.Scales[ib] = 0;
            if (xxs ? max < Iq3XxsEpsilon : max == 0) continue;
            // IQ3_XXS starts every group as on the grid, IQ3_S as off it (so IQ3_S always refines when no scale fit).
            s.OnGrid.Fill(xxs);
            float scale = SearchScale(grid, 8, steps, 0.2f, max, kMaxQ, weight, xval, waux, levels, trial, s.OnGrid, s.TrialOnGrid);

            scale = RefineOffGrid(grid, 8, scale, kMaxQ - 1, weight, xval, waux, levels, s.OnGrid, refineAll: !xxs);
            if (scale < 0)
            {
                scale = -scale;
                for (int k = 0; k < 4; k++) s.Signs[k] = (byte)(xxs ? ~s.Signs[k] & 127 : ~s.Signs[k]);
            }

            if (xxs)
            {
                for (int k = 0; k < 8; k++) y[BlockLayouts.IQ3_XXS.Qs + 8 * ib + k] = (byte)IndexOfGroup(grid, k, levels);
                uint packed = (uint)(s.Signs[0] | s.Signs[1] << 7 | s.Signs[2] << 14 | s.Signs[3] << 21);
                BinaryPrimitives.WriteUInt32LittleEndian(y.Slice(BlockLayouts.IQ3_XXS.ScalesAndSigns + 4 * ib, 4), packed);
            }
            else
            {
                // llama.cpp advances its qs/signs pointers only past groups it quantized, so a row with an all-zero group
                // of 32 gets the later groups shifted into the wrong slots; here every group keeps its own slot.
                for (int k = 0; k < 8; k++)
                {
                    int index = IndexOfGroup(grid, k, levels);
                    y[BlockLayouts.IQ3_S.Qs + 8 * ib + k] = (byte)index;
                    y[BlockLayouts.IQ3_S.Qh + ib] |= (byte)((index >> 8) << k);
                }

                for (int k = 0; k < 4; k++) y[BlockLayouts.IQ3_S.Signs + 4 * ib + k] = s.Signs[k];
            }

            s.Scales[ib] = scale;
            maxScale = maxScale > scale ? maxScale : scale;
        }

        if (maxScale == 0)
        {
            // IQ3_XXS zeroes its quants; IQ3_S leaves what it wrote (both with d = 0, so it all decodes to zero).
            if (xxs) y.Clear();
            return;
        }

        float d = maxScale / 31;
        BinaryPrimitives.WriteUInt16LittleEndian(y[..2], Half16.FromSingle(d * (xxs ? 1.0125f : 1.033f)));
        float inverse = 1 / d;
        for (int ib = 0; ib < 8; ib++)
        {
            int code = ScaleCode(inverse, s.Scales[ib]);
            if (xxs) y[BlockLayouts.IQ3_XXS.ScalesAndSigns + 4 * ib + 3] |= (byte)(code << 4);
            else y[BlockLayouts.IQ3_S.Scales + ib / 2] |= (byte)(code << (4 * (ib % 2)));
        }
    }
}
