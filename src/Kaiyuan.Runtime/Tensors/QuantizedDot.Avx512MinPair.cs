using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

internal static unsafe partial class Avx2Dot
{
    /// <summary>
    /// Q4_1 and Q5_1 rows (quants with a per-block minimum: x = d·q + m) against one Q8_1 activation row, on AVX-512
    /// VBMI: two blocks unpacked from one 64-byte load as Q4_0's and Q5_0's one-token kernels do (<see cref="IVbmiPair"/>),
    /// their quants already unsigned, so straight into the unsigned-by-signed multiply-add. The 256-bit kernels, one
    /// block and one row at a time, read 30–34 GB/s of weights at one token (4864 × 4096, 2 threads, Zen 5), the slowest
    /// of the 32-element types. Each block's int32 sums meet d·d_y in one multiply-add on the 256-bit kernel's lanes, in
    /// block order, and each block's m·s_y joins a scalar sum in block order: the 256-bit kernel's float operations, so
    /// the same bits. One weight row, or (<paramref name="dots"/> = 2) also the row <paramref name="weightStride"/> on.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void MinPairVbmi<T>(byte* x, long weightStride, byte* y, int dots, int blocks, bool vnni, float* output, long outputStride) where T : struct, IMinPair
    {
        var unpack = new Q5Unpack(T.Controls);
        float* halves = HalfTable;
        byte* x1 = x + weightStride;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        float min0 = 0, min1 = 0;
        int b = 0;
        // The 64-byte load reads past the pair: only while enough further blocks follow in the row.
        for (; b + LoadBlocks(T.Size) <= blocks; b += 2, x += 2 * T.Size, x1 += 2 * T.Size, y += 2 * BlockLayouts.Q8_1.Size)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            var activations = Q8_1Pair(y);
            acc0 = MinPairRow<T>(x, 0, in unpack, activations, y, halves, acc0, ref min0);
            if (dots > 1)
            {
                Sse.Prefetch0(x1 + PrefetchDistance);
                acc1 = MinPairRow<T>(x1, 0, in unpack, activations, y, halves, acc1, ref min1);
            }
        }
        if (HasLastPair(b, blocks, T.Size))
        {
            var last = new Q5Unpack(T.Controls + LastPairControls);
            var activations = Q8_1Pair(y);
            acc0 = MinPairRow<T>(x, LastPairBack(T.Size), in last, activations, y, halves, acc0, ref min0);
            if (dots > 1) acc1 = MinPairRow<T>(x1, LastPairBack(T.Size), in last, activations, y, halves, acc1, ref min1);
            b += 2;
            x += 2 * T.Size;
            x1 += 2 * T.Size;
            y += 2 * BlockLayouts.Q8_1.Size;
        }
        for (; b < blocks; b++, x += T.Size, x1 += T.Size, y += BlockLayouts.Q8_1.Size)
        {
            acc0 = MinBlock<T>(x, y, vnni, acc0, ref min0);
            if (dots > 1) acc1 = MinBlock<T>(x1, y, vnni, acc1, ref min1);
        }

