using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

using static Kaiyuan.Tensors.IqGridKernels;

namespace Kaiyuan.Tensors;

internal static unsafe partial class Avx2Dot
{
    /// <summary>
    /// A grid i-quant row against Q8_K. Each sub-block's magnitudes (<see cref="GridSubBlock"/>) meet the activations
    /// carrying the weights' signs in one unsigned-by-signed multiply-add, which forms the pair sums, and a second, by
    /// the two halves' odd multipliers, the 8 int32 lanes; each block's lanes are converted and multiply-added with d·dy.
    /// </summary>
    /// <param name="wide">Run IQ2_XXS, IQ2_XS, IQ3_XXS and IQ3_S on their VBMI kernels (<see cref="Iq2XxsVbmi"/>, <see cref="Iq2XsVbmi"/>, <see cref="Iq3XxsVbmi"/>, <see cref="Iq3SVbmi"/>) where the CPU has VBMI, IQ1_S, IQ1_M and IQ2_S on their AVX-512 BW kernels (<see cref="GatherGridDot{TGrid}"/>).</param>
    private static float GridQuant(GgmlType type, byte* x, byte* y, int blocks, bool wide) =>
        !wide ? Dot<Avx2GridRows>(type, x, y, blocks)
        : HasGatherGrid(type) ? GatherGrid(type, x, y, blocks)
        : !HasVbmi ? Dot<Avx2GridRows>(type, x, y, blocks)
        : type == GgmlType.IQ2_XXS ? Iq2XxsVbmi(x, y, blocks)
        : type == GgmlType.IQ3_XXS ? Iq3XxsVbmi(x, y, blocks)
        : type == GgmlType.IQ2_XS ? Iq2XsVbmi(x, y, blocks)
        : type == GgmlType.IQ3_S ? Iq3SVbmi(x, y, blocks)
        : Dot<Avx2GridRows>(type, x, y, blocks);

    private readonly struct Avx2GridRows : IRowKernel
    {
        public static float Dot<T>(byte* x, byte* y, int blocks) where T : struct, IGridType => GridQuant<T>(x, y, blocks);
    }

    // The single-row kernel stays apart from GridTile: sharing it cost up to half the single-row speed (measured), the
    // JIT keeping the tile's four accumulator pairs live in the one-row case.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float GridQuant<T>(byte* x, byte* y, int blocks) where T : struct, IGridType
    {
        int size = GridBlockBytes(T.Type);
        void* grid = GridTable(T.Type);
        ulong* evenSigns = EvenSignVectors;
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, size);
            var sums = Vector256<int>.Zero;
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            for (int sub = 0; sub < 8; sub++, q8 += 32)
            {
                Vector256<byte> magnitudes = GridSubBlock(T.Type, grid, evenSigns, x, sub, out var signs, out int m0, out int m1);
                sums += GridSums(magnitudes, signs, q8, Vector256.Create(Vector128.Create((short)m0), Vector128.Create((short)m1)));
            }

