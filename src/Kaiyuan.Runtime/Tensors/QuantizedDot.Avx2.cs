using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// AVX2 + FMA kernels. Each follows the lane layout of llama.cpp's x86 kernel for the type: the integer products of
/// every 32-element chunk are reduced into 8 int32 lanes (lane k holding elements 4k..4k+3), converted to float and
/// multiply-added with the block scale into 8 float lanes, which are summed as hsum_float_8 does. Integer sums are exact,
/// so the float result depends only on that layout, not on the instructions used to form the sums.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>Dot product of a weight row of <paramref name="n"/> elements with an activation row in the type's activation format.</summary>
    /// <param name="weightType">The weight row's type.</param>
    /// <param name="w">The weight row's bytes.</param>
    /// <param name="a">The activation row's bytes, as <see cref="QuantizedDot.QuantizeActivations"/> writes them.</param>
    /// <param name="n">Elements per row.</param>
    /// <param name="vnni">Form int8 block sums with AVX-VNNI.</param>
    /// <param name="wide">Use the 512-bit kernels where one exists: the float types, and IQ2_XXS where the CPU has VBMI (same lane layout, same result).</param>
    public static float Dot(GgmlType weightType, ReadOnlySpan<byte> w, ReadOnlySpan<byte> a, int n, bool vnni, bool wide)
    {
        fixed (byte* x = w)
        fixed (byte* y = a)
        {
            return weightType switch
            {
                GgmlType.Q5_0 or Q5Fields.Type when wide && SumsEvenOddApart(weightType) => EvenOddDot(weightType, x, y, n, vnni),
                GgmlType.F32 => FloatDot.F32(x, y, n, wide: wide),
                GgmlType.F16 => FloatDot.F16(x, y, n, wide: wide),
                GgmlType.BF16 => FloatDot.BF16(x, y, n, wide: wide),
                GgmlType.Q4_0 => Block32<Q4Block>(x, y, n / BlockLayouts.QK, vnni),
                GgmlType.Q4_1 => MinBlocks<Q41Pair>(x, y, n / BlockLayouts.QK, vnni),
                GgmlType.Q5_0 => Block32<Q5Block>(x, y, n / BlockLayouts.QK, vnni),
                Q5Fields.Type => Block32<Q5FieldsBlock>(x, y, n / BlockLayouts.QK, vnni),
                GgmlType.Q5_1 => MinBlocks<Q51Pair>(x, y, n / BlockLayouts.QK, vnni),
                GgmlType.Q8_0 => Block32<Q8Block>(x, y, n / BlockLayouts.QK, vnni),
                _ when wide && HasWideLowK(weightType) => LowKDot(weightType, x, y, n / BlockLayouts.QK_K),
                GgmlType.Q2_K => Q2_K(x, y, n / BlockLayouts.QK_K),
                GgmlType.Q3_K => Q3_K(x, y, n / BlockLayouts.QK_K),
                GgmlType.Q4_K => wide && HasWideKQuants ? Q4_KWide(x, y, n / BlockLayouts.QK_K) : Q4_K(x, y, n / BlockLayouts.QK_K),
                GgmlType.Q5_K => Q5_K(x, y, n / BlockLayouts.QK_K),
                GgmlType.Q6_K => Q6_K(x, y, n / BlockLayouts.QK_K),
                GgmlType.IQ4_NL => Block32<Iq4NlBlock>(x, y, n / BlockLayouts.QK, vnni),
                GgmlType.IQ4_XS => wide && HasWideKQuants ? Iq4XsWide(x, y, n / BlockLayouts.QK_K) : Iq4XsTile1(x, y, n / BlockLayouts.QK_K),
                GgmlType.TQ1_0 => TQ1_0(x, y, n / BlockLayouts.QK_K, vnni),
                GgmlType.TQ2_0 => TQ2_0(x, y, n / BlockLayouts.QK_K, vnni),
                _ when IqGridDecoder.Handles(weightType) => GridQuant(weightType, x, y, n / BlockLayouts.QK_K, wide),
                _ => throw new NotSupportedException($"No vector dot for {weightType}."),
            };
        }
    }

    /// <summary>True when <paramref name="weightType"/>'s dots here sum even and odd blocks apart, not in the 256-bit kernel's block order (Q5_0 with VBMI: <see cref="Q5_0Vbmi(byte*, byte*, byte*, int, bool)"/>).</summary>
    internal static bool SumsEvenOddApart(GgmlType weightType) => weightType is GgmlType.Q5_0 or Q5Fields.Type && HasVbmi;

    /// <summary>
    /// A row dot of a type that sums even and odd blocks apart (<see cref="SumsEvenOddApart"/>), by its one-token kernel,
    /// for a caller without the activation row's side data: derived here, so this dot keeps the matrix kernels' bits.
    /// </summary>
    private static float EvenOddDot(GgmlType weightType, byte* x, byte* y, int n, bool vnni)
    {
        const int StackBytes = 16 * 1024;
        int bytes = SideBytes(weightType, n);
        byte[]? rented = bytes > StackBytes ? System.Buffers.ArrayPool<byte>.Shared.Rent(bytes) : null;
        // Only the bytes needed: the project does not skip locals' zeroing, so a fixed 16 KB was cleared on every call.
        Span<byte> buffer = rented is null ? stackalloc byte[bytes] : rented;
        try
        {
            fixed (byte* side = buffer)
            {
                PrepareSide(weightType, y, n, side);
                return Dot1(weightType, x, y, side, n, vnni);
            }
        }
        finally
        {
            if (rented is not null) System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// How far ahead of the block being read the single-row kernels prefetch. A decode step streams every weight once
    /// from DRAM; on the 2-core Zen 3 machine this was written on, the hardware prefetcher alone left ~30% of the
    /// bandwidth unused (measured: 4 KiB ahead lifted the 136 MB Q8_0 output head from ~13 to ~16 GB/s).
    /// </summary>
    internal const int PrefetchDistance = 4096;

    /// <summary>Prefetches the cache lines of a K-quant block <see cref="PrefetchDistance"/> bytes ahead.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchBlock(byte* x, int blockBytes)
    {
        for (int offset = 0; offset < blockBytes; offset += 64) Sse.Prefetch0(x + PrefetchDistance + offset);
    }

    /// <summary>An fp16 block scale as float, looked up in <see cref="HalfTable"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Half(byte* p) => HalfTable[*(ushort*)p];

    /// <summary>
    /// All 65,536 fp16 → float conversions (256 KiB, built once from <see cref="Half16.ToSingle"/>), as ggml keeps
    /// one for CPUs without F16C. .NET exposes no scalar F16C, and converting arithmetically costs three register moves
    /// and a dozen integer operations per block; a model's scales touch few distinct entries, so the lookup stays in
    /// cache. Measured with `bench matmul` (4 interleaved runs, 2 threads): Q8_0 decode 17 → 22 GMAC/s, Q5_0 10 → 13,
    /// Q4_K prompt tiles 40 → 54; `bench` on the Q4_K_M synth: tg64 23.6 → 28.2 tok/s (medians of 3).
    /// </summary>
    private static readonly float* HalfTable = BuildHalfTable();

    private static float* BuildHalfTable()
    {
        var table = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int h = 0; h < 65536; h++) table[h] = Half16.ToSingle((ushort)h);
        return table;
    }

    /// <summary>llama.cpp's hsum_float_8: halves added, then ((l0 + l2) + (l1 + l3)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float HorizontalSum(Vector256<float> v)
    {
        Vector128<float> r = Sse.Add(v.GetUpper(), v.GetLower());
        r = Sse.Add(r, Sse.MoveHighToLow(r, r));
        r = Sse.AddScalar(r, Sse3.MoveHighAndDuplicate(r));
        return r.ToScalar();
    }

    /// <summary>Sum of x*y over each group of 4 bytes, x and y signed (|x| &lt;= 127 or y != -128).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SumProductsSigned(Vector256<sbyte> x, Vector256<sbyte> y, bool vnni)
    {
        // Move the sign of x onto y so the unsigned-by-signed multiply applies.
        Vector256<byte> absX = Avx2.Sign(x, x).AsByte();
        Vector256<sbyte> signedY = Avx2.Sign(y, x);
        return SumProductsUnsigned(absX, signedY, vnni);
    }

    /// <summary>Sum of x*y over each group of 4 bytes, x unsigned (pairs must not saturate int16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SumProductsUnsigned(Vector256<byte> x, Vector256<sbyte> y, bool vnni)
    {
        if (vnni)
        {
            return AvxVnni.MultiplyWideningAndAdd(Vector256<int>.Zero, x, y);
        }

        Vector256<short> pairs = Avx2.MultiplyAddAdjacent(x, y);
        return Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1));
    }

    /// <summary>32 nibbles: low nibbles of the 16 bytes become elements 0..15, high nibbles 16..31.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Nibbles32(byte* p)
    {
        // The 16 bytes in both lanes (a load-port broadcast), the upper lane shifted down a nibble, one mask for both.
        Vector256<byte> raw = Avx2.BroadcastVector128ToVector256(p);
        Vector256<int> shifted = Vector256.ShiftRightLogical(raw.AsUInt16(), 4).AsInt32();
        return Avx2.Blend(raw.AsInt32(), shifted, 0xF0).AsByte() & Vector256.Create((byte)0x0F);
    }

    /// <summary>Byte j is 0xFF where bit j of the 32-bit little-endian value at <paramref name="bits"/> is set, else 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> BytesFromBits(byte* bits) =>
        // Broadcast straight from memory: a load, where a value in a register costs two more vector operations.
        BytesFromBroadcastBits(Avx2.BroadcastScalarToVector256((uint*)bits));

    /// <summary><see cref="BytesFromBits"/> of a 32-bit value already broadcast to every lane.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> BytesFromBroadcastBits(Vector256<uint> bits)
    {
        Vector256<byte> spread = Avx2.Shuffle(bits.AsByte(),
            Vector256.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                             2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
        Vector256<byte> bitOfByte = Vector256.Create(0x8040201008040201UL).AsByte();
        return Vector256.Equals(spread & bitOfByte, bitOfByte);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockFma(float scale, Vector256<int> sums, Vector256<float> acc) => BlockFma(Vector256.Create(scale), sums, acc);

    /// <summary>
    /// <see cref="BlockFma(float, Vector256{int}, Vector256{float})"/> with the scale already in every lane. The 32-element
    /// block kernels form it as <c>Vector256.Create(dx) * Vector256.Create(dy)</c> from memory: a broadcast load and a
    /// multiply with an embedded broadcast, one vector operation where the scalar product and its broadcast took two (of
    /// 9–17 per block and row; the same product, so the same bits).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BlockFma(Vector256<float> scale, Vector256<int> sums, Vector256<float> acc) =>
        Fma.MultiplyAdd(scale, Avx.ConvertToVector256Single(sums), acc);

    /// <summary>Q8_0, Q4_0 or Q5_0 (<typeparamref name="T"/> forms the block's signed quants) against a Q8_0 row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Block32<T>(byte* x, byte* y, int blocks, bool vnni) where T : struct, IBlock32
    {
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += T.Size, y += BlockLayouts.Q8_0.Size)
        {
            var qy = Vector256.Load((sbyte*)(y + BlockLayouts.Q8_0.Qs));
            acc = BlockFma(Vector256.Create(Half(x)) * Vector256.Create(Half(y)), SumProductsSigned(T.Quants(x), qy, vnni), acc);
        }

        return HorizontalSum(acc);
    }

    /// <summary>Products of 32 unsigned quants with 32 activations, weighted per 16 elements by two int16 scales.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledChunk(Vector256<byte> q, sbyte* q8, short scaleLow, short scaleHigh)
    {
        Vector256<short> pairs = Avx2.MultiplyAddAdjacent(q, Vector256.Load(q8));
        return Avx2.MultiplyAddAdjacent(pairs, ChunkScales(scaleLow, scaleHigh));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> ChunkScales(short scaleLow, short scaleHigh) =>
        Vector256.Create(Vector128.Create(scaleLow), Vector128.Create(scaleHigh));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q2_K(byte* x, byte* y, int blocks)
    {
        var acc = Vector256<float>.Zero;
        var lowBits = Vector256.Create((byte)3);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q2_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.Q2_K.Size);
            float yd = *(float*)(y + BlockLayouts.Q8_K.D);
            float d = yd * Half(x + BlockLayouts.Q2_K.D);
            float negativeDmin = -yd * Half(x + BlockLayouts.Q2_K.DMin);
            byte* scales = x + BlockLayouts.Q2_K.Scales;
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);

            // Mins: lane k = m[2k] * bsum[2k] + m[2k+1] * bsum[2k+1].
            Vector128<byte> packed = Vector128.Load(scales);
            Vector256<short> mins = Avx2.ConvertToVector256Int16(Vector128.ShiftRightLogical(packed.AsUInt16(), 4).AsByte() & Vector128.Create((byte)0xF));
            Vector256<int> minProducts = Avx2.MultiplyAddAdjacent(mins, Vector256.Load((short*)(y + BlockLayouts.Q8_K.BSums)));
            acc = BlockFma(negativeDmin, minProducts, acc);

            var sums = Vector256<int>.Zero;
            for (int half = 0; half < 2; half++)
            {
                Vector256<ushort> bits = Vector256.Load(x + BlockLayouts.Q2_K.Qs + half * 32).AsUInt16();
                for (int plane = 0; plane < 4; plane++)
                {
                    Vector256<byte> q = Vector256.ShiftRightLogical(bits, 2 * plane).AsByte() & lowBits;
                    int group = half * 8 + plane * 2;
                    sums += ScaledChunk(q, q8 + group * 16, (short)(scales[group] & 0xF), (short)(scales[group + 1] & 0xF));
                }
            }

            acc = BlockFma(d, sums, acc);
        }

        return HorizontalSum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q3_K(byte* x, byte* y, int blocks)
    {
        var acc = Vector256<float>.Zero;
        var lowBits = Vector256.Create((byte)3);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q3_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.Q3_K.Size);
            float d = *(float*)(y + BlockLayouts.Q8_K.D) * Half(x + BlockLayouts.Q3_K.D);
            var (scalesLow, scalesHigh) = KQuantScales.UnpackQ3K(new ReadOnlySpan<byte>(x + BlockLayouts.Q3_K.Scales, 12));
            Vector256<byte> hmask = Vector256.Load(x + BlockLayouts.Q3_K.HMask);
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);

            var sums = Vector256<int>.Zero;
            for (int half = 0; half < 2; half++)
            {
                Vector256<ushort> bits = Vector256.Load(x + BlockLayouts.Q3_K.Qs + half * 32).AsUInt16();
                for (int plane = 0; plane < 4; plane++)
                {
                    // q = low2 - (high bit clear ? 4 : 0), formed as two unsigned products subtracted in int16.
                    Vector256<byte> low = Vector256.ShiftRightLogical(bits, 2 * plane).AsByte() & lowBits;
                    var bit = Vector256.Create((byte)(1 << (half * 4 + plane)));
                    Vector256<byte> minusFour = Vector256.Equals(hmask & bit, Vector256<byte>.Zero) & Vector256.Create((byte)4);
                    int group = half * 8 + plane * 2;
                    var activations = Vector256.Load(q8 + group * 16);
                    Vector256<short> pairs = Avx2.MultiplyAddAdjacent(low, activations) - Avx2.MultiplyAddAdjacent(minusFour, activations);
                    ulong biased = half == 0 ? scalesLow : scalesHigh;
                    int shift = 16 * plane;
                    var scales = ChunkScales((short)((int)((biased >> shift) & 0xFF) - 32), (short)((int)((biased >> (shift + 8)) & 0xFF) - 32));
                    sums += Avx2.MultiplyAddAdjacent(pairs, scales);
                }
            }

            acc = BlockFma(d, sums, acc);
        }

        return HorizontalSum(acc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4_K(byte* x, byte* y, int blocks)
    {
        var acc = Vector256<float>.Zero;
        var minAcc = Vector128<float>.Zero;
        var nibble = Vector256.Create((byte)0xF);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q4_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.Q4_K.Size);
            float yd = *(float*)(y + BlockLayouts.Q8_K.D);
            KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong mins);
            Vector128<short> mins16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte());
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);

            var sums = Vector256<int>.Zero;
            for (int pair = 0; pair < 4; pair++)
            {
                var scale0 = Vector256.Create((short)((scales >> (16 * pair)) & 0xFF));
                var scale1 = Vector256.Create((short)((scales >> (16 * pair + 8)) & 0xFF));
                Vector256<byte> bits = Vector256.Load(x + BlockLayouts.Q4_K.Qs + pair * 32);
                Vector256<byte> low = bits & nibble;
                Vector256<byte> high = Vector256.ShiftRightLogical(bits.AsUInt16(), 4).AsByte() & nibble;
                sums += Q4KPair(low, high, q8 + pair * 64, scale0, scale1);
            }

            minAcc = Q4KMins(y, mins16, -yd * Half(x + BlockLayouts.Q4_K.DMin), minAcc);
            acc = BlockFma(yd * Half(x + BlockLayouts.Q4_K.D), sums, acc);
        }

        return Q4KResult(acc, minAcc);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q5_K(byte* x, byte* y, int blocks)
    {
        var acc = Vector256<float>.Zero;
        float minTerms = 0;
        var nibble = Vector256.Create((byte)0xF);
        var fifthBit = Vector256.Create((byte)0x10);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q5_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.Q5_K.Size);
            float yd = *(float*)(y + BlockLayouts.Q8_K.D);
            float d = yd * Half(x + BlockLayouts.Q5_K.D);
            float negativeDmin = -yd * Half(x + BlockLayouts.Q5_K.DMin);
            KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q5_K.Scales, 12), out ulong scales, out ulong mins);
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            Vector256<byte> highBits = Vector256.Load(x + BlockLayouts.Q5_K.Qh);

            // Mins: one integer over the block, scaled into a scalar float sum (llama.cpp's summs).
            Vector128<short> bsums0 = Vector128.Load((short*)(y + BlockLayouts.Q8_K.BSums));
            Vector128<short> bsums1 = Vector128.Load((short*)(y + BlockLayouts.Q8_K.BSums) + 8);
            Vector128<short> mins16 = Sse41.ConvertToVector128Int16(Vector128.CreateScalar(mins).AsByte());
            int minSum = Vector128.Sum(Sse2.MultiplyAddAdjacent(mins16, Ssse3.HorizontalAdd(bsums0, bsums1)));

            var sums = Vector256<int>.Zero;
            for (int pair = 0; pair < 4; pair++)
            {
                short scale0 = (short)((scales >> (16 * pair)) & 0xFF);
                short scale1 = (short)((scales >> (16 * pair + 8)) & 0xFF);
                Vector256<byte> bits = Vector256.Load(x + BlockLayouts.Q5_K.Qs + pair * 32);
                var bit0 = Vector256.Create((byte)(1 << (2 * pair)));
                var bit1 = Vector256.Create((byte)(2 << (2 * pair)));
                Vector256<byte> low = (bits & nibble) | (~Vector256.Equals(highBits & bit0, Vector256<byte>.Zero) & fifthBit);
                Vector256<byte> high = (Vector256.ShiftRightLogical(bits.AsUInt16(), 4).AsByte() & nibble)
                    | (~Vector256.Equals(highBits & bit1, Vector256<byte>.Zero) & fifthBit);
                sums += ScaledChunk(low, q8 + pair * 64, scale0, scale0);
                sums += ScaledChunk(high, q8 + pair * 64 + 32, scale1, scale1);
            }

            minTerms += negativeDmin * minSum;
            acc = BlockFma(d, sums, acc);
        }

        return HorizontalSum(acc) + minTerms;
    }

    /// <summary>The IQ4 levels in both 128-bit lanes, for a per-lane byte shuffle.</summary>
    private static readonly Vector256<sbyte> Iq4Table = Vector256.Create(Vector128.Create(Iq4Levels.Values));

    /// <summary>32 IQ4 levels from 16 bytes of indices (low nibbles elements 0..15, high 16..31).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> Iq4Quants(byte* qs) => Avx2.Shuffle(Iq4Table, Nibbles32(qs).AsSByte());


    /// <summary>Σ y over a Q8_K block, from its sixteen 16-element sums, spread over eight int32 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ActivationSums(byte* y) =>
        Avx2.MultiplyAddAdjacent(Vector256.Load((short*)(y + BlockLayouts.Q8_K.BSums)), Vector256.Create((short)1));

    /// <summary>
    /// TQ2_0 against Q8_K: the codes (0..2) times y summed exactly, less Σ y (each weight is code − 1), then one float
    /// multiply-add per block in block order, so the result is the scalar reference's to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float TQ2_0(byte* x, byte* y, int blocks, bool vnni)
    {
        float sum = 0;
        var three = Vector256.Create((byte)3);
        for (int b = 0; b < blocks; b++, x += BlockLayouts.TQ2_0.Size, y += BlockLayouts.Q8_K.Size)
        {
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var sums = Vector256<int>.Zero;
            for (int c = 0; c < 2; c++)
            {
                Vector256<ushort> bits = Vector256.Load(x + BlockLayouts.TQ2_0.Qs + 32 * c).AsUInt16();
                for (int l = 0; l < 4; l++)
                {
                    Vector256<byte> codes = Vector256.ShiftRightLogical(bits, 2 * l).AsByte() & three;
                    sums += SumProductsUnsigned(codes, Vector256.Load(q8 + 128 * c + 32 * l), vnni);
                }
            }

            int sumi = Vector256.Sum(sums - ActivationSums(y));
            sum += sumi * (*(float*)(y + BlockLayouts.Q8_K.D) * Half(x + BlockLayouts.TQ2_0.D));
        }

        return sum;
    }

    /// <summary>
    /// Base-3 digits (0..2) of 32 packed bytes, digit <paramref name="power"/> = 3ⁿ per 128-bit lane: (b·3ⁿ mod 256)·3 >> 8,
    /// in 16-bit lanes for the even and the odd bytes, recombined in place.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> TernaryDigits(Vector256<ushort> packed, Vector256<ushort> power)
    {
        var low = Vector256.Create((ushort)0xFF);
        Vector256<ushort> even = ((packed & low) * power & low) * Vector256.Create((ushort)3);
        Vector256<ushort> odd = (Vector256.ShiftRightLogical(packed, 8) * power & low) * Vector256.Create((ushort)3);
        return (Vector256.ShiftRightLogical(even, 8) | (odd & Vector256.Create((ushort)0xFF00))).AsByte();
    }

    /// <summary>
    /// TQ1_0 against Q8_K: digits decoded 32 at a time, their products with y summed exactly, less Σ y, then one float
    /// multiply-add per block in block order (bit-identical to the scalar reference).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float TQ1_0(byte* x, byte* y, int blocks, bool vnni)
    {
        float sum = 0;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.TQ1_0.Size, y += BlockLayouts.Q8_K.Size)
        {
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var sums = Vector256<int>.Zero;
            // Bytes 0..31: digit n is element 32n + m.
            Vector256<ushort> first = Vector256.Load(x + BlockLayouts.TQ1_0.Qs).AsUInt16();
            ushort power = 1;
            for (int n = 0; n < 5; n++, power *= 3)
                sums += SumProductsUnsigned(TernaryDigits(first, Vector256.Create(power)), Vector256.Load(q8 + 32 * n), vnni);
            // Bytes 32..47 in both lanes: digits n and n + 1 side by side are elements 160 + 16n + m, 32 in a row.
            Vector256<ushort> second = Avx2.BroadcastVector128ToVector256(x + BlockLayouts.TQ1_0.Qs + 32).AsUInt16();
            for (int n = 0; n < 4; n += 2)
            {
                var powers = Vector256.Create(Vector128.Create((ushort)Ternary.Powers[n]), Vector128.Create((ushort)Ternary.Powers[n + 1]));
                sums += SumProductsUnsigned(TernaryDigits(second, powers), Vector256.Load(q8 + 160 + 16 * n), vnni);
            }

            // Elements 224..255 in one go: digit 4 of bytes 32..47, then the qh bytes' digits 0..3 (element 240 + 4n + j
            // is digit n of byte j: the four bytes repeated, each 16-bit lane's pair of bytes sharing one power).
            var last = Vector256.Create(Vector128.Load(x + BlockLayouts.TQ1_0.Qs + 32), Vector128.Create(*(uint*)(x + BlockLayouts.TQ1_0.Qh)).AsByte());
            sums += SumProductsUnsigned(TernaryDigits(last.AsUInt16(), LastPowers), Vector256.Load(q8 + 224), vnni);

            int sumi = Vector256.Sum(sums - ActivationSums(y));
            sum += sumi * (Half(x + BlockLayouts.TQ1_0.D) * *(float*)(y + BlockLayouts.Q8_K.D));
        }

        return sum;
    }

    /// <summary>The powers for TQ1_0's elements 224..255, one per 16-bit lane (see <see cref="TQ1_0"/>).</summary>
    private static readonly Vector256<ushort> LastPowers = Vector256.Create((ushort)81, 81, 81, 81, 81, 81, 81, 81, 1, 1, 3, 3, 9, 9, 27, 27);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q6_K(byte* x, byte* y, int blocks)
    {
        // The tiled kernels take the (q - 32)·y bias sums from side data; here each block forms its own.
        short* bias = stackalloc short[128];
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.Q6_K.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.Q6_K.Size);
            Q6KPairBias(y, BlockLayouts.QK_K, bias);
            acc = Q6KBlock(x, y, bias, acc);
        }

        return HorizontalSum(acc);
    }
}
