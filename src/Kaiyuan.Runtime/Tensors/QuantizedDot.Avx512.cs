using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

internal static unsafe partial class Avx2Dot
{
    /// <summary>
    /// A Q5_0 row against one Q8_0 row, two blocks per 512-bit step. The 256-bit kernel spends about 25 instructions on
    /// each 22-byte block, mostly forming the signed quants (spreading the 32 fifth bits to bytes, the nibbles to two
    /// halves), which made Q5_0 — 42% of the bytes of a Qwen2.5-0.5B Q4_K_M file, whose 896-wide rows cannot take
    /// K-quants — the one type of that file whose decode was bound by compute, not memory. Here one 64-byte load holds
    /// both blocks; a byte permute puts each output byte's source byte in its qword and a multishift takes the low or the
    /// high nibble, a second pair brings each element's fifth bit to bit 4, and the unsigned quants u = q + 16 go straight
    /// into the unsigned-by-signed multiply. The activations' 16·(y₂ₖ + y₂ₖ₊₁), computed once per activation row
    /// (<see cref="PairBias"/>), are subtracted from the pair sums, leaving exactly the pair sums of q·y.
    /// <para>
    /// Its float order, which every Q5_0 kernel on this tier keeps (one token, the small-batch tiles, the pair tiles and
    /// the plain row dot, so all give the same bits): one 512-bit accumulator per dot, lanes 0–7 for the row's even
    /// blocks and 8–15 for its odd ones (lane k: the exact int32 sum of elements 4k..4k+3). A pair of blocks takes one
    /// multiply for both blocks' d·d_y (the two-half scale vectors from a broadcast and a masked broadcast) and one
    /// multiply-add; a row's last odd block goes to its half alone; the result is the two halves added lane by lane,
    /// then summed (<see cref="EvenOddSum"/>). The 256-bit kernel's block order — two multiplies, a chain of two
    /// multiply-adds and an extract per row and pair — cost five vector operations of fifteen where this costs three of
    /// thirteen: 47–49 → 49–52 GMAC/s at one token (4864 × 896, one thread, in cache, Zen 5). Q4_0 and IQ4_NL keep
    /// block order (<see cref="IVbmiPair.EvenOdd"/>).
    /// </para>
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q5_0Vbmi(byte* x, byte* y, byte* side, int blocks, bool vnni) => PairVbmi<Q5VbmiPair>(x, y, side, blocks, vnni);

    /// <summary>
    /// <see cref="Q5_0Vbmi(byte*, byte*, byte*, int, bool)"/> for a Q4_0 row: two blocks per 64-byte load, the nibbles
    /// alone unpacked (u = q + 8), less 8·(y₂ₖ + y₂ₖ₊₁). The 256-bit kernel, which forms signed quants and their
    /// magnitudes block by block, ran at 72–77 GMAC/s (43 GB/s of weights) where Q5_0's VBMI kernel ran at 84–88.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_0Vbmi(byte* x, byte* y, byte* side, int blocks, bool vnni) => PairVbmi<Q4VbmiPair>(x, y, side, blocks, vnni);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float PairVbmi<T>(byte* x, byte* y, byte* side, int blocks, bool vnni) where T : struct, IVbmiPair
    {
        float result;
        PairVbmi<T>(x, 0, y, side, 1, blocks, vnni, &result, 0);
        return result;
    }

    /// <summary>
    /// <see cref="Q5_0Vbmi(byte*, byte*, byte*, int, bool)"/> for one weight row, or (<paramref name="dots"/> = 2) also
    /// for the weight row <paramref name="weightStride"/> bytes on, against one activation row and its side data
    /// (<see cref="Dot1Rows2"/>): two accumulation chains overlap. Several activation rows take
    /// <see cref="Q5WideTile{T, TRows}"/>.
    /// Measured: the wider unpacking alone, or two rows alone, moved `bench matmul` Q5_0 one-token figures by less than
    /// the noise; both together 24–28 → 31–35 GMAC/s (16384×4096, 2 threads, Zen 5).
    /// </summary>
    // Not inlined into the one-row wrapper, where its own inlinees no longer fit the JIT's budget (3× slower, measured).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void PairVbmi<T>(byte* x, long weightStride, byte* y, byte* side, int dots, int blocks, bool vnni, float* output, long outputStride)
        where T : struct, IVbmiPair
    {
        var unpack = new Q5Unpack(T.Controls);
        float* halves = HalfTable;
        byte* x1 = x + weightStride;
        float* ys = (float*)side;
        short* bias = (short*)(side + blocks * sizeof(float));
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        int b = 0;
        // The 64-byte load reads past the pair: only while enough further blocks follow in the row.
        for (; b + LoadBlocks(T.Size) <= blocks; b += 2, x += 2 * T.Size, x1 += 2 * T.Size, y += 2 * BlockLayouts.Q8_0.Size)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            var activations = Q5PairActivations(y);
            var pairBias = Vector512.Load(bias + 16 * b);
            var activationScales = new PairActivationScales(ys + b, T.EvenOdd);
            acc0 = PairRow<T>(x, 0, in unpack, activations, pairBias, halves, activationScales, acc0);
            if (dots > 1)
            {
                Sse.Prefetch0(x1 + PrefetchDistance);
                acc1 = PairRow<T>(x1, 0, in unpack, activations, pairBias, halves, activationScales, acc1);
            }
        }
        if (HasLastPair(b, blocks, T.Size))
        {
            var last = new Q5Unpack(T.Controls + LastPairControls);
            var activations = Q5PairActivations(y);
            var pairBias = Vector512.Load(bias + 16 * b);
            var activationScales = new PairActivationScales(ys + b, T.EvenOdd);
            acc0 = PairRow<T>(x, LastPairBack(T.Size), in last, activations, pairBias, halves, activationScales, acc0);
            if (dots > 1) acc1 = PairRow<T>(x1, LastPairBack(T.Size), in last, activations, pairBias, halves, activationScales, acc1);
            b += 2;
            x += 2 * T.Size;
            x1 += 2 * T.Size;
            y += 2 * BlockLayouts.Q8_0.Size;
        }
        for (; b < blocks; b++, x += T.Size, x1 += T.Size, y += BlockLayouts.Q8_0.Size)
        {
            acc0 = TokenStep<T>(b, x, halves, ys[b], y, vnni, acc0);
            if (dots > 1) acc1 = TokenStep<T>(b, x1, halves, ys[b], y, vnni, acc1);
        }

