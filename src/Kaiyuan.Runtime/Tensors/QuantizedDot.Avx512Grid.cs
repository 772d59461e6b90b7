using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

using static Kaiyuan.Tensors.IqGridKernels;

namespace Kaiyuan.Tensors;

internal static unsafe partial class Avx2Dot
{
    /// <summary>True when the VBMI kernels (<see cref="Iq2XxsVbmi"/>, Q4_0 and Q5_0 one-token) can run: 512-bit byte permutes (AVX-512 VBMI) besides AVX-512 BW; Q4_0 and Q5_0 <see cref="PrepareSide"/> data then holds their pair bias.</summary>
    internal static bool HasVbmi => Avx512Vbmi.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// An IQ2_XXS row against Q8_K, decoded in registers without a scalar table load: the AVX2 kernel's grid and sign
    /// loads, each a load plus a vector insert per 8 weights, bound it by decoding (0.42× Q4_K's speed per weight byte).
    /// Once per block, the 32 groups' 16-bit point codes (2 bits per coordinate) are looked up at once, one group per
    /// 16-bit lane (word permutes over four 64-entry tables, chosen by index bits 6 and 7), the 32 sign fields completed
    /// by a 128-byte table permute and the 8 multipliers 2s+1 formed; codes and sign bytes are then gathered so that
    /// qword g holds those of group g of each of the four steps. Per 64 weights (two sub-blocks) a multishift brings
    /// coordinate j's 2 bits of its qword's code for the step to byte j, and a permute maps them to 8, 25 or 43; a second
    /// multishift brings bit j of the step's sign byte to byte j's sign bit, the mask that negates the activations.
    /// Lanes 0–7 of the int32 sums hold elements 4k..4k+3 of the first sub-block, lanes 8–15 of the second, each times
    /// its multiplier; the two halves added give the AVX2 kernel's eight lanes exactly, so the float arithmetic after
    /// them, and the result, is the same to the bit.
    /// </summary>
    // Inlined into its caller: a second call per row cost 5–10% on rows of a few blocks.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Iq2XxsVbmi(byte* x, byte* y, int blocks)
    {
        float result;
        Iq2XxsVbmi<OneRow>(x, 0, 1, y, 0, blocks, &result, 0);
        return result;
    }

