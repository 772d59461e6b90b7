using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// Multi-token kernels for the K-quants that dominate Q4_K_M/Q5_K_M files (Q4_K, Q6_K): each weight block is unpacked
/// once and applied to four Q8_K activation rows. The per-block integer sums and the float operations on them are those
/// of the single-row kernels, so every result is bit-identical to <see cref="Dot"/>.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>
    /// Q6_K's side data per activation row: for every 32-quant chunk, the 16 pair sums 32·(y[2i] + y[2i+1]) as int16,
    /// the bias term of (q − 32)·y, formed once per activation row instead of once per weight row.
    /// </summary>
    public static void Q6KPairBias(byte* y, int n, short* bias)
    {
        var thirtyTwo = Vector256.Create((byte)32);
        for (int b = 0; b < n / BlockLayouts.QK_K; b++, y += BlockLayouts.Q8_K.Size)
            for (int c = 0; c < 8; c++, bias += 16)
                Avx2.MultiplyAddAdjacent(thirtyTwo, Vector256.Load((sbyte*)(y + BlockLayouts.Q8_K.Qs + c * 32))).Store(bias);
    }

    /// <summary>Scales of groups 2c and 2c+1 as eight int16 each (lower and upper 128-bit lane), from the block's 16 scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> Q6ChunkScales(Vector256<short> blockScales, int c) =>
        Avx2.Shuffle(Avx2.PermuteVar8x32(blockScales.AsInt32(), Vector256.Create(c)).AsByte(),
            Vector256.Create((byte)0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3)).AsInt16();

    /// <summary>The 32 unsigned 6-bit quants of chunk <paramref name="quarter"/> of a half block (q + 32 as stored).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q6Quants(Vector256<byte> low0, Vector256<byte> low1, Vector256<ushort> high, int quarter)
    {
        var nibble = Vector256.Create((byte)0xF);
        Vector256<byte> lowSource = quarter % 2 == 0 ? low0 : low1;
        Vector256<byte> lowNibble = quarter < 2 ? lowSource & nibble : Vector256.ShiftRightLogical(lowSource.AsUInt16(), 4).AsByte() & nibble;
        Vector256<byte> highPair = Vector256.ShiftRightLogical(high, 2 * quarter).AsByte() & Vector256.Create((byte)3);
        return lowNibble | Vector256.ShiftLeft(highPair.AsUInt16(), 4).AsByte();
    }

    /// <summary>(q − 32)·y per chunk, weighted by the chunk's scales: q·y − bias in int16, then scaled into int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q6Chunk(Vector256<byte> q, byte* y, short* bias, Vector256<short> scales) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(q, Vector256.Load((sbyte*)y)) - Vector256.Load(bias), scales);

    /// <summary>Q6_K against one Q8_K row with its <see cref="Q6KPairBias"/>; equal to <c>Q6_K(x, y, blocks)</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6KScaled(byte* x, byte* y, short* bias, int blocks)
    {
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q6_K.Size, y += BlockLayouts.Q8_K.Size, bias += 128)
        {
            PrefetchBlock(x, BlockLayouts.Q6_K.Size);
            acc = Q6KBlock(x, y, bias, acc);
        }

        return HorizontalSum(acc);
    }

    /// <summary>One Q6_K block against one Q8_K block and its 128 bias sums, added into the 8 float lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q6KBlock(byte* x, byte* y, short* bias, Vector256<float> acc)
    {
        var blockScales = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(x + BlockLayouts.Q6_K.Scales)));
        var sums = Vector256<int>.Zero;
        for (int half = 0; half < 2; half++)
        {
            Vector256<byte> low0 = Vector256.Load(x + BlockLayouts.Q6_K.Ql + half * 64);
            Vector256<byte> low1 = Vector256.Load(x + BlockLayouts.Q6_K.Ql + half * 64 + 32);
            Vector256<ushort> high = Vector256.Load(x + BlockLayouts.Q6_K.Qh + half * 32).AsUInt16();
            for (int quarter = 0; quarter < 4; quarter++)
            {
                int c = half * 4 + quarter;
                sums += Q6Chunk(Q6Quants(low0, low1, high, quarter), y + BlockLayouts.Q8_K.Qs + c * 32, bias + c * 16, Q6ChunkScales(blockScales, c));
            }
        }

        return BlockFma(*(float*)(y + BlockLayouts.Q8_K.D) * Half(x + BlockLayouts.Q6_K.D), sums, acc);
    }

    /// <summary>Activation rows a tile takes: a constant per instantiation, so the JIT drops the code of the rows not taken.</summary>
    private interface ITileRows
    {
        static abstract int Count { get; }
    }

    private readonly struct OneRow : ITileRows
    {
        public static int Count => 1;
    }

    private readonly struct TwoRows : ITileRows
    {
        public static int Count => 2;
    }

    private readonly struct ThreeRows : ITileRows
    {
        public static int Count => 3;
    }

    private readonly struct FourRows : ITileRows
    {
        public static int Count => 4;
    }

    private readonly struct FiveRows : ITileRows
    {
        public static int Count => 5;
    }

    private readonly struct SixRows : ITileRows
    {
        public static int Count => 6;
    }

    private readonly struct SevenRows : ITileRows
    {
        public static int Count => 7;
    }

    private readonly struct EightRows : ITileRows
    {
        public static int Count => 8;
    }

    /// <summary>Q6_K against <typeparamref name="T"/> activation rows <paramref name="stride"/> bytes apart, with their pair bias <paramref name="biasStride"/> int16 apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q6KTile<T>(byte* x, byte* y, short* bias, int stride, int biasStride, int blocks, float* output, long outputStride) where T : struct, ITileRows
    {
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero;
        var a3 = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q6_K.Size, y += BlockLayouts.Q8_K.Size, bias += 128)
        {
            PrefetchBlock(x, BlockLayouts.Q6_K.Size);
            var blockScales = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(x + BlockLayouts.Q6_K.Scales)));
            var s0 = Vector256<int>.Zero;
            var s1 = Vector256<int>.Zero;
            var s2 = Vector256<int>.Zero;
            var s3 = Vector256<int>.Zero;
            for (int half = 0; half < 2; half++)
            {
                Vector256<byte> low0 = Vector256.Load(x + BlockLayouts.Q6_K.Ql + half * 64);
                Vector256<byte> low1 = Vector256.Load(x + BlockLayouts.Q6_K.Ql + half * 64 + 32);
                Vector256<ushort> high = Vector256.Load(x + BlockLayouts.Q6_K.Qh + half * 32).AsUInt16();
                for (int quarter = 0; quarter < 4; quarter++)
                {
                    int c = half * 4 + quarter;
                    Vector256<byte> q = Q6Quants(low0, low1, high, quarter);
                    Vector256<short> scales = Q6ChunkScales(blockScales, c);
                    byte* yc = y + BlockLayouts.Q8_K.Qs + c * 32;
                    short* bc = bias + c * 16;
                    s0 += Q6Chunk(q, yc, bc, scales);
                    if (T.Count > 1) s1 += Q6Chunk(q, yc + stride, bc + biasStride, scales);
                    if (T.Count > 2) s2 += Q6Chunk(q, yc + 2 * stride, bc + 2 * biasStride, scales);
                    if (T.Count > 3) s3 += Q6Chunk(q, yc + 3 * stride, bc + 3 * biasStride, scales);
                }
            }

            float dx = Half(x + BlockLayouts.Q6_K.D);
            a0 = BlockFma(*(float*)(y + BlockLayouts.Q8_K.D) * dx, s0, a0);
            if (T.Count > 1) a1 = BlockFma(*(float*)(y + stride + BlockLayouts.Q8_K.D) * dx, s1, a1);
            if (T.Count > 2) a2 = BlockFma(*(float*)(y + 2 * stride + BlockLayouts.Q8_K.D) * dx, s2, a2);
            if (T.Count > 3) a3 = BlockFma(*(float*)(y + 3 * stride + BlockLayouts.Q8_K.D) * dx, s3, a3);
        }

        output[0] = HorizontalSum(a0);
        if (T.Count > 1) output[outputStride] = HorizontalSum(a1);
        if (T.Count > 2) output[2 * outputStride] = HorizontalSum(a2);
        if (T.Count > 3) output[3 * outputStride] = HorizontalSum(a3);
    }

    /// <summary>A Q4_K block's minimum term for one activation row: 4 lanes, lane k from sub-blocks 2k and 2k+1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Q4KMins(byte* y, Vector128<short> mins16, float negativeDmin, Vector128<float> minAcc) =>
        Q4KMins(Q4KSubBlockSums(y), mins16, negativeDmin, minAcc);

    /// <summary>The eight 32-element sub-block sums of a Q8_K block's quants (its sixteen bsums added in pairs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<short> Q4KSubBlockSums(byte* y) =>
        Ssse3.HorizontalAdd(Vector128.Load((short*)(y + BlockLayouts.Q8_K.BSums)), Vector128.Load((short*)(y + BlockLayouts.Q8_K.BSums) + 8));

    /// <summary><see cref="Q4KMins(byte*, Vector128{short}, float, Vector128{float})"/> with the sub-block sums already formed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<float> Q4KMins(Vector128<short> subBlockSums, Vector128<short> mins16, float negativeDmin, Vector128<float> minAcc) =>
        Fma.MultiplyAdd(Vector128.Create(negativeDmin), Sse2.ConvertToVector128Single(Sse2.MultiplyAddAdjacent(mins16, subBlockSums)), minAcc);

    /// <summary>The closing reduction of <c>Q4_K</c>: the block sums' hsum_float_8 plus the mins' 4-lane sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Q4KResult(Vector256<float> acc, Vector128<float> minAcc)
    {
        minAcc = Sse.Add(minAcc, Sse.MoveHighToLow(minAcc, minAcc));
        minAcc = Sse.AddScalar(minAcc, Sse3.MoveHighAndDuplicate(minAcc));
        return HorizontalSum(acc) + minAcc.ToScalar();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Q4KPair(Vector256<byte> low, Vector256<byte> high, sbyte* q8, Vector256<short> scale0, Vector256<short> scale1) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(low, Vector256.Load(q8)), scale0)
        + Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(high, Vector256.Load(q8 + 32)), scale1);

    /// <summary>
    /// One activation row's part of a Q4_K block, as the single-row kernel: d = yd·dx, −dmin = −yd·dminX, the block's mins
    /// folded in first, then its scaled sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KTokenBlock(byte* y, Vector128<short> mins16, float dx, float dminX, Vector256<int> sums, ref Vector128<float> minAcc, ref Vector256<float> acc)
    {
        float yd = *(float*)(y + BlockLayouts.Q8_K.D);
        minAcc = Q4KMins(y, mins16, -yd * dminX, minAcc);
        acc = BlockFma(yd * dx, sums, acc);
    }

    /// <summary>Q4_K against <typeparamref name="T"/> activation rows <paramref name="stride"/> bytes apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q4KTile<T>(byte* x, byte* y, int stride, int blocks, float* output, long outputStride) where T : struct, ITileRows
    {
        var a0 = Vector256<float>.Zero;
        var a1 = Vector256<float>.Zero;
        var a2 = Vector256<float>.Zero;
        var a3 = Vector256<float>.Zero;
        var m0 = Vector128<float>.Zero;
        var m1 = Vector128<float>.Zero;
        var m2 = Vector128<float>.Zero;
        var m3 = Vector128<float>.Zero;
        var nibble = Vector256.Create((byte)0xF);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q4_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.Q4_K.Size);
            KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong mins);
            Vector128<short> mins16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte());
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var s0 = Vector256<int>.Zero;
            var s1 = Vector256<int>.Zero;
            var s2 = Vector256<int>.Zero;
            var s3 = Vector256<int>.Zero;
            for (int pair = 0; pair < 4; pair++)
            {
                var scale0 = Vector256.Create((short)((scales >> (16 * pair)) & 0xFF));
                var scale1 = Vector256.Create((short)((scales >> (16 * pair + 8)) & 0xFF));
                Vector256<byte> bits = Vector256.Load(x + BlockLayouts.Q4_K.Qs + pair * 32);
                Vector256<byte> low = bits & nibble;
                Vector256<byte> high = Vector256.ShiftRightLogical(bits.AsUInt16(), 4).AsByte() & nibble;
                sbyte* q = q8 + pair * 64;
                s0 += Q4KPair(low, high, q, scale0, scale1);
                if (T.Count > 1) s1 += Q4KPair(low, high, q + stride, scale0, scale1);
                if (T.Count > 2) s2 += Q4KPair(low, high, q + 2 * stride, scale0, scale1);
                if (T.Count > 3) s3 += Q4KPair(low, high, q + 3 * stride, scale0, scale1);
            }

            float dx = Half(x + BlockLayouts.Q4_K.D), dminX = Half(x + BlockLayouts.Q4_K.DMin);
            Q4KTokenBlock(y, mins16, dx, dminX, s0, ref m0, ref a0);
            if (T.Count > 1) Q4KTokenBlock(y + stride, mins16, dx, dminX, s1, ref m1, ref a1);
            if (T.Count > 2) Q4KTokenBlock(y + 2 * stride, mins16, dx, dminX, s2, ref m2, ref a2);
            if (T.Count > 3) Q4KTokenBlock(y + 3 * stride, mins16, dx, dminX, s3, ref m3, ref a3);
        }

        output[0] = Q4KResult(a0, m0);
        if (T.Count > 1) output[outputStride] = Q4KResult(a1, m1);
        if (T.Count > 2) output[2 * outputStride] = Q4KResult(a2, m2);
        if (T.Count > 3) output[3 * outputStride] = Q4KResult(a3, m3);
    }
}
