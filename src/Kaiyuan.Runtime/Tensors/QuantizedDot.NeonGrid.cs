using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

using static Kaiyuan.Tensors.IqGridKernels;

namespace Kaiyuan.Tensors;

internal static unsafe partial class NeonDot
{
    /// <summary>
    /// A grid i-quant row against Q8_K. Each sub-block becomes two vectors of signed int8 weights
    /// (<see cref="GridHalves"/>); the signs go onto the weights rather than the activations, since Q8_K may hold −128,
    /// whose negation is no byte. sdot sums each half, multiply-added into the block's int32 lanes by the half's odd
    /// multiplier; the block's exact integer sum is weighted by d·dy in block order, the total by the type's unit.
    /// </summary>
    private static float GridQuant(GgmlType type, byte* x, byte* y, int blocks) => Dot<NeonGridRows>(type, x, y, blocks);

    private readonly struct NeonGridRows : IRowKernel
    {
        public static float Dot<T>(byte* x, byte* y, int blocks) where T : struct, IGridType => GridQuant<T>(x, y, blocks);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float GridQuant<T>(byte* x, byte* y, int blocks) where T : struct, IGridType
    {
        int size = GridBlockBytes(T.Type);
        // Only IQ2_XS, IQ2_S and IQ1_M give a sub-block's halves their own multipliers; the rest need one sdot chain and one multiply.
        bool twoMultipliers = T.Type is GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ1_M;
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += size, y += BlockLayouts.Q8_K.Size)
        {
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var sums = Vector128<int>.Zero;
            for (int sub = 0; sub < 8; sub++, q8 += 32)
            {
                GridHalves(T.Type, x, sub, out var low, out var high, out int m0, out int m1);
                Vector128<int> first = Dp.DotProduct(Vector128<int>.Zero, low, Vector128.Load(q8));
                if (twoMultipliers)
                {
                    sums = AdvSimd.MultiplyAdd(sums, first, Vector128.Create(m0));
                    sums = AdvSimd.MultiplyAdd(sums, Dp.DotProduct(Vector128<int>.Zero, high, Vector128.Load(q8 + 16)), Vector128.Create(m1));
                }
                else
                {
                    sums = AdvSimd.MultiplyAdd(sums, Dp.DotProduct(first, high, Vector128.Load(q8 + 16)), Vector128.Create(m0));
                }
            }

            sum += GridScale(T.Type, x) * *(float*)(y + BlockLayouts.Q8_K.D) * Vector128.Sum(sums);
        }

        return GridUnit(T.Type) * sum;
    }