        output[0] = HorizontalSum(acc0) + min0;
        if (dots > 1) output[outputStride] = HorizontalSum(acc1) + min1;
    }

    /// <summary>
    /// <see cref="MinPairVbmi{T}"/> against <typeparamref name="TRows"/> Q8_1 activation rows (2–7) <paramref name="stride"/>
    /// bytes apart, for <paramref name="weightRows"/> weight rows <paramref name="rowBytes"/> apart: each pair of blocks
    /// unpacked once for every activation row (a verify pass of speculative decoding, a decode step of a few streams ran
    /// each row through the one-token kernel), each row's arithmetic the one-row kernel's, so each result the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MinPairTile<T, TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, bool vnni, float* output, long outputStride)
        where T : struct, IMinPair where TRows : struct, ITileRows
    {
        var unpack = new Q5Unpack(T.Controls);
        var last = new Q5Unpack(T.Controls + LastPairControls);
        float* halves = HalfTable;
        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y = activations;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default;
            float m0 = 0, m1 = 0, m2 = 0, m3 = 0, m4 = 0, m5 = 0, m6 = 0;
            int b = 0;
            for (; b + LoadBlocks(T.Size) <= blocks; b += 2, x += 2 * T.Size, y += 2 * BlockLayouts.Q8_1.Size)
            {
                Sse.Prefetch0(x + PrefetchDistance);
                MinTileSteps<T, TRows>(x, T.UnsignedPair(x, in unpack), y, stride, halves, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6,
                                       ref m0, ref m1, ref m2, ref m3, ref m4, ref m5, ref m6);
            }
            if (HasLastPair(b, blocks, T.Size))
            {
                MinTileSteps<T, TRows>(x, T.UnsignedPair(x - LastPairBack(T.Size), in last), y, stride, halves, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6,
                                       ref m0, ref m1, ref m2, ref m3, ref m4, ref m5, ref m6);
                b += 2;
                x += 2 * T.Size;
                y += 2 * BlockLayouts.Q8_1.Size;
            }
            for (; b < blocks; b++, x += T.Size, y += BlockLayouts.Q8_1.Size)
            {
                a0 = MinBlock<T>(x, y, vnni, a0, ref m0);
                if (TRows.Count > 1) a1 = MinBlock<T>(x, y + stride, vnni, a1, ref m1);
                if (TRows.Count > 2) a2 = MinBlock<T>(x, y + 2 * stride, vnni, a2, ref m2);
                if (TRows.Count > 3) a3 = MinBlock<T>(x, y + 3 * stride, vnni, a3, ref m3);
                if (TRows.Count > 4) a4 = MinBlock<T>(x, y + 4 * stride, vnni, a4, ref m4);
                if (TRows.Count > 5) a5 = MinBlock<T>(x, y + 5 * stride, vnni, a5, ref m5);
                if (TRows.Count > 6) a6 = MinBlock<T>(x, y + 6 * stride, vnni, a6, ref m6);
            }

            output[0] = HorizontalSum(a0) + m0;
            if (TRows.Count > 1) output[outputStride] = HorizontalSum(a1) + m1;
            if (TRows.Count > 2) output[2 * outputStride] = HorizontalSum(a2) + m2;
            if (TRows.Count > 3) output[3 * outputStride] = HorizontalSum(a3) + m3;
            if (TRows.Count > 4) output[4 * outputStride] = HorizontalSum(a4) + m4;
            if (TRows.Count > 5) output[5 * outputStride] = HorizontalSum(a5) + m5;
            if (TRows.Count > 6) output[6 * outputStride] = HorizontalSum(a6) + m6;
        }
    }

    /// <summary>Every activation row's share of the pair of blocks at <paramref name="x"/>, unpacked to <paramref name="u"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MinTileSteps<T, TRows>(byte* x, Vector512<byte> u, byte* y, int stride, float* halves, ref Vector256<float> a0, ref Vector256<float> a1,
        ref Vector256<float> a2, ref Vector256<float> a3, ref Vector256<float> a4, ref Vector256<float> a5, ref Vector256<float> a6, ref float m0, ref float m1, ref float m2,
        ref float m3, ref float m4, ref float m5, ref float m6) where T : struct, IMinPair where TRows : struct, ITileRows
    {
        a0 = MinPairRow<T>(x, u, Q8_1Pair(y), y, halves, a0, ref m0);
        if (TRows.Count > 1) a1 = MinPairRow<T>(x, u, Q8_1Pair(y + stride), y + stride, halves, a1, ref m1);
        if (TRows.Count > 2) a2 = MinPairRow<T>(x, u, Q8_1Pair(y + 2 * stride), y + 2 * stride, halves, a2, ref m2);
        if (TRows.Count > 3) a3 = MinPairRow<T>(x, u, Q8_1Pair(y + 3 * stride), y + 3 * stride, halves, a3, ref m3);
        if (TRows.Count > 4) a4 = MinPairRow<T>(x, u, Q8_1Pair(y + 4 * stride), y + 4 * stride, halves, a4, ref m4);
        if (TRows.Count > 5) a5 = MinPairRow<T>(x, u, Q8_1Pair(y + 5 * stride), y + 5 * stride, halves, a5, ref m5);
        if (TRows.Count > 6) a6 = MinPairRow<T>(x, u, Q8_1Pair(y + 6 * stride), y + 6 * stride, halves, a6, ref m6);
    }

    /// <summary><see cref="MinPairTile{T, TRows}"/> for a row count known only at run time (2–7).</summary>
    private static void MinPairRows(GgmlType weightType, int rows, byte* x, long rowBytes, int weightRows, byte* y, int stride, int blocks, bool vnni, float* output,
        long outputStride)
    {
        if (weightType == GgmlType.Q4_1) MinPairRows<Q41Pair>(rows, x, rowBytes, weightRows, y, stride, blocks, vnni, output, outputStride);
        else MinPairRows<Q51Pair>(rows, x, rowBytes, weightRows, y, stride, blocks, vnni, output, outputStride);
    }

    private static void MinPairRows<T>(int rows, byte* x, long rowBytes, int weightRows, byte* y, int stride, int blocks, bool vnni, float* output, long outputStride)
        where T : struct, IMinPair
    {
        switch (rows)
        {
            case 2: MinPairTile<T, TwoRows>(x, rowBytes, weightRows, y, stride, blocks, vnni, output, outputStride); break;
            case 3: MinPairTile<T, ThreeRows>(x, rowBytes, weightRows, y, stride, blocks, vnni, output, outputStride); break;
            case 4: MinPairTile<T, FourRows>(x, rowBytes, weightRows, y, stride, blocks, vnni, output, outputStride); break;
            case 5: MinPairTile<T, FiveRows>(x, rowBytes, weightRows, y, stride, blocks, vnni, output, outputStride); break;
            case 6: MinPairTile<T, SixRows>(x, rowBytes, weightRows, y, stride, blocks, vnni, output, outputStride); break;
            case 7: MinPairTile<T, SevenRows>(x, rowBytes, weightRows, y, stride, blocks, vnni, output, outputStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(rows), rows, "a small-batch tile takes 2–7 rows");
        }
    }

    /// <summary><see cref="MinPairVbmi{T}"/> of one row.</summary>
    private static float MinPairDot(GgmlType weightType, byte* x, byte* y, int blocks, bool vnni)
    {
        float result;
        if (weightType == GgmlType.Q4_1) MinPairVbmi<Q41Pair>(x, 0, y, 1, blocks, vnni, &result, 0);
        else MinPairVbmi<Q51Pair>(x, 0, y, 1, blocks, vnni, &result, 0);
        return result;
    }

    /// <summary>A 256-bit kernel for <typeparamref name="T"/> against a Q8_1 row, one block at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float MinBlocks<T>(byte* x, byte* y, int blocks, bool vnni) where T : struct, IMinPair
    {
        var acc = Vector256<float>.Zero;
        float minTerms = 0;
        for (int b = 0; b < blocks; b++, x += T.Size, y += BlockLayouts.Q8_1.Size)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            acc = MinBlock<T>(x, y, vnni, acc, ref minTerms);
        }

        return HorizontalSum(acc) + minTerms;
    }

    /// <summary>One block: its exact sums of u·y times d·d_y into <paramref name="acc"/>, m·s_y into <paramref name="minTerms"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> MinBlock<T>(byte* x, byte* y, bool vnni, Vector256<float> acc, ref float minTerms) where T : struct, IMinPair
    {
        minTerms += Half(x + T.Min) * Half(y + BlockLayouts.Q8_1.S);
        var qy = Vector256.Load((sbyte*)(y + BlockLayouts.Q8_1.Qs));
        return BlockFma(Vector256.Create(Half(x)) * Vector256.Create(Half(y)), SumProductsUnsigned(T.Quants(x), qy, vnni), acc);
    }

    /// <summary>One weight row's pair of blocks (unpacked from the 64 bytes at <paramref name="x"/> − <paramref name="back"/>) against the loaded pair of activation blocks at <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> MinPairRow<T>(byte* x, int back, in Q5Unpack unpack, Vector512<sbyte> activations, byte* y, float* halves, Vector256<float> acc,
        ref float minTerms) where T : struct, IMinPair =>
        MinPairRow<T>(x, T.UnsignedPair(x - back, in unpack), activations, y, halves, acc, ref minTerms);

    /// <summary>The pair of blocks at <paramref name="x"/>, unpacked to <paramref name="u"/>, against the loaded pair of activation blocks at <paramref name="y"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> MinPairRow<T>(byte* x, Vector512<byte> u, Vector512<sbyte> activations, byte* y, float* halves, Vector256<float> acc, ref float minTerms)
        where T : struct, IMinPair
    {
        minTerms += halves[*(ushort*)(x + T.Min)] * halves[*(ushort*)(y + BlockLayouts.Q8_1.S)];
        minTerms += halves[*(ushort*)(x + T.Size + T.Min)] * halves[*(ushort*)(y + BlockLayouts.Q8_1.Size + BlockLayouts.Q8_1.S)];
        var sums = Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(u, activations), Vector512.Create((short)1)));
        acc = Fma.MultiplyAdd(Vector256.Create(halves[*(ushort*)x]) * Vector256.Create(halves[*(ushort*)y]), sums.GetLower(), acc);
        return Fma.MultiplyAdd(Vector256.Create(halves[*(ushort*)(x + T.Size)]) * Vector256.Create(halves[*(ushort*)(y + BlockLayouts.Q8_1.Size)]), sums.GetUpper(), acc);
    }

    /// <summary>The quants of two consecutive Q8_1 activation blocks in one vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Q8_1Pair(byte* y) =>
        Avx512F.InsertVector256(Vector256.Load((sbyte*)(y + BlockLayouts.Q8_1.Qs)).ToVector512Unsafe(), Vector256.Load((sbyte*)(y + BlockLayouts.Q8_1.Size + BlockLayouts.Q8_1.Qs)), 1);

    /// <summary>A 32-element block type with an fp16 scale first and an fp16 minimum at <see cref="Min"/>, whose quants are unsigned.</summary>
    private interface IMinPair
    {
        static abstract int Size { get; }

        static abstract int Min { get; }

        /// <summary>The permute and multishift controls of <see cref="UnsignedPair"/>, with a second set for a row's last pair (<see cref="BuildPairControls"/>).</summary>
        static abstract byte* Controls { get; }

        /// <summary>One block's quants, in element order.</summary>
        static abstract Vector256<byte> Quants(byte* x);

        /// <summary>Two blocks' quants (bytes 0–31 the first block's elements in order, 32–63 the second's) from one 64-byte load.</summary>
        static abstract Vector512<byte> UnsignedPair(byte* x, in Q5Unpack unpack);
    }

    private readonly struct Q41Pair : IMinPair
    {
        public static int Size => BlockLayouts.Q4_1.Size;

        public static int Min => BlockLayouts.Q4_1.M;

        public static byte* Controls => Q41Controls;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Quants(byte* x) => PanelQ4_1.Chunk(x, 0);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> UnsignedPair(byte* x, in Q5Unpack unpack) => PairNibbles(x, in unpack);
    }

    private readonly struct Q51Pair : IMinPair
    {
        public static int Size => BlockLayouts.Q5_1.Size;

        public static int Min => BlockLayouts.Q5_1.M;

        public static byte* Controls => Q51Controls;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Quants(byte* x) => PanelQ5_1.Chunk(x, 0);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> UnsignedPair(byte* x, in Q5Unpack unpack) => Q5UnsignedPair(x, in unpack);
    }

    private static readonly byte* Q41Controls = BuildPairControls(BlockLayouts.Q4_1.Size, BlockLayouts.Q4_1.Qs, qh: -1);

    private static readonly byte* Q51Controls = BuildPairControls(BlockLayouts.Q5_1.Size, BlockLayouts.Q5_1.Qs, BlockLayouts.Q5_1.Qh);
}