    /// <summary>
    /// <see cref="Iq2XxsVbmi(byte*, byte*, int)"/> against <typeparamref name="TRows"/> activation rows (1–7)
    /// <paramref name="stride"/> bytes apart, for <paramref name="weightRows"/> weight rows <paramref name="rowBytes"/>
    /// apart (weight row r's results at <c>output[r + k * outputStride]</c>): each step decoded once for every activation
    /// row, which then takes only its sign blend and multiply-adds. Each row's sums and float operations are the
    /// one-row kernel's, so every result is the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Iq2XxsVbmi<TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, float* output, long outputStride)
        where TRows : struct, ITileRows
    {
        byte* tables = Iq2XxsVbmiTables;
        var codes0 = Vector512.Load((short*)tables); var codes1 = Vector512.Load((short*)(tables + 64));
        var codes2 = Vector512.Load((short*)(tables + 128)); var codes3 = Vector512.Load((short*)(tables + 192));
        var codes4 = Vector512.Load((short*)(tables + 256)); var codes5 = Vector512.Load((short*)(tables + 320));
        var codes6 = Vector512.Load((short*)(tables + 384)); var codes7 = Vector512.Load((short*)(tables + 448));
        var signs0 = Vector512.Load(tables + 512); var signs1 = Vector512.Load(tables + 576);
        var levels = Vector512.Load(tables + 640);
        byte* stepControls = tables + 704;

        // Word w of the index vector holds group w's index byte (byte w % 4 of sub-block w / 4) in both halves.
        var indexBytes = Vector512.Load(tables + 704 + 4 * 192);
        // Qword g of the block's codes and of its sign bytes holds groups g, 8 + g, 16 + g and 24 + g: the groups at g in
        // each of the four steps, so that a step selects its own by shifting alone.
        var codesByStep = Vector512.Load((short*)(tables + 704 + 4 * 192 + 64));
        var signsByStep = Vector512.Load(tables + 704 + 4 * 192 + 128);
        // Bytes 0–3 of qword s: sub-block s's four 7-bit sign fields (bit 7 is ignored by the table permute); byte 4:
        // bits 59–63, 2s and a sign bit, from which the multiplier 2s + 1.
        var fieldShifts = Vector512.Create(0x3B3B3B3B352E2720UL).AsByte();
        var multiplierBits = Vector512.Create(0x0000001E00000000UL).AsByte();
        var multiplierOne = Vector512.Create(0x0000000100000000UL).AsByte();

        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y0 = activations;
            // One pointer per activation row, as in Q4KWideTile; a row past the tile's count points at row 0 and is never read.
            byte* y1 = Row<TRows>(y0, stride, 1), y2 = Row<TRows>(y0, stride, 2), y3 = Row<TRows>(y0, stride, 3), y4 = Row<TRows>(y0, stride, 4),
                y5 = Row<TRows>(y0, stride, 5), y6 = Row<TRows>(y0, stride, 6);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default;
            for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ2_XXS.Size, y0 += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size,
                 y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size)
            {
                PrefetchBlock(x, BlockLayouts.IQ2_XXS.Size);
                var qs = Vector512.Load(x + BlockLayouts.IQ2_XXS.Qs);

                var indices = Avx512Vbmi.PermuteVar64x8(qs, indexBytes).AsInt16();
                // Index bits 6 and 7 spread over their lanes by shifts (a compare went through a mask register and back).
                var bit6 = Vector512.ShiftRightArithmetic(indices << 9, 15);
                var bit7 = Vector512.ShiftRightArithmetic(indices << 8, 15);
                var low = Vector512.ConditionalSelect(bit6, Avx512BW.PermuteVar32x16x2(codes2, indices, codes3), Avx512BW.PermuteVar32x16x2(codes0, indices, codes1));
                var high = Vector512.ConditionalSelect(bit6, Avx512BW.PermuteVar32x16x2(codes6, indices, codes7), Avx512BW.PermuteVar32x16x2(codes4, indices, codes5));
                var code = Vector512.ConditionalSelect(bit7, high, low);

                var fields = Avx512Vbmi.MultiShift(fieldShifts, qs.AsUInt64());
                var signBytes = Avx512Vbmi.PermuteVar64x8x2(signs0, fields, signs1);
                var multipliers = (fields & multiplierBits) | multiplierOne;
                var stepCodes = Avx512BW.PermuteVar32x16(code, codesByStep).AsUInt64();
                var stepSigns = Avx512Vbmi.PermuteVar64x8(signBytes, signsByStep).AsUInt64();

                Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default;
                // The four steps written out: as a loop the JIT kept its counter and control offsets in scalar registers.
                var rowSet = new TileRows(y0, y1, y2, y3, y4, y5, y6);
                Iq2XxsTileStep<TRows>(stepControls, stepCodes, stepSigns, multipliers, levels, 0, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq2XxsTileStep<TRows>(stepControls + 192, stepCodes, stepSigns, multipliers, levels, 1, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq2XxsTileStep<TRows>(stepControls + 384, stepCodes, stepSigns, multipliers, levels, 2, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq2XxsTileStep<TRows>(stepControls + 576, stepCodes, stepSigns, multipliers, levels, 3, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);

                CloseTileRows<TRows>(GridScale(GgmlType.IQ2_XXS, x), in rowSet, s0, s1, s2, s3, s4, s5, s6, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6);
            }

            StoreTileRows<TRows>(GridUnit(GgmlType.IQ2_XXS), a0, a1, a2, a3, a4, a5, a6, output, outputStride);
        }
    }

    /// <summary>The activation rows of a small-batch tile, one pointer each (rows past the tile's count repeat row 0).</summary>
    private readonly struct TileRows(byte* y0, byte* y1, byte* y2, byte* y3, byte* y4, byte* y5, byte* y6)
    {
        public readonly byte* Y0 = y0, Y1 = y1, Y2 = y2, Y3 = y3, Y4 = y4, Y5 = y5, Y6 = y6;
    }

    /// <summary>
    /// Step <paramref name="step"/> of <see cref="Iq2XxsVbmi{TRows}"/>: its 64 magnitudes, signs and multipliers decoded
    /// once, then each activation row's sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Iq2XxsTileStep<TRows>(byte* control, Vector512<ulong> stepCodes, Vector512<ulong> stepSigns, Vector512<byte> multipliers, Vector512<byte> levels, int step,
        in TileRows rows, ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3, ref Vector512<int> s4, ref Vector512<int> s5,
        ref Vector512<int> s6) where TRows : struct, ITileRows
    {
        // Byte j takes coordinate j's 2 bits of the step's code in its qword (bits 16·step + 2j on), and bit j of the
        // step's sign byte in its sign bit (bits 8·step + j − 7 on).
        var magnitudes = Avx512Vbmi.PermuteVar64x8(levels, Avx512Vbmi.MultiShift(Vector512.Load(control), stepCodes));
        GridRowsStep<TRows>(magnitudes, stepSigns, control, Avx512Vbmi.PermuteVar64x8(multipliers, Vector512.Load(control + 128)).AsInt16(), step, in rows,
            ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
    }

    /// <summary>
    /// The end of a VBMI grid step for <typeparamref name="TRows"/> activation rows: each row's <see cref="GridStepSums"/>,
    /// the step's sign mask formed once for all of them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GridRowsStep<TRows>(Vector512<byte> magnitudes, Vector512<ulong> stepSigns, byte* control, Vector512<short> stepMultipliers, int step,
        in TileRows rows, ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3, ref Vector512<int> s4, ref Vector512<int> s5,
        ref Vector512<int> s6) where TRows : struct, ITileRows
    {
        int q = BlockLayouts.Q8_K.Qs + 64 * step;
        if (TRows.Count == 1)
        {
            // One row: the sign compare straight into the select, which the JIT turns into a negation under a mask
            // register (shared by several rows, the compare is kept as a vector: 10% slower for one).
            s0 += GridStepSums(magnitudes, stepSigns, control, (sbyte*)(rows.Y0 + q), stepMultipliers);
            return;
        }

        var negative = Vector512.LessThan(Avx512Vbmi.MultiShift(Vector512.Load(control + 64), stepSigns).AsSByte(), Vector512<sbyte>.Zero);
        s0 += GatherGridSums(magnitudes, negative, (sbyte*)(rows.Y0 + q), stepMultipliers);
        if (TRows.Count > 1) s1 += GatherGridSums(magnitudes, negative, (sbyte*)(rows.Y1 + q), stepMultipliers);
        if (TRows.Count > 2) s2 += GatherGridSums(magnitudes, negative, (sbyte*)(rows.Y2 + q), stepMultipliers);
        if (TRows.Count > 3) s3 += GatherGridSums(magnitudes, negative, (sbyte*)(rows.Y3 + q), stepMultipliers);
        if (TRows.Count > 4) s4 += GatherGridSums(magnitudes, negative, (sbyte*)(rows.Y4 + q), stepMultipliers);
        if (TRows.Count > 5) s5 += GatherGridSums(magnitudes, negative, (sbyte*)(rows.Y5 + q), stepMultipliers);
        if (TRows.Count > 6) s6 += GatherGridSums(magnitudes, negative, (sbyte*)(rows.Y6 + q), stepMultipliers);
    }