            acc = BlockFma(GridScale(T.Type, x) * *(float*)(y + BlockLayouts.Q8_K.D), sums, acc);
        }

        return GridUnit(T.Type) * HorizontalSum(acc);
    }

    /// <summary>
    /// One grid row against 1–4 activation rows <paramref name="stride"/> bytes apart (a decode step of several
    /// streams): each sub-block is decoded once and meets every row, each row's sums formed exactly as the single-row
    /// dot forms them, so every result equals it to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GridTile<T>(byte* x, byte* y, int stride, int rows, int blocks, float* output, long outputStride) where T : struct, IGridType
    {
        int size = GridBlockBytes(T.Type);
        void* grid = GridTable(T.Type);
        ulong* evenSigns = EvenSignVectors;
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++, x += size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, size);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            for (int sub = 0; sub < 8; sub++, q8 += 32)
            {
                Vector256<byte> magnitudes = GridSubBlock(T.Type, grid, evenSigns, x, sub, out var signs, out int m0, out int m1);
                var multipliers = Vector256.Create(Vector128.Create((short)m0), Vector128.Create((short)m1));
                s0 += GridSums(magnitudes, signs, q8, multipliers);
                if (rows > 1) s1 += GridSums(magnitudes, signs, q8 + stride, multipliers);
                if (rows > 2) s2 += GridSums(magnitudes, signs, q8 + 2 * stride, multipliers);
                if (rows > 3) s3 += GridSums(magnitudes, signs, q8 + 3 * stride, multipliers);
            }

            float dx = GridScale(T.Type, x);
            a0 = BlockFma(dx * *(float*)(y + BlockLayouts.Q8_K.D), s0, a0);
            if (rows > 1) a1 = BlockFma(dx * *(float*)(y + stride + BlockLayouts.Q8_K.D), s1, a1);
            if (rows > 2) a2 = BlockFma(dx * *(float*)(y + 2 * stride + BlockLayouts.Q8_K.D), s2, a2);
            if (rows > 3) a3 = BlockFma(dx * *(float*)(y + 3 * stride + BlockLayouts.Q8_K.D), s3, a3);
        }

        float unit = GridUnit(T.Type);
        output[0] = unit * HorizontalSum(a0);
        if (rows > 1) output[outputStride] = unit * HorizontalSum(a1);
        if (rows > 2) output[2 * outputStride] = unit * HorizontalSum(a2);
        if (rows > 3) output[3 * outputStride] = unit * HorizontalSum(a3);
    }

    /// <summary>A sub-block's 8 int32 lanes for one activation row: its signs moved onto the row, then both multiply-adds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> GridSums(Vector256<byte> magnitudes, Vector256<sbyte> signs, sbyte* q8, Vector256<short> multipliers) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(magnitudes, Avx2.Sign(Vector256.Load(q8), signs)), multipliers);

    /// <summary>The 2–4-row form of the grid row kernels (<see cref="Dot4"/> and its smaller tiles).</summary>
    private static void GridTile(GgmlType type, byte* x, byte* y, int stride, int rows, int blocks, float* output, long outputStride)
    {
        switch (type)
        {
            case GgmlType.IQ2_XXS: GridTile<Iq2XxsGrid>(x, y, stride, rows, blocks, output, outputStride); break;
            case GgmlType.IQ2_XS: GridTile<Iq2XsGrid>(x, y, stride, rows, blocks, output, outputStride); break;
            case GgmlType.IQ2_S: GridTile<Iq2SGrid>(x, y, stride, rows, blocks, output, outputStride); break;
            case GgmlType.IQ3_XXS: GridTile<Iq3XxsGrid>(x, y, stride, rows, blocks, output, outputStride); break;
            case GgmlType.IQ3_S: GridTile<Iq3SGrid>(x, y, stride, rows, blocks, output, outputStride); break;
            case GgmlType.IQ1_S: GridTile<Iq1SGrid>(x, y, stride, rows, blocks, output, outputStride); break;
            default: GridTile<Iq1MGrid>(x, y, stride, rows, blocks, output, outputStride); break;
        }
    }

    /// <summary>
    /// A grid panel (see <see cref="PackPanel"/>) in one pass over the rows: every 32-element sub-block of the eight rows
    /// decoded into signed values plus the format's offset (64 for the IQ2 types and IQ3_XXS, 16 for IQ3_S and the 1-bit
    /// types, whose values stay within ±15), so the K-quant panel kernel runs them as 16 sub-blocks of 16 whose scales
    /// are the odd multipliers, and d·unit as the super-block scale.
    /// </summary>
    private static void PackGridPanel(GgmlType type, byte* rows, long rowBytes, int n, byte* panel)
    {
        switch (type)
        {
            case GgmlType.IQ2_XXS: PackGridPanel<Iq2XxsGrid>(rows, rowBytes, n, panel); break;
            case GgmlType.IQ2_XS: PackGridPanel<Iq2XsGrid>(rows, rowBytes, n, panel); break;
            case GgmlType.IQ2_S: PackGridPanel<Iq2SGrid>(rows, rowBytes, n, panel); break;
            case GgmlType.IQ3_XXS: PackGridPanel<Iq3XxsGrid>(rows, rowBytes, n, panel); break;
            case GgmlType.IQ3_S: PackGridPanel<Iq3SGrid>(rows, rowBytes, n, panel); break;
            case GgmlType.IQ1_S: PackGridPanel<Iq1SGrid>(rows, rowBytes, n, panel); break;
            default: PackGridPanel<Iq1MGrid>(rows, rowBytes, n, panel); break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackGridPanel<T>(byte* rows, long rowBytes, int n, byte* panel) where T : struct, IGridType
    {
        int size = GridBlockBytes(T.Type), blocks = n / BlockLayouts.QK_K;
        void* grid = GridTable(T.Type);
        ulong* evenSigns = EvenSignVectors;
        var offset = Vector256.Create((sbyte)(T.Type is GgmlType.IQ3_S or GgmlType.IQ1_S or GgmlType.IQ1_M ? 16 : 64));
        var chunks = stackalloc Vector256<int>[PanelRows];
        int* multipliers = stackalloc int[PanelRows * 16];
        byte* quants = panel, scales = panel + PanelRows * n;
        for (int b = 0; b < blocks; b++, scales += KScaleBytes(16))
        {
            for (int sub = 0; sub < 8; sub++, quants += 256)
            {
                for (int r = 0; r < PanelRows; r++)
                {
                    Vector256<byte> magnitudes = GridSubBlock(T.Type, grid, evenSigns, rows + r * rowBytes + b * size, sub, out var signs,
                        out multipliers[16 * r + 2 * sub], out multipliers[16 * r + 2 * sub + 1]);
                    chunks[r] = Avx2.Add(Avx2.Sign(magnitudes.AsSByte(), signs), offset).AsInt32();
                }

                Transpose8x8(chunks[0], chunks[1], chunks[2], chunks[3], chunks[4], chunks[5], chunks[6], chunks[7], quants);
            }

            for (int r = 0; r < PanelRows; r++)
            {
                int* m = multipliers + 16 * r;
                ((float*)scales)[r] = GridScale(T.Type, rows + r * rowBytes + b * size) * GridUnit(T.Type);
                ((float*)scales)[PanelRows + r] = 0;
                for (int j = 0; j < 16; j++) ((int*)(scales + KScalesOffset))[j * PanelRows + r] = Int16Pair(m[j], m[j]);
                for (int p = 0; p < 8; p++) ((int*)(scales + KPairedOffset(16)))[p * PanelRows + r] = Int16Pair(m[2 * p], m[2 * p + 1]);
            }
        }
    }

    /// <summary>
    /// Sub-block <paramref name="sub"/> (32 elements) of grid block <paramref name="x"/>: its values' magnitudes, one
    /// grid load per 8 (or 4) of them, and in <paramref name="signs"/> a vector whose byte signs are theirs (±1, or the
    /// value itself for the 1-bit types, which fold their ±1/8 shift in as 8·grid ± 1 — odd, so never zero), with the
    /// odd multipliers of its two halves. Value j is then sign(signs[j])·magnitudes[j] in units of
    /// <see cref="GridUnit"/>·d.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> GridSubBlock(GgmlType type, void* grid, ulong* evenSigns, byte* x, int sub, out Vector256<sbyte> signs, out int m0, out int m1)
    {
        ulong* grid8 = (ulong*)grid;
        uint* grid4 = (uint*)grid;
        uint signBits;
        Vector256<byte> magnitudes;
        switch (type)
        {
            case GgmlType.IQ2_XXS:
                {
                    uint indices = *(uint*)(x + BlockLayouts.IQ2_XXS.Qs + 8 * sub), packed = *(uint*)(x + BlockLayouts.IQ2_XXS.Qs + 8 * sub + 4);
                    magnitudes = Vector256.Create(grid8[indices & 0xFF], grid8[indices >> 8 & 0xFF], grid8[indices >> 16 & 0xFF], grid8[indices >> 24]).AsByte();
                    signs = EvenSigns4(evenSigns, packed);
                    m0 = m1 = 2 * (int)(packed >> 28) + 1;
                    return magnitudes;
                }
            case GgmlType.IQ2_XS:
                {
                    ushort* q = (ushort*)(x + BlockLayouts.IQ2_XS.Qs) + 4 * sub;
                    magnitudes = Vector256.Create(grid8[q[0] & 511], grid8[q[1] & 511], grid8[q[2] & 511], grid8[q[3] & 511]).AsByte();
                    signs = Vector256.Create(evenSigns[q[0] >> 9], evenSigns[q[1] >> 9], evenSigns[q[2] >> 9], evenSigns[q[3] >> 9]).AsSByte();
                    (m0, m1) = Multipliers(x[BlockLayouts.IQ2_XS.Scales + sub]);
                    return magnitudes;
                }
            case GgmlType.IQ2_S:
                {
                    byte* q = x + BlockLayouts.IQ2_S.Qs + 4 * sub;
                    int high = x[BlockLayouts.IQ2_S.Qh + sub];
                    magnitudes = Vector256.Create(grid8[q[0] | (high << 8 & 0x300)], grid8[q[1] | (high << 6 & 0x300)],
                        grid8[q[2] | (high << 4 & 0x300)], grid8[q[3] | (high << 2 & 0x300)]).AsByte();
                    signBits = *(uint*)(x + BlockLayouts.IQ2_S.Signs + 4 * sub);
                    (m0, m1) = Multipliers(x[BlockLayouts.IQ2_S.Scales + sub]);
                    break;
                }
            case GgmlType.IQ3_XXS:
                {
                    byte* q = x + BlockLayouts.IQ3_XXS.Qs + 8 * sub;
                    uint packed = *(uint*)(x + BlockLayouts.IQ3_XXS.ScalesAndSigns + 4 * sub);
                    // Eight loads beat a gather here (measured on Zen 5), where the indices need no arithmetic.
                    magnitudes = Vector256.Create(grid4[q[0]], grid4[q[1]], grid4[q[2]], grid4[q[3]],
                        grid4[q[4]], grid4[q[5]], grid4[q[6]], grid4[q[7]]).AsByte();
                    signs = EvenSigns4(evenSigns, packed);
                    m0 = m1 = 2 * (int)(packed >> 28) + 1;
                    return magnitudes;
                }
            case GgmlType.IQ3_S:
                {
                    byte* q = x + BlockLayouts.IQ3_S.Qs + 8 * sub;
                    // Eight 9-bit indices (bit j of the qh byte is index j's ninth) formed in lanes and gathered at once.
                    var high = Avx2.ShiftLeftLogicalVariable(Vector256.Create((uint)x[BlockLayouts.IQ3_S.Qh + sub]), Vector256.Create(8u, 7, 6, 5, 4, 3, 2, 1));
                    var indices = Avx2.ConvertToVector256Int32(q) | (high.AsInt32() & Vector256.Create(256));
                    magnitudes = Avx2.GatherVector256(grid4, indices, 4).AsByte();
                    signBits = *(uint*)(x + BlockLayouts.IQ3_S.Signs + 4 * sub);
                    m0 = m1 = 2 * (x[BlockLayouts.IQ3_S.Scales + sub / 2] >> (4 * (sub % 2)) & 0xF) + 1;
                    break;
                }
            case GgmlType.IQ1_S:
                {
                    byte* q = x + BlockLayouts.IQ1_S.Qs + 4 * sub;
                    int high = *(ushort*)(x + BlockLayouts.IQ1_S.Qh + 2 * sub);
                    var points = Vector256.Create(grid8[q[0] | (high << 8 & 0x700)], grid8[q[1] | (high << 5 & 0x700)],
                        grid8[q[2] | (high << 2 & 0x700)], grid8[q[3] | (high >> 1 & 0x700)]).AsSByte();
                    signs = Eighths(points, Vector256.Create((sbyte)(1 | -(high >> 15 & 1))));
                    m0 = m1 = 2 * (high >> 12 & 7) + 1;
                    return Avx2.Abs(signs);
                }
            default:
                {
                    byte* q = x + BlockLayouts.IQ1_M.Qs + 4 * sub;
                    int high = *(ushort*)(x + BlockLayouts.IQ1_M.Qh + 2 * sub);
                    var points = Vector256.Create(grid8[q[0] | (high << 8 & 0x700)], grid8[q[1] | (high << 4 & 0x700)],
                        grid8[q[2] | (high & 0x700)], grid8[q[3] | (high >> 4 & 0x700)]).AsSByte();
                    // Bit 3 of each nibble, the group's shift sign, becomes a lane of all ones (−1) or of bytes 1; no branches,
                    // which random shift bits would mispredict half the time.
                    var shiftBits = Avx2.ShiftRightLogicalVariable(Vector256.Create((ulong)high), Vector256.Create(3UL, 7, 11, 15)) & Vector256<ulong>.One;
                    signs = Eighths(points, (Vector256<ulong>.Zero - shiftBits | Vector256.Create(0x0101010101010101UL)).AsSByte());
                    int word = *(ushort*)(x + BlockLayouts.IQ1_M.Scales + 2 * (sub >> 1)) >> (6 * (sub & 1));
                    m0 = 2 * (word & 7) + 1;
                    m1 = 2 * (word >> 3 & 7) + 1;
                    return Avx2.Abs(signs);
                }
        }

        signs = SignsFromBits(signBits);
        return magnitudes;
    }

    /// <summary>The four 7-bit sign fields of a packed word, each completed to 8 signs, as 32 bytes of ±1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> EvenSigns4(ulong* evenSigns, uint packed) =>
        Vector256.Create(evenSigns[packed & 127], evenSigns[packed >> 7 & 127], evenSigns[packed >> 14 & 127], evenSigns[packed >> 21 & 127]).AsSByte();

    /// <summary>
    /// Byte j is −1 where bit j of <paramref name="bits"/> is set, else 1. From a register (unlike
    /// <see cref="BytesFromBits"/>), so that no local of the kernel has its address taken and all stay in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> SignsFromBits(uint bits) => BytesFromBroadcastBits(Vector256.Create(bits)).AsSByte() | Vector256<sbyte>.One;

    /// <summary>The codebook of a grid type: 8-byte points (the 2-bit and 1-bit grids) or 4-byte points (IQ3).</summary>
    private static void* GridTable(GgmlType type) => type switch
    {
        GgmlType.IQ2_XXS => Grid2Xxs,
        GgmlType.IQ2_XS => Grid2Xs,
        GgmlType.IQ2_S => Grid2S,
        GgmlType.IQ3_XXS => Grid3Xxs,
        GgmlType.IQ3_S => Grid3S,
        _ => Grid1,
    };

    /// <summary>A 1-bit group's values in units of 1/8: 8·grid + shift (−9, −7, −1, 1, 7 or 9).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Eighths(Vector256<sbyte> points, Vector256<sbyte> shifts) =>
        // A 16-bit shift spills each byte's top bits into its neighbour's low three, which the mask clears.
        Avx2.Add(Avx2.ShiftLeftLogical(points.AsInt16(), 3).AsSByte() & Vector256.Create((sbyte)-8), shifts);
}
