using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

using static Kaiyuan.Tensors.IqGridKernels;

namespace Kaiyuan.Tensors;

internal static unsafe partial class Avx2Dot
{
    /// <summary>True when <see cref="Iq2XxsVbmi"/> can run: 512-bit byte permutes (AVX-512 VBMI) besides AVX-512 BW.</summary>
    internal static bool HasVbmi => Avx512Vbmi.IsSupported && Avx512BW.IsSupported;

    /// <summary>
    /// An IQ2_XXS row against Q8_K, decoded in registers without a scalar table load: the AVX2 kernel's grid and sign
    /// loads, each a load plus a vector insert per 8 weights, bound it by decoding (0.42× Q4_K's speed per weight byte).
    /// Once per block, the 32 groups' 16-bit point codes (2 bits per coordinate) are looked up at once, one group per
    /// 16-bit lane (word permutes over four 64-entry tables, chosen by index bits 6 and 7), the 32 sign fields completed
    /// by a 128-byte table permute and the 8 multipliers 2s+1 formed. Then per 64 weights (two sub-blocks) permutes
    /// only place them: each qword lane gets its group's code, a multishift brings coordinate j's 2 bits to byte j and a
    /// permute maps them to 8, 25 or 43; each byte gets its group's sign byte, tested against the lane's bit into a mask
    /// that negates the activations. Lanes 0–7 of the int32 sums hold elements 4k..4k+3 of the first sub-block, lanes
    /// 8–15 of the second, each times its multiplier; the two halves added give the AVX2 kernel's eight lanes exactly,
    /// so the float arithmetic after them, and the result, is the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Iq2XxsVbmi(byte* x, byte* y, int blocks)
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
        // Bytes 0–3 of qword s: sub-block s's four 7-bit sign fields (bit 7 is ignored by the table permute); byte 4:
        // bits 59–63, 2s and a sign bit, from which the multiplier 2s + 1.
        var fieldShifts = Vector512.Create(0x3B3B3B3B352E2720UL).AsByte();
        var multiplierBits = Vector512.Create(0x0000001E00000000UL).AsByte();
        var multiplierOne = Vector512.Create(0x0000000100000000UL).AsByte();
        // Byte j of a qword holding a group's code (four times) starts at bit 2j: coordinate j's 2 bits at its bottom.
        var coordinateShifts = Vector512.Create(0x0E0C0A0806040200UL).AsByte();
        var laneBits = Vector512.Create(0x8040201008040201UL).AsByte();

        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ2_XXS.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.IQ2_XXS.Size);
            var qs = Vector512.Load(x + BlockLayouts.IQ2_XXS.Qs);

            var indices = Avx512Vbmi.PermuteVar64x8(qs, indexBytes).AsInt16();
            var bit6 = ~Vector512.Equals(indices & Vector512.Create((short)0x40), Vector512<short>.Zero);
            var bit7 = ~Vector512.Equals(indices & Vector512.Create((short)0x80), Vector512<short>.Zero);
            var low = Vector512.ConditionalSelect(bit6, Avx512BW.PermuteVar32x16x2(codes2, indices, codes3), Avx512BW.PermuteVar32x16x2(codes0, indices, codes1));
            var high = Vector512.ConditionalSelect(bit6, Avx512BW.PermuteVar32x16x2(codes6, indices, codes7), Avx512BW.PermuteVar32x16x2(codes4, indices, codes5));
            var code = Vector512.ConditionalSelect(bit7, high, low);

            var fields = Avx512Vbmi.MultiShift(fieldShifts, qs.AsUInt64());
            var signBytes = Avx512Vbmi.PermuteVar64x8x2(signs0, fields, signs1);
            var multipliers = (fields & multiplierBits) | multiplierOne;

            // The four steps written out: as a loop the JIT kept its counter and control offsets in scalar registers.
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var sums = Iq2XxsStep(code, signBytes, multipliers, q8, stepControls, levels, coordinateShifts, laneBits)
                + Iq2XxsStep(code, signBytes, multipliers, q8 + 64, stepControls + 192, levels, coordinateShifts, laneBits)
                + Iq2XxsStep(code, signBytes, multipliers, q8 + 128, stepControls + 384, levels, coordinateShifts, laneBits)
                + Iq2XxsStep(code, signBytes, multipliers, q8 + 192, stepControls + 576, levels, coordinateShifts, laneBits);

            acc = BlockFma(GridScale(GgmlType.IQ2_XXS, x) * *(float*)(y + BlockLayouts.Q8_K.D), sums.GetLower() + sums.GetUpper(), acc);
        }

        return GridUnit(GgmlType.IQ2_XXS) * HorizontalSum(acc);
    }

    /// <summary>One step of <see cref="Iq2XxsVbmi"/>: 64 weights placed from the block's decoded vectors and multiplied.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Iq2XxsStep(Vector512<short> code, Vector512<byte> signBytes, Vector512<byte> multipliers, sbyte* q8, byte* control,
        Vector512<byte> levels, Vector512<byte> coordinateShifts, Vector512<byte> laneBits)
    {
        var points = Avx512BW.PermuteVar32x16(code, Vector512.Load((short*)control)).AsUInt64();
        var magnitudes = Avx512Vbmi.PermuteVar64x8(levels, Avx512Vbmi.MultiShift(coordinateShifts, points));

        var groupSigns = Avx512Vbmi.PermuteVar64x8(signBytes, Vector512.Load(control + 64));
        var negative = ~Vector512.Equals(groupSigns & laneBits, Vector512<byte>.Zero);
        var activations = Vector512.Load(q8);
        activations = Vector512.ConditionalSelect(negative.AsSByte(), Vector512<sbyte>.Zero - activations, activations);

        var stepMultipliers = Avx512Vbmi.PermuteVar64x8(multipliers, Vector512.Load(control + 128)).AsInt16();
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitudes, activations), stepMultipliers);
    }

    /// <summary>
    /// What <see cref="Iq2XxsVbmi"/> permutes over and with, 64-byte aligned: the 256 IQ2_XXS point codes as 16-bit
    /// words (<see cref="IqGridPoints.Iq2Xxs"/>), the 128 completed sign bytes (<see cref="IqGrids.EvenSigns"/>), the
    /// three magnitudes repeated over 64 bytes (a permute reads 6 index bits), per step of 64 weights the three
    /// placement controls (each group's code into a qword, its sign byte into its 8 bytes, its sub-block's multiplier
    /// into the 16-bit lanes), and the control that spreads the 32 index bytes into 16-bit lanes.
    /// </summary>
    private static readonly byte* Iq2XxsVbmiTables = BuildIq2XxsVbmiTables();

    private static byte* BuildIq2XxsVbmiTables()
    {
        var tables = (byte*)NativeMemory.AlignedAlloc(704 + 4 * 192 + 64, 64);
        ReadOnlySpan<ushort> points = IqGridPoints.Iq2Xxs;
        for (int i = 0; i < 256; i++) ((ushort*)tables)[i] = points[i];
        for (int i = 0; i < 128; i++) tables[512 + i] = IqGrids.EvenSigns[i];
        for (int i = 0; i < 64; i++) tables[640 + i] = (i & 3) < 3 ? IqGrids.Iq2Levels[i & 3] : (byte)0;
        for (int step = 0; step < 4; step++)
        {
            byte* control = tables + 704 + 192 * step;
            for (int g = 0; g < 8; g++)
            {
                int group = 8 * step + g, sub = group / 4;
                for (int i = 0; i < 4; i++) ((short*)control)[4 * g + i] = (short)group;
                for (int j = 0; j < 8; j++) control[64 + 8 * g + j] = (byte)(8 * sub + group % 4);
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
        return tables;
    }
}