    /// <summary>Closes a block for <typeparamref name="TRows"/> rows: each row's folded sums times dx·dy into its accumulator, as the one-row kernels do.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CloseTileRows<TRows>(float dx, in TileRows rows, Vector512<int> s0, Vector512<int> s1, Vector512<int> s2, Vector512<int> s3, Vector512<int> s4,
        Vector512<int> s5, Vector512<int> s6, ref Vector256<float> a0, ref Vector256<float> a1, ref Vector256<float> a2, ref Vector256<float> a3, ref Vector256<float> a4,
        ref Vector256<float> a5, ref Vector256<float> a6) where TRows : struct, ITileRows
    {
        a0 = BlockFma(dx * *(float*)(rows.Y0 + BlockLayouts.Q8_K.D), s0.GetLower() + s0.GetUpper(), a0);
        if (TRows.Count > 1) a1 = BlockFma(dx * *(float*)(rows.Y1 + BlockLayouts.Q8_K.D), s1.GetLower() + s1.GetUpper(), a1);
        if (TRows.Count > 2) a2 = BlockFma(dx * *(float*)(rows.Y2 + BlockLayouts.Q8_K.D), s2.GetLower() + s2.GetUpper(), a2);
        if (TRows.Count > 3) a3 = BlockFma(dx * *(float*)(rows.Y3 + BlockLayouts.Q8_K.D), s3.GetLower() + s3.GetUpper(), a3);
        if (TRows.Count > 4) a4 = BlockFma(dx * *(float*)(rows.Y4 + BlockLayouts.Q8_K.D), s4.GetLower() + s4.GetUpper(), a4);
        if (TRows.Count > 5) a5 = BlockFma(dx * *(float*)(rows.Y5 + BlockLayouts.Q8_K.D), s5.GetLower() + s5.GetUpper(), a5);
        if (TRows.Count > 6) a6 = BlockFma(dx * *(float*)(rows.Y6 + BlockLayouts.Q8_K.D), s6.GetLower() + s6.GetUpper(), a6);
    }

    /// <summary>Each row's result: <paramref name="unit"/> times its accumulator's sum, at <c>output[k * outputStride]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTileRows<TRows>(float unit, Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3, Vector256<float> a4,
        Vector256<float> a5, Vector256<float> a6, float* output, long outputStride) where TRows : struct, ITileRows
    {
        output[0] = unit * HorizontalSum(a0);
        if (TRows.Count > 1) output[outputStride] = unit * HorizontalSum(a1);
        if (TRows.Count > 2) output[2 * outputStride] = unit * HorizontalSum(a2);
        if (TRows.Count > 3) output[3 * outputStride] = unit * HorizontalSum(a3);
        if (TRows.Count > 4) output[4 * outputStride] = unit * HorizontalSum(a4);
        if (TRows.Count > 5) output[5 * outputStride] = unit * HorizontalSum(a5);
        if (TRows.Count > 6) output[6 * outputStride] = unit * HorizontalSum(a6);
    }

    /// <summary>
    /// The end of every VBMI grid step: the activations negated where bit j of the step's sign byte (brought to byte j's
    /// sign bit by the step's multishift at <paramref name="control"/> + 64) is set, then the pair sums of the magnitudes
    /// with them and the multiply-add by the multipliers of their 16-bit lanes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> GridStepSums(Vector512<byte> magnitudes, Vector512<ulong> stepSigns, byte* control, sbyte* q8, Vector512<short> stepMultipliers)
    {
        var negative = Vector512.LessThan(Avx512Vbmi.MultiShift(Vector512.Load(control + 64), stepSigns).AsSByte(), Vector512<sbyte>.Zero);
        var activations = Vector512.Load(q8);
        activations = Vector512.ConditionalSelect(negative.AsSByte(), Vector512<sbyte>.Zero - activations, activations);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitudes, activations), stepMultipliers);
    }

    /// <summary>
    /// What <see cref="Iq2XxsVbmi"/> permutes over and with, 64-byte aligned: the 256 IQ2_XXS point codes as 16-bit
    /// words (<see cref="IqGridPoints.Iq2Xxs"/>), the 128 completed sign bytes (<see cref="IqGrids.EvenSigns"/>), the
    /// three magnitudes repeated over 64 bytes (a permute reads 6 index bits), per step of 64 weights the multishift controls
    /// that select its codes' coordinates and its sign bits and the permute that places its multipliers in the 16-bit
    /// lanes, then the controls that spread the 32 index bytes into 16-bit lanes and gather the codes and sign bytes
    /// by step.
    /// </summary>
    private static readonly byte* Iq2XxsVbmiTables = BuildIq2XxsVbmiTables();

    private static byte* BuildIq2XxsVbmiTables()
    {
        var tables = (byte*)NativeMemory.AlignedAlloc(704 + 4 * 192 + 192, 64);
        ReadOnlySpan<ushort> points = IqGridPoints.Iq2Xxs;
        for (int i = 0; i < 256; i++) ((ushort*)tables)[i] = points[i];
        for (int i = 0; i < 128; i++) tables[512 + i] = IqGrids.EvenSigns[i];
        for (int i = 0; i < 64; i++) tables[640 + i] = (i & 3) < 3 ? IqGrids.Iq2Levels[i & 3] : (byte)0;
        for (int step = 0; step < 4; step++)
        {
            byte* control = tables + 704 + 192 * step;
            for (int g = 0; g < 8; g++)
            {
                for (int j = 0; j < 8; j++)
                {
                    control[8 * g + j] = (byte)(16 * step + 2 * j);
                    control[64 + 8 * g + j] = (byte)((8 * step + j - 7) & 63);
                }
            }

            // 16-bit lane w, the pair sum of the step's elements 2w and 2w + 1, is sub-block 2·step + w / 16's; byte 5 is 0.
            for (int w = 0; w < 32; w++)
            {
                control[128 + 2 * w] = (byte)(8 * (2 * step + w / 16) + 4);
                control[128 + 2 * w + 1] = (byte)(8 * (2 * step + w / 16) + 5);
            }
        }

        byte* spread = tables + 704 + 4 * 192;
        for (int w = 0; w < 32; w++) spread[2 * w] = spread[2 * w + 1] = (byte)(8 * (w / 4) + w % 4);
        for (int g = 0; g < 8; g++)
        {
            for (int step = 0; step < 4; step++)
            {
                int group = 8 * step + g;
                ((short*)(spread + 64))[4 * g + step] = (short)group;
                spread[128 + 8 * g + step] = (byte)(8 * (group / 4) + group % 4);
                spread[128 + 8 * g + 4 + step] = 0;
            }
        }
        return tables;
    }

    /// <summary>
    /// An IQ3_XXS row against Q8_K the way <see cref="Iq2XxsVbmi"/> reads IQ2_XXS: its 64 grid indices per block (one per
    /// 4 weights) are zero-extended to 16-bit lanes and looked up 32 at a time in the 256 point codes (3 bits per
    /// coordinate), then gathered so that qword g of each half-block's vector holds the two codes of group g of each of
    /// its two steps; a multishift brings coordinate j's 3 bits to byte j and a permute maps them to 4, 12, …, 62. The
    /// sign fields and the 4-bit scales sit in a uint32 per sub-block as IQ2_XXS's do (moved to the upper half of a qword,
    /// where IQ2_XXS has them), so signs and multipliers are formed with IQ2_XXS's tables and controls. The int32 lanes
    /// fold back to the AVX2 kernel's eight, so the result is the same to the bit.
    /// </summary>
    // Inlined into its caller: a second call per row cost 5–10% on rows of a few blocks.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Iq3XxsVbmi(byte* x, byte* y, int blocks)
    {
        float result;
        Iq3XxsVbmi<OneRow>(x, 0, 1, y, 0, blocks, &result, 0);
        return result;
    }

    /// <summary><see cref="Iq3XxsVbmi(byte*, byte*, int)"/> against 1–7 activation rows, as <see cref="Iq2XxsVbmi{TRows}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Iq3XxsVbmi<TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, float* output, long outputStride)
        where TRows : struct, ITileRows
    {
        byte* tables = Iq3XxsVbmiTables, shared = Iq2XxsVbmiTables;
        var codes0 = Vector512.Load((short*)tables); var codes1 = Vector512.Load((short*)(tables + 64));
        var codes2 = Vector512.Load((short*)(tables + 128)); var codes3 = Vector512.Load((short*)(tables + 192));
        var codes4 = Vector512.Load((short*)(tables + 256)); var codes5 = Vector512.Load((short*)(tables + 320));
        var codes6 = Vector512.Load((short*)(tables + 384)); var codes7 = Vector512.Load((short*)(tables + 448));
        var levels = Vector512.Load(tables + 512);
        var codeShifts0 = Vector512.Load(tables + 576);
        var codeShifts1 = Vector512.Load(tables + 640);
        var codesByStep = Vector512.Load((short*)(tables + 704));
        var signs0 = Vector512.Load(shared + 512); var signs1 = Vector512.Load(shared + 576);
        byte* stepControls = shared + 704;
        var signsByStep = Vector512.Load(shared + 704 + 4 * 192 + 128);
        var fieldShifts = Vector512.Create(0x3B3B3B3B352E2720UL).AsByte();
        var multiplierBits = Vector512.Create(0x0000001E00000000UL).AsByte();
        var multiplierOne = Vector512.Create(0x0000000100000000UL).AsByte();

        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y0 = activations;
            // One pointer per activation row, as in Q4KWideTile; a row past the tile's count points at row 0 and is never read.
            byte* y1 = Row<TRows>(y0, stride, 1), y2 = Row<TRows>(y0, stride, 2), y3 = Row<TRows>(y0, stride, 3), y4 = Row<TRows>(y0, stride, 4),
                y5 = Row<TRows>(y0, stride, 5), y6 = Row<TRows>(y0, stride, 6);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default;
            for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ3_XXS.Size, y0 += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size,
                 y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size)
            {
                PrefetchBlock(x, BlockLayouts.IQ3_XXS.Size);
                var first = Iq3XxsCodes(Vector256.Load(x + BlockLayouts.IQ3_XXS.Qs), codes0, codes1, codes2, codes3, codes4, codes5, codes6, codes7);
                var second = Iq3XxsCodes(Vector256.Load(x + BlockLayouts.IQ3_XXS.Qs + 32), codes0, codes1, codes2, codes3, codes4, codes5, codes6, codes7);
                var stepCodes01 = Avx512BW.PermuteVar32x16(first, codesByStep).AsUInt64();
                var stepCodes23 = Avx512BW.PermuteVar32x16(second, codesByStep).AsUInt64();

                // Sub-block s's uint32 in the upper half of qword s, where IQ2_XXS's field shifts expect it.
                var packed = Avx512F.ConvertToVector512UInt64(Vector256.Load((uint*)(x + BlockLayouts.IQ3_XXS.ScalesAndSigns))) << 32;
                var fields = Avx512Vbmi.MultiShift(fieldShifts, packed);
                var signBytes = Avx512Vbmi.PermuteVar64x8x2(signs0, fields, signs1);
                var multipliers = (fields & multiplierBits) | multiplierOne;
                var stepSigns = Avx512Vbmi.PermuteVar64x8(signBytes, signsByStep).AsUInt64();

                Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default;
                var rowSet = new TileRows(y0, y1, y2, y3, y4, y5, y6);
                Iq3XxsStep<TRows>(stepCodes01, codeShifts0, stepSigns, multipliers, stepControls, levels, 0, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq3XxsStep<TRows>(stepCodes01, codeShifts1, stepSigns, multipliers, stepControls + 192, levels, 1, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq3XxsStep<TRows>(stepCodes23, codeShifts0, stepSigns, multipliers, stepControls + 384, levels, 2, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq3XxsStep<TRows>(stepCodes23, codeShifts1, stepSigns, multipliers, stepControls + 576, levels, 3, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);

                CloseTileRows<TRows>(GridScale(GgmlType.IQ3_XXS, x), in rowSet, s0, s1, s2, s3, s4, s5, s6, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6);
            }

            StoreTileRows<TRows>(GridUnit(GgmlType.IQ3_XXS), a0, a1, a2, a3, a4, a5, a6, output, outputStride);
        }
    }

    /// <summary>32 grid indices (four sub-blocks' worth) looked up as 16-bit point codes, one per lane (word permutes over four 64-entry tables chosen by index bits 6 and 7).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Iq3XxsCodes(Vector256<byte> indexBytes, Vector512<short> codes0, Vector512<short> codes1, Vector512<short> codes2, Vector512<short> codes3,
        Vector512<short> codes4, Vector512<short> codes5, Vector512<short> codes6, Vector512<short> codes7)
    {
        var indices = Avx512BW.ConvertToVector512Int16(indexBytes);
        var bit6 = Vector512.ShiftRightArithmetic(indices << 9, 15);
        var bit7 = Vector512.ShiftRightArithmetic(indices << 8, 15);
        var low = Vector512.ConditionalSelect(bit6, Avx512BW.PermuteVar32x16x2(codes2, indices, codes3), Avx512BW.PermuteVar32x16x2(codes0, indices, codes1));
        var high = Vector512.ConditionalSelect(bit6, Avx512BW.PermuteVar32x16x2(codes6, indices, codes7), Avx512BW.PermuteVar32x16x2(codes4, indices, codes5));
        return Vector512.ConditionalSelect(bit7, high, low);
    }

    /// <summary>One step of <see cref="Iq3XxsVbmi"/>: 64 weights from their codes (<paramref name="codeShifts"/> picks the step's two of each qword's four), signs and multipliers as in <see cref="Iq2XxsTileStep{TRows}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Iq3XxsStep<TRows>(Vector512<ulong> stepCodes, Vector512<byte> codeShifts, Vector512<ulong> stepSigns, Vector512<byte> multipliers, byte* control,
        Vector512<byte> levels, int step, in TileRows rows, ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3, ref Vector512<int> s4,
        ref Vector512<int> s5, ref Vector512<int> s6) where TRows : struct, ITileRows
    {
        var magnitudes = Avx512Vbmi.PermuteVar64x8(levels, Avx512Vbmi.MultiShift(codeShifts, stepCodes));
        GridRowsStep<TRows>(magnitudes, stepSigns, control, Avx512Vbmi.PermuteVar64x8(multipliers, Vector512.Load(control + 128)).AsInt16(), step, in rows,
            ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
    }

    /// <summary>
    /// What <see cref="Iq3XxsVbmi"/> permutes over and with, 64-byte aligned: the 256 point codes as 16-bit words
    /// (<see cref="IqGridPoints.Iq3Xxs"/>), the eight magnitudes repeated over 64 bytes, the multishift controls of the
    /// first and second step of a half-block (byte j of a qword: coordinate j % 4 of the group's code j / 4), and the
    /// word permute that gathers, in qword g, the codes of group g of both steps.
    /// </summary>
    private static readonly byte* Iq3XxsVbmiTables = BuildIq3XxsVbmiTables();

    private static byte* BuildIq3XxsVbmiTables()
    {
        var tables = (byte*)NativeMemory.AlignedAlloc(768, 64);
        ReadOnlySpan<ushort> points = IqGridPoints.Iq3Xxs;
        for (int i = 0; i < 256; i++) ((ushort*)tables)[i] = points[i];
        for (int i = 0; i < 64; i++) tables[512 + i] = IqGrids.Iq3XxsLevels[i & 7];
        for (int step = 0; step < 2; step++)
            for (int g = 0; g < 8; g++)
                for (int j = 0; j < 8; j++)
                    tables[576 + 64 * step + 8 * g + j] = (byte)(32 * step + 16 * (j / 4) + 3 * (j % 4));
        // Qword g: the step's group g is sub-block 2·step + g / 4's group g % 4, whose codes are indices 8·sub + 2·(g % 4) and the next.
        for (int g = 0; g < 8; g++)
            for (int step = 0; step < 2; step++)
            {
                int index = 8 * (2 * step + g / 4) + 2 * (g % 4);
                ((short*)(tables + 704))[4 * g + 2 * step] = (short)index;
                ((short*)(tables + 704))[4 * g + 2 * step + 1] = (short)(index + 1);
            }
        return tables;
    }

    /// <summary>
    /// An IQ2_XS row against Q8_K the way <see cref="Iq2XxsVbmi"/> reads IQ2_XXS: each group's 16-bit word holds its
    /// 9-bit grid index and 7-bit sign field, so the 32 codes come from word permutes over eight 64-entry tables chosen
    /// by index bits 6–8, and the sign bytes from the fields shifted down; coordinates, signs and the step layout are
    /// then IQ2_XXS's. Each 16 weights' 4-bit scale becomes the multiplier 2s + 1 of its 16-bit lanes. The int32 lanes
    /// fold back to the AVX2 kernel's eight, so the result is the same to the bit.
    /// </summary>
    // Inlined into its caller: a second call per row cost 5–10% on rows of a few blocks.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Iq2XsVbmi(byte* x, byte* y, int blocks)
    {
        float result;
        Iq2XsVbmi<OneRow>(x, 0, 1, y, 0, blocks, &result, 0);
        return result;
    }

    /// <summary><see cref="Iq2XsVbmi(byte*, byte*, int)"/> against 1–7 activation rows, as <see cref="Iq2XxsVbmi{TRows}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Iq2XsVbmi<TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, float* output, long outputStride)
        where TRows : struct, ITileRows
    {
        byte* tables = Iq2XsVbmiTables, shared = Iq2XxsVbmiTables;
        var signs0 = Vector512.Load(shared + 512); var signs1 = Vector512.Load(shared + 576);
        var levels = Vector512.Load(shared + 640);
        byte* stepControls = shared + 704;
        var codesByStep = Vector512.Load((short*)(shared + 704 + 4 * 192 + 64));
        var signsByStep = Vector512.Load(tables + 1024);
        var nibble = Vector128.Create((byte)0x0F);

        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y0 = activations;
            // One pointer per activation row, as in Q4KWideTile; a row past the tile's count points at row 0 and is never read.
            byte* y1 = Row<TRows>(y0, stride, 1), y2 = Row<TRows>(y0, stride, 2), y3 = Row<TRows>(y0, stride, 3), y4 = Row<TRows>(y0, stride, 4),
                y5 = Row<TRows>(y0, stride, 5), y6 = Row<TRows>(y0, stride, 6);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default;
            for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ2_XS.Size, y0 += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size,
                 y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size)
            {
                PrefetchBlock(x, BlockLayouts.IQ2_XS.Size);
                var words = Vector512.Load((short*)(x + BlockLayouts.IQ2_XS.Qs));
                var bit6 = Vector512.ShiftRightArithmetic(words << 9, 15);
                var bit7 = Vector512.ShiftRightArithmetic(words << 8, 15);
                var bit8 = Vector512.ShiftRightArithmetic(words << 7, 15);
                var code = Vector512.ConditionalSelect(bit8, Iq2XsQuarter(tables + 512, words, bit6, bit7), Iq2XsQuarter(tables, words, bit6, bit7));
                var stepCodes = Avx512BW.PermuteVar32x16(code, codesByStep).AsUInt64();

                // Byte 2w: group w's sign byte; qword g of the step vector gathers group g's of each step.
                var signBytes = Avx512Vbmi.PermuteVar64x8x2(signs0, Vector512.ShiftRightLogical(words.AsUInt16(), 9).AsByte(), signs1);
                var stepSigns = Avx512Vbmi.PermuteVar64x8(signBytes, signsByStep).AsUInt64();

                // Multiplier words 2s + 1, one per 16 weights: the scale bytes' low and high nibbles interleaved.
                var scales = Vector128.CreateScalar(*(ulong*)(x + BlockLayouts.IQ2_XS.Scales)).AsByte();
                var halves = Sse2.UnpackLow(scales & nibble, Vector128.ShiftRightLogical(scales.AsUInt16(), 4).AsByte() & nibble);
                var multipliers = Avx2.ConvertToVector256Int16(halves).ToVector512Unsafe();
                multipliers = multipliers + multipliers + Vector512.Create((short)1);

                Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default;
                var rowSet = new TileRows(y0, y1, y2, y3, y4, y5, y6);
                Iq2XsStep<TRows>(stepCodes, stepSigns, multipliers, stepControls, tables + 1088, levels, 0, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq2XsStep<TRows>(stepCodes, stepSigns, multipliers, stepControls + 192, tables + 1152, levels, 1, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq2XsStep<TRows>(stepCodes, stepSigns, multipliers, stepControls + 384, tables + 1216, levels, 2, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq2XsStep<TRows>(stepCodes, stepSigns, multipliers, stepControls + 576, tables + 1280, levels, 3, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);

                CloseTileRows<TRows>(GridScale(GgmlType.IQ2_XS, x), in rowSet, s0, s1, s2, s3, s4, s5, s6, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6);
            }

            StoreTileRows<TRows>(GridUnit(GgmlType.IQ2_XS), a0, a1, a2, a3, a4, a5, a6, output, outputStride);
        }
    }

    /// <summary>The codes of 256 of IQ2_XS's 512 grid points (four 64-entry tables from <paramref name="tables"/>) for each lane's index, chosen by its bits 6 and 7.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Iq2XsQuarter(byte* tables, Vector512<short> indices, Vector512<short> bit6, Vector512<short> bit7)
    {
        var low = Vector512.ConditionalSelect(bit6,
            Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)(tables + 128)), indices, Vector512.Load((short*)(tables + 192))),
            Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)tables), indices, Vector512.Load((short*)(tables + 64))));
        var high = Vector512.ConditionalSelect(bit6,
            Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)(tables + 384)), indices, Vector512.Load((short*)(tables + 448))),
            Avx512BW.PermuteVar32x16x2(Vector512.Load((short*)(tables + 256)), indices, Vector512.Load((short*)(tables + 320))));
        return Vector512.ConditionalSelect(bit7, high, low);
    }

    /// <summary>One step of <see cref="Iq2XsVbmi"/>: <see cref="Iq2XxsTileStep{TRows}"/>'s coordinates and signs, the multipliers placed by the step's word permute.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Iq2XsStep<TRows>(Vector512<ulong> stepCodes, Vector512<ulong> stepSigns, Vector512<short> multipliers, byte* control, byte* multiplierControl,
        Vector512<byte> levels, int step, in TileRows rows, ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3, ref Vector512<int> s4,
        ref Vector512<int> s5, ref Vector512<int> s6) where TRows : struct, ITileRows
    {
        var magnitudes = Avx512Vbmi.PermuteVar64x8(levels, Avx512Vbmi.MultiShift(Vector512.Load(control), stepCodes));
        GridRowsStep<TRows>(magnitudes, stepSigns, control, Avx512BW.PermuteVar32x16(multipliers, Vector512.Load((short*)multiplierControl)), step, in rows,
            ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
    }

    /// <summary>
    /// What <see cref="Iq2XsVbmi"/> permutes over, 64-byte aligned: the 512 point codes as 16-bit words
    /// (<see cref="IqGridPoints.Iq2Xs"/>), the byte permute that gathers in qword g the sign bytes of group g of each
    /// step (from byte 2w, group w's), and per step the word permute that gives 16-bit lane w the multiplier of the
    /// step's 16 weights it falls in.
    /// </summary>
    private static readonly byte* Iq2XsVbmiTables = BuildIq2XsVbmiTables();

    private static byte* BuildIq2XsVbmiTables()
    {
        var tables = (byte*)NativeMemory.AlignedAlloc(1024 + 64 + 4 * 64, 64);
        ReadOnlySpan<ushort> points = IqGridPoints.Iq2Xs;
        for (int i = 0; i < 512; i++) ((ushort*)tables)[i] = points[i];
        for (int g = 0; g < 8; g++)
            for (int step = 0; step < 8; step++)
                tables[1024 + 8 * g + step] = step < 4 ? (byte)(2 * (8 * step + g)) : (byte)0;
        for (int step = 0; step < 4; step++)
            for (int w = 0; w < 32; w++)
                ((short*)(tables + 1088 + 64 * step))[w] = (short)(4 * step + w / 8);
        return tables;
    }

    /// <summary>
    /// An IQ3_S row against Q8_K on <see cref="Iq3XxsVbmi"/>'s plan with IQ3_S's parts: each 4-weight index has a ninth
    /// bit (bit i of the block's eight high-bit bytes read as one 64-bit word, placed by a multishift), so the 512
    /// point codes come from <see cref="Iq2XsVbmi"/>'s eight-table lookup; the sign bytes are plain, one per 8
    /// weights; one 4-bit scale per sub-block gives its multiplier. The int32 lanes fold back to the AVX2 kernel's
    /// eight, so the result is the same to the bit.
    /// </summary>
    // Inlined into its caller: a second call per row cost 5–10% on rows of a few blocks.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Iq3SVbmi(byte* x, byte* y, int blocks)
    {
        float result;
        Iq3SVbmi<OneRow>(x, 0, 1, y, 0, blocks, &result, 0);
        return result;
    }

    /// <summary><see cref="Iq3SVbmi(byte*, byte*, int)"/> against 1–7 activation rows, as <see cref="Iq2XxsVbmi{TRows}"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Iq3SVbmi<TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, float* output, long outputStride)
        where TRows : struct, ITileRows
    {
        byte* tables = Iq3SVbmiTables, xxs = Iq3XxsVbmiTables, shared = Iq2XxsVbmiTables;
        var levels = Vector512.Load(tables + 1024);
        var codeShifts0 = Vector512.Load(xxs + 576);
        var codeShifts1 = Vector512.Load(xxs + 640);
        var codesByStep = Vector512.Load((short*)(xxs + 704));
        var highBits0 = Vector512.Load(tables + 1088);
        var highBits1 = Vector512.Load(tables + 1152);
        var signsByStep = Vector512.Load(tables + 1216);
        byte* stepControls = shared + 704;
        var nibble = Vector128.Create((byte)0x0F);

        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y0 = activations;
            // One pointer per activation row, as in Q4KWideTile; a row past the tile's count points at row 0 and is never read.
            byte* y1 = Row<TRows>(y0, stride, 1), y2 = Row<TRows>(y0, stride, 2), y3 = Row<TRows>(y0, stride, 3), y4 = Row<TRows>(y0, stride, 4),
                y5 = Row<TRows>(y0, stride, 5), y6 = Row<TRows>(y0, stride, 6);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default;
            for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ3_S.Size, y0 += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size,
                 y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size)
            {
                PrefetchBlock(x, BlockLayouts.IQ3_S.Size);
                var high = Vector512.Create(*(ulong*)(x + BlockLayouts.IQ3_S.Qh));
                var first = Iq3SCodes(tables, Vector256.Load(x + BlockLayouts.IQ3_S.Qs), highBits0, high);
                var second = Iq3SCodes(tables, Vector256.Load(x + BlockLayouts.IQ3_S.Qs + 32), highBits1, high);
                var stepCodes01 = Avx512BW.PermuteVar32x16(first, codesByStep).AsUInt64();
                var stepCodes23 = Avx512BW.PermuteVar32x16(second, codesByStep).AsUInt64();
                var stepSigns = Avx512Vbmi.PermuteVar64x8(Vector256.Load(x + BlockLayouts.IQ3_S.Signs).ToVector512Unsafe(), signsByStep).AsUInt64();

                // Multiplier words 2s + 1, one per sub-block: the four scale bytes' low and high nibbles interleaved.
                var scales = Vector128.CreateScalar(*(uint*)(x + BlockLayouts.IQ3_S.Scales)).AsByte();
                var subScales = Sse2.UnpackLow(scales & nibble, Vector128.ShiftRightLogical(scales.AsUInt16(), 4).AsByte() & nibble);
                var multipliers = Avx2.ConvertToVector256Int16(subScales).ToVector512Unsafe();
                multipliers = multipliers + multipliers + Vector512.Create((short)1);

                Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default;
                var rowSet = new TileRows(y0, y1, y2, y3, y4, y5, y6);
                Iq3SStep<TRows>(stepCodes01, codeShifts0, stepSigns, multipliers, stepControls, tables + 1280, levels, 0, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq3SStep<TRows>(stepCodes01, codeShifts1, stepSigns, multipliers, stepControls + 192, tables + 1344, levels, 1, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq3SStep<TRows>(stepCodes23, codeShifts0, stepSigns, multipliers, stepControls + 384, tables + 1408, levels, 2, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
                Iq3SStep<TRows>(stepCodes23, codeShifts1, stepSigns, multipliers, stepControls + 576, tables + 1472, levels, 3, in rowSet, ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);

                CloseTileRows<TRows>(GridScale(GgmlType.IQ3_S, x), in rowSet, s0, s1, s2, s3, s4, s5, s6, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6);
            }

            StoreTileRows<TRows>(GridUnit(GgmlType.IQ3_S), a0, a1, a2, a3, a4, a5, a6, output, outputStride);
        }
    }

    /// <summary>32 of a block's 9-bit indices (low bytes from <paramref name="lowBytes"/>, ninth bits picked from <paramref name="high"/> by <paramref name="highBits"/>) looked up as point codes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> Iq3SCodes(byte* tables, Vector256<byte> lowBytes, Vector512<byte> highBits, Vector512<ulong> high)
    {
        var ninth = (Avx512Vbmi.MultiShift(highBits, high).AsInt16() & Vector512.Create((short)1)) << 8;
        var indices = Avx512BW.ConvertToVector512Int16(lowBytes) | ninth;
        var bit6 = Vector512.ShiftRightArithmetic(indices << 9, 15);
        var bit7 = Vector512.ShiftRightArithmetic(indices << 8, 15);
        var bit8 = Vector512.ShiftRightArithmetic(indices << 7, 15);
        return Vector512.ConditionalSelect(bit8, Iq2XsQuarter(tables + 512, indices, bit6, bit7), Iq2XsQuarter(tables, indices, bit6, bit7));
    }

    /// <summary>One step of <see cref="Iq3SVbmi"/>: <see cref="Iq3XxsStep{TRows}"/> with the multipliers placed by the step's word permute.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Iq3SStep<TRows>(Vector512<ulong> stepCodes, Vector512<byte> codeShifts, Vector512<ulong> stepSigns, Vector512<short> multipliers, byte* control,
        byte* multiplierControl, Vector512<byte> levels, int step, in TileRows rows, ref Vector512<int> s0, ref Vector512<int> s1, ref Vector512<int> s2, ref Vector512<int> s3,
        ref Vector512<int> s4, ref Vector512<int> s5, ref Vector512<int> s6) where TRows : struct, ITileRows
    {
        var magnitudes = Avx512Vbmi.PermuteVar64x8(levels, Avx512Vbmi.MultiShift(codeShifts, stepCodes));
        GridRowsStep<TRows>(magnitudes, stepSigns, control, Avx512BW.PermuteVar32x16(multipliers, Vector512.Load((short*)multiplierControl)), step, in rows,
            ref s0, ref s1, ref s2, ref s3, ref s4, ref s5, ref s6);
    }

    /// <summary>
    /// What <see cref="Iq3SVbmi"/> permutes over, 64-byte aligned: the 512 point codes as 16-bit words
    /// (<see cref="IqGridPoints.Iq3S"/>), the eight magnitudes 1, 3, …, 15 repeated, the multishift controls that bring
    /// index i's ninth bit (bit i of the high-bit word) to its lane for each half-block, the byte permute that gathers in
    /// qword g the sign bytes of group g of each step, and per step the word permute of the sub-block multipliers.
    /// </summary>
    private static readonly byte* Iq3SVbmiTables = BuildIq3SVbmiTables();

    private static byte* BuildIq3SVbmiTables()
    {
        var tables = (byte*)NativeMemory.AlignedAlloc(1536, 64);
        ReadOnlySpan<ushort> points = IqGridPoints.Iq3S;
        for (int i = 0; i < 512; i++) ((ushort*)tables)[i] = points[i];
        for (int i = 0; i < 64; i++) tables[1024 + i] = IqGrids.Iq3SLevels[i & 7];
        for (int half = 0; half < 2; half++)
            for (int w = 0; w < 32; w++)
            {
                tables[1088 + 64 * half + 2 * w] = (byte)(32 * half + w);
                tables[1088 + 64 * half + 2 * w + 1] = 0;
            }
        for (int g = 0; g < 8; g++)
            for (int step = 0; step < 8; step++)
                tables[1216 + 8 * g + step] = step < 4 ? (byte)(8 * step + g) : (byte)0;
        for (int step = 0; step < 4; step++)
            for (int w = 0; w < 32; w++)
                ((short*)(tables + 1280 + 64 * step))[w] = (short)(2 * step + w / 16);
        return tables;
    }
}
