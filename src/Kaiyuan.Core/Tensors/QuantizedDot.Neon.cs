using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace Kaiyuan.Tensors;

/// <summary>
/// Arm64 kernels: AdvSimd with the ARMv8.2 dot-product instructions (sdot), 128-bit, in the shape of llama.cpp's NEON
/// kernels: a block's int8 products summed by sdot into four int32 lanes, converted and multiply-added with the block
/// scale (even and odd blocks in separate accumulators), K-quant sub-blocks reduced to scalars and weighted by their
/// integer scales. The integer sums are exact, so results differ from the scalar reference only in float rounding.
/// Types without a kernel here use the scalar reference.
/// </summary>
internal static unsafe class NeonDot
{
    /// <summary>True when <see cref="Dot"/> has a NEON kernel for <paramref name="weightType"/>.</summary>
    public static bool Has(GgmlType weightType) => weightType is GgmlType.F32 or GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.Q8_0
        or GgmlType.Q4_K or GgmlType.Q6_K;

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
                GgmlType.Q4_K => Q4_K(x, y, n / BlockLayouts.QK_K),
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
            Vector128<byte> qh = Vector128.Create(*(uint*)(x + BlockLayouts.Q5_0.Qh)).AsByte();
            var bitOfByte = Vector128.Create(0x8040201008040201UL).AsByte();
            Vector128<byte> lowSet = SpreadBits(qh, Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), bitOfByte);
            Vector128<byte> highSet = SpreadBits(qh, Vector128.Create((byte)2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3), bitOfByte);
            var top = Vector128.Create((byte)0xF0);
            low = ((bits & Vector128.Create((byte)0xF)) | (~lowSet & top)).AsSByte();
            high = (AdvSimd.ShiftRightLogical(bits, 4) | (~highSet & top)).AsSByte();
        }

        /// <summary>0xFF in byte j where bit j % 8 of byte <c>index[j]</c> of <paramref name="bytes"/> is set.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector128<byte> SpreadBits(Vector128<byte> bytes, Vector128<byte> index, Vector128<byte> bitOfByte) =>
            Vector128.Equals(AdvSimd.Arm64.VectorTableLookup(bytes, index) & bitOfByte, bitOfByte);
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

    /// <summary>Σ over 16 signed quants times 16 activations, as one int.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Sum16(Vector128<sbyte> q, sbyte* y) =>
        Vector128.Sum(Dp.DotProduct(Vector128<int>.Zero, q, Vector128.Load(y)));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_K(byte* x, byte* y, int blocks)
    {
        float sum = 0;
        var nibble = Vector128.Create((byte)0xF);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q4_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong mins);
            short* bsums = (short*)(y + BlockLayouts.Q8_K.BSums);
            int minSum = 0;
            for (int j = 0; j < 8; j++) minSum += (int)((mins >> (8 * j)) & 0xFF) * (bsums[2 * j] + bsums[2 * j + 1]);

            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            int total = 0;
            for (int pair = 0; pair < 4; pair++, q8 += 64)
            {
                // 32 bytes of nibbles: low nibbles are sub-block 2·pair, high nibbles 2·pair + 1.
                Vector128<byte> bits0 = Vector128.Load(x + BlockLayouts.Q4_K.Qs + pair * 32);
                Vector128<byte> bits1 = Vector128.Load(x + BlockLayouts.Q4_K.Qs + pair * 32 + 16);
                int low = Sum16((bits0 & nibble).AsSByte(), q8) + Sum16((bits1 & nibble).AsSByte(), q8 + 16);
                int high = Sum16(AdvSimd.ShiftRightLogical(bits0, 4).AsSByte(), q8 + 32) + Sum16(AdvSimd.ShiftRightLogical(bits1, 4).AsSByte(), q8 + 48);
                total += low * (int)((scales >> (16 * pair)) & 0xFF) + high * (int)((scales >> (16 * pair + 8)) & 0xFF);
            }

            float yd = *(float*)(y + BlockLayouts.Q8_K.D);
            sum += yd * Half(x + BlockLayouts.Q4_K.D) * total - yd * Half(x + BlockLayouts.Q4_K.DMin) * minSum;
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
