using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// Q2_K, Q3_K and Q5_K on AVX-512 BW, for one token (two weight rows at a time) and small batches (one weight row
/// against 2–7 activation rows). Their 256-bit kernels were the slowest of the K-quants at one token (Q3_K 38, Q5_K 54,
/// Q2_K 75 GMAC/s where Q4_K ran at 140; Zen 5, 2 threads), so decode of the Q3_K_M, Q5_K_M and Q2_K files people run
/// was bound by compute, not memory; and with no tiles, a batch of a few tokens (speculative verification, a few
/// streams) decoded every weight block once per token. Each kernel decodes a block into four 64-element steps of
/// unsigned quants and their word scales once (<see cref="IWideKBlock{TSelf, TActivations}.Decode"/>), then meets each
/// activation row's block with it (<see cref="IWideKBlock{TSelf, TActivations}.Close"/>). Lanes 0–7 of a step's int32
/// sums are its first 32 elements' in the 256-bit kernel's lane layout, lanes 8–15 its second's; integer sums are
/// exact, so the two halves added are the 256-bit kernel's sums, and the float operations after them follow its own in
/// order: every result is the same to the bit.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>A decoded K-quant block of one of these types, and how it meets an activation block (<typeparamref name="TActivations"/>, prepared once per activation row and block).</summary>
    private interface IWideKBlock<TSelf, TActivations> where TSelf : struct, IWideKBlock<TSelf, TActivations> where TActivations : struct
    {
        static abstract int Size { get; }

        static abstract TActivations Activations(byte* y);

        static abstract TSelf Decode(byte* x, float* halves, in WideKConstants constants);

        /// <summary>This block against activation block <paramref name="y"/> (and its prepared form): the 256-bit kernel's float operations for the block, into <paramref name="acc"/> and <paramref name="minTerms"/>.</summary>
        Vector256<float> Close(in TActivations a, byte* y, ref float minTerms, Vector256<float> acc);

        /// <summary>The 256-bit kernel's closing reduction.</summary>
        static abstract float Result(Vector256<float> acc, float minTerms);
    }

    /// <summary>
    /// The constant vectors of these kernels (<see cref="WideKControls"/>), loaded once per call: Q4_K's scale permutes
    /// (Q5_K's too), Q5_K's fifth-bit shifts, the 2-bit plane shifts and step scale permutes of Q2_K and Q3_K, and Q3_K's
    /// high-bit shifts (bit 4h + p of plane p in half h goes to bit 2; step 0 shifts left, the others right).
    /// </summary>
    private readonly struct WideKConstants
    {
        public readonly Q4KScaleControls PairScales;
        public readonly Vector512<ushort> Fifth0Low, Fifth0High, Fifth1Low, Fifth1High;
        public readonly Vector512<ushort> EvenPlanes, OddPlanes, High0, High1, High2, High3;
        public readonly Vector512<short> StepScales0, StepScales1, StepScales2, StepScales3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public WideKConstants(byte* table)
        {
            short* words = (short*)table;
            ushort* shifts = (ushort*)table;
            PairScales = new Q4KScaleControls(words);
            (Fifth0Low, Fifth0High, Fifth1Low, Fifth1High) = (Vector512.Load(shifts + 480), Vector512.Load(shifts + 512), Vector512.Load(shifts + 544), Vector512.Load(shifts + 576));
            (EvenPlanes, OddPlanes) = (Vector512.Load(shifts + 608), Vector512.Load(shifts + 640));
            (High0, High1, High2, High3) = (Vector512.Load(shifts + 672), Vector512.Load(shifts + 704), Vector512.Load(shifts + 736), Vector512.Load(shifts + 768));
            (StepScales0, StepScales1, StepScales2, StepScales3) = (Vector512.Load(words + 128), Vector512.Load(words + 160), Vector512.Load(words + 192), Vector512.Load(words + 224));
        }
    }

    /// <summary>
    /// One or two weight rows <paramref name="weightStride"/> bytes apart against one activation row (the one-token
    /// multiply, <see cref="Dot1Rows2"/>): each block decoded per weight row, the activations prepared once for both.
    /// </summary>
    // Not inlined into the one-row wrappers, as Q4_KWide.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void WideKDot<T, TA>(byte* x, long weightStride, byte* y, int rows, int blocks, float* output, long outputStride)
        where T : struct, IWideKBlock<T, TA> where TA : struct
    {
        // The static tables first, as in Q4_KWide: a static-base helper call in the loop spilled every vector register.
        float* halves = HalfTable;
        var constants = new WideKConstants(WideKControls);
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        float minTerms0 = 0, minTerms1 = 0;
        byte* x1 = x + weightStride;
        // One loop per row count, as in Q4_KWide.
        if (rows == 1)
        {
            for (int b = 0; b < blocks; b++, x += T.Size, y += BlockLayouts.Q8_K.Size)
                acc0 = T.Decode(x, halves, in constants).Close(T.Activations(y), y, ref minTerms0, acc0);
        }
        else
        {
            for (int b = 0; b < blocks; b++, x += T.Size, x1 += T.Size, y += BlockLayouts.Q8_K.Size)
            {
                var activations = T.Activations(y);
                acc0 = T.Decode(x, halves, in constants).Close(in activations, y, ref minTerms0, acc0);
                acc1 = T.Decode(x1, halves, in constants).Close(in activations, y, ref minTerms1, acc1);
            }
        }

        output[0] = T.Result(acc0, minTerms0);
        if (rows > 1) output[outputStride] = T.Result(acc1, minTerms1);
    }

    /// <summary>
    /// <paramref name="weightRows"/> weight rows <paramref name="rowBytes"/> apart against <typeparamref name="TRows"/>
    /// activation rows (2–7) <paramref name="stride"/> bytes apart (weight row r's results at
    /// <c>output[r + k * outputStride]</c>): each block decoded once for all of them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WideKTile<T, TA, TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, float* output, long outputStride)
        where T : struct, IWideKBlock<T, TA> where TA : struct where TRows : struct, ITileRows
    {
        float* halves = HalfTable;
        var constants = new WideKConstants(WideKControls);
        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y0 = activations;
            // One pointer per activation row, as in Q4KWideTile; a row past the tile's count points at row 0 and is never read.
            byte* y1 = Row<TRows>(y0, stride, 1), y2 = Row<TRows>(y0, stride, 2), y3 = Row<TRows>(y0, stride, 3), y4 = Row<TRows>(y0, stride, 4),
                y5 = Row<TRows>(y0, stride, 5), y6 = Row<TRows>(y0, stride, 6);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default;
            float m0 = 0, m1 = 0, m2 = 0, m3 = 0, m4 = 0, m5 = 0, m6 = 0;
            for (int b = 0; b < blocks; b++, x += T.Size, y0 += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size,
                 y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size)
            {
                var block = T.Decode(x, halves, in constants);
                a0 = block.Close(T.Activations(y0), y0, ref m0, a0);
                if (TRows.Count > 1) a1 = block.Close(T.Activations(y1), y1, ref m1, a1);
                if (TRows.Count > 2) a2 = block.Close(T.Activations(y2), y2, ref m2, a2);
                if (TRows.Count > 3) a3 = block.Close(T.Activations(y3), y3, ref m3, a3);
                if (TRows.Count > 4) a4 = block.Close(T.Activations(y4), y4, ref m4, a4);
                if (TRows.Count > 5) a5 = block.Close(T.Activations(y5), y5, ref m5, a5);
                if (TRows.Count > 6) a6 = block.Close(T.Activations(y6), y6, ref m6, a6);
            }

            output[0] = T.Result(a0, m0);
            if (TRows.Count > 1) output[outputStride] = T.Result(a1, m1);
            if (TRows.Count > 2) output[2 * outputStride] = T.Result(a2, m2);
            if (TRows.Count > 3) output[3 * outputStride] = T.Result(a3, m3);
            if (TRows.Count > 4) output[4 * outputStride] = T.Result(a4, m4);
            if (TRows.Count > 5) output[5 * outputStride] = T.Result(a5, m5);
            if (TRows.Count > 6) output[6 * outputStride] = T.Result(a6, m6);
        }
    }

    /// <summary><see cref="WideKTile{T, TA, TRows}"/> for a row count known only at run time (2–7).</summary>
    private static void WideKRows<T, TA>(int rows, byte* x, long rowBytes, int weightRows, byte* y, int stride, int blocks, float* output, long outputStride)
        where T : struct, IWideKBlock<T, TA> where TA : struct
    {
        switch (rows)
        {
            case 2: WideKTile<T, TA, TwoRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 3: WideKTile<T, TA, ThreeRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 4: WideKTile<T, TA, FourRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 5: WideKTile<T, TA, FiveRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 6: WideKTile<T, TA, SixRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 7: WideKTile<T, TA, SevenRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(rows), rows, "a small-batch tile takes 2–7 rows");
        }
    }

    /// <summary>True when <paramref name="weightType"/> is one of these kernels' types and the CPU has AVX-512 BW.</summary>
    private static bool HasWideLowK(GgmlType weightType) => weightType is GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q5_K && HasWideKQuants;

    /// <summary>One token: <see cref="WideKDot{T, TA}"/> for the type.</summary>
    private static void LowKDot(GgmlType weightType, byte* x, long weightStride, byte* y, int rows, int blocks, float* output, long outputStride)
    {
        switch (weightType)
        {
            case GgmlType.Q2_K: WideKDot<Q2KWide, Q8KSteps>(x, weightStride, y, rows, blocks, output, outputStride); break;
            case GgmlType.Q3_K: WideKDot<Q3KWide, Q3KActivations>(x, weightStride, y, rows, blocks, output, outputStride); break;
            case GgmlType.Q5_K: WideKDot<Q5KWide, Q4KActivations>(x, weightStride, y, rows, blocks, output, outputStride); break;
            default: throw new NotSupportedException($"No 512-bit dot for {weightType}.");
        }
    }

    /// <summary>The single-row one-token dot of these types.</summary>
    private static float LowKDot(GgmlType weightType, byte* x, byte* y, int blocks)
    {
        float result;
        LowKDot(weightType, x, 0, y, 1, blocks, &result, 0);
        return result;
    }

    /// <summary>A small batch: <see cref="WideKTile{T, TA, TRows}"/> for the type.</summary>
    private static void LowKRows(GgmlType weightType, int rows, byte* x, long rowBytes, int weightRows, byte* y, int stride, int blocks, float* output, long outputStride)
    {
        switch (weightType)
        {
            case GgmlType.Q2_K: WideKRows<Q2KWide, Q8KSteps>(rows, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.Q3_K: WideKRows<Q3KWide, Q3KActivations>(rows, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.Q5_K: WideKRows<Q5KWide, Q4KActivations>(rows, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            default: throw new NotSupportedException($"No small-batch tile for {weightType}.");
        }
    }

    /// <summary>
    /// A Q5_K block by <see cref="Q4_KWide(byte*, byte*, int)"/>'s steps, each quant's fifth bit joined to its nibble:
    /// the 32 qh bytes in both halves, moved by word-variable shifts so that a step's bit (2p for pair p's low nibbles,
    /// 2p + 1 for its high ones) lands on bit 4 in each half (a word shift spills into the neighbouring byte only below
    /// bit 4 or above it, and the mask drops it), where the 256-bit kernel built each chunk's fifth bits from a compare,
    /// a mask and an or. The min term is the 256-bit kernel's: one integer per block times −yd·dmin, in a scalar sum.
    /// </summary>
    private readonly struct Q5KWide : IWideKBlock<Q5KWide, Q4KActivations>
    {
        private readonly Vector512<byte> _low0, _high0, _low1, _high1;
        private readonly Vector512<short> _lowScales0, _highScales0, _lowScales1, _highScales1;
        private readonly Vector128<short> _mins;
        private readonly float _d, _dmin;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Q5KWide(byte* x, float* halves, in WideKConstants c)
        {
            PrefetchBlock(x, BlockLayouts.Q5_K.Size);
            KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q5_K.Scales, 12), out ulong scales, out ulong mins);
            var scales16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte()).ToVector256Unsafe().ToVector512Unsafe();
            _mins = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte());
            // A load and an insert, not BroadcastVector256ToVector512 (see Q6KHalfQuants).
            var qhHalf = Vector256.Load(x + BlockLayouts.Q5_K.Qh);
            var qh = Avx512F.InsertVector256(qhHalf.ToVector512Unsafe(), qhHalf, 1).AsUInt16();
            var nibble = Vector512.Create((byte)0x0F);
            var fifth = Vector512.Create((byte)0x10);
            var bits0 = Vector512.Load(x + BlockLayouts.Q5_K.Qs);
            var bits1 = Vector512.Load(x + BlockLayouts.Q5_K.Qs + 64);
            _low0 = (bits0 & nibble) | (Avx512BW.ShiftLeftLogicalVariable(qh, c.Fifth0Low).AsByte() & fifth);
            _high0 = (Vector512.ShiftRightLogical(bits0.AsUInt16(), 4).AsByte() & nibble) | (Avx512BW.ShiftLeftLogicalVariable(qh, c.Fifth0High).AsByte() & fifth);
            _low1 = (bits1 & nibble) | (Avx512BW.ShiftRightLogicalVariable(qh, c.Fifth1Low).AsByte() & fifth);
            _high1 = (Vector512.ShiftRightLogical(bits1.AsUInt16(), 4).AsByte() & nibble) | (Avx512BW.ShiftRightLogicalVariable(qh, c.Fifth1High).AsByte() & fifth);
            _lowScales0 = Avx512BW.PermuteVar32x16(scales16, c.PairScales.Low0);
            _highScales0 = Avx512BW.PermuteVar32x16(scales16, c.PairScales.High0);
            _lowScales1 = Avx512BW.PermuteVar32x16(scales16, c.PairScales.Low1);
            _highScales1 = Avx512BW.PermuteVar32x16(scales16, c.PairScales.High1);
            _d = halves[*(ushort*)(x + BlockLayouts.Q5_K.D)];
            _dmin = halves[*(ushort*)(x + BlockLayouts.Q5_K.DMin)];
        }

        public static int Size => BlockLayouts.Q5_K.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Q4KActivations Activations(byte* y) => new(y);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Q5KWide Decode(byte* x, float* halves, in WideKConstants constants) => new(x, halves, in constants);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Close(in Q4KActivations a, byte* y, ref float minTerms, Vector256<float> acc)
        {
            float yd = *(float*)(y + BlockLayouts.Q8_K.D);
            var sums = ScaledProducts(_low0, a.Low0, _lowScales0) + ScaledProducts(_high0, a.High0, _highScales0)
                     + ScaledProducts(_low1, a.Low1, _lowScales1) + ScaledProducts(_high1, a.High1, _highScales1);
            int minSum = Vector128.Sum(Sse2.MultiplyAddAdjacent(_mins, a.SubBlockSums));
            float negativeDmin = -yd * _dmin;
            minTerms += negativeDmin * minSum;
            return BlockFma(yd * _d, sums.GetLower() + sums.GetUpper(), acc);
        }

        public static float Result(Vector256<float> acc, float minTerms) => HorizontalSum(acc) + minTerms;
    }

    /// <summary>
    /// A Q3_K block: two 32-element planes per step. A half block's 32 bytes of 2-bit quants and the block's 32 hmask
    /// bytes are each in both halves of a vector, and word-variable shifts bring a step's two planes' bits to bits 0–1
    /// and its high bits to bit 2 in each half, forming the unsigned quants u = q + 4 (0–7) without the 256-bit kernel's
    /// compare per plane; (u − 4)·y is u·y less 4·y's pair sums (<see cref="Q3KActivations"/>). Each step's sixteen
    /// words of scales come from one word permute of the block's sixteen (Q6_K's controls).
    /// </summary>
    private readonly struct Q3KWide : IWideKBlock<Q3KWide, Q3KActivations>
    {
        private readonly Vector512<byte> _u0, _u1, _u2, _u3;
        private readonly Vector512<short> _scales0, _scales1, _scales2, _scales3;
        private readonly float _d;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Q3KWide(byte* x, float* halves, in WideKConstants c)
        {
            PrefetchBlock(x, BlockLayouts.Q3_K.Size);
            var (scalesLow, scalesHigh) = KQuantScales.UnpackQ3K(new ReadOnlySpan<byte>(x + BlockLayouts.Q3_K.Scales, 12));
            var scales = (Avx2.ConvertToVector256Int16(Vector128.Create(scalesLow, scalesHigh).AsByte()) - Vector256.Create((short)32)).ToVector512Unsafe();
            // Loads and inserts, not BroadcastVector256ToVector512 (see Q6KHalfQuants).
            var highHalf = Vector256.Load(x + BlockLayouts.Q3_K.HMask);
            var high = Avx512F.InsertVector256(highHalf.ToVector512Unsafe(), highHalf, 1).AsUInt16();
            var firstHalf = Vector256.Load(x + BlockLayouts.Q3_K.Qs);
            var first = Avx512F.InsertVector256(firstHalf.ToVector512Unsafe(), firstHalf, 1).AsUInt16();
            var secondHalf = Vector256.Load(x + BlockLayouts.Q3_K.Qs + 32);
            var second = Avx512F.InsertVector256(secondHalf.ToVector512Unsafe(), secondHalf, 1).AsUInt16();
            _u0 = Quants(Avx512BW.ShiftRightLogicalVariable(first, c.EvenPlanes), Avx512BW.ShiftLeftLogicalVariable(high, c.High0));
            _u1 = Quants(Avx512BW.ShiftRightLogicalVariable(first, c.OddPlanes), Avx512BW.ShiftRightLogicalVariable(high, c.High1));
            _u2 = Quants(Avx512BW.ShiftRightLogicalVariable(second, c.EvenPlanes), Avx512BW.ShiftRightLogicalVariable(high, c.High2));
            _u3 = Quants(Avx512BW.ShiftRightLogicalVariable(second, c.OddPlanes), Avx512BW.ShiftRightLogicalVariable(high, c.High3));
            _scales0 = Avx512BW.PermuteVar32x16(scales, c.StepScales0);
            _scales1 = Avx512BW.PermuteVar32x16(scales, c.StepScales1);
            _scales2 = Avx512BW.PermuteVar32x16(scales, c.StepScales2);
            _scales3 = Avx512BW.PermuteVar32x16(scales, c.StepScales3);
            _d = halves[*(ushort*)(x + BlockLayouts.Q3_K.D)];
        }

        /// <summary>Bits 0–1 of the shifted quant words and bit 2 of the shifted hmask words (word shifts spill into the neighbouring byte only outside the bits kept).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector512<byte> Quants(Vector512<ushort> lowBits, Vector512<ushort> highBits) =>
            (lowBits.AsByte() & Vector512.Create((byte)3)) | (highBits.AsByte() & Vector512.Create((byte)4));

        public static int Size => BlockLayouts.Q3_K.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Q3KActivations Activations(byte* y) => new(y);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Q3KWide Decode(byte* x, float* halves, in WideKConstants constants) => new(x, halves, in constants);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Close(in Q3KActivations a, byte* y, ref float minTerms, Vector256<float> acc)
        {
            var sums = Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(_u0, a.Q0) - a.Bias0, _scales0)
                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(_u1, a.Q1) - a.Bias1, _scales1)
                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(_u2, a.Q2) - a.Bias2, _scales2)
                     + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(_u3, a.Q3) - a.Bias3, _scales3);
            return BlockFma(*(float*)(y + BlockLayouts.Q8_K.D) * _d, sums.GetLower() + sums.GetUpper(), acc);
        }

        public static float Result(Vector256<float> acc, float minTerms) => HorizontalSum(acc);
    }

    /// <summary>
    /// A Q2_K block by Q3_K's steps without the high bits; the mins' products with the bsums and the scaled sums meet
    /// −yd·dmin and yd·d in the 256-bit kernel's two multiply-adds, in its order.
    /// </summary>
    private readonly struct Q2KWide : IWideKBlock<Q2KWide, Q8KSteps>
    {
        private readonly Vector512<byte> _q0, _q1, _q2, _q3;
        private readonly Vector512<short> _scales0, _scales1, _scales2, _scales3;
        private readonly Vector256<short> _mins;
        private readonly float _d, _dmin;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private Q2KWide(byte* x, float* halves, in WideKConstants c)
        {
            PrefetchBlock(x, BlockLayouts.Q2_K.Size);
            var packed = Vector128.Load(x + BlockLayouts.Q2_K.Scales);
            var nibble = Vector128.Create((byte)0xF);
            _mins = Avx2.ConvertToVector256Int16(Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & nibble);
            var scales = Avx2.ConvertToVector256Int16(packed & nibble).ToVector512Unsafe();
            // Loads and inserts, not BroadcastVector256ToVector512 (see Q6KHalfQuants).
            var firstHalf = Vector256.Load(x + BlockLayouts.Q2_K.Qs);
            var first = Avx512F.InsertVector256(firstHalf.ToVector512Unsafe(), firstHalf, 1).AsUInt16();
            var secondHalf = Vector256.Load(x + BlockLayouts.Q2_K.Qs + 32);
            var second = Avx512F.InsertVector256(secondHalf.ToVector512Unsafe(), secondHalf, 1).AsUInt16();
            var three = Vector512.Create((byte)3);
            _q0 = Avx512BW.ShiftRightLogicalVariable(first, c.EvenPlanes).AsByte() & three;
            _q1 = Avx512BW.ShiftRightLogicalVariable(first, c.OddPlanes).AsByte() & three;
            _q2 = Avx512BW.ShiftRightLogicalVariable(second, c.EvenPlanes).AsByte() & three;
            _q3 = Avx512BW.ShiftRightLogicalVariable(second, c.OddPlanes).AsByte() & three;
            _scales0 = Avx512BW.PermuteVar32x16(scales, c.StepScales0);
            _scales1 = Avx512BW.PermuteVar32x16(scales, c.StepScales1);
            _scales2 = Avx512BW.PermuteVar32x16(scales, c.StepScales2);
            _scales3 = Avx512BW.PermuteVar32x16(scales, c.StepScales3);
            _d = halves[*(ushort*)(x + BlockLayouts.Q2_K.D)];
            _dmin = halves[*(ushort*)(x + BlockLayouts.Q2_K.DMin)];
        }

        public static int Size => BlockLayouts.Q2_K.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Q8KSteps Activations(byte* y) => new(y);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Q2KWide Decode(byte* x, float* halves, in WideKConstants constants) => new(x, halves, in constants);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector256<float> Close(in Q8KSteps a, byte* y, ref float minTerms, Vector256<float> acc)
        {
            float yd = *(float*)(y + BlockLayouts.Q8_K.D);
            // The 256-bit kernel's min products: lane k = m[2k]·bsum[2k] + m[2k+1]·bsum[2k+1].
            acc = BlockFma(-yd * _dmin, Avx2.MultiplyAddAdjacent(_mins, Vector256.Load((short*)(y + BlockLayouts.Q8_K.BSums))), acc);
            var sums = ScaledProducts(_q0, a.Q0, _scales0) + ScaledProducts(_q1, a.Q1, _scales1) + ScaledProducts(_q2, a.Q2, _scales2) + ScaledProducts(_q3, a.Q3, _scales3);
            return BlockFma(yd * _d, sums.GetLower() + sums.GetUpper(), acc);
        }

        public static float Result(Vector256<float> acc, float minTerms) => HorizontalSum(acc);
    }

    /// <summary>64 unsigned quants against 64 activations, each 32-element half's pair sums times its word scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> ScaledProducts(Vector512<byte> quants, Vector512<sbyte> activations, Vector512<short> scales) =>
        Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(quants, activations), scales);

    /// <summary>A Q8_K block's quants as four 64-element steps.</summary>
    private readonly struct Q8KSteps
    {
        public readonly Vector512<sbyte> Q0, Q1, Q2, Q3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Q8KSteps(byte* y)
        {
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            Q0 = Vector512.Load(q8);
            Q1 = Vector512.Load(q8 + 64);
            Q2 = Vector512.Load(q8 + 128);
            Q3 = Vector512.Load(q8 + 192);
        }
    }

    /// <summary>A Q8_K block's four 64-element steps and, for each, 4·(y₂ₖ + y₂ₖ₊₁) per pair: what the unsigned Q3_K quants' products exceed the signed ones' by.</summary>
    private readonly struct Q3KActivations
    {
        public readonly Vector512<sbyte> Q0, Q1, Q2, Q3;
        public readonly Vector512<short> Bias0, Bias1, Bias2, Bias3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Q3KActivations(byte* y)
        {
            var steps = new Q8KSteps(y);
            var four = Vector512.Create((byte)4);
            (Q0, Q1, Q2, Q3) = (steps.Q0, steps.Q1, steps.Q2, steps.Q3);
            Bias0 = Avx512BW.MultiplyAddAdjacent(four, Q0);
            Bias1 = Avx512BW.MultiplyAddAdjacent(four, Q1);
            Bias2 = Avx512BW.MultiplyAddAdjacent(four, Q2);
            Bias3 = Avx512BW.MultiplyAddAdjacent(four, Q3);
        }
    }
}