        output[0] = Result<T>(acc0);
        if (dots > 1) output[outputStride] = Result<T>(acc1);
    }

    /// <summary>
    /// Four weight rows of <see cref="Q5_0Vbmi(byte*, byte*, byte*, int, bool)"/> against one activation row: rows
    /// <paramref name="x"/> and <paramref name="x"/> + <paramref name="rowBytes"/>, and the same two
    /// <paramref name="weightStride"/> bytes on, into <c>output[0]</c>, <c>output[1]</c>, <c>output[outputStride]</c> and
    /// <c>output[outputStride + 1]</c>: four accumulation chains overlap, and the activations, their pair bias and their
    /// scales are loaded once for all four rows. Each row's arithmetic is the one-row kernel's, so each result is the
    /// same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void PairVbmiRows4<T>(byte* x, int rowBytes, long weightStride, byte* y, byte* side, int blocks, bool vnni, float* output, long outputStride)
        where T : struct, IVbmiPair
    {
        var unpack = new Q5Unpack(T.Controls);
        float* halves = HalfTable;
        byte* x0 = x, x1 = x + rowBytes, x2 = x + weightStride, x3 = x2 + rowBytes;
        float* ys = (float*)side;
        short* bias = (short*)(side + blocks * sizeof(float));
        var acc0 = Vector512<float>.Zero;
        var acc1 = Vector512<float>.Zero;
        var acc2 = Vector512<float>.Zero;
        var acc3 = Vector512<float>.Zero;
        int b = 0;
        // The 64-byte loads read past the pair: only while enough further blocks follow in the row.
        for (; b + LoadBlocks(T.Size) <= blocks; b += 2, x0 += 2 * T.Size, x1 += 2 * T.Size, x2 += 2 * T.Size, x3 += 2 * T.Size, y += 2 * BlockLayouts.Q8_0.Size)
        {
            // All four streams: successive calls take rows two apart, so the first rows' prefetches alone would leave
            // every other row's length unfetched.
            Sse.Prefetch0(x0 + PrefetchDistance);
            Sse.Prefetch0(x1 + PrefetchDistance);
            Sse.Prefetch0(x2 + PrefetchDistance);
            Sse.Prefetch0(x3 + PrefetchDistance);
            var activations = Q5PairActivations(y);
            var pairBias = Vector512.Load(bias + 16 * b);
            var activationScales = new PairActivationScales(ys + b, T.EvenOdd);
            acc0 = PairRow<T>(x0, 0, in unpack, activations, pairBias, halves, activationScales, acc0);
            acc1 = PairRow<T>(x1, 0, in unpack, activations, pairBias, halves, activationScales, acc1);
            acc2 = PairRow<T>(x2, 0, in unpack, activations, pairBias, halves, activationScales, acc2);
            acc3 = PairRow<T>(x3, 0, in unpack, activations, pairBias, halves, activationScales, acc3);
        }
        if (HasLastPair(b, blocks, T.Size))
        {
            var last = new Q5Unpack(T.Controls + LastPairControls);
            var activations = Q5PairActivations(y);
            var pairBias = Vector512.Load(bias + 16 * b);
            var activationScales = new PairActivationScales(ys + b, T.EvenOdd);
            int back = LastPairBack(T.Size);
            acc0 = PairRow<T>(x0, back, in last, activations, pairBias, halves, activationScales, acc0);
            acc1 = PairRow<T>(x1, back, in last, activations, pairBias, halves, activationScales, acc1);
            acc2 = PairRow<T>(x2, back, in last, activations, pairBias, halves, activationScales, acc2);
            acc3 = PairRow<T>(x3, back, in last, activations, pairBias, halves, activationScales, acc3);
            b += 2;
            x0 += 2 * T.Size;
            x1 += 2 * T.Size;
            x2 += 2 * T.Size;
            x3 += 2 * T.Size;
            y += 2 * BlockLayouts.Q8_0.Size;
        }
        for (; b < blocks; b++, x0 += T.Size, x1 += T.Size, x2 += T.Size, x3 += T.Size, y += BlockLayouts.Q8_0.Size)
        {
            acc0 = TokenStep<T>(b, x0, halves, ys[b], y, vnni, acc0);
            acc1 = TokenStep<T>(b, x1, halves, ys[b], y, vnni, acc1);
            acc2 = TokenStep<T>(b, x2, halves, ys[b], y, vnni, acc2);
            acc3 = TokenStep<T>(b, x3, halves, ys[b], y, vnni, acc3);
        }

        output[0] = Result<T>(acc0);
        output[1] = Result<T>(acc1);
        output[outputStride] = Result<T>(acc2);
        output[outputStride + 1] = Result<T>(acc3);
    }

    /// <summary>
    /// <see cref="Q5_0Vbmi(byte*, byte*, byte*, int, bool)"/> against <typeparamref name="TRows"/> activation rows (2–8)
    /// <paramref name="stride"/> bytes apart, their side data <paramref name="sideStride"/> apart, for
    /// <paramref name="weightRows"/> weight rows <paramref name="rowBytes"/> apart: each pair of blocks unpacked, and its
    /// block scales loaded, once for every activation row; each row's arithmetic the one-row kernel's, so each result is
    /// the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Q5WideTile<T, TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, byte* side, int stride, int sideStride, int blocks, bool vnni,
        float* output, long outputStride) where T : struct, IVbmiPair where TRows : struct, ITileRows
    {
        var unpack = new Q5Unpack(T.Controls);
        float* halves = HalfTable;
        int biasAt = blocks * sizeof(float);
        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            int b = 0;
            // The 64-byte load reads past the pair: only while enough further blocks follow in the row.
            for (; b + LoadBlocks(T.Size) <= blocks; b += 2, x += 2 * T.Size)
            {
                Sse.Prefetch0(x + PrefetchDistance);
                Q5TileSteps<TRows>(T.UnsignedPair(x, in unpack), WeightScales(halves, x, T.Size), activations, side, stride, sideStride, biasAt, b,
                                        ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
            }
            if (HasLastPair(b, blocks, T.Size))
            {
                Q5TileSteps<TRows>(T.UnsignedPair(x - LastPairBack(T.Size), new Q5Unpack(T.Controls + LastPairControls)), WeightScales(halves, x, T.Size), activations,
                                        side, stride, sideStride, biasAt, b, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6, ref a7);
                b += 2;
                x += 2 * T.Size;
            }
            for (; b < blocks; b++, x += T.Size)
            {
                byte* y = activations + b * BlockLayouts.Q8_0.Size;
                byte* ys = side + b * sizeof(float);
                a0 = TokenStep<T>(b, x, halves, *(float*)ys, y, vnni, a0);
                if (TRows.Count > 1) a1 = TokenStep<T>(b, x, halves, *(float*)(ys + sideStride), y + stride, vnni, a1);
                if (TRows.Count > 2) a2 = TokenStep<T>(b, x, halves, *(float*)(ys + 2 * sideStride), y + 2 * stride, vnni, a2);
                if (TRows.Count > 3) a3 = TokenStep<T>(b, x, halves, *(float*)(ys + 3 * sideStride), y + 3 * stride, vnni, a3);
                if (TRows.Count > 4) a4 = TokenStep<T>(b, x, halves, *(float*)(ys + 4 * sideStride), y + 4 * stride, vnni, a4);
                if (TRows.Count > 5) a5 = TokenStep<T>(b, x, halves, *(float*)(ys + 5 * sideStride), y + 5 * stride, vnni, a5);
                if (TRows.Count > 6) a6 = TokenStep<T>(b, x, halves, *(float*)(ys + 6 * sideStride), y + 6 * stride, vnni, a6);
                if (TRows.Count > 7) a7 = TokenStep<T>(b, x, halves, *(float*)(ys + 7 * sideStride), y + 7 * stride, vnni, a7);
            }

            StoreSums<TRows>(output, outputStride, EvenOddHalves(a0), EvenOddHalves(a1), EvenOddHalves(a2), EvenOddHalves(a3), EvenOddHalves(a4), EvenOddHalves(a5),
                             EvenOddHalves(a6), EvenOddHalves(a7));
        }
    }

    /// <summary>Every activation row's share of the pair of blocks <paramref name="b"/>, <paramref name="b"/> + 1, unpacked to <paramref name="u"/>, their scales <paramref name="weightScales"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q5TileSteps<TRows>(Vector512<byte> u, Vector512<float> weightScales, byte* activations, byte* side, int stride, int sideStride, int biasAt, int b,
        ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> a2, ref Vector512<float> a3, ref Vector512<float> a4, ref Vector512<float> a5,
        ref Vector512<float> a6, ref Vector512<float> a7) where TRows : struct, ITileRows
    {
        a0 = Q5TileStep(u, weightScales, activations, side, 0, stride, sideStride, biasAt, b, a0);
        if (TRows.Count > 1) a1 = Q5TileStep(u, weightScales, activations, side, 1, stride, sideStride, biasAt, b, a1);
        if (TRows.Count > 2) a2 = Q5TileStep(u, weightScales, activations, side, 2, stride, sideStride, biasAt, b, a2);
        if (TRows.Count > 3) a3 = Q5TileStep(u, weightScales, activations, side, 3, stride, sideStride, biasAt, b, a3);
        if (TRows.Count > 4) a4 = Q5TileStep(u, weightScales, activations, side, 4, stride, sideStride, biasAt, b, a4);
        if (TRows.Count > 5) a5 = Q5TileStep(u, weightScales, activations, side, 5, stride, sideStride, biasAt, b, a5);
        if (TRows.Count > 6) a6 = Q5TileStep(u, weightScales, activations, side, 6, stride, sideStride, biasAt, b, a6);
        if (TRows.Count > 7) a7 = Q5TileStep(u, weightScales, activations, side, 7, stride, sideStride, biasAt, b, a7);
    }

    /// <summary>Activation row <paramref name="k"/>'s share of a pair of unpacked blocks <paramref name="b"/>, <paramref name="b"/> + 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q5TileStep(Vector512<byte> u, Vector512<float> weightScales, byte* activations, byte* side, int k, int stride, int sideStride, int biasAt,
        int b, Vector512<float> acc)
    {
        byte* rowSide = side + k * sideStride;
        var sums = Q5PairSums(u, Q5PairActivations(activations + k * stride + b * BlockLayouts.Q8_0.Size), Vector512.Load((short*)(rowSide + biasAt) + 16 * b));
        return Avx512F.FusedMultiplyAdd(weightScales * PairScales((float*)rowSide + b), sums, acc);
    }

    /// <summary><see cref="Q5WideTile{T, TRows}"/> for a row count known only at run time (2–8).</summary>
    private static void Q5WideRows<T>(int rows, byte* x, long rowBytes, int weightRows, byte* y, byte* side, int stride, int sideStride, int blocks, bool vnni, float* output,
        long outputStride) where T : struct, IVbmiPair
    {
        switch (rows)
        {
            case 2: Q5WideTile<T, TwoRows>(x, rowBytes, weightRows, y, side, stride, sideStride, blocks, vnni, output, outputStride); break;
            case 3: Q5WideTile<T, ThreeRows>(x, rowBytes, weightRows, y, side, stride, sideStride, blocks, vnni, output, outputStride); break;
            case 4: Q5WideTile<T, FourRows>(x, rowBytes, weightRows, y, side, stride, sideStride, blocks, vnni, output, outputStride); break;
            case 5: Q5WideTile<T, FiveRows>(x, rowBytes, weightRows, y, side, stride, sideStride, blocks, vnni, output, outputStride); break;
            case 6: Q5WideTile<T, SixRows>(x, rowBytes, weightRows, y, side, stride, sideStride, blocks, vnni, output, outputStride); break;
            case 7: Q5WideTile<T, SevenRows>(x, rowBytes, weightRows, y, side, stride, sideStride, blocks, vnni, output, outputStride); break;
            case 8: Q5WideTile<T, EightRows>(x, rowBytes, weightRows, y, side, stride, sideStride, blocks, vnni, output, outputStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(rows), rows, "a small-batch tile takes 2–8 rows");
        }
    }

    /// <summary>One block by the 256-bit token step: a row's last blocks, where a 64-byte load would read past the row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TokenStep<T>(byte* x, float* halves, float activationScale, byte* y, bool vnni, Vector256<float> acc) where T : struct, IVbmiPair
    {
        Vector256<sbyte> qx = T.Quants(x);
        return TokenStep(qx, Avx2.Sign(qx, qx).AsByte(), Vector256.Create(halves[*(ushort*)x]) * Vector256.Create(activationScale), y, vnni, acc);
    }

    /// <summary>Block <paramref name="b"/> alone by the 256-bit token step, into the half of a pair kernel's accumulator that it takes (<see cref="IVbmiPair.EvenOdd"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> TokenStep<T>(int b, byte* x, float* halves, float activationScale, byte* y, bool vnni, Vector512<float> acc) where T : struct, IVbmiPair =>
        !T.EvenOdd || (b & 1) == 0 ? acc.WithLower(TokenStep<T>(x, halves, activationScale, y, vnni, acc.GetLower()))
                                   : acc.WithUpper(TokenStep<T>(x, halves, activationScale, y, vnni, acc.GetUpper()));

    /// <summary>A pair kernel's result from its accumulator: <see cref="EvenOddSum"/>, or for the block-order types the lane sum of the lower half, where all blocks went.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Result<T>(Vector512<float> acc) where T : struct, IVbmiPair => T.EvenOdd ? EvenOddSum(acc) : HorizontalSum(acc.GetLower());

    /// <summary>
    /// One weight row's pair of blocks at <paramref name="x"/> against loaded activations and their block scales:
    /// unpacked from the 64 bytes at <paramref name="x"/> −
    /// <paramref name="back"/>, which <paramref name="unpack"/>'s controls expect.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairRow<T>(byte* x, int back, in Q5Unpack unpack, Vector512<sbyte> activations, Vector512<short> pairBias, float* halves,
        in PairActivationScales activationScales, Vector512<float> acc) where T : struct, IVbmiPair =>
        T.Step(T.UnsignedPair(x - back, in unpack), activations, pairBias, halves, x, in activationScales, acc);

    /// <summary>The fp16 scales of the blocks at <paramref name="x"/> and <paramref name="blockBytes"/> on, as floats, in the lower and upper half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> WeightScales(float* halves, byte* x, int blockBytes) => Halves(halves[*(ushort*)x], halves[*(ushort*)(x + blockBytes)]);

    /// <summary>Two consecutive activation blocks' scales (<paramref name="scales"/>[0], [1]) in the lower and upper half.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairScales(float* scales) => Halves(scales[0], scales[1]);

    /// <summary><paramref name="low"/> in lanes 0–7, <paramref name="high"/> in 8–15: a broadcast and a masked broadcast from memory, where Vector512.Create of two halves took two inserts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Halves(float low, float high) =>
        Avx512F.BlendVariable(Vector512.Create(low), Vector512.Create(high), Vector512.Create(0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1).AsSingle());

    /// <summary>A VBMI pair kernel's accumulator as one 256-bit one: its even-block and odd-block halves added lane by lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> EvenOddHalves(Vector512<float> acc) => acc.GetLower() + acc.GetUpper();

    /// <summary>A VBMI pair kernel's result: <see cref="EvenOddHalves"/>, its lanes summed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float EvenOddSum(Vector512<float> acc) => HorizontalSum(EvenOddHalves(acc));

    /// <summary>
    /// A 32-element block type (a one-byte-aligned fp16 scale first) whose one-token VBMI kernels unpack two blocks from
    /// one 64-byte load into unsigned quants u = q + <see cref="Offset"/>, whose products exceed the signed ones' by
    /// <see cref="Offset"/> times the activations' sums (the bias in the activation rows' side data, 32 bytes per block).
    /// </summary>
    private interface IVbmiPair : IBlock32
    {
        static abstract byte Offset { get; }

        /// <summary>The permute and multishift controls of <see cref="UnsignedPair"/>.</summary>
        static abstract byte* Controls { get; }

        /// <summary>Two blocks' unsigned quants (bytes 0–31 the first block's elements in order, 32–63 the second's).</summary>
        static abstract Vector512<byte> UnsignedPair(byte* x, in Q5Unpack unpack);

        /// <summary>
        /// True when the type's dots sum even and odd blocks apart (<see cref="EvenOddSum"/>, the accumulator's two halves);
        /// false where all blocks go to its lower half in block order, the 256-bit kernel's float operations.
        /// </summary>
        static abstract bool EvenOdd { get; }

        /// <summary>
        /// The pair's exact int32 sums of q·y per four elements (lane k of each block: elements 4k..4k+3), from the
        /// unsigned quants, both activation blocks and their bias (the pair's 64 bytes of side data), each block's
        /// lanes times its scale product (the weight block's at <paramref name="x"/>, the activation block's in
        /// <paramref name="activationScales"/>) added to <paramref name="acc"/> in the type's order (<see cref="EvenOdd"/>).
        /// </summary>
        static abstract Vector512<float> Step(Vector512<byte> unsignedQuants, Vector512<sbyte> activations, Vector512<short> bias, float* halves, byte* x,
            in PairActivationScales activationScales, Vector512<float> acc);
    }

    /// <summary>True when the VBMI one-token kernels (<see cref="IVbmiPair"/>) take <paramref name="weightType"/> here, and its <see cref="PrepareSide"/> data holds their bias.</summary>
    internal static bool HasVbmiPair(GgmlType weightType) => weightType switch
    {
        GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type => HasVbmi,
        GgmlType.IQ4_NL => HasVbmi && AvxVnni.IsSupported,
        _ => false,
    };

    /// <summary>Blocks from a pair's start that a 64-byte load spans: the pair's load stays within the row only while that many remain.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int LoadBlocks(int blockBytes) => (64 + blockBytes - 1) / blockBytes;

    /// <summary>
    /// Where a row's last pair (at block <paramref name="b"/>, too near the end for a load from its start) is read from the
    /// 64 bytes that end where it ends (<see cref="LastPairBack"/> bytes before it, with the controls at
    /// <see cref="LastPairControls"/>): when two blocks remain and the row holds 64 bytes up to their end. Without it the
    /// last two or three blocks took the 256-bit step, about twice the work per block: 7% of a 896-wide Q5_0 row's blocks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool HasLastPair(int b, int blocks, int blockBytes) => blocks - b >= 2 && (b + 2) * blockBytes >= 64;

    /// <summary>How far before a row's last pair its 64-byte load starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int LastPairBack(int blockBytes) => 64 - 2 * blockBytes;

    /// <summary>
    /// Q5_0 in the file's layout: u = q + 16, the fifth bits brought to bit 4 (<see cref="Q5UnsignedPair"/>). A model's
    /// weights are repacked at load and take <see cref="Q5FieldsVbmiPair"/>; this serves Q5_0 rows made or mapped otherwise.
    /// </summary>
    private readonly struct Q5VbmiPair : IVbmiPair
    {
        public static int Size => BlockLayouts.Q5_0.Size;

        public static byte Offset => 16;

        public static byte* Controls => Q5Controls;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x) => Q5Block.Quants(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> UnsignedPair(byte* x, in Q5Unpack unpack) => Q5UnsignedPair(x, in unpack);

        public static bool EvenOdd => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Step(Vector512<byte> unsignedQuants, Vector512<sbyte> activations, Vector512<short> bias, float* halves, byte* x,
            in PairActivationScales activationScales, Vector512<float> acc) => EvenOddStep(unsignedQuants, activations, bias, halves, x, in activationScales, acc);
    }

    /// <summary>Q5_0 repacked (<see cref="Q5Fields"/>): u = q + 16 straight from the five-bit fields (<see cref="Q5FieldPair"/>); the float order <see cref="Q5VbmiPair"/>'s.</summary>
    private readonly struct Q5FieldsVbmiPair : IVbmiPair
    {
        public static int Size => BlockLayouts.Q5_0.Size;

        public static byte Offset => 16;

        public static byte* Controls => Q5FieldControls;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x) => Q5FieldsBlock.Quants(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> UnsignedPair(byte* x, in Q5Unpack unpack) => Q5FieldPair(x, in unpack);

        public static bool EvenOdd => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Step(Vector512<byte> unsignedQuants, Vector512<sbyte> activations, Vector512<short> bias, float* halves, byte* x,
            in PairActivationScales activationScales, Vector512<float> acc) => EvenOddStep(unsignedQuants, activations, bias, halves, x, in activationScales, acc);
    }

    /// <summary>A Q5_0 pair's step in even/odd order: both blocks' d·d_y in one multiply, their sums in one multiply-add.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> EvenOddStep(Vector512<byte> unsignedQuants, Vector512<sbyte> activations, Vector512<short> bias, float* halves, byte* x,
        in PairActivationScales activationScales, Vector512<float> acc) =>
        Avx512F.FusedMultiplyAdd(WeightScales(halves, x, BlockLayouts.Q5_0.Size) * activationScales.Both, Q5PairSums(unsignedQuants, activations, bias), acc);

    /// <summary>Two repacked Q5_0 blocks' u = q + 16 (bytes 0–31 the first block's, 32–63 the second's) from one 64-byte load: each qword's five source bytes permuted in, each field shifted down, masked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Q5FieldPair(byte* x, in Q5Unpack unpack) => PermuteShift(x, in unpack) & Vector512.Create((byte)0x1F);

    /// <summary>
    /// <see cref="Q5FieldPair"/>'s controls for output byte o (block h = o / 32, element j = o % 32): the five bytes from
    /// field byte 5·(j / 8) into its qword, and a shift of 5·(j % 8); the second set for a load <see cref="LastPairBack"/> bytes earlier.
    /// </summary>
    private static readonly byte* Q5FieldControls = BuildFieldControls();

    private static byte* BuildFieldControls()
    {
        var controls = (byte*)NativeMemory.AlignedAlloc(2 * LastPairControls, 64);
        NativeMemory.Clear(controls, 2 * LastPairControls);
        for (int set = 0; set < 2; set++)
        {
            byte* c = controls + set * LastPairControls;
            int back = set == 0 ? 0 : LastPairBack(BlockLayouts.Q5_0.Size);
            for (int o = 0; o < 64; o++)
            {
                int block = o / 32, element = o % 32;
                // A field ends by bit 39 of its qword, so bytes 5–7 only need to stay within the load (bit 40 on is masked off).
                c[o] = (byte)(back + block * BlockLayouts.Q5_0.Size + Q5Fields.Fields + 5 * (element / 8) + Math.Min(o % 8, 4));
                c[64 + o] = (byte)(5 * (element % 8));
            }
        }
        return controls;
    }

    /// <summary>Q4_0: u = q + 8, the nibbles as stored (<see cref="Q4Controls"/>; the fifth-bit controls are unused).</summary>
    private readonly struct Q4VbmiPair : IVbmiPair
    {
        public static int Size => BlockLayouts.Q4_0.Size;

        public static byte Offset => 8;

        public static byte* Controls => Q4Controls;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x) => Q4Block.Quants(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> UnsignedPair(byte* x, in Q5Unpack unpack) => PairNibbles(x, in unpack);

        // Block order: summing even and odd blocks apart ran no faster here (44–46 against 47–48 GMAC/s, 4864 × 896, one
        // thread), where Q4_0's unpacking is cheaper than Q5_0's and the two-half scale vector's masked load weighs more.
        public static bool EvenOdd => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Step(Vector512<byte> unsignedQuants, Vector512<sbyte> activations, Vector512<short> bias, float* halves, byte* x,
            in PairActivationScales activationScales, Vector512<float> acc) =>
            BlockOrderStep(Q5PairSums(unsignedQuants, activations, bias), halves, x, Size, in activationScales, acc);
    }

    /// <summary>Two blocks' 4-bit quants or indices, in element order, from one 64-byte load by their layout's controls (Q4_0, Q4_1, IQ4_NL).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> PairNibbles(byte* x, in Q5Unpack unpack) => PermuteShift(x, in unpack) & Vector512.Create((byte)0x0F);

    /// <summary>The 64 bytes at <paramref name="x"/> permuted and multishifted by <paramref name="unpack"/>'s first two controls: each output byte's field at its bit 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> PermuteShift(byte* x, in Q5Unpack unpack) =>
        Avx512Vbmi.MultiShift(unpack.NibbleShift, Avx512Vbmi.PermuteVar64x8(Vector512.Load(x), unpack.NibbleSource).AsUInt64()).AsByte();

    /// <summary>
    /// IQ4_NL: u = level + 128, the levels looked up by a byte permute over a table kept in the controls' third vector.
    /// u reaches 241, so a pair of products can pass int16 and the unsigned-by-signed multiply-add would saturate; the
    /// 256-bit VNNI multiply-add sums four products straight into int32, exactly, starting from the side data's
    /// −128·(y₄ₖ + … + y₄ₖ₊₃) per lane. The 256-bit kernel forms signed levels and their magnitudes block by block
    /// (77 GMAC/s, 44 GB/s of weights at one token, 4864 × 4096, where Q4_0's VBMI kernel ran at 98).
    /// </summary>
    private readonly struct Iq4NlVbmiPair : IVbmiPair
    {
        public static int Size => BlockLayouts.IQ4_NL.Size;

        public static byte Offset => 128;

        public static byte* Controls => Iq4NlControls;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x) => Iq4NlBlock.Quants(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> UnsignedPair(byte* x, in Q5Unpack unpack) => Avx512Vbmi.PermuteVar64x8(unpack.HighSource, PairNibbles(x, in unpack));

        // Block order, as Q4_0 (measured alike: 40–42 against 44–46 GMAC/s summing even and odd blocks apart).
        public static bool EvenOdd => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Step(Vector512<byte> unsignedQuants, Vector512<sbyte> activations, Vector512<short> bias, float* halves, byte* x,
            in PairActivationScales activationScales, Vector512<float> acc)
        {
            var first = AvxVnni.MultiplyWideningAndAdd(bias.AsInt32().GetLower(), unsignedQuants.GetLower(), activations.GetLower());
            var second = AvxVnni.MultiplyWideningAndAdd(bias.AsInt32().GetUpper(), unsignedQuants.GetUpper(), activations.GetUpper());
            return BlockOrderStep(Avx.ConvertToVector256Single(first), Avx.ConvertToVector256Single(second), halves, x, Size, in activationScales, acc);
        }
    }

    /// <summary><see cref="Q5Controls"/> in registers: the permutes and multishifts that unpack a pair of blocks.</summary>
    private readonly struct Q5Unpack(byte* controls)
    {
        public readonly Vector512<byte> NibbleSource = Vector512.Load(controls), NibbleShift = Vector512.Load(controls + 64),
                                        HighSource = Vector512.Load(controls + 128), HighShift = Vector512.Load(controls + 192);
    }

    /// <summary>Two Q5_0 blocks' unsigned quants q + 16 (bytes 0–31 the first block's elements in order, 32–63 the second's), from one 64-byte load.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Q5UnsignedPair(byte* x, in Q5Unpack unpack)
    {
        var raw = Vector512.Load(x);
        var nibbles = Avx512Vbmi.MultiShift(unpack.NibbleShift, Avx512Vbmi.PermuteVar64x8(raw, unpack.NibbleSource).AsUInt64());
        var fifth = Avx512Vbmi.MultiShift(unpack.HighShift, Avx512Vbmi.PermuteVar64x8(raw, unpack.HighSource).AsUInt64());
        return (nibbles & Vector512.Create((byte)0x0F)) | (fifth & Vector512.Create((byte)0x10));
    }

    /// <summary>The quants of two consecutive Q8_0 activation blocks in one vector.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Q5PairActivations(byte* y) =>
        // An insert from memory: Vector512.Create of two halves went through a stack temporary and two inserts.
        Avx512F.InsertVector256(Vector256.Load((sbyte*)(y + BlockLayouts.Q8_0.Qs)).ToVector512Unsafe(),
                                Vector256.Load((sbyte*)(y + BlockLayouts.Q8_0.Size + BlockLayouts.Q8_0.Qs)), 1);

    /// <summary>A pair of Q4_0 or Q5_0 blocks' exact int32 sums of q·y per four elements, as floats: the pair sums of the unsigned quants less the pair bias, summed in twos.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Q5PairSums(Vector512<byte> unsignedQuants, Vector512<sbyte> activations, Vector512<short> pairBias) =>
        Avx512F.ConvertToVector512Single(Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(unsignedQuants, activations) - pairBias, Vector512.Create((short)1)));

    /// <summary>
    /// A pair's sums into the lower half of <paramref name="acc"/> in block order, each block's times its scale product
    /// (the weight block's broadcast from the table and multiplied as a vector: a load and a multiply, where the scalar
    /// product and its broadcast took two vector operations): the 256-bit kernel's float operations.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> BlockOrderStep(Vector512<float> sums, float* halves, byte* x, int blockBytes, in PairActivationScales activationScales,
        Vector512<float> acc) => BlockOrderStep(sums.GetLower(), sums.GetUpper(), halves, x, blockBytes, in activationScales, acc);

    /// <summary><see cref="BlockOrderStep(Vector512{float}, float*, byte*, int, in PairActivationScales, Vector512{float})"/> with each block's sums apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> BlockOrderStep(Vector256<float> firstSums, Vector256<float> secondSums, float* halves, byte* x, int blockBytes,
        in PairActivationScales activationScales, Vector512<float> acc)
    {
        var lower = Fma.MultiplyAdd(Vector256.Create(halves[*(ushort*)x]) * activationScales.First, firstSums, acc.GetLower());
        return Fma.MultiplyAdd(Vector256.Create(halves[*(ushort*)(x + blockBytes)]) * activationScales.Second, secondSums, lower).ToVector512Unsafe();
    }

    /// <summary>
    /// A pair of activation blocks' scales as a VBMI pair type's step takes them, loaded once for every weight row of a
    /// step: both in one vector where it sums even and odd blocks apart (<see cref="IVbmiPair.EvenOdd"/>), else each broadcast.
    /// </summary>
    private readonly struct PairActivationScales
    {
        public readonly Vector512<float> Both;
        public readonly Vector256<float> First, Second;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public PairActivationScales(float* scales, bool evenOdd)
        {
            if (evenOdd) Both = PairScales(scales);
            else (First, Second) = (Vector256.Create(scales[0]), Vector256.Create(scales[1]));
        }
    }

    /// <summary>
    /// offset·(y₂ₖ + y₂ₖ₊₁) for each pair of a Q8_0 activation row's quants, as int16 in element order: what the VBMI
    /// one-token kernels (<see cref="IVbmiPair"/>) subtract from the products of the unsigned quants q + offset.
    /// </summary>
    private static void PairBias(byte* y, int n, short* bias, byte offset)
    {
        var factor = Vector256.Create(offset);
        for (int b = 0; b < n / BlockLayouts.QK; b++, y += BlockLayouts.Q8_0.Size, bias += BlockLayouts.QK / 2)
            Avx2.MultiplyAddAdjacent(factor, Vector256.Load((sbyte*)(y + BlockLayouts.Q8_0.Qs))).Store(bias);
    }

    /// <summary>
    /// <see cref="Q5_0Vbmi(byte*, byte*, byte*, int, bool)"/>'s permute and multishift controls for output byte o (block h = o / 32, element i = o % 32
    /// of it): the nibble source qs[i % 16] and its shift (high nibble for i ≥ 16); the fifth-bit source, the block's
    /// four qh bytes in each qword, and a shift of i − 4 (mod 64, the multishift rotates) that lands qh bit i on bit 4.
    /// </summary>
    private static readonly byte* Q5Controls = BuildPairControls(BlockLayouts.Q5_0.Size, BlockLayouts.Q5_0.Qs, BlockLayouts.Q5_0.Qh);

    /// <summary>Q4_0's nibble controls in <see cref="Q5Controls"/>' layout (no fifth bits: that half is zero).</summary>
    private static readonly byte* Q4Controls = BuildPairControls(BlockLayouts.Q4_0.Size, BlockLayouts.Q4_0.Qs, qh: -1);

    /// <summary>IQ4_NL's nibble controls, and in place of the fifth-bit source the levels + 128, byte i holding level i mod 16's.</summary>
    private static readonly byte* Iq4NlControls = BuildIq4NlControls();

    private static byte* BuildIq4NlControls()
    {
        byte* controls = BuildPairControls(BlockLayouts.IQ4_NL.Size, BlockLayouts.IQ4_NL.Qs, qh: -1);
        for (int set = 0; set < 2; set++)
            for (int i = 0; i < 64; i++)
                controls[set * LastPairControls + 128 + i] = (byte)(Iq4Levels.Values[i % 16] + Iq4NlVbmiPair.Offset);
        return controls;
    }

    /// <summary>
    /// −offset·(y₄ₖ + … + y₄ₖ₊₃) for each four of a Q8_0 activation row's quants, as int32 in element order: where
    /// <see cref="Iq4NlVbmiPair"/>'s sums start (its pair sums as <see cref="PairBias"/> forms them, within int16 for
    /// any offset up to 128, then negated pairwise).
    /// </summary>
    private static void NegatedLaneBias(byte* y, int n, int* bias, byte offset)
    {
        var factor = Vector256.Create(offset);
        for (int b = 0; b < n / BlockLayouts.QK; b++, y += BlockLayouts.Q8_0.Size, bias += BlockLayouts.QK / 4)
        {
            var pairs = Avx2.MultiplyAddAdjacent(factor, Vector256.Load((sbyte*)(y + BlockLayouts.Q8_0.Qs)));
            Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)-1)).Store(bias);
        }
    }

    /// <summary>Where a control table's second set starts: the same controls for a load that ends where the pair ends (<see cref="HasLastPair"/>).</summary>
    private const int LastPairControls = 256;

    private static byte* BuildPairControls(int blockBytes, int qs, int qh)
    {
        var controls = (byte*)NativeMemory.AlignedAlloc(2 * LastPairControls, 64);
        NativeMemory.Clear(controls, 2 * LastPairControls);
        for (int set = 0; set < 2; set++)
        {
            byte* c = controls + set * LastPairControls;
            int back = set == 0 ? 0 : LastPairBack(blockBytes);
            for (int o = 0; o < 64; o++)
            {
                int block = o / 32, element = o % 32;
                c[o] = (byte)(back + block * blockBytes + qs + element % 16);
                c[64 + o] = (byte)(8 * (o % 8) + (element >= 16 ? 4 : 0));
                if (qh < 0) continue;
                c[128 + o] = (byte)(back + block * blockBytes + qh + o % 4);
                c[192 + o] = (byte)((element - 4) & 63);
            }
        }
        return controls;
    }

    /// <summary>True when the 512-bit K-quant kernels (<see cref="Q4_KWide(byte*, byte*, int)"/>, <see cref="Q6_KWide(byte*, byte*, short*, int)"/>) run: byte and word operations of AVX-512 BW.</summary>
    internal static bool HasWideKQuants => Avx512BW.IsSupported;

    /// <summary>
    /// A Q4_K row against Q8_K, two 64-element pairs of sub-blocks per 512-bit step where the 256-bit kernel takes one.
    /// Besides halving the vector work, the eight sub-block scales are widened to words once per block and each step's
    /// scale vectors come from one word permute of them. Lanes 0–7 of the int32 sums are the first pair's, in the 256-bit
    /// kernel's lane layout, lanes 8–15 the second's; integer sums are exact, so their two halves added are the 256-bit
    /// kernel's sums, and the float arithmetic after them, and the result, is the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_KWide(byte* x, byte* y, int blocks)
    {
        float result;
        Q4_KWide(x, 0, y, 1, blocks, &result, 0);
        return result;
    }

    /// <summary>
    /// <see cref="Q4_KWide(byte*, byte*, int)"/> of one or two weight rows <paramref name="weightStride"/> bytes apart
    /// against one activation row (<see cref="Dot1Rows2"/>), the activations' shuffles shared.
    /// </summary>
    // Not inlined into the one-row wrapper, where its own inlinees no longer fit the JIT's budget (3× slower, measured).
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q4_KWide(byte* x, long weightStride, byte* y, int rows, int blocks, float* output, long outputStride)
    {
        // The static tables first: the accumulators, live across the static-base helper call, were kept in memory
        // (a store and a reload in every block's dependency chain); and read once, not in the loop, where the JIT
        // called that helper every block with all vector registers spilled around it.
        float* halves = HalfTable;
        var controls = new Q4KScaleControls((short*)WideKControls);
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        var minAcc0 = Vector128<float>.Zero;
        var minAcc1 = Vector128<float>.Zero;
        byte* x1 = x + weightStride;
        // One loop per row count: with the second row's branch inside, the JIT kept the accumulators in memory.
        if (rows == 1)
        {
            for (int b = 0; b < blocks; b++, x += BlockLayouts.Q4_K.Size, y += BlockLayouts.Q8_K.Size)
            {
                var activations = new Q4KActivations(y);
                acc0 = Q4KWideBlock(x, *(float*)(y + BlockLayouts.Q8_K.D), halves, in activations, in controls, ref minAcc0, acc0);
            }
        }
        else
        {
            for (int b = 0; b < blocks; b++, x += BlockLayouts.Q4_K.Size, x1 += BlockLayouts.Q4_K.Size, y += BlockLayouts.Q8_K.Size)
            {
                float yd = *(float*)(y + BlockLayouts.Q8_K.D);
                var activations = new Q4KActivations(y);
                acc0 = Q4KWideBlock(x, yd, halves, in activations, in controls, ref minAcc0, acc0);
                acc1 = Q4KWideBlock(x1, yd, halves, in activations, in controls, ref minAcc1, acc1);
            }
        }

        output[0] = Q4KResult(acc0, minAcc0);
        if (rows > 1) output[outputStride] = Q4KResult(acc1, minAcc1);
    }

    /// <summary>
    /// A Q8_K block's activations arranged for <see cref="Q4KWideBlock"/>, read once for both weight rows: per 128-element
    /// step, those the low nibbles meet (elements 0–31 of each 64-element pair) and those the high nibbles meet (32–63),
    /// two pairs per vector; and the sub-blocks' sums (pairs of the 16-element bsums) that meet the mins.
    /// </summary>
    private readonly struct Q4KActivations
    {
        public readonly Vector512<sbyte> Low0, High0, Low1, High1;
        public readonly Vector128<short> SubBlockSums;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Q4KActivations(byte* y)
        {
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var a0 = Vector512.Load(q8).AsInt32();
            var a1 = Vector512.Load(q8 + 64).AsInt32();
            var a2 = Vector512.Load(q8 + 128).AsInt32();
            var a3 = Vector512.Load(q8 + 192).AsInt32();
            Low0 = Avx512F.Shuffle4x128(a0, a1, 0x44).AsSByte();
            High0 = Avx512F.Shuffle4x128(a0, a1, 0xEE).AsSByte();
            Low1 = Avx512F.Shuffle4x128(a2, a3, 0x44).AsSByte();
            High1 = Avx512F.Shuffle4x128(a2, a3, 0xEE).AsSByte();
            SubBlockSums = Q4KSubBlockSums(y);
        }
    }

    /// <summary>The word permutes that give each <see cref="Q4KStep"/> its scales from the block's eight, held in registers across the loop.</summary>
    private readonly struct Q4KScaleControls(short* controls)
    {
        public readonly Vector512<short> Low0 = Vector512.Load(controls), High0 = Vector512.Load(controls + 32),
                                         Low1 = Vector512.Load(controls + 64), High1 = Vector512.Load(controls + 96);
    }

    /// <summary>One Q4_K block against its activations: the block's scaled sums into <paramref name="acc"/>, its minimum term into <paramref name="minAcc"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q4KWideBlock(byte* x, float yd, float* halves, in Q4KActivations activations, in Q4KScaleControls controls,
        ref Vector128<float> minAcc, Vector256<float> acc)
    {
        PrefetchBlock(x, BlockLayouts.Q4_K.Size);
        KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong mins);
        // The eight scales as words 0–7 (the permutes read no others). Step s's low nibbles are sub-blocks 4s and 4s + 2,
        // its high nibbles 4s + 1 and 4s + 3: each control's words 0–15 select the first, 16–31 the second.
        var scales16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(scales).AsByte()).ToVector256Unsafe().ToVector512Unsafe();
        Vector128<short> mins16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte());
        var nibble = Vector512.Create((byte)0xF);
        var sums = Q4KStep(x + BlockLayouts.Q4_K.Qs, nibble, activations.Low0, activations.High0,
                           Avx512BW.PermuteVar32x16(scales16, controls.Low0), Avx512BW.PermuteVar32x16(scales16, controls.High0))
                 + Q4KStep(x + BlockLayouts.Q4_K.Qs + 64, nibble, activations.Low1, activations.High1,
                           Avx512BW.PermuteVar32x16(scales16, controls.Low1), Avx512BW.PermuteVar32x16(scales16, controls.High1));
        minAcc = Q4KMins(activations.SubBlockSums, mins16, -yd * halves[*(ushort*)(x + BlockLayouts.Q4_K.DMin)], minAcc);
        return BlockFma(yd * halves[*(ushort*)(x + BlockLayouts.Q4_K.D)], sums.GetLower() + sums.GetUpper(), acc);
    }

    /// <summary>Sixty-four bytes of a Q4_K block's nibbles (two pairs of sub-blocks) against their 128 activations, each sub-block's products times its scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q4KStep(byte* qs, Vector512<byte> nibble, Vector512<sbyte> lowActivations, Vector512<sbyte> highActivations, Vector512<short> lowScales, Vector512<short> highScales)
    {
        var bits = Vector512.Load(qs);
        var low = bits & nibble;
        var high = Vector512.ShiftRightLogical(bits.AsUInt16(), 4).AsByte() & nibble;
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(low, lowActivations), lowScales)
             + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(high, highActivations), highScales);
    }

    /// <summary>
    /// Q6_K against one Q8_K row and its <see cref="Q6KPairBias"/> on AVX-512 BW: two 32-element chunks per 512-bit step.
    /// A half block's 64 low-nibble bytes are one load (chunks 0 and 1 take their low nibbles, 2 and 3 their high ones),
    /// its 32 high-bit bytes are broadcast to both halves and brought to bits 4–5 per half by a word-variable shift, and
    /// each step's sixteen scales come from one word permute of the block's scales. Lanes 0–7 of the int32 sums are the
    /// first chunk's in the 256-bit kernel's layout, lanes 8–15 the second's; exact integer sums, so the two halves added
    /// are the 256-bit kernel's sums and the result is the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6_KWide(byte* x, byte* y, short* bias, int blocks)
    {
        float result;
        Q6_KWide(x, 0, y, bias, 1, blocks, &result, 0);
        return result;
    }

    /// <summary><see cref="Q6_KWide(byte*, byte*, short*, int)"/> of one or two weight rows <paramref name="weightStride"/> bytes apart against one activation row (<see cref="Dot1Rows2"/>).</summary>
    // Not inlined into the one-row wrapper, where its own inlinees would no longer fit the JIT's budget.
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void Q6_KWide(byte* x, long weightStride, byte* y, short* bias, int rows, int blocks, float* output, long outputStride)
    {
        // The static tables before the accumulators, as in Q4_KWide.
        float* halves = HalfTable;
        short* controls = (short*)WideKControls;
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        byte* x1 = x + weightStride;
        // One loop per row count: with the second row's branch inside, the JIT kept both accumulators in memory.
        if (rows == 1)
        {
            for (int b = 0; b < blocks; b++, x += BlockLayouts.Q6_K.Size, y += BlockLayouts.Q8_K.Size, bias += 128)
            {
                var activations = new Q6KActivations(y, bias);
                acc0 = Q6KWideBlock(x, *(float*)(y + BlockLayouts.Q8_K.D), halves, controls, in activations, acc0);
            }
        }
        else
        {
            for (int b = 0; b < blocks; b++, x += BlockLayouts.Q6_K.Size, x1 += BlockLayouts.Q6_K.Size, y += BlockLayouts.Q8_K.Size, bias += 128)
            {
                float yd = *(float*)(y + BlockLayouts.Q8_K.D);
                var activations = new Q6KActivations(y, bias);
                acc0 = Q6KWideBlock(x, yd, halves, controls, in activations, acc0);
                acc1 = Q6KWideBlock(x1, yd, halves, controls, in activations, acc1);
            }
        }

        output[0] = HorizontalSum(acc0);
        if (rows > 1) output[outputStride] = HorizontalSum(acc1);
    }

    /// <summary>
    /// A Q8_K block's quants and <see cref="Q6KPairBias"/> sums in registers, read once for both weight rows: loads bound
    /// the kernel (without the bias loads it ran 30% faster), and the quants' 64-byte loads mostly straddle two cache
    /// lines (Q8_K blocks are 292 bytes).
    /// </summary>
    private readonly struct Q6KActivations
    {
        public readonly Vector512<sbyte> Q0, Q1, Q2, Q3;
        public readonly Vector512<short> Bias0, Bias1, Bias2, Bias3;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Q6KActivations(byte* y, short* bias)
        {
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            Q0 = Vector512.Load(q8);
            Q1 = Vector512.Load(q8 + 64);
            Q2 = Vector512.Load(q8 + 128);
            Q3 = Vector512.Load(q8 + 192);
            Bias0 = Vector512.Load(bias);
            Bias1 = Vector512.Load(bias + 32);
            Bias2 = Vector512.Load(bias + 64);
            Bias3 = Vector512.Load(bias + 96);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Q6KWideBlock(byte* x, float yd, float* halves, short* controls, in Q6KActivations a, Vector256<float> acc)
    {
        PrefetchBlock(x, BlockLayouts.Q6_K.Size);
        var scales = Avx2.ConvertToVector256Int16(Vector128.Load((sbyte*)(x + BlockLayouts.Q6_K.Scales))).ToVector512Unsafe();
        // Word w of step s's scale permute takes scale 4s + w / 8 (controls at word 128 + 32s).
        var sums = Q6KWideHalf(x + BlockLayouts.Q6_K.Ql, x + BlockLayouts.Q6_K.Qh, controls, a.Q0, a.Bias0, a.Q1, a.Bias1,
                               Avx512BW.PermuteVar32x16(scales, Vector512.Load(controls + 128)), Avx512BW.PermuteVar32x16(scales, Vector512.Load(controls + 160)))
                 + Q6KWideHalf(x + BlockLayouts.Q6_K.Ql + 64, x + BlockLayouts.Q6_K.Qh + 32, controls, a.Q2, a.Bias2, a.Q3, a.Bias3,
                               Avx512BW.PermuteVar32x16(scales, Vector512.Load(controls + 192)), Avx512BW.PermuteVar32x16(scales, Vector512.Load(controls + 224)));
        return BlockFma(yd * halves[*(ushort*)(x + BlockLayouts.Q6_K.D)], sums.GetLower() + sums.GetUpper(), acc);
    }

    /// <summary>
    /// Half a Q6_K block (four 32-element chunks, two steps): chunks 0 and 1 are the low nibbles with high-bit pairs 0 and 1,
    /// chunks 2 and 3 the high nibbles with pairs 2 and 3; (q − 32)·y is q·y less the pair bias, weighted by the scales.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q6KWideHalf(byte* ql, byte* qh, short* controls, Vector512<sbyte> firstActivations, Vector512<short> firstBias,
        Vector512<sbyte> secondActivations, Vector512<short> secondBias, Vector512<short> firstScales, Vector512<short> secondScales)
    {
        var quants = new Q6KHalfQuants(ql, qh, controls);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(quants.First, firstActivations) - firstBias, firstScales)
             + Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(quants.Second, secondActivations) - secondBias, secondScales);
    }

    /// <summary>
    /// Half a Q6_K block's quants as stored (q + 32): <see cref="First"/> holds chunks 0 and 1 (the low nibbles with high-bit
    /// pairs 0 and 1), <see cref="Second"/> chunks 2 and 3 (the high nibbles with pairs 2 and 3), each in element order.
    /// </summary>
    private readonly struct Q6KHalfQuants
    {
        public readonly Vector512<byte> First, Second;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Q6KHalfQuants(byte* ql, byte* qh, short* controls)
        {
            var low = Vector512.Load(ql);
            // The 32 high-bit bytes in both halves by a load and an insert: Avx512F.BroadcastVector256ToVector512 from this
            // pointer compiled (.NET 10.0.12) to code whose results did not depend on the bytes loaded at all.
            var highHalf = Vector256.Load(qh);
            var high = Avx512F.InsertVector256(highHalf.ToVector512Unsafe(), highHalf, 1).AsUInt16();
            var nibble = Vector512.Create((byte)0x0F);
            var highBits = Vector512.Create((byte)0x30);
            // High-bit pairs 0 and 1 go left by 4 and 2 (word 256 on), pairs 2 and 3 right by 0 and 2 (word 288 on); word
            // shifts spill bits into the neighbouring byte, and the mask of bits 4–5 drops them.
            First = (low & nibble) | (Avx512BW.ShiftLeftLogicalVariable(high, Vector512.Load((ushort*)controls + 256)).AsByte() & highBits);
            Second = (Vector512.ShiftRightLogical(low.AsUInt16(), 4).AsByte() & nibble)
                   | (Avx512BW.ShiftRightLogicalVariable(high, Vector512.Load((ushort*)controls + 288)).AsByte() & highBits);
        }
    }

    /// <summary>
    /// The constant vectors of the 512-bit K-quant kernels, 64-byte aligned: Q4_K's scale permutes (word 0 on), Q6_K's
    /// (word 128 on) and its high-bit shifts (word 256 on); for the multi-token Q4_K tile, the scale permutes of its
    /// sub-block pairs (word 320 on) and the nibble shifts that it and the Q4_K panel packing split bytes with (word 448
    /// on); Q5_K's fifth-bit shifts (word 480 on); Q3_K's plane and high-bit shifts (word 608 on). Written as <c>Vector512.Create</c> of 256-bit halves in the loops, the JIT assembled each one on the stack
    /// with two inserts every block, which held Q6_K to 18 GMAC/s and Q4_K to 42 (one thread, in cache).
    /// </summary>
    private static readonly byte* WideKControls = BuildWideKControls();

    private static byte* BuildWideKControls()
    {
        var controls = (short*)NativeMemory.AlignedAlloc(800 * sizeof(short), 64);
        ReadOnlySpan<int> q4Low = [0, 2, 4, 6], q4High = [1, 3, 5, 7];
        for (int step = 0; step < 2; step++)
        {
            for (int w = 0; w < 32; w++)
            {
                controls[64 * step + w] = (short)(w < 16 ? q4Low[2 * step] : q4Low[2 * step + 1]);
                controls[64 * step + 32 + w] = (short)(w < 16 ? q4High[2 * step] : q4High[2 * step + 1]);
            }
        }
        for (int step = 0; step < 4; step++)
            for (int w = 0; w < 32; w++) controls[128 + 32 * step + w] = (short)(4 * step + w / 8);
        for (int w = 0; w < 32; w++)
        {
            controls[256 + w] = (short)(w < 16 ? 4 : 2);
            controls[288 + w] = (short)(w < 16 ? 0 : 2);
        }
        for (int pair = 0; pair < 4; pair++)
            for (int w = 0; w < 32; w++) controls[320 + 32 * pair + w] = (short)(w < 16 ? 2 * pair : 2 * pair + 1);
        for (int w = 0; w < 32; w++) controls[448 + w] = (short)(w < 16 ? 0 : 4);
        // Q5_K's fifth bits: step s's low nibbles take qh bit 4s (first half) and 4s + 2 (second), its high ones 4s + 1
        // and 4s + 3; step 0 shifts them left onto bit 4, step 1 right.
        for (int w = 0; w < 32; w++)
        {
            controls[480 + w] = (short)(w < 16 ? 4 : 2);
            controls[512 + w] = (short)(w < 16 ? 3 : 1);
            controls[544 + w] = (short)(w < 16 ? 0 : 2);
            controls[576 + w] = (short)(w < 16 ? 1 : 3);
        }
        // Q3_K: the 2-bit planes 0 and 1 (2 and 3) of a half block's bytes go right by 0 and 2 (4 and 6); the hmask bits
        // 4h + p of a step's planes go to bit 2: step 0 (bits 0, 1) left by 2 and 1, steps 1–3 (bits 2–7) right.
        for (int w = 0; w < 32; w++)
        {
            controls[608 + w] = (short)(w < 16 ? 0 : 2);
            controls[640 + w] = (short)(w < 16 ? 4 : 6);
            controls[672 + w] = (short)(w < 16 ? 2 : 1);
            for (int step = 1; step < 4; step++) controls[672 + 32 * step + w] = (short)(2 * step + (w < 16 ? 0 : 1) - 2);
        }
        return (byte*)controls;
    }
}
