using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace Kaiyuan.Tensors;

/// <summary>
/// Arm64 kernels: AdvSimd with the ARMv8.2 dot-product instructions (sdot), 128-bit, in the shape of llama.cpp's NEON
/// kernels: a block's int8 products summed by sdot into four int32 lanes, converted and multiply-added with the block
/// scale (even and odd blocks in separate accumulators), K-quant sub-blocks reduced to scalars and weighted by their
/// integer scales. The integer sums are exact, so results differ from the scalar reference only in float rounding.
/// The grid i-quants are in QuantizedDot.NeonGrid.cs. Types without a kernel here use the scalar reference.
/// </summary>
internal static unsafe partial class NeonDot
{
    /// <summary>True when <see cref="Dot"/> has a NEON kernel for <paramref name="weightType"/>.</summary>
    public static bool Has(GgmlType weightType) => weightType is GgmlType.F32 or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0
        or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K
        or GgmlType.IQ4_NL or GgmlType.IQ4_XS or GgmlType.TQ1_0 or GgmlType.TQ2_0 || IqGridDecoder.Handles(weightType);

    public static float Dot(GgmlType weightType, ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n)
    {
        if (!Has(weightType)) return ScalarDot.Dot(weightType, w, a, n);
        fixed (byte* x = w)
        fixed (byte* y = a)
        {
            return weightType switch
            {
                GgmlType.F32 => F32((float*)x, (float*)y, n),
                GgmlType.Q4_0 => Block32<Q4Block>(x, y, n / BlockLayouts.QK),
                GgmlType.Q5_0 => Block32<Q5Block>(x, y, n / BlockLayouts.QK),
                GgmlType.Q8_0 => Block32<Q8Block>(x, y, n / BlockLayouts.QK),
                GgmlType.Q4_1 => Block32Min<Q4_1Block>(x, y, n / BlockLayouts.QK),
                GgmlType.Q5_1 => Block32Min<Q5_1Block>(x, y, n / BlockLayouts.QK),
                GgmlType.Q2_K => Q2_K(x, y, n / BlockLayouts.QK_K),
                GgmlType.Q3_K => Q3_K(x, y, n / BlockLayouts.QK_K),
                GgmlType.Q4_K => Q4OrQ5_K(x, y, n / BlockLayouts.QK_K, fifthBit: false),
                GgmlType.Q5_K => Q4OrQ5_K(x, y, n / BlockLayouts.QK_K, fifthBit: true),
                GgmlType.IQ4_NL => Block32<Iq4NlBlock>(x, y, n / BlockLayouts.QK),
                GgmlType.IQ4_XS => IQ4_XS(x, y, n / BlockLayouts.QK_K),
                GgmlType.TQ1_0 => TQ1_0(x, y, n / BlockLayouts.QK_K),
                GgmlType.TQ2_0 => TQ2_0(x, y, n / BlockLayouts.QK_K),
                _ when IqGridDecoder.Handles(weightType) => GridQuant(weightType, x, y, n / BlockLayouts.QK_K),
                _ => Q6_K(x, y, n / BlockLayouts.QK_K),
            };
        }
    }

    private static float Half(byte* p) => Half16.ToSingle(*(ushort*)p);

    private static float F32(float* x, float* y, int n)
    {
        var a0 = Vector128<float>.Zero;
        var a1 = Vector128<float>.Zero;
        int i = 0;
        for (; i + 8 <= n; i += 8)
        {
            a0 = AdvSimd.FusedMultiplyAdd(a0, Vector128.Load(x + i), Vector128.Load(y + i));
            a1 = AdvSimd.FusedMultiplyAdd(a1, Vector128.Load(x + i + 4), Vector128.Load(y + i + 4));
        }

        float sum = Vector128.Sum(a0 + a1);
        for (; i < n; i++) sum += x[i] * y[i];
        return sum;
    }

    /// <summary>The 32 signed quants of a Q4_0 / Q5_0 / Q8_0 block as two 16-byte halves (elements 0..15, 16..31).</summary>
    private interface IBlock32
    {
        static abstract int Size { get; }