    /// <summary>
    /// Sub-block <paramref name="sub"/> (32 elements) of grid block <paramref name="x"/> as signed int8 values in units
    /// of <see cref="GridUnit"/>·d: elements 0–15 in <paramref name="low"/>, 16–31 in <paramref name="high"/>, with the
    /// odd multipliers of those halves. The 1-bit types give 8·grid ± 1 (their ±1/8 shift in eighths), within ±9.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GridHalves(GgmlType type, byte* x, int sub, out Vector128<sbyte> low, out Vector128<sbyte> high, out int m0, out int m1)
    {
        ulong* signs = EvenSignVectors;
        switch (type)
        {
            case GgmlType.IQ2_XXS:
                {
                    ulong* grid = Grid2Xxs;
                    uint indices = *(uint*)(x + BlockLayouts.IQ2_XXS.Qs + 8 * sub), packed = *(uint*)(x + BlockLayouts.IQ2_XXS.Qs + 8 * sub + 4);
                    low = AdvSimd.Multiply(Points(grid + (indices & 0xFF), grid + (indices >> 8 & 0xFF)),
                        Points(signs + (packed & 127), signs + (packed >> 7 & 127)));
                    high = AdvSimd.Multiply(Points(grid + (indices >> 16 & 0xFF), grid + (indices >> 24)),
                        Points(signs + (packed >> 14 & 127), signs + (packed >> 21 & 127)));
                    m0 = m1 = 2 * (int)(packed >> 28) + 1;
                    return;
                }
            case GgmlType.IQ2_XS:
                {
                    ulong* grid = Grid2Xs;
                    ushort* q = (ushort*)(x + BlockLayouts.IQ2_XS.Qs) + 4 * sub;
                    low = AdvSimd.Multiply(Points(grid + (q[0] & 511), grid + (q[1] & 511)), Points(signs + (q[0] >> 9), signs + (q[1] >> 9)));
                    high = AdvSimd.Multiply(Points(grid + (q[2] & 511), grid + (q[3] & 511)), Points(signs + (q[2] >> 9), signs + (q[3] >> 9)));
                    (m0, m1) = Multipliers(x[BlockLayouts.IQ2_XS.Scales + sub]);
                    return;
                }
            case GgmlType.IQ2_S:
                {
                    ulong* grid = Grid2S;
                    byte* q = x + BlockLayouts.IQ2_S.Qs + 4 * sub;
                    int bits = x[BlockLayouts.IQ2_S.Qh + sub];
                    SignMasks(x + BlockLayouts.IQ2_S.Signs + 4 * sub, out var lowNegative, out var highNegative);
                    low = Negated(Points(grid + (q[0] | (bits << 8 & 0x300)), grid + (q[1] | (bits << 6 & 0x300))), lowNegative);
                    high = Negated(Points(grid + (q[2] | (bits << 4 & 0x300)), grid + (q[3] | (bits << 2 & 0x300))), highNegative);
                    (m0, m1) = Multipliers(x[BlockLayouts.IQ2_S.Scales + sub]);
                    return;
                }
            case GgmlType.IQ3_XXS:
                {
                    uint* grid = Grid3Xxs;
                    byte* q = x + BlockLayouts.IQ3_XXS.Qs + 8 * sub;
                    uint packed = *(uint*)(x + BlockLayouts.IQ3_XXS.ScalesAndSigns + 4 * sub);
                    low = AdvSimd.Multiply(Points(grid + q[0], grid + q[1], grid + q[2], grid + q[3]),
                        Points(signs + (packed & 127), signs + (packed >> 7 & 127)));
                    high = AdvSimd.Multiply(Points(grid + q[4], grid + q[5], grid + q[6], grid + q[7]),
                        Points(signs + (packed >> 14 & 127), signs + (packed >> 21 & 127)));
                    m0 = m1 = 2 * (int)(packed >> 28) + 1;
                    return;
                }
            case GgmlType.IQ3_S:
                {
                    uint* grid = Grid3S;
                    byte* q = x + BlockLayouts.IQ3_S.Qs + 8 * sub;
                    // Bit j of the qh byte is index j's ninth.
                    int bits = x[BlockLayouts.IQ3_S.Qh + sub];
                    SignMasks(x + BlockLayouts.IQ3_S.Signs + 4 * sub, out var lowNegative, out var highNegative);
                    low = Negated(Points(grid + (q[0] | (bits << 8 & 256)), grid + (q[1] | (bits << 7 & 256)),
                        grid + (q[2] | (bits << 6 & 256)), grid + (q[3] | (bits << 5 & 256))), lowNegative);
                    high = Negated(Points(grid + (q[4] | (bits << 4 & 256)), grid + (q[5] | (bits << 3 & 256)),
                        grid + (q[6] | (bits << 2 & 256)), grid + (q[7] | (bits << 1 & 256))), highNegative);
                    m0 = m1 = 2 * (x[BlockLayouts.IQ3_S.Scales + (sub >> 1)] >> (4 * (sub & 1)) & 0xF) + 1;
                    return;
                }
            case GgmlType.IQ1_S:
                {
                    ulong* grid = Grid1;
                    byte* q = x + BlockLayouts.IQ1_S.Qs + 4 * sub;
                    int bits = *(ushort*)(x + BlockLayouts.IQ1_S.Qh + 2 * sub);
                    // One shift sign (bit 15) for the whole sub-block: 1, or −1 made without a branch.
                    var shift = Vector128.Create((sbyte)(1 | -(bits >> 15 & 1)));
                    low = Eighths(Points(grid + (q[0] | (bits << 8 & 0x700)), grid + (q[1] | (bits << 5 & 0x700))), shift);
                    high = Eighths(Points(grid + (q[2] | (bits << 2 & 0x700)), grid + (q[3] | (bits >> 1 & 0x700))), shift);
                    m0 = m1 = 2 * (bits >> 12 & 7) + 1;
                    return;
                }
            default:
                {
                    ulong* grid = Grid1;
                    byte* q = x + BlockLayouts.IQ1_M.Qs + 4 * sub;
                    byte* qh = x + BlockLayouts.IQ1_M.Qh + 2 * sub;
                    int bits = *(ushort*)qh;
                    // Bit 3 of each nibble is its group's shift sign: the qh byte of two groups, replicated and tested against
                    // bit 3 in the first 8 lanes and bit 7 in the next, gives all ones (−1) where set; OR 1 makes the rest 1.
                    var shiftBit = Vector128.Create(0x0808080808080808UL, 0x8080808080808080UL).AsByte();
                    var lowShift = AdvSimd.CompareTest(AdvSimd.LoadAndReplicateToVector128(qh), shiftBit).AsSByte() | Vector128<sbyte>.One;
                    var highShift = AdvSimd.CompareTest(AdvSimd.LoadAndReplicateToVector128(qh + 1), shiftBit).AsSByte() | Vector128<sbyte>.One;
                    low = Eighths(Points(grid + (q[0] | (bits << 8 & 0x700)), grid + (q[1] | (bits << 4 & 0x700))), lowShift);
                    high = Eighths(Points(grid + (q[2] | (bits & 0x700)), grid + (q[3] | (bits >> 4 & 0x700))), highShift);
                    int word = *(ushort*)(x + BlockLayouts.IQ1_M.Scales + 2 * (sub >> 1)) >> (6 * (sub & 1));
                    m0 = 2 * (word & 7) + 1;
                    m1 = 2 * (word >> 3 & 7) + 1;
                    return;
                }
        }
    }

