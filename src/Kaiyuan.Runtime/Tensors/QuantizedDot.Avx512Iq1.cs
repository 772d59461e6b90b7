using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

using static Kaiyuan.Tensors.IqGridKernels;

namespace Kaiyuan.Tensors;

/// <summary>
/// IQ1_S on AVX-512 BW: two sub-blocks (eight groups, 64 weights) per 512-bit step where the 256-bit grid kernel takes
/// one. A 2,048-point grid has no in-register lookup (its 16-bit codes would fill 64 registers), so each step's eight
/// 11-bit indices are formed in int32 lanes (low bytes widened, high bits shifted out of the two sub-blocks' qh words)
/// and their points fetched by two 4-wide gathers, where the 256-bit kernel spends a scalar load and an insert per
/// group. The rest is the 256-bit kernel's arithmetic on twice the width: values 8·grid ± 1 (the ±1/8 shift folded in,
/// so never zero), their magnitudes against the activations carrying their signs, and each sub-block's odd multiplier,
/// taken with its shift sign from one vector of the block's eight qh words by a word permute per step. Lanes 0–7 of the
/// int32 sums are the first sub-block's in the 256-bit kernel's lane layout, lanes 8–15 the second's; integer sums are
/// exact, so the two halves added are its sums and the result is the same to the bit.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>An IQ1_S row against Q8_K (see the file's summary).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Iq1SWide(byte* x, byte* y, int blocks)
    {
        // The static tables before the accumulator, as in Q4_KWide.
        float* halves = HalfTable;
        long* grid = (long*)Grid1;
        short* stepControls = (short*)WideKControls + 320;
        var indexShifts = Vector256.Create(0u, 3, 6, 9, 16, 19, 22, 25);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ1_S.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.IQ1_S.Size);
            // Word j: sub-block j's qh. Bits 12–14 make the multiplier 2s + 1; bit 15 the shift sign, as bytes of ±1.
            var qh = Vector128.Load((short*)(x + BlockLayouts.IQ1_S.Qh));
            var multipliers = (Vector128.ShiftRightLogical(qh, 11) & Vector128.Create((short)0xE) | Vector128<short>.One).ToVector256Unsafe().ToVector512Unsafe();
            var shifts = (Vector128.ShiftRightArithmetic(qh, 15) | Vector128.Create((short)0x0101)).ToVector256Unsafe().ToVector512Unsafe();
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var sums = Vector512<int>.Zero;
            for (int p = 0; p < 4; p++)
            {
                var control = Vector512.Load(stepControls + 32 * p);
                var points = Iq1SPoints(grid, x, p, indexShifts);
                sums += Iq1StepSums(Eighths(points, Avx512BW.PermuteVar32x16(shifts, control).AsSByte()), q8 + 64 * p, Avx512BW.PermuteVar32x16(multipliers, control));
            }

            acc = BlockFma(halves[*(ushort*)(x + BlockLayouts.IQ1_S.D)] * *(float*)(y + BlockLayouts.Q8_K.D), sums.GetLower() + sums.GetUpper(), acc);
        }

        return GridUnit(GgmlType.IQ1_S) * HorizontalSum(acc);
    }

    /// <summary>
    /// The grid points of step <paramref name="p"/>'s eight groups (sub-blocks 2p and 2p + 1), in element order: index g
    /// is byte g of the step's qs, with bits 3l..3l + 2 of its sub-block's qh word (l = g % 4) on top.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Iq1SPoints(long* grid, byte* x, int p, Vector256<uint> indexShifts)
    {
        var low = Avx2.ConvertToVector256Int32(x + BlockLayouts.IQ1_S.Qs + 8 * p);
        // Both sub-blocks' qh words in one dword: lanes 0–3 shift the first down, lanes 4–7 the second.
        var high = Avx2.ShiftRightLogicalVariable(Vector256.Create(*(uint*)(x + BlockLayouts.IQ1_S.Qh + 4 * p)), indexShifts) & Vector256.Create(7u);
        var indices = low | Vector256.ShiftLeft(high, 8).AsInt32();
        return Iq1Points(grid, indices);
    }

    /// <summary>
    /// An IQ1_M row against Q8_K, as <see cref="Iq1SWide"/> reads IQ1_S: the step's eight high-bit nibbles are one dword
    /// of qh (bits 0–2 of nibble g: index g's top bits; bit 3: group g's shift sign, so the shifts go by group), and its
    /// four multipliers (one per 16 weights) come by a word permute from the block's sixteen 3-bit scale fields.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Iq1MWide(byte* x, byte* y, int blocks)
    {
        long* grid = (long*)Grid1;
        var indexShifts = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);
        var shiftSignShifts = Vector512.Create(3UL, 7, 11, 15, 19, 23, 27, 31);
        // Scale field f is bits 3(f % 4)..+2 of scale word f / 4.
        var fieldWords = Vector256.Create((byte)0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7);
        var fieldShifts = Vector256.Create((ushort)0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ1_M.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.IQ1_M.Size);
            var words = Avx2.Shuffle(Vector256.Create(*(ulong*)(x + BlockLayouts.IQ1_M.Scales)).AsByte(), fieldWords);
            var fields = Avx512BW.VL.ShiftRightLogicalVariable(words.AsUInt16(), fieldShifts).AsInt16() & Vector256.Create((short)7);
            var multipliers = (fields + fields + Vector256<short>.One).ToVector512Unsafe();
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var sums = Vector512<int>.Zero;
            for (int p = 0; p < 4; p++)
            {
                uint high = *(uint*)(x + BlockLayouts.IQ1_M.Qh + 4 * p);
                var low = Avx2.ConvertToVector256Int32(x + BlockLayouts.IQ1_M.Qs + 8 * p);
                var indices = low | Vector256.ShiftLeft(Avx2.ShiftRightLogicalVariable(Vector256.Create(high), indexShifts) & Vector256.Create(7u), 8).AsInt32();
                var points = Iq1Points(grid, indices);
                // Group g's shift: all bytes −1 where its sign bit is set, else 1.
                var shiftBits = Avx512F.ShiftRightLogicalVariable(Vector512.Create((ulong)high), shiftSignShifts) & Vector512<ulong>.One;
                var shifts = (Vector512<ulong>.Zero - shiftBits | Vector512.Create(0x0101010101010101UL)).AsSByte();
                sums += Iq1StepSums(Eighths(points, shifts), q8 + 64 * p, Avx512BW.PermuteVar32x16(multipliers, FieldControl(p)));
            }

            acc = BlockFma(GridScale(GgmlType.IQ1_M, x) * *(float*)(y + BlockLayouts.Q8_K.D), sums.GetLower() + sums.GetUpper(), acc);
        }

        return GridUnit(GgmlType.IQ1_M) * HorizontalSum(acc);
    }

    /// <summary>
    /// An IQ2_S row against Q8_K, as <see cref="Iq1SWide"/> reads IQ1_S: 10-bit indices (the byte and two bits of the
    /// sub-block's qh byte) gathered from the 1,024-point grid, whose magnitudes meet the activations negated where the
    /// block's sign bits are set; four multipliers per step (one per 16 weights) as <see cref="Iq1MWide"/> forms them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Iq2SWide(byte* x, byte* y, int blocks)
    {
        float* halves = HalfTable;
        long* grid = (long*)Grid2S;
        var indexShifts = Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14);
        // Scale field f is nibble f % 2 of scale byte f / 2; step p's words 8k..8k + 7 take field 4p + k.
        var fieldBytes = Vector256.Create((byte)0, 0x80, 0, 0x80, 1, 0x80, 1, 0x80, 2, 0x80, 2, 0x80, 3, 0x80, 3, 0x80, 4, 0x80, 4, 0x80, 5, 0x80, 5, 0x80, 6, 0x80, 6, 0x80, 7, 0x80, 7, 0x80);
        var fieldShifts = Vector256.Create((ushort)0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4);
        // Byte j of the sign vector takes byte j / 8 of the step's sign qword (a byte shuffle within each 128-bit lane,
        // which holds the qword twice), then bit j % 8 of it.
        var signBytes = Vector512.Create(Vector256.Create(Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), Vector128.Create((byte)2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)),
            Vector256.Create(Vector128.Create((byte)4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5), Vector128.Create((byte)6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7)));
        var signBit = Vector512.Create(0x8040201008040201UL).AsByte();
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ2_S.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.IQ2_S.Size);
            var fields = Avx512BW.VL.ShiftRightLogicalVariable(Avx2.Shuffle(Vector256.Create(*(ulong*)(x + BlockLayouts.IQ2_S.Scales)).AsByte(), fieldBytes).AsUInt16(),
                fieldShifts).AsInt16() & Vector256.Create((short)0xF);
            var multipliers = (fields + fields + Vector256<short>.One).ToVector512Unsafe();
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var sums = Vector512<int>.Zero;
            for (int p = 0; p < 4; p++)
            {
                var low = Avx2.ConvertToVector256Int32(x + BlockLayouts.IQ2_S.Qs + 8 * p);
                var high = Avx2.ShiftRightLogicalVariable(Vector256.Create((uint)*(ushort*)(x + BlockLayouts.IQ2_S.Qh + 2 * p)), indexShifts) & Vector256.Create(3u);
                var magnitudes = Iq1Points(grid, low | Vector256.ShiftLeft(high, 8).AsInt32()).AsByte();
                // The step's 64 sign bits: one qword, in every qword of the vector, each byte spread over a qword.
                var signs = Avx512BW.Shuffle(Vector512.Create(*(ulong*)(x + BlockLayouts.IQ2_S.Signs + 8 * p)).AsByte(), signBytes) & signBit;
                var activations = Vector512.Load(q8 + 64 * p);
                var signed = Vector512.ConditionalSelect(Vector512.Equals(signs, signBit).AsSByte(), -activations, activations);
                sums += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitudes, signed), Avx512BW.PermuteVar32x16(multipliers, FieldControl(p)));
            }

            acc = BlockFma(halves[*(ushort*)(x + BlockLayouts.IQ2_S.D)] * *(float*)(y + BlockLayouts.Q8_K.D), sums.GetLower() + sums.GetUpper(), acc);
        }

        return GridUnit(GgmlType.IQ2_S) * HorizontalSum(acc);
    }

    /// <summary>Step p's permute of sixteen multiplier fields: words 8k..8k + 7 take field 4p + k (one per 16 weights).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> FieldControl(int p) =>
        Vector512.Create(Vector256.Create(Vector128<short>.Zero, Vector128<short>.One), Vector256.Create(Vector128.Create((short)2), Vector128.Create((short)3)))
        + Vector512.Create((short)(4 * p));

    /// <summary>
    /// A step's 64 values (8·grid ± 1: odd, never zero) against their activations: the magnitudes against the
    /// activations carrying the values' signs, the pair sums times the multipliers of their 16-bit lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Iq1StepSums(Vector512<sbyte> values, sbyte* q8, Vector512<short> multipliers)
    {
        var activations = Vector512.Load(q8);
        var signed = Vector512.ConditionalSelect(Vector512.LessThan(values, Vector512<sbyte>.Zero), -activations, activations);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Vector512.Abs(values).AsByte(), signed), multipliers);
    }

    /// <summary>The 1-bit grid's points at eight indices, in index order, by two 4-wide gathers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Iq1Points(long* grid, Vector256<int> indices)
    {
        var first = Avx2.GatherVector256(grid, indices.GetLower(), 8);
        var second = Avx2.GatherVector256(grid, indices.GetUpper(), 8);
        // An insert: Vector512.Create of the halves went through the stack (measured).
        return Avx512F.InsertVector256(first.ToVector512Unsafe(), second, 1).AsSByte();
    }

    /// <summary><see cref="Eighths(Vector256{sbyte}, Vector256{sbyte})"/> on 64 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Eighths(Vector512<sbyte> points, Vector512<sbyte> shifts) =>
        (Vector512.ShiftLeft(points.AsInt16(), 3).AsSByte() & Vector512.Create((sbyte)-8)) + shifts;
}
