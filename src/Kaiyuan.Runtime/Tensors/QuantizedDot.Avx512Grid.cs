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
    /// An IQ2_XXS row against Q8_K, 64 weights (two sub-blocks) per step, decoded in registers without a scalar table
    /// load: the AVX2 kernel's four grid loads and four sign loads per 32 weights, each a load plus a vector insert,
    /// bound it by decoding (0.42× Q4_K's speed per weight byte). Each lane takes its group's index byte (a
    /// multishift), looks up the byte of the group's 16-bit point code that holds its coordinate (byte permutes over
    /// 128-byte tables), shifts its 2 bits down (a multishift) and maps them to 8, 25 or 43 (a permute); the signs are a
    /// 128-byte table lookup of each 7-bit field, tested against the lane's bit into a mask that negates the activations.
    /// Lanes 0–7 of the int32 sums hold elements 4k..4k+3 of the first sub-block, lanes 8–15 of the second, each
    /// times its odd multiplier; the two halves added give the AVX2 kernel's eight lanes exactly, so the float
    /// arithmetic after them, and the result, is the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Iq2XxsVbmi(byte* x, byte* y, int blocks)
    {
        byte* tables = Iq2XxsVbmiTables;
        Vector512<byte> low0 = Vector512.Load(tables), low1 = Vector512.Load(tables + 64), low2 = Vector512.Load(tables + 128), low3 = Vector512.Load(tables + 192);
        Vector512<byte> high0 = Vector512.Load(tables + 256), high1 = Vector512.Load(tables + 320), high2 = Vector512.Load(tables + 384), high3 = Vector512.Load(tables + 448);
        Vector512<byte> signs0 = Vector512.Load(tables + 512), signs1 = Vector512.Load(tables + 576);
        Vector512<byte> levels = Vector512.Load(tables + 640);

        // Qword g of a step's vector holds sub-block g / 4's 8 bytes; byte j of qword g selects bits from it:
        // the index byte of group g % 4, its 7-bit sign field, the code bits of coordinate j (byte j of the looked-up
        // code holds the low code byte for j < 4, the high one for j ≥ 4), and bits 59–63 (2s + a sign bit) for the scale.
        var indexShifts = Vector512.Create(0UL, 0x0808080808080808UL, 0x1010101010101010UL, 0x1818181818181818UL,
            0UL, 0x0808080808080808UL, 0x1010101010101010UL, 0x1818181818181818UL).AsByte();
        var signShifts = Vector512.Create(0x2020202020202020UL, 0x2727272727272727UL, 0x2E2E2E2E2E2E2E2EUL, 0x3535353535353535UL,
            0x2020202020202020UL, 0x2727272727272727UL, 0x2E2E2E2E2E2E2E2EUL, 0x3535353535353535UL).AsByte();
        var codeShifts = Vector512.Create(0x3E342A201E140A00UL).AsByte();
        var scaleShifts = Vector512.Create(0x3B3B3B3B3B3B3B3BUL).AsByte();
        var laneBits = Vector512.Create(0x8040201008040201UL).AsByte();
        var highCoordinates = Vector512.Create(0xFFFFFFFF00000000UL).AsByte();
        var subBlockQwords = Vector512.Create(0UL, 0, 0, 0, 1, 1, 1, 1);

        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ2_XXS.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.IQ2_XXS.Size);
            var sums = Vector512<int>.Zero;
            byte* qs = x + BlockLayouts.IQ2_XXS.Qs;
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            for (int step = 0; step < 4; step++, qs += 16, q8 += 64)
            {
                var words = Avx512F.PermuteVar8x64(Avx512F.BroadcastVector128ToVector512((uint*)qs).AsUInt64(), subBlockQwords).AsByte();

                var indices = Avx512Vbmi.MultiShift(indexShifts, words.AsUInt64());
                var top = Vector512.LessThan(indices.AsSByte(), Vector512<sbyte>.Zero).AsByte();
                var low = Vector512.ConditionalSelect(top, Avx512Vbmi.PermuteVar64x8x2(low2, indices, low3), Avx512Vbmi.PermuteVar64x8x2(low0, indices, low1));
                var high = Vector512.ConditionalSelect(top, Avx512Vbmi.PermuteVar64x8x2(high2, indices, high3), Avx512Vbmi.PermuteVar64x8x2(high0, indices, high1));
                var code = Vector512.ConditionalSelect(highCoordinates, high, low);
                var magnitudes = Avx512Vbmi.PermuteVar64x8(levels, Avx512Vbmi.MultiShift(codeShifts, code.AsUInt64()));

                var signBytes = Avx512Vbmi.PermuteVar64x8x2(signs0, Avx512Vbmi.MultiShift(signShifts, words.AsUInt64()), signs1);
                var negative = ~Vector512.Equals(signBytes & laneBits, Vector512<byte>.Zero);
                var activations = Vector512.Load(q8);
                activations = Vector512.ConditionalSelect(negative.AsSByte(), Vector512<sbyte>.Zero - activations, activations);

                // The multiplier 2s + 1 in every int16 lane of each qword: bits 59–63 are 2s and a sign bit.
                var multipliers = (Avx512Vbmi.MultiShift(scaleShifts, words.AsUInt64()).AsInt16() & Vector512.Create((short)0x1E)) | Vector512.Create((short)1);
                sums += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitudes, activations), multipliers);
            }

            acc = BlockFma(GridScale(GgmlType.IQ2_XXS, x) * *(float*)(y + BlockLayouts.Q8_K.D), sums.GetLower() + sums.GetUpper(), acc);
        }

        return GridUnit(GgmlType.IQ2_XXS) * HorizontalSum(acc);
    }

    /// <summary>
    /// The tables <see cref="Iq2XxsVbmi"/> permutes over, 704 bytes, 64-byte aligned: the low then the high bytes of the
    /// 256 IQ2_XXS point codes (<see cref="IqGridPoints.Iq2Xxs"/>, 2 bits per coordinate), the 128 completed sign bytes
    /// (<see cref="IqGrids.EvenSigns"/>), and the three magnitudes repeated over 64 bytes (a permute reads 6 index bits).
    /// </summary>
    private static readonly byte* Iq2XxsVbmiTables = BuildIq2XxsVbmiTables();

    private static byte* BuildIq2XxsVbmiTables()
    {
        var tables = (byte*)NativeMemory.AlignedAlloc(704, 64);
        ReadOnlySpan<ushort> points = IqGridPoints.Iq2Xxs;
        for (int i = 0; i < 256; i++)
        {
            tables[i] = (byte)points[i];
            tables[256 + i] = (byte)(points[i] >> 8);
        }

        for (int i = 0; i < 128; i++) tables[512 + i] = IqGrids.EvenSigns[i];
        for (int i = 0; i < 64; i++) tables[640 + i] = (i & 3) < 3 ? IqGrids.Iq2Levels[i & 3] : (byte)0;
        return tables;
    }
}
