using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// The multi-token Q4_K and Q6_K tiles on AVX-512 BW: one weight row against two to four Q8_K activation rows, 64
/// elements per 512-bit step where the 256-bit tiles take 32, so each row's multiply-adds are half as many. These run a
/// mixture-of-experts prompt: its experts see a few tokens each (8 on average for a 128-token prompt of Qwen3-30B-A3B),
/// too few to repay the panels' repacking. Each step holds two whole sub-blocks (Q4_K) or two chunks (Q6_K) in element
/// order, so the activations are plain 64-byte loads. Lanes 0–7 of the int32 sums are the first sub-block's or chunk's
/// in the 256-bit tiles' lane layout, lanes 8–15 the second's; integer sums are exact, so the two halves added are the
/// 256-bit tiles' sums and every result is the same to the bit.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>
    /// Q4_K against <typeparamref name="T"/> activation rows <paramref name="stride"/> bytes apart. A sub-block pair's 32
    /// bytes go to both halves of a vector, and one word-variable shift and a mask leave the low nibbles (sub-block 2p)
    /// in the lower half and the high ones (2p + 1) in the upper; one word permute of the block's scales gives the pair's.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4KWideTile<T>(byte* x, byte* y, int stride, int blocks, float* output, long outputStride) where T : struct, ITileRows
    {
        // The static tables before the accumulators, as in Q4_KWide.
        float* halves = HalfTable;
        short* pairScales = (short*)WideKControls + 320;
        var nibbleShifts = Vector512.Load((ushort*)WideKControls + 448);
        var nibble = Vector512.Create((byte)0xF);
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero;
        var a3 = Vector256<float>.Zero;
        var m0 = Vector128<float>.Zero;
        var m1 = Vector128<float>.Zero;
        var m2 = Vector128<float>.Zero;
        var m3 = Vector128<float>.Zero;
        // One pointer per activation row: stride multiples formed in the loop cost as many instructions as the products.
        byte* y1 = y + stride, y2 = y + 2 * stride, y3 = y + 3 * stride;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q4_K.Size, y += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size,
             y2 += BlockLayouts.Q8_K.Size, y3 += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.Q4_K.Size);
            KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong mins);
            var scales16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte()).ToVector256Unsafe().ToVector512Unsafe();
            Vector128<short> mins16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte());
            var s0 = Vector512<int>.Zero;
            var s1 = Vector512<int>.Zero;
            var s2 = Vector512<int>.Zero;
            var s3 = Vector512<int>.Zero;
            byte* qs = x + BlockLayouts.Q4_K.Qs;
            short* pairScale = pairScales;
            for (int step = 0; step < 256; step += 64, qs += 32, pairScale += 32)
            {
                var bits = Vector256.Load(qs);
                var quants = Avx512BW.ShiftRightLogicalVariable(Avx512F.InsertVector256(bits.ToVector512Unsafe(), bits, 1).AsUInt16(), nibbleShifts).AsByte() & nibble;
                var scale = Avx512BW.PermuteVar32x16(scales16, Vector512.Load(pairScale));
                s0 += ScaledProducts(quants, (sbyte*)(y + BlockLayouts.Q8_K.Qs + step), scale);
                if (T.Count > 1) s1 += ScaledProducts(quants, (sbyte*)(y1 + BlockLayouts.Q8_K.Qs + step), scale);
                if (T.Count > 2) s2 += ScaledProducts(quants, (sbyte*)(y2 + BlockLayouts.Q8_K.Qs + step), scale);
                if (T.Count > 3) s3 += ScaledProducts(quants, (sbyte*)(y3 + BlockLayouts.Q8_K.Qs + step), scale);
            }

            float dx = halves[*(ushort*)(x + BlockLayouts.Q4_K.D)], dminX = halves[*(ushort*)(x + BlockLayouts.Q4_K.DMin)];
            Q4KTokenBlock(y, mins16, dx, dminX, s0.GetLower() + s0.GetUpper(), ref m0, ref a0);
            if (T.Count > 1) Q4KTokenBlock(y1, mins16, dx, dminX, s1.GetLower() + s1.GetUpper(), ref m1, ref a1);
            if (T.Count > 2) Q4KTokenBlock(y2, mins16, dx, dminX, s2.GetLower() + s2.GetUpper(), ref m2, ref a2);
            if (T.Count > 3) Q4KTokenBlock(y3, mins16, dx, dminX, s3.GetLower() + s3.GetUpper(), ref m3, ref a3);
        }

        output[0] = Q4KResult(a0, m0);
        if (T.Count > 1) output[outputStride] = Q4KResult(a1, m1);
        if (T.Count > 2) output[2 * outputStride] = Q4KResult(a2, m2);
        if (T.Count > 3) output[3 * outputStride] = Q4KResult(a3, m3);
    }

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
    /// scales by word permutes, as the one-token kernel.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6KWideTile<T>(byte* x, byte* y, short* bias, int stride, int biasStride, int blocks, float* output, long outputStride) where T : struct, ITileRows
    {
        float* halves = HalfTable;
        short* controls = (short*)WideKControls;
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero;
        var a3 = Vector256<float>.Zero;
        byte* y1 = y + stride, y2 = y + 2 * stride, y3 = y + 3 * stride;
        short* bias1 = bias + biasStride, bias2 = bias + 2 * biasStride, bias3 = bias + 3 * biasStride;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q6_K.Size, y += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size,
             y3 += BlockLayouts.Q8_K.Size, bias += 128, bias1 += 128, bias2 += 128, bias3 += 128)
        {
            PrefetchBlock(x, BlockLayouts.Q6_K.Size);
            var scales = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(x + BlockLayouts.Q6_K.Scales))).ToVector512Unsafe();
            var s0 = Vector512<int>.Zero;
            var s1 = Vector512<int>.Zero;
            var s2 = Vector512<int>.Zero;
            var s3 = Vector512<int>.Zero;
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
            }

            float dx = halves[*(ushort*)(x + BlockLayouts.Q6_K.D)];
            a0 = BlockFma(*(float*)(y + BlockLayouts.Q8_K.D) * dx, s0.GetLower() + s0.GetUpper(), a0);
            if (T.Count > 1) a1 = BlockFma(*(float*)(y1 + BlockLayouts.Q8_K.D) * dx, s1.GetLower() + s1.GetUpper(), a1);
            if (T.Count > 2) a2 = BlockFma(*(float*)(y2 + BlockLayouts.Q8_K.D) * dx, s2.GetLower() + s2.GetUpper(), a2);
            if (T.Count > 3) a3 = BlockFma(*(float*)(y3 + BlockLayouts.Q8_K.D) * dx, s3.GetLower() + s3.GetUpper(), a3);
        }

        output[0] = HorizontalSum(a0);
        if (T.Count > 1) output[outputStride] = HorizontalSum(a1);
        if (T.Count > 2) output[2 * outputStride] = HorizontalSum(a2);
        if (T.Count > 3) output[3 * outputStride] = HorizontalSum(a3);
    }
}