    /// <summary>Two 8-byte table entries as one vector, <paramref name="first"/> in the low half, loaded straight into the register.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Points(ulong* first, ulong* second) =>
        AdvSimd.LoadAndInsertScalar(AdvSimd.LoadVector64(first).ToVector128Unsafe(), 1, second).AsSByte();

    /// <summary>Four 4-byte grid points as one vector, in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Points(uint* p0, uint* p1, uint* p2, uint* p3) =>
        AdvSimd.LoadAndInsertScalar(AdvSimd.LoadAndInsertScalar(AdvSimd.LoadAndInsertScalar(
            AdvSimd.LoadAndReplicateToVector128(p0), 1, p1), 2, p2), 3, p3).AsSByte();

    /// <summary>
    /// Four plain sign bytes (one per group of 8) as byte masks, all ones where the element is negative: bytes 0–1 for
    /// elements 0–15 in <paramref name="low"/>, bytes 2–3 for 16–31 in <paramref name="high"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SignMasks(byte* signs, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        Vector128<byte> bytes = AdvSimd.LoadAndReplicateToVector128((uint*)signs).AsByte();
        var bitOfByte = Vector128.Create(0x8040201008040201UL).AsByte();
        low = AdvSimd.CompareTest(AdvSimd.Arm64.VectorTableLookup(bytes, Vector128.Create(0x0000000000000000UL, 0x0101010101010101UL).AsByte()), bitOfByte).AsSByte();
        high = AdvSimd.CompareTest(AdvSimd.Arm64.VectorTableLookup(bytes, Vector128.Create(0x0202020202020202UL, 0x0303030303030303UL).AsByte()), bitOfByte).AsSByte();
    }

    /// <summary>−v where <paramref name="mask"/> is all ones, v where it is zero (two's complement: (v ^ m) − m).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Negated(Vector128<sbyte> v, Vector128<sbyte> mask) => (v ^ mask) - mask;

    /// <summary>A 1-bit group's values in units of 1/8: 8·grid + shift (−9, −7, −1, 1, 7 or 9).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> Eighths(Vector128<sbyte> points, Vector128<sbyte> shifts) =>
        AdvSimd.ShiftLeftLogical(points, 3) + shifts;
}
