using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

internal static unsafe partial class Avx2Dot
{
    // The pinned codebooks (see IqGrids), read through raw pointers so that decoding needs no fixed statement.
    private static readonly ulong* Grid2Xxs = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq2Xxs));
    private static readonly ulong* Grid2Xs = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq2Xs));
    private static readonly ulong* Grid2S = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq2S));
    private static readonly uint* Grid3Xxs = (uint*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq3Xxs));
    private static readonly uint* Grid3S = (uint*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq3S));
    private static readonly ulong* Grid1 = (ulong*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.Iq1S));
    private static readonly byte* EvenSignBytes = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(IqGrids.EvenSigns));

    /// <summary>
    /// A grid i-quant row against Q8_K. Each sub-block's magnitudes (<see cref="GridSubBlock"/>) meet the activations
    /// carrying the weights' signs in one unsigned-by-signed multiply-add, which forms the pair sums, and a second, by
    /// the two halves' odd multipliers, the 8 int32 lanes; each block's lanes are converted and multiply-added with d·dy.
    /// </summary>
    private static float GridQuant(GgmlType type, byte* x, byte* y, int blocks)
    {
        int size = GgmlTypeInfo.Geometry(type).TypeSize;
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, size);
            var sums = Vector256<int>.Zero;
            for (int sub = 0; sub < 8; sub++)
            {
                Vector256<byte> magnitudes = GridSubBlock(type, x, sub, out var signs, out int m0, out int m1);
                var q8 = Avx2.Sign(Vector256.Load((sbyte*)(y + BlockLayouts.Q8_K.Qs + 32 * sub)), signs);
                Vector256<short> pairs = Avx2.MultiplyAddAdjacent(magnitudes, q8);
                sums += Avx2.MultiplyAddAdjacent(pairs, Vector256.Create(Vector128.Create((short)m0), Vector128.Create((short)m1)));
            }

            acc = Fma.MultiplyAdd(Avx.ConvertToVector256Single(sums), Vector256.Create(GridScale(type, x) * *(float*)(y + BlockLayouts.Q8_K.D)), acc);
        }

        return GridUnit(type) * HorizontalSum(acc);
    }

    /// <summary>
    /// A grid panel's quants (see <see cref="PackPanel"/>): every 32-element sub-block of the eight rows decoded into
    /// signed values plus the format's offset (64 for the IQ2 types and IQ3_XXS, 16 for IQ3_S and the 1-bit types,
    /// whose values stay within ±15), so the K-quant panel kernel runs them with 16 sub-blocks of 16 whose scales are
    /// the odd multipliers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackGridQuants(GgmlType type, byte* rows, long rowBytes, int n, byte* panel)
    {
        int size = GgmlTypeInfo.Geometry(type).TypeSize;
        var offset = Vector256.Create((sbyte)(type is GgmlType.IQ3_S or GgmlType.IQ1_S or GgmlType.IQ1_M ? 16 : 64));
        var chunks = stackalloc Vector256<int>[PanelRows];
        for (int c = 0; c < n / BlockLayouts.QK; c++, panel += 256)
        {
            for (int r = 0; r < PanelRows; r++)
            {
                Vector256<byte> magnitudes = GridSubBlock(type, rows + r * rowBytes + c / 8 * size, c % 8, out var signs, out _, out _);
                chunks[r] = Avx2.Add(Avx2.Sign(magnitudes.AsSByte(), signs), offset).AsInt32();
            }

            Transpose8x8(chunks[0], chunks[1], chunks[2], chunks[3], chunks[4], chunks[5], chunks[6], chunks[7], panel);
        }
    }

    /// <summary>The block's d (IQ1_M keeps its fp16 bits in the top nibbles of its scale words).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float GridScale(GgmlType type, byte* x) =>
        type == GgmlType.IQ1_M ? IqGridDecoder.Scale(type, new ReadOnlySpan<byte>(x, BlockLayouts.IQ1_M.Size)) : Half(x);

    /// <summary>
    /// The unit <see cref="GridSubBlock"/>'s integers count in, times d: <see cref="IqGridDecoder.Unit"/>, except that
    /// the 1-bit types' values are 8·grid ± 1 and so count in eighths.
    /// </summary>
    private static float GridUnit(GgmlType type) => type is GgmlType.IQ1_S or GgmlType.IQ1_M ? 0.125f : IqGridDecoder.Unit(type);

    /// <summary>
    /// Sub-block <paramref name="sub"/> (32 elements) of grid block <paramref name="x"/>: its values' magnitudes, one
    /// grid load per 8 (or 4) of them, and in <paramref name="signs"/> a vector whose byte signs are theirs (±1, or the
    /// value itself for the 1-bit types, which fold their ±1/8 shift in as 8·grid ± 1 — odd, so never zero), with the
    /// odd multipliers of its two halves. Value j is then sign(signs[j])·magnitudes[j] in units of
    /// <see cref="GridUnit"/>·d.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> GridSubBlock(GgmlType type, byte* x, int sub, out Vector256<sbyte> signs, out int m0, out int m1)
    {
        uint signBits;
        Vector256<byte> magnitudes;
        switch (type)
        {
            case GgmlType.IQ2_XXS:
                {
                    uint indices = *(uint*)(x + BlockLayouts.IQ2_XXS.Qs + 8 * sub), packed = *(uint*)(x + BlockLayouts.IQ2_XXS.Qs + 8 * sub + 4);
                    magnitudes = Vector256.Create(Grid2Xxs[indices & 0xFF], Grid2Xxs[indices >> 8 & 0xFF], Grid2Xxs[indices >> 16 & 0xFF], Grid2Xxs[indices >> 24]).AsByte();
                    signBits = EvenSigns4(packed);
                    m0 = m1 = 2 * (int)(packed >> 28) + 1;
                    break;
                }
            case GgmlType.IQ2_XS:
                {
                    ushort* q = (ushort*)(x + BlockLayouts.IQ2_XS.Qs) + 4 * sub;
                    magnitudes = Vector256.Create(Grid2Xs[q[0] & 511], Grid2Xs[q[1] & 511], Grid2Xs[q[2] & 511], Grid2Xs[q[3] & 511]).AsByte();
                    signBits = EvenSignBytes[q[0] >> 9] | (uint)EvenSignBytes[q[1] >> 9] << 8 | (uint)EvenSignBytes[q[2] >> 9] << 16 | (uint)EvenSignBytes[q[3] >> 9] << 24;
                    (m0, m1) = Multipliers(x[BlockLayouts.IQ2_XS.Scales + sub]);
                    break;
                }
            case GgmlType.IQ2_S:
                {
                    byte* q = x + BlockLayouts.IQ2_S.Qs + 4 * sub;
                    int high = x[BlockLayouts.IQ2_S.Qh + sub];
                    magnitudes = Vector256.Create(Grid2S[q[0] | (high << 8 & 0x300)], Grid2S[q[1] | (high << 6 & 0x300)],
                        Grid2S[q[2] | (high << 4 & 0x300)], Grid2S[q[3] | (high << 2 & 0x300)]).AsByte();
                    signBits = *(uint*)(x + BlockLayouts.IQ2_S.Signs + 4 * sub);
                    (m0, m1) = Multipliers(x[BlockLayouts.IQ2_S.Scales + sub]);
                    break;
                }
            case GgmlType.IQ3_XXS:
                {
                    byte* q = x + BlockLayouts.IQ3_XXS.Qs + 8 * sub;
                    uint packed = *(uint*)(x + BlockLayouts.IQ3_XXS.ScalesAndSigns + 4 * sub);
                    magnitudes = Vector256.Create(Grid3Xxs[q[0]], Grid3Xxs[q[1]], Grid3Xxs[q[2]], Grid3Xxs[q[3]],
                        Grid3Xxs[q[4]], Grid3Xxs[q[5]], Grid3Xxs[q[6]], Grid3Xxs[q[7]]).AsByte();
                    signBits = EvenSigns4(packed);
                    m0 = m1 = 2 * (int)(packed >> 28) + 1;
                    break;
                }
            case GgmlType.IQ3_S:
                {
                    byte* q = x + BlockLayouts.IQ3_S.Qs + 8 * sub;
                    int high = x[BlockLayouts.IQ3_S.Qh + sub];
                    magnitudes = Vector256.Create(Grid3S[q[0] | (high << 8 & 256)], Grid3S[q[1] | (high << 7 & 256)],
                        Grid3S[q[2] | (high << 6 & 256)], Grid3S[q[3] | (high << 5 & 256)],
                        Grid3S[q[4] | (high << 4 & 256)], Grid3S[q[5] | (high << 3 & 256)],
                        Grid3S[q[6] | (high << 2 & 256)], Grid3S[q[7] | (high << 1 & 256)]).AsByte();
                    signBits = *(uint*)(x + BlockLayouts.IQ3_S.Signs + 4 * sub);
                    m0 = m1 = 2 * (x[BlockLayouts.IQ3_S.Scales + sub / 2] >> (4 * (sub % 2)) & 0xF) + 1;
                    break;
                }
            case GgmlType.IQ1_S:
                {
                    byte* q = x + BlockLayouts.IQ1_S.Qs + 4 * sub;
                    int high = *(ushort*)(x + BlockLayouts.IQ1_S.Qh + 2 * sub);
                    var points = Vector256.Create(Grid1[q[0] | (high << 8 & 0x700)], Grid1[q[1] | (high << 5 & 0x700)],
                        Grid1[q[2] | (high << 2 & 0x700)], Grid1[q[3] | (high >> 1 & 0x700)]).AsSByte();
                    signs = Eighths(points, (high & 0x8000) != 0 ? Vector256<sbyte>.AllBitsSet : Vector256<sbyte>.One);
                    m0 = m1 = 2 * (high >> 12 & 7) + 1;
                    return Avx2.Abs(signs);
                }
            default:
                {
                    byte* q = x + BlockLayouts.IQ1_M.Qs + 4 * sub;
                    int high = *(ushort*)(x + BlockLayouts.IQ1_M.Qh + 2 * sub);
                    var points = Vector256.Create(Grid1[q[0] | (high << 8 & 0x700)], Grid1[q[1] | (high << 4 & 0x700)],
                        Grid1[q[2] | (high & 0x700)], Grid1[q[3] | (high >> 4 & 0x700)]).AsSByte();
                    // Bit 3 of each nibble: the group's shift is −1/8 where it is set.
                    signs = Eighths(points, Vector256.Create(Shift8(high, 0x0008), Shift8(high, 0x0080), Shift8(high, 0x0800), Shift8(high, 0x8000)).AsSByte());
                    int word = *(ushort*)(x + BlockLayouts.IQ1_M.Scales + 2 * (sub / 2)) >> (6 * (sub % 2));
                    m0 = 2 * (word & 7) + 1;
                    m1 = 2 * (word >> 3 & 7) + 1;
                    return Avx2.Abs(signs);
                }
        }

        signs = BytesFromBits((byte*)&signBits).AsSByte() | Vector256<sbyte>.One;
        return magnitudes;
    }

    private static (int Low, int High) Multipliers(byte scales) => (2 * (scales & 0xF) + 1, 2 * (scales >> 4) + 1);

    /// <summary>The four 7-bit sign fields of a packed word, each completed to 8 signs, as one 32-bit mask.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint EvenSigns4(uint packed) => EvenSignBytes[packed & 127] | (uint)EvenSignBytes[packed >> 7 & 127] << 8
        | (uint)EvenSignBytes[packed >> 14 & 127] << 16 | (uint)EvenSignBytes[packed >> 21 & 127] << 24;

    /// <summary>Eight bytes of −1 where <paramref name="bit"/> is set in <paramref name="high"/>, else of 1.</summary>
    private static ulong Shift8(int high, int bit) => (high & bit) != 0 ? ulong.MaxValue : 0x0101010101010101UL;

    /// <summary>A 1-bit group's values in units of 1/8: 8·grid + shift (−9, −7, −1, 1, 7 or 9).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Eighths(Vector256<sbyte> points, Vector256<sbyte> shifts) =>
        // A 16-bit shift spills each byte's top bits into its neighbour's low three, which the mask clears.
        Avx2.Add(Avx2.ShiftLeftLogical(points.AsInt16(), 3).AsSByte() & Vector256.Create((sbyte)-8), shifts);
}
