using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// The K-quant and unsigned 32-element panel GEMMs on AVX-512 BW: two packed panels (sixteen weight rows) side by side, one in each 256-bit half
/// of every vector, so one broadcast of four activation bytes meets sixteen rows in a single multiply-add where the
/// 256-bit kernel meets eight. The panels keep their 8-row layout (each half is one panel's step, put together by a
/// load and an insert shared by the four activation rows). Each lane is one weight row and does exactly what its lane
/// in <see cref="KPanel{TFormat}"/> does — the same integer sums, the same float operations in the same order — so the
/// sixteen results equal the two 8-row calls' to the bit.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>
    /// True when <see cref="PanelPairMultiply"/> runs for <paramref name="weightType"/> here: the K-quant and unsigned
    /// 32-element panel formats on AVX-512 BW, the grid i-quants' too (their panels are K-quant panels with an offset).
    /// Not Q8_0 and IQ4_NL, which move their sign onto the activations (no 512-bit instruction), nor IQ4_XS's VNNI panel
    /// (no 512-bit VNNI in .NET).
    /// </summary>
    public static bool HasPanelPairs(GgmlType weightType) => HasWideKQuants && (weightType is GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K
        or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type or GgmlType.Q4_1 or GgmlType.Q5_1 || IqGridDecoder.Handles(weightType));

    /// <summary>
    /// <see cref="PanelMultiply"/> of two panels at once (<paramref name="panelB"/>'s rows follow <paramref name="panelA"/>'s):
    /// activation row t's sixteen results go to <c>output + t * outputStride</c>.
    /// </summary>
    public static void PanelPairMultiply(GgmlType weightType, byte* panelA, byte* panelB, int n, int firstColumn, int columns, byte* y, int stride,
        byte* side, int sideStride, int tokens, bool accumulate, float* output, long outputStride)
    {
        bool k = GgmlTypeInfo.Geometry(Q5Fields.FileType(weightType)).BlockSize == BlockLayouts.QK_K;
        int blockSize = k ? BlockLayouts.QK_K : BlockLayouts.QK, first = firstColumn / blockSize, blocks = columns / blockSize;
        long quantsAt = first * PanelRows * blockSize, scalesAt = PanelRows * n + first * PanelScaleBytes(weightType);
        y += first * (int)GgmlTypeInfo.RowBytes(QuantizedDot.ActivationType(weightType), blockSize);
        // Side data (32-element formats): the block scales, then the offset sums.
        byte* blockScales = side + first * sizeof(float), offsetSums = side + (n / blockSize + first) * sizeof(float);
        for (int t = 0; t < tokens; t += PanelTokensQuantized)
        {
            var rows = new PanelRowSet(y + (long)t * stride, stride, blockScales + (long)t * sideStride, offsetSums + (long)t * sideStride, sideStride,
                output + t * outputStride, outputStride, Math.Min(PanelTokensQuantized, tokens - t), accumulate);
            var pair = new PanelPair(panelA + quantsAt, panelB + quantsAt, panelA + scalesAt, panelB + scalesAt);
            switch (weightType)
            {
                case GgmlType.Q4_0: Block32PanelPair<Q4_0Runs>(pair, blocks, rows); break;
                case GgmlType.Q5_0 or Q5Fields.Type: Block32PanelPair<Q5_0Runs>(pair, blocks, rows); break;
                case GgmlType.Q4_1: Block32PanelPair<Q4_1Runs>(pair, blocks, rows); break;
                case GgmlType.Q5_1: Block32PanelPair<Q5_1Runs>(pair, blocks, rows); break;
                case GgmlType.Q2_K: KPanelPair<Q2KFormat>(pair, blocks, rows); break;
                case GgmlType.Q3_K: KPanelPair<Q3KFormat>(pair, blocks, rows); break;
                case GgmlType.Q4_K: KPanelPair<Q4KFormat>(pair, blocks, rows); break;
                case GgmlType.Q5_K: KPanelPair<Q5KFormat>(pair, blocks, rows); break;
                case GgmlType.Q6_K: KPanelPair<Q6KFormat>(pair, blocks, rows); break;
                case GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ3_XXS: KPanelPair<GridWideFormat>(pair, blocks, rows); break;
                case GgmlType.IQ3_S or GgmlType.IQ1_S or GgmlType.IQ1_M: KPanelPair<GridNarrowFormat>(pair, blocks, rows); break;
                default: throw new NotSupportedException($"No panel pair kernel for {weightType}.");
            }
        }
    }

    /// <summary>Two panels' quants and scale data over the same columns; the second panel's at a fixed distance from the first's.</summary>
    private readonly struct PanelPair(byte* quantsA, byte* quantsB, byte* scalesA, byte* scalesB)
    {
        public readonly byte* Quants = quantsA, Scales = scalesA;
        public readonly long QuantsToB = quantsB - quantsA, ScalesToB = scalesB - scalesA;
    }

    /// <summary>The 32 bytes at <paramref name="a"/> in the lower half, those <paramref name="toB"/> bytes on in the upper.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Halves(byte* a, long toB) => Avx512F.InsertVector256(Vector256.Load(a).ToVector512Unsafe(), Vector256.Load(a + toB), 1);

    /// <summary>Four activation bytes broadcast to every lane, as the panel step meets them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Broadcast4(byte* y) => Vector512.Create(*(int*)y).AsSByte();

    /// <summary><see cref="Block32Panel{TFormat}"/> over two panels: sixteen weight rows, one per int32 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Block32PanelPair<TFormat>(in PanelPair pair, int blocks, in PanelRowSet rows) where TFormat : struct, IBlock32Format
    {
        byte* panel = pair.Quants, scales = pair.Scales;
        long quantsToB = pair.QuantsToB, scalesToB = pair.ScalesToB;
        float* d0 = rows.D0, d1 = rows.D1, d2 = rows.D2, d3 = rows.D3;
        int* c0 = rows.C0, c1 = rows.C1, c2 = rows.C2, c3 = rows.C3;
        int actQs = TFormat.HasMin ? BlockLayouts.Q8_1.Qs : BlockLayouts.Q8_0.Qs;
        int actSize = TFormat.HasMin ? BlockLayouts.Q8_1.Size : BlockLayouts.Q8_0.Size;
        int scaleBytes = (TFormat.HasMin ? 2 : 1) * PanelRows * sizeof(float);
        byte* y0 = rows.Y0 + actQs, y1 = rows.Y1 + actQs, y2 = rows.Y2 + actQs, y3 = rows.Y3 + actQs;
        var ones = Vector512.Create((short)1);
        rows.StartPair(out var f0, out var f1, out var f2, out var f3);
        for (int b = 0; b < blocks; b++, panel += 256, scales += scaleBytes, y0 += actSize, y1 += actSize, y2 += actSize, y3 += actSize)
        {
            Vector512<int> i0, i1, i2, i3;
            if (TFormat.HasMin)
            {
                i0 = i1 = i2 = i3 = Vector512<int>.Zero;
            }
            else
            {
                i0 = Vector512.Create(c0[b]);
                i1 = Vector512.Create(c1[b]);
                i2 = Vector512.Create(c2[b]);
                i3 = Vector512.Create(c3[b]);
            }

            for (int s0 = 0; s0 < 8; s0 += TFormat.Steps)
            {
                UnsignedRun(panel + s0 * 32, quantsToB, TFormat.Steps, y0 + s0 * 4, y1 + s0 * 4, y2 + s0 * 4, y3 + s0 * 4, out var a0, out var a1, out var a2, out var a3);
                i0 += Avx512BW.MultiplyAddAdjacent(a0, ones);
                i1 += Avx512BW.MultiplyAddAdjacent(a1, ones);
                i2 += Avx512BW.MultiplyAddAdjacent(a2, ones);
                i3 += Avx512BW.MultiplyAddAdjacent(a3, ones);
            }

            var dx = Halves(scales, scalesToB).AsSingle();
            f0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i0), dx * d0[b], f0);
            f1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i1), dx * d1[b], f1);
            f2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i2), dx * d2[b], f2);
            f3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i3), dx * d3[b], f3);
            if (TFormat.HasMin)
            {
                // The side's second array holds s = dy·Σy as floats for these formats.
                var m = Halves(scales + PanelRows * sizeof(float), scalesToB).AsSingle();
                f0 = Avx512F.FusedMultiplyAdd(m, Vector512.Create(((float*)c0)[b]), f0);
                f1 = Avx512F.FusedMultiplyAdd(m, Vector512.Create(((float*)c1)[b]), f1);
                f2 = Avx512F.FusedMultiplyAdd(m, Vector512.Create(((float*)c2)[b]), f2);
                f3 = Avx512F.FusedMultiplyAdd(m, Vector512.Create(((float*)c3)[b]), f3);
            }
        }

        rows.StorePair(f0, f1, f2, f3);
    }

    /// <summary><see cref="KPanel{TFormat}"/> over two panels: sixteen weight rows, one per int32 lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void KPanelPair<TFormat>(in PanelPair pair, int blocks, in PanelRowSet rows) where TFormat : struct, IKFormat
    {
        int subBlocks = 64 / TFormat.SubBlockSteps, scaleBytes = KScaleBytes(subBlocks);
        byte* panel = pair.Quants, scaleData = pair.Scales;
        long quantsToB = pair.QuantsToB, scalesToB = pair.ScalesToB;
        byte* y0 = rows.Y0, y1 = rows.Y1, y2 = rows.Y2, y3 = rows.Y3;
        rows.StartPair(out var f0, out var f1, out var f2, out var f3);
        for (int b = 0; b < blocks; b++, panel += 2048, scaleData += scaleBytes, y0 += BlockLayouts.Q8_K.Size,
             y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size, y3 += BlockLayouts.Q8_K.Size)
        {
            byte* paired = scaleData + KPairedOffset(subBlocks);
            var i0 = Vector512<int>.Zero;
            var i1 = Vector512<int>.Zero;
            var i2 = Vector512<int>.Zero;
            var i3 = Vector512<int>.Zero;
            if (!TFormat.HasMins)
            {
                PairedSums(paired, scalesToB, y0, y1, y2, y3, out var p0, out var p1, out var p2, out var p3);
                i0 = -Vector512.ShiftLeft(p0, TFormat.OffsetShift);
                i1 = -Vector512.ShiftLeft(p1, TFormat.OffsetShift);
                i2 = -Vector512.ShiftLeft(p2, TFormat.OffsetShift);
                i3 = -Vector512.ShiftLeft(p3, TFormat.OffsetShift);
            }

            for (int j = 0; j < subBlocks; j++)
            {
                var scale = Halves(scaleData + KScalesOffset + j * 32, scalesToB).AsInt16();
                for (int s0 = 0; s0 < TFormat.SubBlockSteps; s0 += TFormat.StepsPerRun)
                {
                    int step = j * TFormat.SubBlockSteps + s0, q = BlockLayouts.Q8_K.Qs + step * 4;
                    UnsignedRun(panel + step * 32, quantsToB, TFormat.StepsPerRun, y0 + q, y1 + q, y2 + q, y3 + q, out var a0, out var a1, out var a2, out var a3);
                    i0 += Avx512BW.MultiplyAddAdjacent(a0, scale);
                    i1 += Avx512BW.MultiplyAddAdjacent(a1, scale);
                    i2 += Avx512BW.MultiplyAddAdjacent(a2, scale);
                    i3 += Avx512BW.MultiplyAddAdjacent(a3, scale);
                }
            }

            var d = Halves(scaleData, scalesToB).AsSingle();
            f0 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i0), d * *(float*)y0, f0);
            f1 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i1), d * *(float*)y1, f1);
            f2 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i2), d * *(float*)y2, f2);
            f3 = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(i3), d * *(float*)y3, f3);
            if (TFormat.HasMins)
            {
                PairedSums(paired, scalesToB, y0, y1, y2, y3, out var m0, out var m1, out var m2, out var m3);
                var dmin = Halves(scaleData + PanelRows * sizeof(float), scalesToB).AsSingle();
                f0 = Avx512F.FusedMultiplyAddNegated(Avx512F.ConvertToVector512Single(m0), dmin * *(float*)y0, f0);
                f1 = Avx512F.FusedMultiplyAddNegated(Avx512F.ConvertToVector512Single(m1), dmin * *(float*)y1, f1);
                f2 = Avx512F.FusedMultiplyAddNegated(Avx512F.ConvertToVector512Single(m2), dmin * *(float*)y2, f2);
                f3 = Avx512F.FusedMultiplyAddNegated(Avx512F.ConvertToVector512Single(m3), dmin * *(float*)y3, f3);
            }
        }

        // Fewer than four activation rows repeat the last one's pointers: storing it again stores the same values.
        rows.StorePair(f0, f1, f2, f3);
    }

    /// <summary><see cref="UnsignedRun(byte*, int, byte*, byte*, byte*, byte*, out Vector256{short}, out Vector256{short}, out Vector256{short}, out Vector256{short})"/> over two panels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnsignedRun(byte* w, long toB, int steps, byte* y0, byte* y1, byte* y2, byte* y3,
        out Vector512<short> a0, out Vector512<short> a1, out Vector512<short> a2, out Vector512<short> a3)
    {
        var wv = Halves(w, toB);
        a0 = Avx512BW.MultiplyAddAdjacent(wv, Broadcast4(y0));
        a1 = Avx512BW.MultiplyAddAdjacent(wv, Broadcast4(y1));
        a2 = Avx512BW.MultiplyAddAdjacent(wv, Broadcast4(y2));
        a3 = Avx512BW.MultiplyAddAdjacent(wv, Broadcast4(y3));
        // Written out step by step, as the 256-bit run: the JIT does not unroll the loop.
        if (steps > 1) AddStep(w, toB, 1, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 2) AddStep(w, toB, 2, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 3) AddStep(w, toB, 3, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 4) AddStep(w, toB, 4, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 5) AddStep(w, toB, 5, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 6) AddStep(w, toB, 6, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 7) AddStep(w, toB, 7, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddStep(byte* w, long toB, int s, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector512<short> a0, ref Vector512<short> a1, ref Vector512<short> a2, ref Vector512<short> a3)
    {
        var wv = Halves(w + s * 32, toB);
        a0 += Avx512BW.MultiplyAddAdjacent(wv, Broadcast4(y0 + s * 4));
        a1 += Avx512BW.MultiplyAddAdjacent(wv, Broadcast4(y1 + s * 4));
        a2 += Avx512BW.MultiplyAddAdjacent(wv, Broadcast4(y2 + s * 4));
        a3 += Avx512BW.MultiplyAddAdjacent(wv, Broadcast4(y3 + s * 4));
    }

    /// <summary><see cref="PairedSums(short*, byte*, byte*, byte*, byte*, out Vector256{int}, out Vector256{int}, out Vector256{int}, out Vector256{int})"/> over two panels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PairedSums(byte* pairs, long toB, byte* y0, byte* y1, byte* y2, byte* y3,
        out Vector512<int> s0, out Vector512<int> s1, out Vector512<int> s2, out Vector512<int> s3)
    {
        s0 = s1 = s2 = s3 = Vector512<int>.Zero;
        for (int p = 0; p < 8; p++)
        {
            var v = Halves(pairs + p * 32, toB).AsInt16();
            int bs = BlockLayouts.Q8_K.BSums + p * 4;
            s0 += Avx512BW.MultiplyAddAdjacent(v, Vector512.Create(*(int*)(y0 + bs)).AsInt16());
            s1 += Avx512BW.MultiplyAddAdjacent(v, Vector512.Create(*(int*)(y1 + bs)).AsInt16());
            s2 += Avx512BW.MultiplyAddAdjacent(v, Vector512.Create(*(int*)(y2 + bs)).AsInt16());
            s3 += Avx512BW.MultiplyAddAdjacent(v, Vector512.Create(*(int*)(y3 + bs)).AsInt16());
        }
    }
}
