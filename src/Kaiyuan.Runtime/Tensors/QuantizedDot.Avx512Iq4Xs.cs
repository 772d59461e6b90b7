using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// IQ4_XS on AVX-512 BW: two 32-element sub-blocks per 512-bit step where the 256-bit kernel (<see cref="Iq4XsTile"/>)
/// takes one. The pair's 32 index bytes are spread so that each 128-bit lane holds one sub-block's 16 bytes twice, a
/// word-variable shift leaves each sub-block's 32 nibbles in element order in its half, and a byte permute (VBMI: six
/// index bits, so the table repeats and the bits above the nibble need no mask) or a masked per-lane byte shuffle maps
/// them to the levels' magnitudes; a level's sign (index below 8) goes onto the activation by a blend on
/// the compare's mask, as the 256-bit kernel's sign instruction (which has no 512-bit form) does. Each step's scales
/// come from one word permute of the block's eight, unpacked once per block by two bit deposits. Lanes 0–7 of the int32
/// sums are the first sub-block's in the 256-bit kernel's lane layout, lanes 8–15 the second's; integer sums are exact,
/// so their two halves added are the 256-bit kernel's sums, and the result is the same to the bit.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>An IQ4_XS row against Q8_K on AVX-512 BW (see the file's summary).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Iq4XsWide(byte* x, byte* y, int blocks)
    {
        float result;
        Iq4XsWide(x, 0, y, 1, blocks, &result, 0);
        return result;
    }

    /// <summary>
    /// <see cref="Iq4XsWide(byte*, byte*, int)"/> of one or two weight rows <paramref name="weightStride"/> bytes apart
    /// against one activation row (<see cref="Dot1Rows2"/>), the activations and their negations read once for both.
    /// </summary>
    // Not inlined into the one-row wrapper, as Q4_KWide: its inlinees would no longer fit the JIT's budget.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Iq4XsWide(byte* x, long weightStride, byte* y, int rows, int blocks, float* output, long outputStride)
    {
        // The static tables before the accumulators, as in Q4_KWide.
        float* halves = HalfTable;
        var controls = new Iq4XsScaleControls((short*)WideKControls);
        var unpack = new Iq4XsUnpack();
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        byte* x1 = x + weightStride;
        // One loop per row count: with the second row's branch inside, the JIT kept the accumulators in memory.
        if (rows == 1)
        {
            for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ4_XS.Size, y += BlockLayouts.Q8_K.Size)
            {
                var activations = new Iq4XsActivations(y);
                acc0 = Iq4XsWideBlock(x, *(float*)(y + BlockLayouts.Q8_K.D), halves, in activations, controls, unpack, acc0);
            }
        }
        else
        {
            for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ4_XS.Size, x1 += BlockLayouts.IQ4_XS.Size, y += BlockLayouts.Q8_K.Size)
            {
                float yd = *(float*)(y + BlockLayouts.Q8_K.D);
                var activations = new Iq4XsActivations(y);
                acc0 = Iq4XsWideBlock(x, yd, halves, in activations, controls, unpack, acc0);
                acc1 = Iq4XsWideBlock(x1, yd, halves, in activations, controls, unpack, acc1);
            }
        }

        output[0] = HorizontalSum(acc0);
        if (rows > 1) output[outputStride] = HorizontalSum(acc1);
    }

    /// <summary>A Q8_K block's 256 activations as four 64-element steps, and each negated (the negative levels' products).</summary>
    private readonly struct Iq4XsActivations
    {
        public readonly Vector512<sbyte> A0, A1, A2, A3, N0, N1, N2, N3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Iq4XsActivations(byte* y)
        {
            var steps = new Q8KSteps(y);
            (A0, A1, A2, A3) = (steps.Q0, steps.Q1, steps.Q2, steps.Q3);
            N0 = -A0;
            N1 = -A1;
            N2 = -A2;
            N3 = -A3;
        }
    }

    /// <summary>Each step's scale permute: words 0–15 take sub-block 2p's scale, 16–31 sub-block 2p + 1's (<see cref="WideKControls"/>, word 320 on).</summary>
    private readonly struct Iq4XsScaleControls(short* controls)
    {
        public readonly Vector512<short> Step0 = Vector512.Load(controls + 320), Step1 = Vector512.Load(controls + 352),
                                         Step2 = Vector512.Load(controls + 384), Step3 = Vector512.Load(controls + 416);
    }

    /// <summary>What <see cref="Iq4XsWideStep"/> unpacks the indices with, held in registers across the loop.</summary>
    private readonly struct Iq4XsUnpack
    {
        /// <summary>Qwords 0–1 (a sub-block's 16 index bytes) to both 128-bit lanes of the lower half, qwords 2–3 to the upper.</summary>
        public readonly Vector512<ulong> Spread = Vector512.Create(0UL, 1, 0, 1, 2, 3, 2, 3);

        /// <summary>The second 128-bit lane of each half shifted down a nibble: elements 16–31 of its sub-block.</summary>
        public readonly Vector512<ushort> NibbleShifts = Vector512.Create(Vector256.Create(Vector128<ushort>.Zero, Vector128.Create((ushort)4)));

        /// <summary>
        /// The levels' magnitudes, in every 128-bit lane for the byte shuffle, and repeated four times over 64 bytes for
        /// the VBMI byte permute, which reads 6 index bits: the garbage in bits 4–5 then needs no mask.
        /// </summary>
        public readonly Vector512<byte> Magnitudes = Vector512.Create(Vector128.Abs(Vector128.Create(Iq4Levels.Values)).AsByte());

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Iq4XsUnpack() { }
    }

    /// <summary>One IQ4_XS block against its activations: the block's scaled sums into <paramref name="acc"/>.</summary>
    // The controls and unpacking vectors come by value: passed by reference (in) they stayed on the stack and every step
    // reloaded them, and the one-token kernel ran at 66–75 GMAC/s instead of 109–114 (bench matmul 4864 × 1024, -t 2).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Iq4XsWideBlock(byte* x, float yd, float* halves, in Iq4XsActivations activations, Iq4XsScaleControls controls,
        Iq4XsUnpack unpack, Vector256<float> acc)
    {
        PrefetchBlock(x, BlockLayouts.IQ4_XS.Size);
        var scales16 = Iq4XsScales(x);
        byte* qs = x + BlockLayouts.IQ4_XS.Qs;
        var sums = Iq4XsWideStep(qs, activations.A0, activations.N0, Avx512BW.PermuteVar32x16(scales16, controls.Step0), unpack)
                 + Iq4XsWideStep(qs + 32, activations.A1, activations.N1, Avx512BW.PermuteVar32x16(scales16, controls.Step1), unpack)
                 + Iq4XsWideStep(qs + 64, activations.A2, activations.N2, Avx512BW.PermuteVar32x16(scales16, controls.Step2), unpack)
                 + Iq4XsWideStep(qs + 96, activations.A3, activations.N3, Avx512BW.PermuteVar32x16(scales16, controls.Step3), unpack);
        return BlockFma(halves[*(ushort*)(x + BlockLayouts.IQ4_XS.D)] * yd, sums.GetLower() + sums.GetUpper(), acc);
    }

    /// <summary>
    /// The block's eight 6-bit scales − 32 as words 0–7 (the permutes read no others): bit deposits put sub-block j's low
    /// nibble and its two high bits (bits 4–5) into byte j of one qword.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Iq4XsScales(byte* x)
    {
        ulong scales;
        if (Bmi2.X64.IsSupported)
        {
            scales = Bmi2.X64.ParallelBitDeposit(*(uint*)(x + BlockLayouts.IQ4_XS.ScalesL), 0x0F0F0F0F0F0F0F0FUL)
                   | Bmi2.X64.ParallelBitDeposit(*(ushort*)(x + BlockLayouts.IQ4_XS.ScalesH), 0x3030303030303030UL);
        }
        else
        {
            uint lowNibbles = *(uint*)(x + BlockLayouts.IQ4_XS.ScalesL);
            int highPairs = *(ushort*)(x + BlockLayouts.IQ4_XS.ScalesH);
            scales = 0;
            for (int j = 0; j < 8; j++) scales |= (ulong)Iq4Levels.XsScale(lowNibbles, highPairs, j) << (8 * j);
        }

        var words = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte()) - Vector128.Create((short)32);
        return words.ToVector256Unsafe().ToVector512Unsafe();
    }

    /// <summary>Two sub-blocks (32 index bytes) against their 64 activations, each sub-block's products times its scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Iq4XsWideStep(byte* qs, Vector512<sbyte> activations, Vector512<sbyte> negated, Vector512<short> scales, Iq4XsUnpack unpack)
    {
        var magnitudes = Iq4XsMagnitudes(qs, unpack, out var negative);
        var signed = Vector512.ConditionalSelect(negative, negated, activations);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitudes, signed), scales);
    }

    /// <summary>
    /// Two sub-blocks' 64 levels in element order (sub-block 2p in the lower half): their magnitudes, and in
    /// <paramref name="negative"/> the bytes whose level is negative (indices 0–7, bit 3 clear).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Iq4XsMagnitudes(byte* qs, Iq4XsUnpack unpack, out Vector512<sbyte> negative)
    {
        var spread = Avx512F.PermuteVar8x64(Vector256.Load((ulong*)qs).ToVector512Unsafe(), unpack.Spread);
        var indices = Avx512BW.ShiftRightLogicalVariable(spread.AsUInt16(), unpack.NibbleShifts).AsByte();
        Vector512<byte> magnitudes;
        if (HasVbmi)
        {
            magnitudes = Avx512Vbmi.PermuteVar64x8(unpack.Magnitudes, indices);
        }
        else
        {
            indices &= Vector512.Create((byte)0x0F);
            magnitudes = Avx512BW.Shuffle(unpack.Magnitudes, indices);
        }

        negative = Vector512.Equals(indices & Vector512.Create((byte)8), Vector512<byte>.Zero).AsSByte();
        return magnitudes;
    }

    /// <summary>
    /// IQ4_XS against <typeparamref name="T"/> activation rows (2–7) <paramref name="stride"/> bytes apart, for
    /// <paramref name="weightRows"/> weight rows <paramref name="rowBytes"/> apart (weight row r's results at
    /// <c>output[r + k * outputStride]</c>): each step's levels are unpacked once for every activation row, which then
    /// takes only its sign blend and multiply-adds. Each row's sums and float operations are the one-token kernel's, so
    /// every result is the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Iq4XsWideTile<T>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, float* output, long outputStride)
        where T : struct, ITileRows
    {
        // The static tables before the accumulators, as in Q4_KWide.
        float* halves = HalfTable;
        short* stepScales = (short*)WideKControls + 320;
        var unpack = new Iq4XsUnpack();
        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y0 = activations;
            // One pointer per activation row, as in Q4KWideTile; a row past the tile's count points at row 0 and is never read.
            byte* y1 = Row<T>(y0, stride, 1), y2 = Row<T>(y0, stride, 2), y3 = Row<T>(y0, stride, 3), y4 = Row<T>(y0, stride, 4), y5 = Row<T>(y0, stride, 5),
                y6 = Row<T>(y0, stride, 6);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default;
            for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ4_XS.Size, y0 += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size,
                 y2 += BlockLayouts.Q8_K.Size, y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size)
            {
                PrefetchBlock(x, BlockLayouts.IQ4_XS.Size);
                var scales16 = Iq4XsScales(x);
                Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default;
                for (int p = 0; p < 4; p++)
                {
                    var magnitudes = Iq4XsMagnitudes(x + BlockLayouts.IQ4_XS.Qs + 32 * p, unpack, out var negative);
                    var scales = Avx512BW.PermuteVar32x16(scales16, Vector512.Load(stepScales + 32 * p));
                    int q = BlockLayouts.Q8_K.Qs + 64 * p;
                    s0 += Iq4XsRowProducts(magnitudes, negative, y0 + q, scales);
                    if (T.Count > 1) s1 += Iq4XsRowProducts(magnitudes, negative, y1 + q, scales);
                    if (T.Count > 2) s2 += Iq4XsRowProducts(magnitudes, negative, y2 + q, scales);
                    if (T.Count > 3) s3 += Iq4XsRowProducts(magnitudes, negative, y3 + q, scales);
                    if (T.Count > 4) s4 += Iq4XsRowProducts(magnitudes, negative, y4 + q, scales);
                    if (T.Count > 5) s5 += Iq4XsRowProducts(magnitudes, negative, y5 + q, scales);
                    if (T.Count > 6) s6 += Iq4XsRowProducts(magnitudes, negative, y6 + q, scales);
                }

                CloseTileRows<T>(halves[*(ushort*)(x + BlockLayouts.IQ4_XS.D)], new TileRows(y0, y1, y2, y3, y4, y5, y6), s0, s1, s2, s3, s4, s5, s6, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6);
            }

            // One times each sum: the same bits as the one-row kernel's plain sum.
            StoreTileRows<T>(1, a0, a1, a2, a3, a4, a5, a6, output, outputStride);
        }
    }

    /// <summary>One activation row's 64 products with a step's levels (its signs blended in), each sub-block's times its scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Iq4XsRowProducts(Vector512<byte> magnitudes, Vector512<sbyte> negative, byte* y, Vector512<short> scales)
    {
        var activations = Vector512.Load((sbyte*)y);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitudes, Vector512.ConditionalSelect(negative, -activations, activations)), scales);
    }
}
