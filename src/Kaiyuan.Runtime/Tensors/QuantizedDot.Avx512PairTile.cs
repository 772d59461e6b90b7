using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// Small batches (2–7 activation rows: a speculative verify pass, a decode step of a few server slots) of the 32-element
/// block types on AVX-512 BW, two activation rows per 512-bit vector.
/// <para>
/// The 256-bit tiles spend about nine instructions per row per block, of which the block-sum conversion, the scale
/// product, its broadcast and the multiply-add are per row and per 32 products; at 7 rows Q5_0 and Q8_0 ran at 30–34
/// GMAC/s against 60 for the 8-row panels, and a verify pass cost four single steps. Here the weight block is decoded
/// once into both halves of a vector; each pair of activation rows then takes one load of both rows' quants (signed by
/// the weights' signs), two multiply-adds to int32 sums, one conversion, one multiply by both rows' scales and one
/// multiply-add: seven instructions for 64 products. Q4_0 and Q5_0 keep their quants unsigned (q + 8, q + 16, small
/// enough for the unsigned-by-signed multiply) and subtract the pair's precomputed offset sums instead, one instruction
/// fewer; Q5_0 unpacks two blocks per 64-byte load with VBMI as its one-row kernel does.
/// </para>
/// <para>
/// Lanes 0–7 hold the first row's eight int32 sums (lane k: elements 4k..4k+3), as the one-row kernel's vector does, and
/// lanes 8–15 the second row's; the sums are exact, the scale is the same float product, and each half meets it in one
/// multiply-add per block in block order, so each half is the one-row kernel's accumulator to the bit and its lane sum
/// the one-row result (<see cref="Dot1"/>). Where the one-row kernel sums even and odd blocks apart (Q5_0 with VBMI,
/// <see cref="EvenOddSum"/>), the tile keeps two accumulators per pair of activation rows, one for even blocks and one
/// for odd ones, and adds them lane by lane at the end, as that kernel adds its halves. The activation rows are first
/// interleaved in pairs (<see cref="PackPairs"/>,
/// once per matrix multiply): block b of pair p is one record of both rows' quants, then both rows' block scales, each
/// eight times, then for the offset types both rows' offset sums.
/// </para>
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>Where a pair record keeps its parts: the two rows' quants, their scales (each eight times), the offset types' pair bias.</summary>
    private const int PairScalesAt = 64, PairBiasAt = 128;

    /// <summary>True when <see cref="PairRows"/> runs for <paramref name="weightType"/> on this machine.</summary>
    public static bool HasPairTiles(GgmlType weightType) =>
        Avx512BW.IsSupported && weightType is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type or GgmlType.IQ4_NL;

    /// <summary>The quants' offset where a type's pair kernel keeps them unsigned (q + offset), else 0.</summary>
    private static int PairOffset(GgmlType weightType) => weightType switch
    {
        GgmlType.Q4_0 => 8,
        GgmlType.Q5_0 or Q5Fields.Type => 16,
        _ => 0,
    };

    /// <summary>Bytes of one pair's record for one block.</summary>
    private static int PairRecordBytes(GgmlType weightType) => PairOffset(weightType) != 0 ? PairBiasAt + 64 : PairBiasAt;

    /// <summary>Bytes of <see cref="PackPairs"/> output for <paramref name="tokens"/> activation rows of <paramref name="n"/> elements.</summary>
    public static int PairBytes(GgmlType weightType, int n, int tokens) => (tokens + 1) / 2 * (n / BlockLayouts.QK) * PairRecordBytes(weightType);

    /// <summary>
    /// Interleaves <paramref name="tokens"/> Q8_0 activation rows (<paramref name="activationStride"/> bytes apart) in
    /// pairs for <see cref="PairRows"/> of <paramref name="weightType"/>: record (b, p) holds rows 2p and 2p + 1's quants
    /// of block b, their block scales, each eight times, and for the offset types offset · (y₂ⱼ + y₂ⱼ₊₁) per pair of
    /// quants as int16; an odd count's last pair has zeros for its second row.
    /// </summary>
    public static void PackPairs(GgmlType weightType, byte* activations, int activationStride, int tokens, int n, byte* pairs)
    {
        int blocks = n / BlockLayouts.QK, pairCount = (tokens + 1) / 2, recordBytes = PairRecordBytes(weightType), offset = PairOffset(weightType);
        for (int b = 0; b < blocks; b++)
            for (int p = 0; p < pairCount; p++)
            {
                byte* record = pairs + ((long)b * pairCount + p) * recordBytes;
                for (int half = 0; half < 2; half++)
                {
                    int t = 2 * p + half;
                    byte* block = activations + (long)t * activationStride + b * BlockLayouts.Q8_0.Size;
                    var quants = t < tokens ? Vector256.Load(block + BlockLayouts.Q8_0.Qs) : Vector256<byte>.Zero;
                    quants.Store(record + 32 * half);
                    Vector256.Create(t < tokens ? Half(block) : 0f).Store((float*)(record + PairScalesAt) + 8 * half);
                    if (offset != 0) Avx2.MultiplyAddAdjacent(Vector256.Create((byte)offset), quants.AsSByte()).Store((short*)(record + PairBiasAt) + 16 * half);
                }
            }
    }

    /// <summary>
    /// <paramref name="weightRows"/> weight rows (<paramref name="rowBytes"/> apart) against <paramref name="tokens"/>
    /// (2–7) activation rows packed by <see cref="PackPairs"/>: <c>output[r + t · outputStride]</c> gets weight row r's dot
    /// with activation row t, the same bits as <see cref="Dot1"/>.
    /// </summary>
    public static void PairRows(GgmlType weightType, int tokens, byte* weights, long rowBytes, int weightRows, byte* pairs, int n, float* output, long outputStride)
    {
        if (!HasPairTiles(weightType)) throw new NotSupportedException($"No pair tile for {weightType}.");
        int blocks = n / BlockLayouts.QK;
        switch (weightType)
        {
            case GgmlType.Q8_0: PairRows<SignedPairBlock<Q8Block>>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            case GgmlType.IQ4_NL: PairRows<SignedPairBlock<Iq4NlBlock>>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            case GgmlType.Q4_0: PairRows<UnsignedPairBlock<Q4Unsigned>>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            case GgmlType.Q5_0 when HasVbmi: PairRows<UnsignedPairBlock<Q5VbmiUnsigned>>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            case Q5Fields.Type: PairRows<UnsignedPairBlock<Q5FieldsPairQuants>>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            default: PairRows<UnsignedPairBlock<Q5Unsigned>>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
        }
    }

    private static void PairRows<TBlock>(int tokens, byte* weights, long rowBytes, int weightRows, byte* pairs, int blocks, float* output, long outputStride)
        where TBlock : struct, IPairBlock<TBlock>
    {
        switch (tokens)
        {
            case 2: PairTile<TBlock, OneRow>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            case 3 or 4: PairTile<TBlock, TwoRows>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            case 5 or 6: PairTile<TBlock, ThreeRows>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            case 7: PairTile<TBlock, FourRows>(tokens, weights, rowBytes, weightRows, pairs, blocks, output, outputStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(tokens), tokens, "a pair tile takes 2–7 rows");
        }
    }

    /// <summary>
    /// Two weight rows at a time against <typeparamref name="TPairs"/> pairs of activation rows (its count: pairs, not rows): twice the independent
    /// accumulation chains, and each record loaded once for both rows. A last odd row runs as both rows of a step and
    /// keeps one result.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PairTile<TBlock, TPairs>(int tokens, byte* weights, long rowBytes, int weightRows, byte* pairs, int blocks, float* output, long outputStride)
        where TBlock : struct, IPairBlock<TBlock> where TPairs : struct, ITileRows
    {
        int stride = TPairs.Count * TBlock.RecordBytes, size = TBlock.Size;
        for (int row = 0; row < weightRows; row += 2, output += 2)
        {
            byte* x0 = weights + row * rowBytes, x1 = row + 1 < weightRows ? x0 + rowBytes : x0, p = pairs;
            // a, c: the two weight rows' accumulators; e, f: theirs for odd blocks where the one-row kernel keeps them apart
            // (the types that decode pairs: DecodesPairs).
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, c0 = default, c1 = default, c2 = default, c3 = default;
            Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default, f0 = default, f1 = default, f2 = default, f3 = default;
            int b = 0;
            // Two blocks per step where a type unpacks them together (its 64-byte load reads past the pair: only while a
            // further block follows in the row), the odd block to e and f.
            // (Each call site of BlockSteps inlines a Step per pair and weight row: with a few more sites than these the
            // JIT's budget ran out and every Step became a call, 64 → 40 GMAC/s at two tokens.)
            for (; TBlock.DecodesPairs && b + LoadBlocks(size) <= blocks; b += 2, x0 += 2 * size, x1 += 2 * size, p += 2 * stride)
            {
                Sse.Prefetch0(x0 + PrefetchDistance);
                Sse.Prefetch0(x1 + PrefetchDistance);
                TBlock.DecodePair(x0, lastPair: false, out var w0, out var v0);
                TBlock.DecodePair(x1, lastPair: false, out var w1, out var v1);
                BlockSteps<TBlock, TPairs>(in w0, in w1, p, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
                BlockSteps<TBlock, TPairs>(in v0, in v1, p + stride, ref e0, ref e1, ref e2, ref e3, ref f0, ref f1, ref f2, ref f3);
            }
            if (TBlock.DecodesPairs && HasLastPair(b, blocks, size))
            {
                TBlock.DecodePair(x0, lastPair: true, out var w0, out var v0);
                TBlock.DecodePair(x1, lastPair: true, out var w1, out var v1);
                BlockSteps<TBlock, TPairs>(in w0, in w1, p, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
                BlockSteps<TBlock, TPairs>(in v0, in v1, p + stride, ref e0, ref e1, ref e2, ref e3, ref f0, ref f1, ref f2, ref f3);
                b += 2;
                x0 += 2 * size;
                x1 += 2 * size;
                p += 2 * stride;
            }
            // One block at a time (b is even here), into a and c; where odd blocks have accumulators of their own, the two
            // sets trade places after each block, so a and c always take the next block's parity.
            for (; b < blocks; b++, x0 += size, x1 += size, p += stride)
            {
                Sse.Prefetch0(x0 + PrefetchDistance);
                Sse.Prefetch0(x1 + PrefetchDistance);
                BlockSteps<TBlock, TPairs>(TBlock.Decode(x0), TBlock.Decode(x1), p, ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3);
                if (TBlock.DecodesPairs) TradePlaces<TPairs>(ref a0, ref a1, ref a2, ref a3, ref c0, ref c1, ref c2, ref c3, ref e0, ref e1, ref e2, ref e3, ref f0, ref f1, ref f2, ref f3);
            }

            // The even and odd sums added lane by lane (in either order: the same bits), as the one-row kernel adds its halves.
            if (TBlock.DecodesPairs)
            {
                (a0, a1, a2, a3) = (a0 + e0, a1 + e1, a2 + e2, a3 + e3);
                (c0, c1, c2, c3) = (c0 + f0, c1 + f1, c2 + f2, c3 + f3);
            }
            StorePairs<TPairs>(output, outputStride, tokens, a0, a1, a2, a3);
            if (row + 1 < weightRows) StorePairs<TPairs>(output + 1, outputStride, tokens, c0, c1, c2, c3);
        }
    }

    /// <summary>The pairs' even and odd accumulators trade places (each pair in use: a one-line swap of all, through tuples, went through the stack).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TradePlaces<TPairs>(ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> a2, ref Vector512<float> a3, ref Vector512<float> c0,
        ref Vector512<float> c1, ref Vector512<float> c2, ref Vector512<float> c3, ref Vector512<float> e0, ref Vector512<float> e1, ref Vector512<float> e2,
        ref Vector512<float> e3, ref Vector512<float> f0, ref Vector512<float> f1, ref Vector512<float> f2, ref Vector512<float> f3) where TPairs : struct, ITileRows
    {
        Swap(ref a0, ref e0);
        Swap(ref c0, ref f0);
        if (TPairs.Count > 1) Swap(ref a1, ref e1);
        if (TPairs.Count > 1) Swap(ref c1, ref f1);
        if (TPairs.Count > 2) Swap(ref a2, ref e2);
        if (TPairs.Count > 2) Swap(ref c2, ref f2);
        if (TPairs.Count > 3) Swap(ref a3, ref e3);
        if (TPairs.Count > 3) Swap(ref c3, ref f3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Swap(ref Vector512<float> a, ref Vector512<float> b)
    {
        var t = a;
        a = b;
        b = t;
    }

    /// <summary>One block of two weight rows (<paramref name="first"/> into the a accumulators, <paramref name="second"/> into the c ones) against every pair's record from <paramref name="p"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BlockSteps<TBlock, TPairs>(in TBlock first, in TBlock second, byte* p, ref Vector512<float> a0, ref Vector512<float> a1, ref Vector512<float> a2,
        ref Vector512<float> a3, ref Vector512<float> c0, ref Vector512<float> c1, ref Vector512<float> c2, ref Vector512<float> c3)
        where TBlock : struct, IPairBlock<TBlock> where TPairs : struct, ITileRows
    {
        a0 = first.Step(p, a0);
        c0 = second.Step(p, c0);
        if (TPairs.Count > 1) a1 = first.Step(p + TBlock.RecordBytes, a1);
        if (TPairs.Count > 1) c1 = second.Step(p + TBlock.RecordBytes, c1);
        if (TPairs.Count > 2) a2 = first.Step(p + 2 * TBlock.RecordBytes, a2);
        if (TPairs.Count > 2) c2 = second.Step(p + 2 * TBlock.RecordBytes, c2);
        if (TPairs.Count > 3) a3 = first.Step(p + 3 * TBlock.RecordBytes, a3);
        if (TPairs.Count > 3) c3 = second.Step(p + 3 * TBlock.RecordBytes, c3);
    }

    /// <summary>One weight block in both halves of a vector, and what each pair of activation rows does with it.</summary>
    private interface IPairBlock<TSelf> where TSelf : struct, IPairBlock<TSelf>
    {
        /// <summary>Bytes of a weight block.</summary>
        static abstract int Size { get; }

        /// <summary>Bytes of a pair's record per block (<see cref="PairRecordBytes"/>).</summary>
        static abstract int RecordBytes { get; }

        /// <summary>
        /// True when <see cref="DecodePair"/> unpacks two blocks together (from a 64-byte load): Q5_0 with VBMI, whose
        /// one-row kernel sums even and odd blocks apart (<see cref="SumsEvenOddApart"/>), so the tile does too.
        /// </summary>
        static abstract bool DecodesPairs { get; }

        static abstract TSelf Decode(byte* x);

        /// <summary>Blocks <paramref name="x"/> and the next; <paramref name="lastPair"/>: a row's last pair, read from the 64 bytes that end with it (<see cref="HasLastPair"/>).</summary>
        static abstract void DecodePair(byte* x, bool lastPair, out TSelf first, out TSelf second);

        /// <summary>A pair's share of the block: its two rows' exact int32 sums, each half times its scale, added to <paramref name="acc"/>.</summary>
        Vector512<float> Step(byte* record, Vector512<float> acc);
    }

    /// <summary>
    /// A block of signed quants (Q8_0, IQ4_NL): the activations take the weights' signs so the unsigned-by-signed
    /// multiply-add sees |q|; |q| ≤ 128 and |y| ≤ 127 keep each pair of products within int16.
    /// </summary>
    private readonly struct SignedPairBlock<T> : IPairBlock<SignedPairBlock<T>> where T : struct, IBlock32
    {
        private readonly Vector512<byte> _magnitude;
        private readonly Vector512<sbyte> _negative;
        private readonly Vector512<float> _scale;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private SignedPairBlock(Vector256<sbyte> q, float scale)
        {
            var both = BothHalves(q);
            _magnitude = Avx512BW.Abs(both);
            _negative = Vector512.LessThan(both, Vector512<sbyte>.Zero);
            _scale = Vector512.Create(scale);
        }

        public static int Size => T.Size;

        public static int RecordBytes => PairBiasAt;

        public static bool DecodesPairs => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static SignedPairBlock<T> Decode(byte* x) => new(T.Quants(x), Half(x));

        public static void DecodePair(byte* x, bool lastPair, out SignedPairBlock<T> first, out SignedPairBlock<T> second) => throw new NotSupportedException();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> Step(byte* record, Vector512<float> acc)
        {
            var y = Vector512.Load((sbyte*)record);
            // A blend on the compare's mask register: one instruction where y ^ m − m took two.
            var signed = Vector512.ConditionalSelect(_negative, Vector512<sbyte>.Zero - y, y);
            return PairFma(Avx512BW.MultiplyAddAdjacent(_magnitude, signed), _scale, record, acc);
        }
    }

    /// <summary>A block of unsigned quants u = q + offset (Q4_0, Q5_0): the pair bias offset · (y₂ⱼ + y₂ⱼ₊₁) taken from the pair sums leaves those of q·y.</summary>
    private readonly struct UnsignedPairBlock<TQuants> : IPairBlock<UnsignedPairBlock<TQuants>> where TQuants : struct, IUnsignedQuants
    {
        private readonly Vector512<byte> _quants;
        private readonly Vector512<float> _scale;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private UnsignedPairBlock(Vector512<byte> quants, float scale)
        {
            _quants = quants;
            _scale = Vector512.Create(scale);
        }

        public static int Size => TQuants.Size;

        public static int RecordBytes => PairBiasAt + 64;

        public static bool DecodesPairs => TQuants.DecodesPairs;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static UnsignedPairBlock<TQuants> Decode(byte* x) => new(TQuants.Quants(x), Half(x));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void DecodePair(byte* x, bool lastPair, out UnsignedPairBlock<TQuants> first, out UnsignedPairBlock<TQuants> second)
        {
            TQuants.QuantsPair(x, lastPair, out var a, out var b);
            first = new(a, Half(x));
            second = new(b, Half(x + TQuants.Size));
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public Vector512<float> Step(byte* record, Vector512<float> acc) =>
            PairFma(Avx512BW.MultiplyAddAdjacent(_quants, Vector512.Load((sbyte*)record)) - Vector512.Load((short*)(record + PairBiasAt)), _scale, record, acc);
    }

    /// <summary>How a type with unsigned quants unpacks a block (or two) into both halves of a vector.</summary>
    private interface IUnsignedQuants
    {
        static abstract int Size { get; }

        static abstract bool DecodesPairs { get; }

        static abstract Vector512<byte> Quants(byte* x);

        static virtual void QuantsPair(byte* x, bool lastPair, out Vector512<byte> first, out Vector512<byte> second) => throw new NotSupportedException();
    }

    private readonly struct Q4Unsigned : IUnsignedQuants
    {
        public static int Size => BlockLayouts.Q4_0.Size;

        public static bool DecodesPairs => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Quants(byte* x) => BothHalves(Nibbles32(x + BlockLayouts.Q4_0.Qs).AsSByte()).AsByte();
    }

    /// <summary>Q5_0 without VBMI (<see cref="Q5Quants"/>).</summary>
    private readonly struct Q5Unsigned : IUnsignedQuants
    {
        public static int Size => BlockLayouts.Q5_0.Size;

        public static bool DecodesPairs => false;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Quants(byte* x) => Q5Quants(x);
    }

    /// <summary>Q5_0 with VBMI: two blocks unpacked from one 64-byte load (<see cref="Q5UnsignedPair"/>), each then copied to both halves; a row's last blocks as without.</summary>
    private readonly struct Q5VbmiUnsigned : IUnsignedQuants
    {
        public static int Size => BlockLayouts.Q5_0.Size;

        public static bool DecodesPairs => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Quants(byte* x) => Q5Quants(x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void QuantsPair(byte* x, bool lastPair, out Vector512<byte> first, out Vector512<byte> second) =>
            VbmiQuantsPair<Q5VbmiPair>(x, lastPair, out first, out second);
    }

    /// <summary>Q5_0 repacked (<see cref="Q5Fields"/>): pairs as <see cref="Q5FieldPair"/> unpacks them, a lone block as <see cref="Q5FieldsUnsigned"/>.</summary>
    private readonly struct Q5FieldsPairQuants : IUnsignedQuants
    {
        public static int Size => BlockLayouts.Q5_0.Size;

        public static bool DecodesPairs => true;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Quants(byte* x) => BothHalves(Q5FieldsUnsigned(x).AsSByte()).AsByte();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void QuantsPair(byte* x, bool lastPair, out Vector512<byte> first, out Vector512<byte> second) =>
            VbmiQuantsPair<Q5FieldsVbmiPair>(x, lastPair, out first, out second);
    }

    /// <summary>
    /// The pair of blocks at <paramref name="x"/> unpacked by a VBMI pair type (from the 64 bytes that end where the pair
    /// ends when it is a row's <paramref name="lastPair"/>), each block's quants then copied to both halves.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void VbmiQuantsPair<T>(byte* x, bool lastPair, out Vector512<byte> first, out Vector512<byte> second) where T : struct, IVbmiPair
    {
        var both = (lastPair ? T.UnsignedPair(x - LastPairBack(T.Size), new Q5Unpack(T.Controls + LastPairControls))
                             : T.UnsignedPair(x, new Q5Unpack(T.Controls))).AsUInt64();
        first = Avx512F.Shuffle4x128(both, both, 0b01_00_01_00).AsByte();
        second = Avx512F.Shuffle4x128(both, both, 0b11_10_11_10).AsByte();
    }

    /// <summary>A Q5_0 block's unsigned quants q + 16 in both halves: the fifth bits spread to bit 4 of the nibbles' bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Q5Quants(byte* x) =>
        BothHalves((Nibbles32(x + BlockLayouts.Q5_0.Qs) | (BytesFromBits(x + BlockLayouts.Q5_0.Qh) & Vector256.Create((byte)0x10))).AsSByte()).AsByte();

    /// <summary>A 256-bit vector in both halves of a 512-bit one: an insert, where Vector512.Create(q, q) goes through the stack.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> BothHalves(Vector256<sbyte> q) => Avx512F.InsertVector256(q.ToVector512Unsafe(), q, 1);

    /// <summary>Pair sums of products to int32 sums of four, converted, times both rows' block scales, added in one multiply-add.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> PairFma(Vector512<short> pairSums, Vector512<float> weightScale, byte* record, Vector512<float> acc)
    {
        var sums = Avx512BW.MultiplyAddAdjacent(pairSums, Vector512.Create((short)1));
        var scale = weightScale * Vector512.Load((float*)(record + PairScalesAt));
        return Avx512F.FusedMultiplyAdd(scale, Avx512F.ConvertToVector512Single(sums), acc);
    }

    /// <summary>Each pair's two results, from the halves of its accumulator, to <c>output[t * outputStride]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePairs<TPairs>(float* output, long outputStride, int tokens, Vector512<float> a0, Vector512<float> a1, Vector512<float> a2, Vector512<float> a3)
        where TPairs : struct, ITileRows
    {
        StorePair(output, outputStride, 0, tokens, a0);
        if (TPairs.Count > 1) StorePair(output, outputStride, 2, tokens, a1);
        if (TPairs.Count > 2) StorePair(output, outputStride, 4, tokens, a2);
        if (TPairs.Count > 3) StorePair(output, outputStride, 6, tokens, a3);
    }

    /// <summary>Activation rows <paramref name="first"/> and <paramref name="first"/> + 1's results, from the two halves of a pair's accumulator.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePair(float* output, long outputStride, int first, int tokens, Vector512<float> acc)
    {
        output[first * outputStride] = HorizontalSum(acc.GetLower());
        if (first + 1 < tokens) output[(first + 1) * outputStride] = HorizontalSum(acc.GetUpper());
    }
}