        static abstract void Quants(byte* x, out Vector128<sbyte> low, out Vector128<sbyte> high);
    }

    private readonly struct Q8Block : IBlock32
    {
        public static int Size => BlockLayouts.Q8_0.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Quants(byte* x, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            low = Vector128.Load((sbyte*)(x + BlockLayouts.Q8_0.Qs));
            high = Vector128.Load((sbyte*)(x + BlockLayouts.Q8_0.Qs + 16));
        }
    }

    /// <summary>The IQ4 levels, for a table lookup.</summary>
    private static readonly Vector128<byte> Iq4Table = Vector128.Create(Iq4Levels.Values).AsByte();

    /// <summary>32 IQ4 levels from 16 bytes of indices as two halves (low nibbles elements 0..15, high 16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Iq4Quants(byte* qs, out Vector128<sbyte> low, out Vector128<sbyte> high)
    {
        Vector128<byte> bits = Vector128.Load(qs);
        low = AdvSimd.Arm64.VectorTableLookup(Iq4Table, bits & Vector128.Create((byte)0xF)).AsSByte();
        high = AdvSimd.Arm64.VectorTableLookup(Iq4Table, AdvSimd.ShiftRightLogical(bits, 4)).AsSByte();
    }

    private readonly struct Iq4NlBlock : IBlock32
    {
        public static int Size => BlockLayouts.IQ4_NL.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Quants(byte* x, out Vector128<sbyte> low, out Vector128<sbyte> high) => Iq4Quants(x + BlockLayouts.IQ4_NL.Qs, out low, out high);
    }

