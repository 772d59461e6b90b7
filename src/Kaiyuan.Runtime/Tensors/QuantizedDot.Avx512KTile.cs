using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// The multi-token Q4_K and Q6_K tiles on AVX-512 BW: one weight row against two to seven Q8_K activation rows (any
/// batch below the panels' threshold in one tile), 64 elements per 512-bit step where the 256-bit tiles take 32, so each
/// row's multiply-adds are half as many. These run a mixture-of-experts prompt (its experts see a few tokens each: 8 on
/// average for a 128-token prompt of Qwen3-30B-A3B, too few to repay the panels' repacking), the verifying pass of
/// speculative decoding and a decode step of a few streams. Each step holds two whole sub-blocks (Q4_K) or two chunks (Q6_K) in element
/// order, so the activations are plain 64-byte loads. Lanes 0–7 of the int32 sums are the first sub-block's or chunk's
/// in the 256-bit tiles' lane layout, lanes 8–15 the second's; integer sums are exact, so the two halves added are the
/// 256-bit tiles' sums and every result is the same to the bit.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>
    /// Q4_K or Q6_K against <paramref name="rows"/> activation rows (2–7) in one tile, for <see cref="DotRows"/>: each
    /// weight block decoded once for the whole batch instead of once per 4-, 3- or 2-row tile.
    /// </summary>
    private static void WideKRows(GgmlType weightType, int rows, byte* x, long rowBytes, int weightRows, byte* y, byte* side, int activationStride, int sideStride, int n,
        float* output, long outputStride)
    {
        int blocks = n / BlockLayouts.QK_K, biasStride = sideStride / sizeof(short);
        short* bias = (short*)side;
        bool q4 = weightType == GgmlType.Q4_K;
        switch (rows)
        {
            case 2 when q4: Q4KWideTile<TwoRows>(x, rowBytes, weightRows, y, activationStride, blocks, output, outputStride); break;
            case 3 when q4: Q4KWideTile<ThreeRows>(x, rowBytes, weightRows, y, activationStride, blocks, output, outputStride); break;
            case 4 when q4: Q4KWideTile<FourRows>(x, rowBytes, weightRows, y, activationStride, blocks, output, outputStride); break;
            case 5 when q4: Q4KWideTile<FiveRows>(x, rowBytes, weightRows, y, activationStride, blocks, output, outputStride); break;
            case 6 when q4: Q4KWideTile<SixRows>(x, rowBytes, weightRows, y, activationStride, blocks, output, outputStride); break;
            case 7 when q4: Q4KWideTile<SevenRows>(x, rowBytes, weightRows, y, activationStride, blocks, output, outputStride); break;
            case 2: Q6KWideTile<TwoRows>(x, rowBytes, weightRows, y, bias, activationStride, biasStride, blocks, output, outputStride); break;
            case 3: Q6KWideTile<ThreeRows>(x, rowBytes, weightRows, y, bias, activationStride, biasStride, blocks, output, outputStride); break;
            case 4: Q6KWideTile<FourRows>(x, rowBytes, weightRows, y, bias, activationStride, biasStride, blocks, output, outputStride); break;
            case 5: Q6KWideTile<FiveRows>(x, rowBytes, weightRows, y, bias, activationStride, biasStride, blocks, output, outputStride); break;
            case 6: Q6KWideTile<SixRows>(x, rowBytes, weightRows, y, bias, activationStride, biasStride, blocks, output, outputStride); break;
            case 7: Q6KWideTile<SevenRows>(x, rowBytes, weightRows, y, bias, activationStride, biasStride, blocks, output, outputStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(rows), rows, "a small-batch tile takes 2–7 rows");
        }
    }

    /// <summary>
    /// Q4_K against <typeparamref name="T"/> activation rows <paramref name="stride"/> bytes apart, for
    /// <paramref name="weightRows"/> weight rows <paramref name="rowBytes"/> apart (weight row r's results at
    /// <c>output[r + k * outputStride]</c>). A sub-block pair's 32
    /// bytes go to both halves of a vector, and one word-variable shift and a mask leave the low nibbles (sub-block 2p)
    /// in the lower half and the high ones (2p + 1) in the upper; one word permute of the block's scales gives the pair's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4KWideTile<T>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, float* output, long outputStride)
        where T : struct, ITileRows
    {
        // The static tables before the accumulators, as in Q4_KWide.
        float* halves = HalfTable;
        short* pairScales = (short*)WideKControls + 320;
        var nibbleShifts = Vector512.Load((ushort*)WideKControls + 448);
        var nibble = Vector512.Create((byte)0xF);
        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y = activations;
            // Each row's accumulators sit in its own lanes of shared vectors: eight lanes of block sums (two rows a vector),
            // four of mins (four rows a vector), so one instruction closes a block for two or four rows.
            var a01 = Vector512<float>.Zero;
            var a23 = Vector512<float>.Zero;
            var a45 = Vector512<float>.Zero;
            var a6 = Vector512<float>.Zero;
            var m0 = Vector512<float>.Zero;
            var m4 = Vector512<float>.Zero;
            // Two rows close as two single rows do (measured: 7% faster than the shared vectors at two, slower from four).
            var pairSums0 = Vector256<float>.Zero;
            var pairSums1 = Vector256<float>.Zero;
            var pairMins0 = Vector128<float>.Zero;
            var pairMins1 = Vector128<float>.Zero;
            // One pointer per activation row: stride multiples formed in the loop cost as many instructions as the products.
            // A row past the tile's count points at row 0 and is never read.
            byte* y1 = Row<T>(y, stride, 1), y2 = Row<T>(y, stride, 2), y3 = Row<T>(y, stride, 3), y4 = Row<T>(y, stride, 4), y5 = Row<T>(y, stride, 5),
                y6 = Row<T>(y, stride, 6);
            for (int b = 0; b < blocks; b++, x += BlockLayouts.Q4_K.Size, y += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size,
                 y2 += BlockLayouts.Q8_K.Size, y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size)
            {
                PrefetchBlock(x, BlockLayouts.Q4_K.Size);
                KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong blockMins);
                var scales16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte()).ToVector256Unsafe().ToVector512Unsafe();
                var s0 = Vector512<int>.Zero;
                var s1 = Vector512<int>.Zero;
                var s2 = Vector512<int>.Zero;
                var s3 = Vector512<int>.Zero;
                var s4 = Vector512<int>.Zero;
                var s5 = Vector512<int>.Zero;
                var s6 = Vector512<int>.Zero;
                byte* qs = x + BlockLayouts.Q4_K.Qs;
                short* pairScale = pairScales;
                for (int step = BlockLayouts.Q8_K.Qs; step < BlockLayouts.Q8_K.Qs + 256; step += 64, qs += 32, pairScale += 32)
                {
                    var bits = Vector256.Load(qs);
                    var quants = Avx512BW.ShiftRightLogicalVariable(Avx512F.InsertVector256(bits.ToVector512Unsafe(), bits, 1).AsUInt16(), nibbleShifts).AsByte() & nibble;
                    var scale = Avx512BW.PermuteVar32x16(scales16, Vector512.Load(pairScale));
                    s0 += ScaledProducts(quants, (sbyte*)(y + step), scale);
                    if (T.Count > 1) s1 += ScaledProducts(quants, (sbyte*)(y1 + step), scale);
                    if (T.Count > 2) s2 += ScaledProducts(quants, (sbyte*)(y2 + step), scale);
                    if (T.Count > 3) s3 += ScaledProducts(quants, (sbyte*)(y3 + step), scale);
                    if (T.Count > 4) s4 += ScaledProducts(quants, (sbyte*)(y4 + step), scale);
                    if (T.Count > 5) s5 += ScaledProducts(quants, (sbyte*)(y5 + step), scale);
                    if (T.Count > 6) s6 += ScaledProducts(quants, (sbyte*)(y6 + step), scale);
                }

                float dx = halves[*(ushort*)(x + BlockLayouts.Q4_K.D)], dminX = halves[*(ushort*)(x + BlockLayouts.Q4_K.DMin)];
                if (T.Count == 2)
                {
                    var mins8 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(blockMins).AsByte());
                    Q4KTokenBlock(y, mins8, dx, dminX, s0.GetLower() + s0.GetUpper(), ref pairMins0, ref pairSums0);
                    Q4KTokenBlock(y1, mins8, dx, dminX, s1.GetLower() + s1.GetUpper(), ref pairMins1, ref pairSums1);
                    continue;
                }

                // The eight mins as words, once per 128-bit lane (one lane per row).
                var mins16 = Avx512BW.ConvertToVector512Int16(Vector256.Create(blockMins).AsByte());
                Q4KCloseFour(Math.Min(T.Count, 4), y, y1, y2, y3, s0, s1, s2, s3, dx, dminX, mins16, ref a01, ref a23, ref m0);
                if (T.Count > 4) Q4KCloseFour(T.Count - 4, y4, y5, y6, y4, s4, s5, s6, s6, dx, dminX, mins16, ref a45, ref a6, ref m4);
            }

            if (T.Count == 2)
            {
                output[0] = Q4KResult(pairSums0, pairMins0);
                output[outputStride] = Q4KResult(pairSums1, pairMins1);
                continue;
            }

            output[0] = Q4KResult(a01.GetLower(), m0.GetLower().GetLower());
            if (T.Count > 1) output[outputStride] = Q4KResult(a01.GetUpper(), m0.GetLower().GetUpper());
            if (T.Count > 2) output[2 * outputStride] = Q4KResult(a23.GetLower(), m0.GetUpper().GetLower());
            if (T.Count > 3) output[3 * outputStride] = Q4KResult(a23.GetUpper(), m0.GetUpper().GetUpper());
            if (T.Count > 4) output[4 * outputStride] = Q4KResult(a45.GetLower(), m4.GetLower().GetLower());
            if (T.Count > 5) output[5 * outputStride] = Q4KResult(a45.GetUpper(), m4.GetLower().GetUpper());
            if (T.Count > 6) output[6 * outputStride] = Q4KResult(a6.GetLower(), m4.GetUpper().GetLower());
        }
    }

    /// <summary>Activation row <paramref name="k"/> of a tile of <typeparamref name="T"/> rows, or row 0 past its count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* Row<T>(byte* y, int stride, int k) where T : struct, ITileRows => T.Count > k ? y + k * stride : y;

    /// <summary>
    /// Closes a Q4_K block for up to four rows (<paramref name="rows"/>, a JIT constant): as the one-token kernel does for
    /// each, d = yd·dx and −dmin = (−yd)·dminX (so even a NaN keeps its sign), the mins against the sub-block sums
    /// folded into <paramref name="mins"/>, then the scaled sums into <paramref name="a01"/> (rows 0 and 1) and
    /// <paramref name="a23"/>. Every lane sees the one-token kernel's operations in its order: the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KCloseFour(int rows, byte* y0, byte* y1, byte* y2, byte* y3, Vector512<int> s0, Vector512<int> s1, Vector512<int> s2, Vector512<int> s3,
        float dx, float dminX, Vector512<short> mins16, ref Vector512<float> a01, ref Vector512<float> a23, ref Vector512<float> mins)
    {
        var yd = Vector128.Create(*(float*)(y0 + BlockLayouts.Q8_K.D), *(float*)(y1 + BlockLayouts.Q8_K.D),
            *(float*)(y2 + BlockLayouts.Q8_K.D), *(float*)(y3 + BlockLayouts.Q8_K.D)).ToVector256Unsafe().ToVector512Unsafe();
        var subSums = Q4KSubBlockSums(y0).ToVector256Unsafe().ToVector512Unsafe();
        if (rows > 1) subSums = Avx512F.InsertVector128(subSums, Q4KSubBlockSums(y1), 1);
        if (rows > 2) subSums = Avx512F.InsertVector128(subSums, Q4KSubBlockSums(y2), 2);
        if (rows > 3) subSums = Avx512F.InsertVector128(subSums, Q4KSubBlockSums(y3), 3);
        var dmin = -yd * Vector512.Create(dminX);
        mins = Avx512F.FusedMultiplyAdd(Avx512F.PermuteVar16x32(dmin, Vector512.Create(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)),
            Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(mins16, subSums)), mins);
        var d = yd * Vector512.Create(dx);
        a01 = Avx512F.FusedMultiplyAdd(Avx512F.PermuteVar16x32(d, Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
            Avx512F.ConvertToVector512Single(HalvesAdded(s0, s1)), a01);
        if (rows > 2)
            a23 = Avx512F.FusedMultiplyAdd(Avx512F.PermuteVar16x32(d, Vector512.Create(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)),
                Avx512F.ConvertToVector512Single(HalvesAdded(s2, s3)), a23);
    }

    /// <summary>[a's two 256-bit halves added | b's]: two rows' step sums folded to the 256-bit tiles' lanes in one vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> HalvesAdded(Vector512<int> a, Vector512<int> b) =>
        Avx512F.Shuffle4x128(a, b, 0b01_00_01_00) + Avx512F.Shuffle4x128(a, b, 0b11_10_11_10);

    /// <summary>64 unsigned quants against 64 activations, each 32-element half's pair sums times its word scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> ScaledProducts(Vector512<byte> quants, sbyte* q, Vector512<short> scales) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(quants, Vector512.Load(q)), scales);

    /// <summary>
    /// Half a Q6_K block against one activation row's 128 quants at <paramref name="y"/> and their pair bias
    /// (<see cref="Q6KPairBias"/>): (q + 32)·y less the bias, times the word scales, both steps summed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q6KHalfSums(in Q6KHalfQuants quants, byte* y, short* bias, Vector512<short> firstScales, Vector512<short> secondScales) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(quants.First, Vector512.Load((sbyte*)y)) - Vector512.Load(bias), firstScales)
        + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(quants.Second, Vector512.Load((sbyte*)y + 64)) - Vector512.Load(bias + 32), secondScales);

    /// <summary>
    /// Q6_K against <typeparamref name="T"/> activation rows <paramref name="stride"/> bytes apart, with their pair bias
    /// <paramref name="biasStride"/> int16 apart: each half block unpacked once (<see cref="Q6KHalfQuants"/>), its steps'
    /// scales by word permutes, as the one-token kernel. Rows share their accumulator vectors in pairs, as in
    /// <see cref="Q4KWideTile{T}"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6KWideTile<T>(byte* weights, long rowBytes, int weightRows, byte* activations, short* biases, int stride, int biasStride, int blocks, float* output,
        long outputStride) where T : struct, ITileRows
    {
        float* halves = HalfTable;
        short* controls = (short*)WideKControls;
        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y = activations;
            short* bias = biases;
            var a01 = Vector512<float>.Zero;
            var a23 = Vector512<float>.Zero;
            var a45 = Vector512<float>.Zero;
            var a6 = Vector512<float>.Zero;
            byte* y1 = Row<T>(y, stride, 1), y2 = Row<T>(y, stride, 2), y3 = Row<T>(y, stride, 3), y4 = Row<T>(y, stride, 4), y5 = Row<T>(y, stride, 5),
                y6 = Row<T>(y, stride, 6);
            short* bias1 = RowBias<T>(bias, biasStride, 1), bias2 = RowBias<T>(bias, biasStride, 2), bias3 = RowBias<T>(bias, biasStride, 3),
                bias4 = RowBias<T>(bias, biasStride, 4), bias5 = RowBias<T>(bias, biasStride, 5), bias6 = RowBias<T>(bias, biasStride, 6);
            for (int b = 0; b < blocks; b++, x += BlockLayouts.Q6_K.Size, y += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size,
                 y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size,
                 bias += 128, bias1 += 128, bias2 += 128, bias3 += 128, bias4 += 128, bias5 += 128, bias6 += 128)
            {
                PrefetchBlock(x, BlockLayouts.Q6_K.Size);
                var scales = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(x + BlockLayouts.Q6_K.Scales))).ToVector512Unsafe();
                var s0 = Vector512<int>.Zero;
                var s1 = Vector512<int>.Zero;
                var s2 = Vector512<int>.Zero;
                var s3 = Vector512<int>.Zero;
                var s4 = Vector512<int>.Zero;
                var s5 = Vector512<int>.Zero;
                var s6 = Vector512<int>.Zero;
                for (int half = 0; half < 2; half++)
                {
                    var quants = new Q6KHalfQuants(x + BlockLayouts.Q6_K.Ql + 64 * half, x + BlockLayouts.Q6_K.Qh + 32 * half, controls);
                    // Word w of step s's scale permute takes scale 4s + w / 8 (controls at word 128 + 32s).
                    var firstScales = Avx512BW.PermuteVar32x16(scales, Vector512.Load(controls + 128 + 64 * half));
                    var secondScales = Avx512BW.PermuteVar32x16(scales, Vector512.Load(controls + 160 + 64 * half));
                    int q = BlockLayouts.Q8_K.Qs + 128 * half, c = 64 * half;
                    s0 += Q6KHalfSums(in quants, y + q, bias + c, firstScales, secondScales);
                    if (T.Count > 1) s1 += Q6KHalfSums(in quants, y1 + q, bias1 + c, firstScales, secondScales);
                    if (T.Count > 2) s2 += Q6KHalfSums(in quants, y2 + q, bias2 + c, firstScales, secondScales);
                    if (T.Count > 3) s3 += Q6KHalfSums(in quants, y3 + q, bias3 + c, firstScales, secondScales);
                    if (T.Count > 4) s4 += Q6KHalfSums(in quants, y4 + q, bias4 + c, firstScales, secondScales);
                    if (T.Count > 5) s5 += Q6KHalfSums(in quants, y5 + q, bias5 + c, firstScales, secondScales);
                    if (T.Count > 6) s6 += Q6KHalfSums(in quants, y6 + q, bias6 + c, firstScales, secondScales);
                }

                var dx = Vector512.Create(halves[*(ushort*)(x + BlockLayouts.Q6_K.D)]);
                a01 = PairFma(y, y1, dx, s0, s1, a01);
                if (T.Count > 2) a23 = PairFma(y2, y3, dx, s2, s3, a23);
                if (T.Count > 4) a45 = PairFma(y4, y5, dx, s4, s5, a45);
                if (T.Count > 6) a6 = PairFma(y6, y6, dx, s6, s6, a6);
            }

            output[0] = HorizontalSum(a01.GetLower());
            if (T.Count > 1) output[outputStride] = HorizontalSum(a01.GetUpper());
            if (T.Count > 2) output[2 * outputStride] = HorizontalSum(a23.GetLower());
            if (T.Count > 3) output[3 * outputStride] = HorizontalSum(a23.GetUpper());
            if (T.Count > 4) output[4 * outputStride] = HorizontalSum(a45.GetLower());
            if (T.Count > 5) output[5 * outputStride] = HorizontalSum(a45.GetUpper());
            if (T.Count > 6) output[6 * outputStride] = HorizontalSum(a6.GetLower());
        }
    }

    /// <summary>Pair bias of activation row <paramref name="k"/> of a tile of <typeparamref name="T"/> rows, or row 0's past its count.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static short* RowBias<T>(short* bias, int biasStride, int k) where T : struct, ITileRows => T.Count > k ? bias + k * biasStride : bias;

    /// <summary>
    /// Two rows' block closing in one vector: [yd₀·dx | yd₁·dx] times their step sums folded to 256-bit lanes, added to
    /// <paramref name="acc"/>, lane for lane the one-token kernel's product and FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairFma(byte* y0, byte* y1, Vector512<float> dx, Vector512<int> s0, Vector512<int> s1, Vector512<float> acc)
    {
        var yd = Vector512.Create(Vector256.Create(*(float*)(y0 + BlockLayouts.Q8_K.D)), Vector256.Create(*(float*)(y1 + BlockLayouts.Q8_K.D)));
        return Avx512F.FusedMultiplyAdd(yd * dx, Avx512F.ConvertToVector512Single(HalvesAdded(s0, s1)), acc);
    }
}