    /// <summary>IQ4_XS against Q8_K: sub-block sums weighted by their integer scales − 32, one float multiply per block.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float IQ4_XS(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ4_XS.Size, y += BlockLayouts.Q8_K.Size)
        {
            var block = new ReadOnlySpan<byte>(x, BlockLayouts.IQ4_XS.Size);
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            int sumi = 0;
            for (int ib = 0; ib < 8; ib++, q8 += 32)
            {
                Iq4Quants(x + BlockLayouts.IQ4_XS.Qs + 16 * ib, out var low, out var high);
                int products = Vector128.Sum(Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, low, Vector128.Load(q8)), high, Vector128.Load(q8 + 16)));
                sumi += (Iq4Levels.XsScale(block, ib) - 32) * products;
            }

            sum += Half(x) * *(float*)(y + BlockLayouts.Q8_K.D) * sumi;
        }

        return sum;
    }

    /// <summary>Σ y over a Q8_K block, from its sixteen 16-element sums.</summary>
    private static int ActivationSum(byte* y)
    {
        var bsums = Vector128.Load((short*)(y + BlockLayouts.Q8_K.BSums)) + Vector128.Load((short*)(y + BlockLayouts.Q8_K.BSums) + 8);
        var (low, high) = Vector128.Widen(bsums);
        return Vector128.Sum(low + high);
    }

    /// <summary>TQ2_0 against Q8_K: Σ code·y by sdot, less Σ y (each weight is code − 1), then one float multiply per block in block order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float TQ2_0(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        var three = Vector128.Create((byte)3);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.TQ2_0.Size, y += BlockLayouts.Q8_K.Size)
        {
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var acc = Vector128<int>.Zero;
            for (int c = 0; c < 2; c++)
            {
                for (int h = 0; h < 2; h++)
                {
                    Vector128<byte> bits = Vector128.Load(x + BlockLayouts.TQ2_0.Qs + 32 * c + 16 * h);
                    for (int l = 0; l < 4; l++)
                        acc = Dp.DotProduct(acc, (Vector128.ShiftRightLogical(bits, 2 * l) & three).AsSByte(), Vector128.Load(q8 + 128 * c + 32 * l + 16 * h));
                }
            }

            int sumi = Vector128.Sum(acc) - ActivationSum(y);
            sum += sumi * (*(float*)(y + BlockLayouts.Q8_K.D) * Half(x + BlockLayouts.TQ2_0.D));
        }

        return sum;
    }

    /// <summary>Base-3 digits (0..2) of 16 packed bytes, digit power 3ⁿ per 16-bit lane (see <see cref="Ternary"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<sbyte> TernaryDigits(Vector128<ushort> packed, Vector128<ushort> power)
    {
        var low = Vector128.Create((ushort)0xFF);
        Vector128<ushort> even = ((packed & low) * power & low) * Vector128.Create((ushort)3);
        Vector128<ushort> odd = (Vector128.ShiftRightLogical(packed, 8) * power & low) * Vector128.Create((ushort)3);
        return (Vector128.ShiftRightLogical(even, 8) | (odd & Vector128.Create((ushort)0xFF00))).AsSByte();
    }

    /// <summary>TQ1_0 against Q8_K: digits decoded 16 at a time and summed by sdot, less Σ y, one float multiply per block in block order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float TQ1_0(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.TQ1_0.Size, y += BlockLayouts.Q8_K.Size)
        {
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var acc = Vector128<int>.Zero;
            Vector128<ushort> first0 = Vector128.Load(x + BlockLayouts.TQ1_0.Qs).AsUInt16();
            Vector128<ushort> first1 = Vector128.Load(x + BlockLayouts.TQ1_0.Qs + 16).AsUInt16();
            Vector128<ushort> second = Vector128.Load(x + BlockLayouts.TQ1_0.Qs + 32).AsUInt16();
            ushort power = 1;
            for (int n = 0; n < 5; n++, power *= 3)
            {
                var p = Vector128.Create(power);
                acc = Dp.DotProduct(acc, TernaryDigits(first0, p), Vector128.Load(q8 + 32 * n));
                acc = Dp.DotProduct(acc, TernaryDigits(first1, p), Vector128.Load(q8 + 32 * n + 16));
                acc = Dp.DotProduct(acc, TernaryDigits(second, p), Vector128.Load(q8 + 160 + 16 * n));
            }

            // The qh bytes' digits: element 240 + 4n + j is digit n of byte j (the four bytes repeated, one power per pair).
            var qh = Vector128.Create(*(uint*)(x + BlockLayouts.TQ1_0.Qh)).AsUInt16();
            acc = Dp.DotProduct(acc, TernaryDigits(qh, Vector128.Create((ushort)1, 1, 3, 3, 9, 9, 27, 27)), Vector128.Load(q8 + 240));

            int sumi = Vector128.Sum(acc) - ActivationSum(y);
            sum += sumi * (Half(x + BlockLayouts.TQ1_0.D) * *(float*)(y + BlockLayouts.Q8_K.D));
        }

        return sum;
    }

    private readonly struct Q4Block : IBlock32
    {
        public static int Size => BlockLayouts.Q4_0.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Quants(byte* x, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            Vector128<byte> bits = Vector128.Load(x + BlockLayouts.Q4_0.Qs);
            low = ((bits & Vector128.Create((byte)0xF)) - Vector128.Create((byte)8)).AsSByte();
            high = (AdvSimd.ShiftRightLogical(bits, 4) - Vector128.Create((byte)8)).AsSByte();
        }
    }

    private readonly struct Q5Block : IBlock32
    {
        public static int Size => BlockLayouts.Q5_0.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Quants(byte* x, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            Vector128<byte> bits = Vector128.Load(x + BlockLayouts.Q5_0.Qs);
            // q − 16 as a byte: OR 0xF0 into the nibble where the fifth bit is clear (e.g. 0x0F | 0xF0 = −1).
            FifthBits(x + BlockLayouts.Q5_0.Qh, out var lowSet, out var highSet);
            var top = Vector128.Create((byte)0xF0);
            low = ((bits & Vector128.Create((byte)0xF)) | (~lowSet & top)).AsSByte();
            high = (AdvSimd.ShiftRightLogical(bits, 4) | (~highSet & top)).AsSByte();
        }
    }

    /// <summary>0xFF in byte j of <paramref name="low"/> (elements 0..15) and <paramref name="high"/> (16..31) where bit j of the 32-bit field is set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void FifthBits(byte* qh, out Vector128<byte> low, out Vector128<byte> high)
    {
        Vector128<byte> bytes = Vector128.Create(*(uint*)qh).AsByte();
        var bitOfByte = Vector128.Create(0x8040201008040201UL).AsByte();
        low = Vector128.Equals(AdvSimd.Arm64.VectorTableLookup(bytes, Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)) & bitOfByte, bitOfByte);
        high = Vector128.Equals(AdvSimd.Arm64.VectorTableLookup(bytes, Vector128.Create((byte)2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)) & bitOfByte, bitOfByte);
    }

    /// <summary>Q4_1: q in 0..15 (x = d·q + m).</summary>
    private readonly struct Q4_1Block : IBlock32
    {
        public static int Size => BlockLayouts.Q4_1.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Quants(byte* x, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            Vector128<byte> bits = Vector128.Load(x + BlockLayouts.Q4_1.Qs);
            low = (bits & Vector128.Create((byte)0xF)).AsSByte();
            high = AdvSimd.ShiftRightLogical(bits, 4).AsSByte();
        }
    }

    /// <summary>Q5_1: q in 0..31 (x = d·q + m).</summary>
    private readonly struct Q5_1Block : IBlock32
    {
        public static int Size => BlockLayouts.Q5_1.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Quants(byte* x, out Vector128<sbyte> low, out Vector128<sbyte> high)
        {
            Vector128<byte> bits = Vector128.Load(x + BlockLayouts.Q5_1.Qs);
            FifthBits(x + BlockLayouts.Q5_1.Qh, out var lowSet, out var highSet);
            var sixteen = Vector128.Create((byte)0x10);
            low = ((bits & Vector128.Create((byte)0xF)) | (lowSet & sixteen)).AsSByte();
            high = (AdvSimd.ShiftRightLogical(bits, 4) | (highSet & sixteen)).AsSByte();
        }
    }

    /// <summary>Q8_0, Q4_0 or Q5_0 against a Q8_0 row: even and odd blocks in two accumulators, as llama.cpp's NEON kernel.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Block32<T>(byte* x, byte* y, int blocks) where T : struct, IBlock32
    {
        var even = Vector128<float>.Zero;
        var odd = Vector128<float>.Zero;
        for (int b = 0; b < blocks; b++, x += T.Size, y += BlockLayouts.Q8_0.Size)
        {
            T.Quants(x, out var low, out var high);
            Vector128<int> sums = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, low, Vector128.Load((sbyte*)(y + BlockLayouts.Q8_0.Qs))),
                high, Vector128.Load((sbyte*)(y + BlockLayouts.Q8_0.Qs + 16)));
            var scaled = Vector128.ConvertToSingle(sums) * (Half(x) * Half(y));
            if ((b & 1) == 0) even += scaled;
            else odd += scaled;
        }

        return Vector128.Sum(even) + Vector128.Sum(odd);
    }

    /// <summary>Q4_1 or Q5_1 against a Q8_1 row: d·dy·Σq·y per block plus m·s (s = dy·Σy, stored with the row).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Block32Min<T>(byte* x, byte* y, int blocks) where T : struct, IBlock32
    {
        var acc = Vector128<float>.Zero;
        float minTerms = 0;
        for (int b = 0; b < blocks; b++, x += T.Size, y += BlockLayouts.Q8_1.Size)
        {
            T.Quants(x, out var low, out var high);
            Vector128<int> sums = Dp.DotProduct(Dp.DotProduct(Vector128<int>.Zero, low, Vector128.Load((sbyte*)(y + BlockLayouts.Q8_1.Qs))),
                high, Vector128.Load((sbyte*)(y + BlockLayouts.Q8_1.Qs + 16)));
            acc += Vector128.ConvertToSingle(sums) * (Half(x) * Half(y + BlockLayouts.Q8_1.D));
            // Q4_1 and Q5_1 keep m at the same offset.
            minTerms += Half(x + BlockLayouts.Q4_1.M) * Half(y + BlockLayouts.Q8_1.S);
        }

        return Vector128.Sum(acc) + minTerms;
    }

    /// <summary>Σ over 16 signed quants times 16 activations, as one int.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Sum16(Vector128<sbyte> q, sbyte* y) =>
        Vector128.Sum(Dp.DotProduct(Vector128<int>.Zero, q, Vector128.Load(y)));

    /// <summary>Q4_K, or Q5_K (<paramref name="fifthBit"/>: bit j of qh byte l adds 16 to element 32j + l).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4OrQ5_K(byte* x, byte* y, int blocks, bool fifthBit)
    {
        float sum = 0;
        var nibble = Vector128.Create((byte)0xF);
        var sixteen = Vector128.Create((byte)0x10);
        int blockBytes = fifthBit ? BlockLayouts.Q5_K.Size : BlockLayouts.Q4_K.Size, qsOffset = fifthBit ? BlockLayouts.Q5_K.Qs : BlockLayouts.Q4_K.Qs;
        for (int b = 0; b < blocks; b++, x += blockBytes, y += BlockLayouts.Q8_K.Size)
        {
            // Q4_K and Q5_K share d, dmin and the scale field at the same offsets.
            KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong mins);
            short* bsums = (short*)(y + BlockLayouts.Q8_K.BSums);
            int minSum = 0;
            for (int j = 0; j < 8; j++) minSum += (int)((mins >> (8 * j)) & 0xFF) * (bsums[2 * j] + bsums[2 * j + 1]);

            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            int total = 0;
            for (int pair = 0; pair < 4; pair++, q8 += 64)
            {
                // 32 bytes of nibbles: low nibbles are sub-block 2·pair, high nibbles 2·pair + 1.
                Vector128<byte> bits0 = Vector128.Load(x + qsOffset + pair * 32), bits1 = Vector128.Load(x + qsOffset + pair * 32 + 16);
                Vector128<byte> low0 = bits0 & nibble, low1 = bits1 & nibble;
                Vector128<byte> high0 = AdvSimd.ShiftRightLogical(bits0, 4), high1 = AdvSimd.ShiftRightLogical(bits1, 4);
                if (fifthBit)
                {
                    Vector128<byte> qh0 = Vector128.Load(x + BlockLayouts.Q5_K.Qh), qh1 = Vector128.Load(x + BlockLayouts.Q5_K.Qh + 16);
                    low0 |= AdvSimd.ShiftLeftLogical(Vector128.ShiftRightLogical(qh0, 2 * pair) & Vector128<byte>.One, 4);
                    low1 |= AdvSimd.ShiftLeftLogical(Vector128.ShiftRightLogical(qh1, 2 * pair) & Vector128<byte>.One, 4);
                    high0 |= AdvSimd.ShiftLeftLogical(Vector128.ShiftRightLogical(qh0, 2 * pair + 1) & Vector128<byte>.One, 4);
                    high1 |= AdvSimd.ShiftLeftLogical(Vector128.ShiftRightLogical(qh1, 2 * pair + 1) & Vector128<byte>.One, 4);
                }

                int low = Sum16(low0.AsSByte(), q8) + Sum16(low1.AsSByte(), q8 + 16);
                int high = Sum16(high0.AsSByte(), q8 + 32) + Sum16(high1.AsSByte(), q8 + 48);
                total += low * (int)((scales >> (16 * pair)) & 0xFF) + high * (int)((scales >> (16 * pair + 8)) & 0xFF);
            }

            float yd = *(float*)(y + BlockLayouts.Q8_K.D);
            sum += yd * Half(x + BlockLayouts.Q4_K.D) * total - yd * Half(x + BlockLayouts.Q4_K.DMin) * minSum;
        }

        return sum;
    }

    /// <summary>Chunk c (0..7) of a 2-bit quant field, bytes l0..l0+15: bits 2j..2j+1 of bytes 32h + l, for c = 4h + j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<byte> TwoBits(byte* qs, int c, int l0) =>
        Vector128.ShiftRightLogical(Vector128.Load(qs + c / 4 * 32 + l0), 2 * (c % 4)) & Vector128.Create((byte)3);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q2_K(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q2_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            byte* scales = x + BlockLayouts.Q2_K.Scales;
            short* bsums = (short*)(y + BlockLayouts.Q8_K.BSums);
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            int total = 0, minSum = 0;
            // Sub-block g (16 elements, g = 2c + l0/16): its own 4-bit scale (low nibble) and min (high nibble).
            for (int c = 0; c < 8; c++)
            {
                for (int l0 = 0; l0 < 32; l0 += 16)
                {
                    int g = 2 * c + l0 / 16;
                    total += Sum16(TwoBits(x + BlockLayouts.Q2_K.Qs, c, l0).AsSByte(), q8 + g * 16) * (scales[g] & 0xF);
                    minSum += (scales[g] >> 4) * bsums[g];
                }
            }

            float yd = *(float*)(y + BlockLayouts.Q8_K.D);
            sum += yd * Half(x + BlockLayouts.Q2_K.D) * total - yd * Half(x + BlockLayouts.Q2_K.DMin) * minSum;
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q3_K(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        var four = Vector128.Create((byte)4);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q3_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            var (biasedLow, biasedHigh) = KQuantScales.UnpackQ3K(new ReadOnlySpan<byte>(x + BlockLayouts.Q3_K.Scales, 12));
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            int total = 0;
            for (int c = 0; c < 8; c++)
            {
                for (int l0 = 0; l0 < 32; l0 += 16)
                {
                    // q = low 2 bits − 4 where bit c of hmask[l] is clear.
                    Vector128<byte> clear = Vector128.Equals(Vector128.ShiftRightLogical(Vector128.Load(x + BlockLayouts.Q3_K.HMask + l0), c) & Vector128<byte>.One, Vector128<byte>.Zero);
                    Vector128<sbyte> q = (TwoBits(x + BlockLayouts.Q3_K.Qs, c, l0) - (clear & four)).AsSByte();
                    int g = 2 * c + l0 / 16;
                    int scale = (int)(((g < 8 ? biasedLow : biasedHigh) >> (8 * (g % 8))) & 0xFF) - 32;
                    total += Sum16(q, q8 + g * 16) * scale;
                }
            }

            sum += *(float*)(y + BlockLayouts.Q8_K.D) * Half(x + BlockLayouts.Q3_K.D) * total;
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6_K(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        var nibble = Vector128.Create((byte)0xF);
        var two = Vector128.Create((byte)3);
        var offset = Vector128.Create((byte)32);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q6_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            sbyte* scales = (sbyte*)(x + BlockLayouts.Q6_K.Scales);
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            int total = 0;
            for (int half = 0; half < 2; half++)
            {
                byte* ql = x + BlockLayouts.Q6_K.Ql + half * 64;
                byte* qh = x + BlockLayouts.Q6_K.Qh + half * 32;
                // Element l of quarter k (l < 32): low bits from ql[l] (k = 0, 2) or ql[l + 32] (k = 1, 3), low or high
                // nibble for k < 2 or k ≥ 2; high bits 2k..2k+1 of qh[l].
                for (int l0 = 0; l0 < 32; l0 += 16)
                {
                    Vector128<byte> low0 = Vector128.Load(ql + l0), low1 = Vector128.Load(ql + 32 + l0), high = Vector128.Load(qh + l0);
                    for (int quarter = 0; quarter < 4; quarter++)
                    {
                        Vector128<byte> lowSource = quarter % 2 == 0 ? low0 : low1;
                        Vector128<byte> lowBits = quarter < 2 ? lowSource & nibble : AdvSimd.ShiftRightLogical(lowSource, 4);
                        Vector128<byte> highBits = AdvSimd.ShiftLeftLogical(Vector128.ShiftRightLogical(high, 2 * quarter) & two, 4);
                        Vector128<sbyte> q = ((lowBits | highBits) - offset).AsSByte();
                        int element = half * 128 + quarter * 32 + l0;
                        total += Sum16(q, q8 + element) * scales[element / 16];
                    }
                }
            }

            sum += *(float*)(y + BlockLayouts.Q8_K.D) * Half(x + BlockLayouts.Q6_K.D) * total;
        }

        return sum;
    }
}
