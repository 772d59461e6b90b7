using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// Prompt GEMM over weight rows repacked eight at a time into an int8 panel: for every group of four columns the
/// panel holds 32 bytes, four consecutive quants of each of the eight rows. One broadcast of four activation bytes
/// then meets all eight rows in a single multiply-add, so every int32 lane is one row's running block sum, and the
/// unpacking of the quantized format is paid once per matrix call rather than once per token tile. The 2-6-bit
/// formats are stored unsigned (an offset, a min or a scale-weighted bias is taken off per block) and accumulate
/// several steps in int16 before widening; Q8_0, which is signed, moves its sign onto the activations as the
/// single-row kernels do. F32/F16/BF16 rows go to float panels (<see cref="FloatDot.PanelMultiply"/>).
/// <para>
/// The integer block sums are the single-row kernels' exactly; the float side differs in rounding order (one lane per
/// row instead of eight lanes summed at the end), by ~1e-7 relative — the same freedom llama.cpp's repacked and
/// tinyBLAS prompt kernels take.
/// </para>
/// </summary>
// The kernels are compiled fully optimized at first call ([AggressiveOptimization]): a server's first prompt would
// otherwise run them as unoptimized tier-0 code, several times slower, until tiering caught up. They are never inlined,
// so their code does not depend on the caller's tier or register pressure.
internal static unsafe partial class Avx2Dot
{
    /// <summary>Weight rows per panel: one int32 lane each.</summary>
    public const int PanelRows = 8;

    /// <summary>Activation rows a quantized panel kernel handles at once (the float kernel takes <see cref="FloatDot.PanelTokens"/>).</summary>
    private const int PanelTokensQuantized = 4;

    /// <summary>
    /// Widest column range a kernel call takes, so the range of the panel stays in a 32 KiB L1 with the activation
    /// tile: 8 KiB of int8 quants (1,024 columns) or of floats (256).
    /// </summary>
    public static int PanelColumns(GgmlType weightType) => IsFloat(weightType) ? 256 : 1024;

    private static bool IsFloat(GgmlType weightType) => weightType is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    /// <summary>True when the panel kernels handle <paramref name="weightType"/>.</summary>
    public static bool HasPanels(GgmlType weightType) => IsFloat(weightType) || weightType is GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or Q5Fields.Type
        or GgmlType.Q5_1 or GgmlType.Q8_0 or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K
        or GgmlType.IQ4_NL || (weightType == GgmlType.IQ4_XS && HasIq4XsPanels) || IqGridDecoder.Handles(weightType);

    // Per-block scale data stored after the panel's quants: d (and for Q4_1/Q5_1 then m) as 8 floats.
    private const int Block32ScaleBytes = PanelRows * sizeof(float);
    // A K-quant super-block's panel scales, for 8 (Q4_K, Q5_K) or 16 (Q2_K, Q3_K, Q6_K) sub-blocks: d and dmin as 8
    // floats each, one (sc, sc) vector per sub-block, then 8 vectors of adjacent sub-blocks' mins or scales paired for
    // the activation's 16-element sums (Q4_K/Q5_K: (m, m) per sub-block of 32; Q2_K: mins; Q3_K/Q6_K: scales).
    private const int KScalesOffset = 2 * 32;

    private static int KPairedOffset(int subBlocks) => KScalesOffset + subBlocks * 32;

    private static int KScaleBytes(int subBlocks) => KPairedOffset(subBlocks) + 8 * 32;

    // The grid i-quants run as K-quants with 16 sub-blocks of 16 (their odd multipliers) and an offset.
    private static int KSubBlocks(GgmlType weightType) => weightType is GgmlType.Q4_K or GgmlType.Q5_K ? 8 : 16;

    /// <summary>Bytes of panel scale data per weight block.</summary>
    private static int PanelScaleBytes(GgmlType weightType) => weightType switch
    {
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K => KScaleBytes(KSubBlocks(weightType)),
        GgmlType.IQ4_XS => KScaleBytes(8),
        _ when IqGridDecoder.Handles(weightType) => KScaleBytes(16),
        GgmlType.Q4_1 or GgmlType.Q5_1 => 2 * Block32ScaleBytes,
        _ => Block32ScaleBytes,
    };

    /// <summary>Bytes of one panel of <see cref="PanelRows"/> rows of <paramref name="n"/> elements.</summary>
    public static int PanelBytes(GgmlType weightType, int n) => IsFloat(weightType) ? FloatDot.PanelBytes(n)
        : PanelRows * n + n / GgmlTypeInfo.Geometry(Q5Fields.FileType(weightType)).BlockSize * PanelScaleBytes(weightType);

    /// <summary>Bytes of <see cref="PreparePanelSide"/> data per activation row.</summary>
    public static int PanelSideBytes(GgmlType weightType, int n) => weightType switch
    {
        GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type => n / BlockLayouts.QK * (sizeof(float) + sizeof(int)),
        GgmlType.Q4_1 or GgmlType.Q5_1 => n / BlockLayouts.QK * 2 * sizeof(float),
        GgmlType.Q8_0 or GgmlType.IQ4_NL => n / BlockLayouts.QK * sizeof(float),
        GgmlType.F16 or GgmlType.BF16 => n * sizeof(float),
        _ => 0,
    };

    /// <summary>
    /// Per Q8_0 activation row: each block's scale as a float, and for the offset formats (quants stored as q + 8 or
    /// q + 16) −offset·Σy, the term that turns Σ(q + offset)·y back into Σq·y. Per Q8_1 row (Q4_1, Q5_1): each
    /// block's d and s = d·Σy as floats. Per F16/BF16 row: the row widened to float.
    /// </summary>
    public static void PreparePanelSide(GgmlType weightType, byte* y, int n, byte* side)
    {
        if (weightType is GgmlType.F16 or GgmlType.BF16)
        {
            FloatDot.WidenRow(weightType, y, n, (float*)side);
            return;
        }

        int blocks = n / BlockLayouts.QK;
        float* scales = (float*)side;
        if (weightType is GgmlType.Q4_1 or GgmlType.Q5_1)
        {
            for (int b = 0; b < blocks; b++, y += BlockLayouts.Q8_1.Size)
            {
                scales[b] = Half(y + BlockLayouts.Q8_1.D);
                scales[blocks + b] = Half(y + BlockLayouts.Q8_1.S);
            }

            return;
        }

        int* offsetSums = (int*)(side + blocks * sizeof(float));
        int offset = weightType == GgmlType.Q4_0 ? 8 : 16;
        for (int b = 0; b < blocks; b++, y += BlockLayouts.Q8_0.Size)
        {
            scales[b] = Half(y);
            if (weightType is GgmlType.Q8_0 or GgmlType.IQ4_NL) continue;
            // Σy over the block: byte pairs by multiply-add with ones, then the int16 pairs summed in int32.
            Vector256<short> pairs = Avx2.MultiplyAddAdjacent(Vector256.Create((byte)1), Vector256.Load((sbyte*)(y + BlockLayouts.Q8_0.Qs)));
            offsetSums[b] = -offset * Vector256.Sum(Avx2.MultiplyAddAdjacent(pairs, Vector256.Create((short)1)));
        }
    }

    /// <summary>
    /// Repacks <see cref="PanelRows"/> weight rows (<paramref name="rowBytes"/> apart) of <paramref name="n"/> elements
    /// into <paramref name="panel"/> (<see cref="PanelBytes"/>): the quants as unsigned bytes (signed for Q8_0) in
    /// four-column groups, then the scales per block in the form the kernels load them.
    /// </summary>
    public static void PackPanel(GgmlType weightType, byte* rows, long rowBytes, int n, byte* panel)
    {
        byte* scales = panel + PanelRows * n;
        switch (weightType)
        {
            case GgmlType.F32 or GgmlType.F16 or GgmlType.BF16:
                FloatDot.PackPanel(weightType, rows, rowBytes, n, (float*)panel);
                break;
            case GgmlType.Q4_0:
                PackQuants<PanelQ4_0>(rows, rowBytes, n, panel);
                PackBlockScales(rows, rowBytes, n, BlockLayouts.Q4_0.Size, (float*)scales);
                break;
            case GgmlType.Q5_0:
                PackQuants<PanelQ5_0>(rows, rowBytes, n, panel);
                PackBlockScales(rows, rowBytes, n, BlockLayouts.Q5_0.Size, (float*)scales);
                break;
            case Q5Fields.Type:
                PackQuants<PanelQ5Fields>(rows, rowBytes, n, panel);
                PackBlockScales(rows, rowBytes, n, BlockLayouts.Q5_0.Size, (float*)scales);
                break;
            case GgmlType.Q4_1:
                PackQuants<PanelQ4_1>(rows, rowBytes, n, panel);
                PackBlockScalesAndMins(rows, rowBytes, n, BlockLayouts.Q4_1.Size, BlockLayouts.Q4_1.M, (float*)scales);
                break;
            case GgmlType.Q5_1:
                PackQuants<PanelQ5_1>(rows, rowBytes, n, panel);
                PackBlockScalesAndMins(rows, rowBytes, n, BlockLayouts.Q5_1.Size, BlockLayouts.Q5_1.M, (float*)scales);
                break;
            case GgmlType.Q8_0:
                PackQuants<PanelQ8_0>(rows, rowBytes, n, panel);
                PackBlockScales(rows, rowBytes, n, BlockLayouts.Q8_0.Size, (float*)scales);
                break;
            case GgmlType.IQ4_NL:
                // Looked up into signed levels once, the panel is a Q8_0 panel: same kernel, same block scales.
                PackQuants<PanelIq4Nl>(rows, rowBytes, n, panel);
                PackBlockScales(rows, rowBytes, n, BlockLayouts.IQ4_NL.Size, (float*)scales);
                break;
            case GgmlType.Q2_K:
                PackQuants<PanelQ2_K>(rows, rowBytes, n, panel);
                PackKScales(weightType, rows, rowBytes, n, BlockLayouts.Q2_K.Size, scales);
                break;
            case GgmlType.Q3_K:
                PackQuants<PanelQ3_K>(rows, rowBytes, n, panel);
                PackKScales(weightType, rows, rowBytes, n, BlockLayouts.Q3_K.Size, scales);
                break;
            case GgmlType.Q4_K:
                PackQuants<PanelQ4_K>(rows, rowBytes, n, panel);
                PackKScales(weightType, rows, rowBytes, n, BlockLayouts.Q4_K.Size, scales);
                break;
            case GgmlType.Q5_K:
                PackQuants<PanelQ5_K>(rows, rowBytes, n, panel);
                PackKScales(weightType, rows, rowBytes, n, BlockLayouts.Q5_K.Size, scales);
                break;
            case GgmlType.Q6_K:
                PackQuants<PanelQ6_K>(rows, rowBytes, n, panel);
                PackKScales(weightType, rows, rowBytes, n, BlockLayouts.Q6_K.Size, scales);
                break;
            case GgmlType.IQ4_XS when HasIq4XsPanels:
                PackQuants<PanelIq4Xs>(rows, rowBytes, n, panel);
                PackIq4XsScales(rows, rowBytes, n, scales);
                break;
            case var _ when IqGridDecoder.Handles(weightType):
                PackGridPanel(weightType, rows, rowBytes, n, panel);
                break;
            default:
                throw new NotSupportedException($"No panel kernel for {weightType}.");
        }
    }

    /// <summary>Decodes one row's 32 quants of chunk c (elements 32c..32c+31), in element order, for a panel.</summary>
    private interface IPanelFormat
    {
        static abstract Vector256<byte> Chunk(byte* row, int c);
    }

    /// <summary>Q4_0 as stored: q + 8 in 0..15.</summary>
    private readonly struct PanelQ4_0 : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c) => Nibbles32(row + c * BlockLayouts.Q4_0.Size + BlockLayouts.Q4_0.Qs);
    }

    /// <summary>Q5_0 as stored: q + 16 in 0..31.</summary>
    private readonly struct PanelQ5_0 : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c)
        {
            byte* x = row + c * BlockLayouts.Q5_0.Size;
            return Nibbles32(x + BlockLayouts.Q5_0.Qs) | (BytesFromBits(x + BlockLayouts.Q5_0.Qh) & Vector256.Create((byte)0x10));
        }
    }

    /// <summary>Q5_0 repacked (<see cref="Q5Fields"/>): q + 16 in 0..31 from the fields.</summary>
    private readonly struct PanelQ5Fields : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c) => Q5FieldsUnsigned(row + c * BlockLayouts.Q5_0.Size);
    }

    /// <summary>Q4_1: q in 0..15 (x = d·q + m).</summary>
    private readonly struct PanelQ4_1 : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c) => Nibbles32(row + c * BlockLayouts.Q4_1.Size + BlockLayouts.Q4_1.Qs);
    }

    /// <summary>Q5_1: q in 0..31 (x = d·q + m).</summary>
    private readonly struct PanelQ5_1 : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c)
        {
            byte* x = row + c * BlockLayouts.Q5_1.Size;
            return Nibbles32(x + BlockLayouts.Q5_1.Qs) | (BytesFromBits(x + BlockLayouts.Q5_1.Qh) & Vector256.Create((byte)0x10));
        }
    }

    /// <summary>Q8_0: signed quants.</summary>
    private readonly struct PanelQ8_0 : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c) => Vector256.Load(row + c * BlockLayouts.Q8_0.Size + BlockLayouts.Q8_0.Qs);
    }

    /// <summary>IQ4_NL: the signed grid levels of each block (stored like Q8_0's quants).</summary>
    private readonly struct PanelIq4Nl : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c) => Iq4Quants(row + c * BlockLayouts.IQ4_NL.Size + BlockLayouts.IQ4_NL.Qs).AsByte();
    }

    /// <summary>Q4_K: 0..15; each 32 bytes of nibbles hold two sub-blocks, low nibbles first.</summary>
    private readonly struct PanelQ4_K : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c)
        {
            Vector256<byte> bits = Vector256.Load(row + c / 8 * BlockLayouts.Q4_K.Size + BlockLayouts.Q4_K.Qs + c % 8 / 2 * 32);
            return (c % 2 == 0 ? bits : Vector256.ShiftRightLogical(bits.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0xF);
        }

        /// <summary>An even chunk and the next: the low and the high nibbles of the same 32 bytes, by one load and one variable shift.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<int> ChunkPair(byte* row, int c, Vector512<ushort> nibbleShifts)
        {
            Vector256<byte> bits = Vector256.Load(row + c / 8 * BlockLayouts.Q4_K.Size + BlockLayouts.Q4_K.Qs + c % 8 / 2 * 32);
            var both = Avx512F.InsertVector256(bits.ToVector512Unsafe(), bits, 1).AsUInt16();
            return (Avx512BW.ShiftRightLogicalVariable(both, nibbleShifts).AsByte() & Vector512.Create((byte)0xF)).AsInt32();
        }
    }

    /// <summary>Q5_K: 0..31, Q4_K's nibbles with a fifth bit: bit c of qh byte l belongs to element 32c + l.</summary>
    private readonly struct PanelQ5_K : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c)
        {
            byte* block = row + c / 8 * BlockLayouts.Q5_K.Size;
            Vector256<byte> bits = Vector256.Load(block + BlockLayouts.Q5_K.Qs + c % 8 / 2 * 32);
            Vector256<byte> low = (c % 2 == 0 ? bits : Vector256.ShiftRightLogical(bits.AsUInt16(), 4).AsByte()) & Vector256.Create((byte)0xF);
            return low | Vector256.ShiftLeft(BitOfEachByte(block + BlockLayouts.Q5_K.Qh, c % 8).AsUInt16(), 4).AsByte();
        }
    }

    /// <summary>Q3_K as q + 4 in 0..7: two bits from a 2-bit plane of qs, the third (set: no −4) from hmask.</summary>
    private readonly struct PanelQ3_K : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c)
        {
            byte* block = row + c / 8 * BlockLayouts.Q3_K.Size;
            Vector256<byte> low = TwoBitPlane(block + BlockLayouts.Q3_K.Qs, c % 8);
            return low | Vector256.ShiftLeft(BitOfEachByte(block + BlockLayouts.Q3_K.HMask, c % 8).AsUInt16(), 2).AsByte();
        }
    }

    /// <summary>Q2_K: 0..3 from the 2-bit planes.</summary>
    private readonly struct PanelQ2_K : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c) => TwoBitPlane(row + c / 8 * BlockLayouts.Q2_K.Size + BlockLayouts.Q2_K.Qs, c % 8);
    }

    /// <summary>Chunk c (0..7) of a 2-bit quant field: bits 2j..2j+1 of bytes 32h..32h+31, for c = 4h + j.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> TwoBitPlane(byte* qs, int c) =>
        Vector256.ShiftRightLogical(Vector256.Load(qs + c / 4 * 32).AsUInt16(), 2 * (c % 4)).AsByte() & Vector256.Create((byte)3);

    /// <summary>Bit <paramref name="bit"/> of each of the 32 bytes at <paramref name="p"/>, as 0 or 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> BitOfEachByte(byte* p, int bit) =>
        Vector256.ShiftRightLogical(Vector256.Load(p).AsUInt16(), bit).AsByte() & Vector256.Create((byte)1);

    /// <summary>Q6_K as stored: q + 32 in 0..63.</summary>
    private readonly struct PanelQ6_K : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c)
        {
            int half = c % 8 / 4;
            byte* block = row + c / 8 * BlockLayouts.Q6_K.Size;
            Vector256<byte> low0 = Vector256.Load(block + BlockLayouts.Q6_K.Ql + half * 64);
            Vector256<byte> low1 = Vector256.Load(block + BlockLayouts.Q6_K.Ql + half * 64 + 32);
            Vector256<ushort> high = Vector256.Load(block + BlockLayouts.Q6_K.Qh + half * 32).AsUInt16();
            return Q6Quants(low0, low1, high, c % 4);
        }
    }

    /// <summary>Every 32-element chunk of the eight rows, decoded and transposed into 8 panel steps (256 bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackQuants<T>(byte* rows, long rowBytes, int n, byte* panel) where T : struct, IPanelFormat
    {
        int c = 0;
        if (Avx512BW.IsSupported)
        {
            // Two chunks per 512-bit row vector, transposed by three rounds of two-source dword permutes: a third of the
            // 256-bit transpose's shuffles per chunk.
            int* indices = PanelTransposeIndices;
            // Q4_K's nibble shifts are the wide tile's (words 0–15 by 0, 16–31 by 4).
            var nibbleShifts = Vector512.Load((ushort*)WideKControls + 448);
            if (typeof(T) == typeof(PanelQ6_K))
            {
                // Q6_K: a half block's four chunks come unpacked two by two from one load of its low and high bits each
                // (Q6KHalfQuants); each pass keeps one of the two pairs, and the JIT drops the other's operations.
                short* controls = (short*)WideKControls;
                for (; c < n / BlockLayouts.QK; c += 4, panel += 1024)
                {
                    long at = c / 8 * BlockLayouts.Q6_K.Size;
                    int half = c % 8 / 4;
                    byte* ql = rows + at + BlockLayouts.Q6_K.Ql + 64 * half, qh = rows + at + BlockLayouts.Q6_K.Qh + 32 * half;
                    TransposeChunkPair(Q6First(ql, qh, controls), Q6First(ql + rowBytes, qh + rowBytes, controls), Q6First(ql + 2 * rowBytes, qh + 2 * rowBytes, controls),
                        Q6First(ql + 3 * rowBytes, qh + 3 * rowBytes, controls), Q6First(ql + 4 * rowBytes, qh + 4 * rowBytes, controls), Q6First(ql + 5 * rowBytes, qh + 5 * rowBytes, controls),
                        Q6First(ql + 6 * rowBytes, qh + 6 * rowBytes, controls), Q6First(ql + 7 * rowBytes, qh + 7 * rowBytes, controls), indices, panel);
                    TransposeChunkPair(Q6Second(ql, qh, controls), Q6Second(ql + rowBytes, qh + rowBytes, controls), Q6Second(ql + 2 * rowBytes, qh + 2 * rowBytes, controls),
                        Q6Second(ql + 3 * rowBytes, qh + 3 * rowBytes, controls), Q6Second(ql + 4 * rowBytes, qh + 4 * rowBytes, controls), Q6Second(ql + 5 * rowBytes, qh + 5 * rowBytes, controls),
                        Q6Second(ql + 6 * rowBytes, qh + 6 * rowBytes, controls), Q6Second(ql + 7 * rowBytes, qh + 7 * rowBytes, controls), indices, panel + 512);
                }
            }
            for (; c + 1 < n / BlockLayouts.QK; c += 2, panel += 512)
            {
                TransposeChunkPair(ChunkPair<T>(rows, c, nibbleShifts), ChunkPair<T>(rows + rowBytes, c, nibbleShifts), ChunkPair<T>(rows + 2 * rowBytes, c, nibbleShifts),
                    ChunkPair<T>(rows + 3 * rowBytes, c, nibbleShifts), ChunkPair<T>(rows + 4 * rowBytes, c, nibbleShifts), ChunkPair<T>(rows + 5 * rowBytes, c, nibbleShifts),
                    ChunkPair<T>(rows + 6 * rowBytes, c, nibbleShifts), ChunkPair<T>(rows + 7 * rowBytes, c, nibbleShifts), indices, panel);
            }
        }
        for (; c < n / BlockLayouts.QK; c++, panel += 256)
        {
            Transpose8x8(T.Chunk(rows, c).AsInt32(), T.Chunk(rows + rowBytes, c).AsInt32(), T.Chunk(rows + 2 * rowBytes, c).AsInt32(),
                T.Chunk(rows + 3 * rowBytes, c).AsInt32(), T.Chunk(rows + 4 * rowBytes, c).AsInt32(), T.Chunk(rows + 5 * rowBytes, c).AsInt32(),
                T.Chunk(rows + 6 * rowBytes, c).AsInt32(), T.Chunk(rows + 7 * rowBytes, c).AsInt32(), panel);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q6First(byte* ql, byte* qh, short* controls) => new Q6KHalfQuants(ql, qh, controls).First.AsInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Q6Second(byte* ql, byte* qh, short* controls) => new Q6KHalfQuants(ql, qh, controls).Second.AsInt32();

    /// <summary>Chunks <paramref name="c"/> (even) and <paramref name="c"/> + 1 of one row as dwords 0–7 and 8–15.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> ChunkPair<T>(byte* row, int c, Vector512<ushort> nibbleShifts) where T : struct, IPanelFormat =>
        typeof(T) == typeof(PanelQ4_K) ? PanelQ4_K.ChunkPair(row, c, nibbleShifts)
        : Avx512F.InsertVector256(T.Chunk(row, c).AsInt32().ToVector512Unsafe(), T.Chunk(row, c + 1).AsInt32(), 1);

    /// <summary>
    /// Stores two chunks' panel steps (512 bytes): dword s·8 + r of each chunk's 256 bytes is dword s of row r's chunk.
    /// Round one interleaves row pairs, round two row quads (steps 0–3 and 4–7 apart), round three puts the quads
    /// together two steps at a time; each round is eight two-source permutes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TransposeChunkPair(Vector512<int> v0, Vector512<int> v1, Vector512<int> v2, Vector512<int> v3,
        Vector512<int> v4, Vector512<int> v5, Vector512<int> v6, Vector512<int> v7, int* indices, byte* dst)
    {
        var pairLow = Vector512.Load(indices);
        var pairHigh = Vector512.Load(indices + 16);
        var quadLow = Vector512.Load(indices + 32);
        var quadHigh = Vector512.Load(indices + 48);
        var stepsLow = Vector512.Load(indices + 64);
        var stepsHigh = Vector512.Load(indices + 80);
        for (int chunk = 0; chunk < 2; chunk++, dst += 256)
        {
            var pairs = chunk == 0 ? pairLow : pairHigh;
            var p01 = Avx512F.PermuteVar16x32x2(v0, pairs, v1);
            var p23 = Avx512F.PermuteVar16x32x2(v2, pairs, v3);
            var p45 = Avx512F.PermuteVar16x32x2(v4, pairs, v5);
            var p67 = Avx512F.PermuteVar16x32x2(v6, pairs, v7);
            for (int half = 0; half < 2; half++)
            {
                var quad = half == 0 ? quadLow : quadHigh;
                var q0123 = Avx512F.PermuteVar16x32x2(p01, quad, p23);
                var q4567 = Avx512F.PermuteVar16x32x2(p45, quad, p67);
                Avx512F.PermuteVar16x32x2(q0123, stepsLow, q4567).Store((int*)(dst + half * 128));
                Avx512F.PermuteVar16x32x2(q0123, stepsHigh, q4567).Store((int*)(dst + half * 128 + 64));
            }
        }
    }

    /// <summary>
    /// The six index vectors of <see cref="TransposeChunkPair"/>, 64-byte aligned (16 dwords each; 16 + i selects the
    /// second source).
    /// </summary>
    private static readonly int* PanelTransposeIndices = BuildPanelTransposeIndices();

    private static int* BuildPanelTransposeIndices()
    {
        var indices = (int*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(96 * sizeof(int), 64);
        for (int j = 0; j < 16; j++)
        {
            for (int chunk = 0; chunk < 2; chunk++) indices[16 * chunk + j] = j % 2 * 16 + chunk * 8 + j / 2;
            // Round two: step h·4 + j / 4 of row j % 4 of the quad, rows 0–1 from the first pair, 2–3 from the second.
            for (int half = 0; half < 2; half++) indices[32 + 16 * half + j] = (j % 4 < 2 ? 0 : 16) + (half * 4 + j / 4) * 2 + j % 2;
            // Round three: steps 2g and 2g + 1 of the half, rows 0–3 from the first quad, 4–7 from the second.
            for (int g = 0; g < 2; g++) indices[64 + 16 * g + j] = (j % 8 < 4 ? 0 : 16) + (2 * g + j / 8) * 4 + j % 4;
        }
        return indices;
    }

    /// <summary>Each block's fp16 scale for the eight rows, as floats: one vector per block.</summary>
    private static void PackBlockScales(byte* rows, long rowBytes, int n, int blockBytes, float* scales)
    {
        for (int b = 0; b < n / BlockLayouts.QK; b++, scales += PanelRows)
            for (int r = 0; r < PanelRows; r++) scales[r] = Half(rows + r * rowBytes + b * blockBytes);
    }

    /// <summary>Each block's d and m for the eight rows, as floats: two vectors per block.</summary>
    private static void PackBlockScalesAndMins(byte* rows, long rowBytes, int n, int blockBytes, int minOffset, float* scales)
    {
        for (int b = 0; b < n / BlockLayouts.QK; b++, scales += 2 * PanelRows)
        {
            for (int r = 0; r < PanelRows; r++)
            {
                scales[r] = Half(rows + r * rowBytes + b * blockBytes);
                scales[PanelRows + r] = Half(rows + r * rowBytes + b * blockBytes + minOffset);
            }
        }
    }

    /// <summary>Stores the transpose of an 8×8 matrix of int32: output vector s holds dword s of each input.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(Vector256<int> v0, Vector256<int> v1, Vector256<int> v2, Vector256<int> v3,
        Vector256<int> v4, Vector256<int> v5, Vector256<int> v6, Vector256<int> v7, byte* dst)
    {
        Vector256<long> t0 = Avx2.UnpackLow(v0, v1).AsInt64(), t1 = Avx2.UnpackHigh(v0, v1).AsInt64();
        Vector256<long> t2 = Avx2.UnpackLow(v2, v3).AsInt64(), t3 = Avx2.UnpackHigh(v2, v3).AsInt64();
        Vector256<long> t4 = Avx2.UnpackLow(v4, v5).AsInt64(), t5 = Avx2.UnpackHigh(v4, v5).AsInt64();
        Vector256<long> t6 = Avx2.UnpackLow(v6, v7).AsInt64(), t7 = Avx2.UnpackHigh(v6, v7).AsInt64();
        Vector256<long> u0 = Avx2.UnpackLow(t0, t2), u1 = Avx2.UnpackHigh(t0, t2);
        Vector256<long> u2 = Avx2.UnpackLow(t1, t3), u3 = Avx2.UnpackHigh(t1, t3);
        Vector256<long> u4 = Avx2.UnpackLow(t4, t6), u5 = Avx2.UnpackHigh(t4, t6);
        Vector256<long> u6 = Avx2.UnpackLow(t5, t7), u7 = Avx2.UnpackHigh(t5, t7);
        Avx2.Permute2x128(u0, u4, 0x20).Store((long*)dst);
        Avx2.Permute2x128(u1, u5, 0x20).Store((long*)(dst + 32));
        Avx2.Permute2x128(u2, u6, 0x20).Store((long*)(dst + 64));
        Avx2.Permute2x128(u3, u7, 0x20).Store((long*)(dst + 96));
        Avx2.Permute2x128(u0, u4, 0x31).Store((long*)(dst + 128));
        Avx2.Permute2x128(u1, u5, 0x31).Store((long*)(dst + 160));
        Avx2.Permute2x128(u2, u6, 0x31).Store((long*)(dst + 192));
        Avx2.Permute2x128(u3, u7, 0x31).Store((long*)(dst + 224));
    }

    /// <summary>
    /// Every super-block's scales for the eight rows, in the layout the kernels load: d and dmin as floats, then each
    /// sub-block's scale as an int16 pair (sc, sc), then (Q4_K/Q5_K) the mins as (m, m) or (Q2_K, Q3_K, Q6_K)
    /// adjacent sub-blocks' mins or scales paired for the 16-element sums of the activations.
    /// </summary>
    private static void PackKScales(GgmlType weightType, byte* rows, long rowBytes, int n, int blockBytes, byte* dst)
    {
        int subBlocks = KSubBlocks(weightType), scaleBytes = KScaleBytes(subBlocks);
        if (weightType is GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K)
        {
            // The common K-quants by vectors, a row's scales per vector and an 8×8 transpose per field: one row at a time
            // by scalar stores, the scales took as long as repacking the quants (a fifth of a MoE prompt's panel time).
            for (int b = 0; b < n / BlockLayouts.QK_K; b++, dst += scaleBytes)
            {
                if (weightType == GgmlType.Q6_K) PackQ6KScales(rows + b * blockBytes, rowBytes, dst);
                else PackK4Scales(rows + b * blockBytes, rowBytes, dst);
            }
            return;
        }
        int* scalePairs = stackalloc int[16];
        int* otherPairs = stackalloc int[8];
        for (int b = 0; b < n / BlockLayouts.QK_K; b++, dst += scaleBytes)
        {
            for (int r = 0; r < PanelRows; r++)
            {
                byte* x = rows + r * rowBytes + b * blockBytes;
                var (d, dmin) = KScales(weightType, x, scalePairs, otherPairs);
                ((float*)dst)[r] = d;
                ((float*)dst)[PanelRows + r] = dmin;
                for (int j = 0; j < subBlocks; j++) ((int*)(dst + KScalesOffset))[j * PanelRows + r] = scalePairs[j];
                for (int p = 0; p < 8; p++) ((int*)(dst + KPairedOffset(subBlocks)))[p * PanelRows + r] = otherPairs[p];
            }
        }
    }

    /// <summary>
    /// <see cref="PackKScales"/> of one Q4_K or Q5_K block of the eight rows: each row's eight scales and eight mins widened
    /// to (v, v) int16 pairs, one vector per row and field, then transposed so each sub-block's vector holds the rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackK4Scales(byte* block, long rowBytes, byte* dst)
    {
        var sc = stackalloc Vector256<int>[PanelRows];
        var mn = stackalloc Vector256<int>[PanelRows];
        for (int r = 0; r < PanelRows; r++, block += rowBytes)
        {
            KQuantScales.UnpackK4(new ReadOnlySpan<byte>(block + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong mins);
            var s32 = Avx2.ConvertToVector256Int32(Vector128.CreateScalar(scales).AsByte());
            var m32 = Avx2.ConvertToVector256Int32(Vector128.CreateScalar(mins).AsByte());
            sc[r] = s32 | Vector256.ShiftLeft(s32, 16);
            mn[r] = m32 | Vector256.ShiftLeft(m32, 16);
            ((float*)dst)[r] = Half(block + BlockLayouts.Q4_K.D);
            ((float*)dst)[PanelRows + r] = Half(block + BlockLayouts.Q4_K.DMin);
        }
        Transpose8x8(sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7], dst + KScalesOffset);
        Transpose8x8(mn[0], mn[1], mn[2], mn[3], mn[4], mn[5], mn[6], mn[7], dst + KPairedOffset(8));
    }

    /// <summary>
    /// <see cref="PackKScales"/> of one Q6_K block of the eight rows: each row's sixteen signed scales as (sc, sc) pairs
    /// (two vectors per row) and as adjacent pairs (sc₂ₚ, sc₂ₚ₊₁), which are simply the scales widened to int16; then the
    /// same transposes as <see cref="PackK4Scales"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackQ6KScales(byte* block, long rowBytes, byte* dst)
    {
        var low = stackalloc Vector256<int>[PanelRows];
        var high = stackalloc Vector256<int>[PanelRows];
        var adjacent = stackalloc Vector256<int>[PanelRows];
        var wordMask = Vector256.Create(0xFFFF);
        for (int r = 0; r < PanelRows; r++, block += rowBytes)
        {
            var scales = Vector128.Load((sbyte*)(block + BlockLayouts.Q6_K.Scales));
            var s0 = Avx2.ConvertToVector256Int32(scales);
            var s1 = Avx2.ConvertToVector256Int32(Sse2.ShiftRightLogical128BitLane(scales, 8));
            low[r] = (s0 & wordMask) | Vector256.ShiftLeft(s0, 16);
            high[r] = (s1 & wordMask) | Vector256.ShiftLeft(s1, 16);
            adjacent[r] = Avx2.ConvertToVector256Int16(scales).AsInt32();
            ((float*)dst)[r] = Half(block + BlockLayouts.Q6_K.D);
            ((float*)dst)[PanelRows + r] = 0;
        }
        Transpose8x8(low[0], low[1], low[2], low[3], low[4], low[5], low[6], low[7], dst + KScalesOffset);
        Transpose8x8(high[0], high[1], high[2], high[3], high[4], high[5], high[6], high[7], dst + KScalesOffset + 8 * 32);
        Transpose8x8(adjacent[0], adjacent[1], adjacent[2], adjacent[3], adjacent[4], adjacent[5], adjacent[6], adjacent[7], dst + KPairedOffset(16));
    }

    /// <summary>One block's d, dmin, per sub-block (sc, sc) and the eight mins or scale pairs (see <see cref="PackKScales"/>).</summary>
    private static (float D, float DMin) KScales(GgmlType weightType, byte* x, int* scalePairs, int* otherPairs)
    {
        switch (weightType)
        {
            case GgmlType.Q4_K or GgmlType.Q5_K:
                // Q4_K and Q5_K share d, dmin and the 12-byte scale field at the same offsets.
                KQuantScales.UnpackK4(new ReadOnlySpan<byte>(x + BlockLayouts.Q4_K.Scales, 12), out ulong scales, out ulong mins);
                for (int j = 0; j < 8; j++)
                {
                    int sc = (int)(scales >> (8 * j)) & 0xFF, m = (int)(mins >> (8 * j)) & 0xFF;
                    scalePairs[j] = Int16Pair(sc, sc);
                    otherPairs[j] = Int16Pair(m, m);
                }

                return (Half(x + BlockLayouts.Q4_K.D), Half(x + BlockLayouts.Q4_K.DMin));
            case GgmlType.Q2_K:
                {
                    byte* packed = x + BlockLayouts.Q2_K.Scales;
                    for (int j = 0; j < 16; j++) scalePairs[j] = Int16Pair(packed[j] & 0xF, packed[j] & 0xF);
                    for (int p = 0; p < 8; p++) otherPairs[p] = Int16Pair(packed[2 * p] >> 4, packed[2 * p + 1] >> 4);
                    return (Half(x + BlockLayouts.Q2_K.D), Half(x + BlockLayouts.Q2_K.DMin));
                }
            case GgmlType.Q3_K:
                {
                    var (low, high) = KQuantScales.UnpackQ3K(new ReadOnlySpan<byte>(x + BlockLayouts.Q3_K.Scales, 12));
                    int* sc = stackalloc int[16];
                    for (int j = 0; j < 16; j++) sc[j] = (int)(((j < 8 ? low : high) >> (8 * (j % 8))) & 0xFF) - 32;
                    SignedScalePairs(sc, scalePairs, otherPairs);
                    return (Half(x + BlockLayouts.Q3_K.D), 0);
                }
            default:
                {
                    int* sc = stackalloc int[16];
                    for (int j = 0; j < 16; j++) sc[j] = ((sbyte*)(x + BlockLayouts.Q6_K.Scales))[j];
                    SignedScalePairs(sc, scalePairs, otherPairs);
                    return (Half(x + BlockLayouts.Q6_K.D), 0);
                }
        }
    }

    private static void SignedScalePairs(int* sc, int* scalePairs, int* adjacentPairs)
    {
        for (int j = 0; j < 16; j++) scalePairs[j] = Int16Pair(sc[j], sc[j]);
        for (int p = 0; p < 8; p++) adjacentPairs[p] = Int16Pair(sc[2 * p], sc[2 * p + 1]);
    }

    /// <summary>The int32 lane holding int16 <paramref name="low"/> and <paramref name="high"/>, as vpmaddwd pairs them.</summary>
    private static int Int16Pair(int low, int high) => (low & 0xFFFF) | (high << 16);

    /// <summary>
    /// The eight rows of <paramref name="panel"/>, over columns [<paramref name="firstColumn"/>, + <paramref name="columns"/>)
    /// (whole blocks), against <paramref name="tokens"/> activation rows <paramref name="stride"/> bytes apart with their
    /// <see cref="PreparePanelSide"/> data, a few at a time: activation row t's eight results go to
    /// <c>output + t * outputStride</c>, added to what is there when <paramref name="accumulate"/> (the later column
    /// ranges of a long row).
    /// </summary>
    public static void PanelMultiply(GgmlType weightType, byte* panel, int n, int firstColumn, int columns, byte* y, int stride,
        byte* side, int sideStride, int tokens, bool accumulate, float* output, long outputStride)
    {
        if (IsFloat(weightType))
        {
            // F32 rows are used as they are; F16/BF16 rows were widened into the side data.
            float* x = (weightType == GgmlType.F32 ? (float*)y : (float*)side) + firstColumn;
            int xStride = weightType == GgmlType.F32 ? stride / sizeof(float) : sideStride / sizeof(float);
            for (int t = 0; t < tokens; t += FloatDot.PanelTokens)
                FloatDot.PanelMultiply((float*)panel + firstColumn * PanelRows, columns, x + (long)t * xStride, xStride, Math.Min(FloatDot.PanelTokens, tokens - t),
                    accumulate, output + t * outputStride, outputStride);
            return;
        }

        // Everything that depends only on the type and the column range is worked out once for all token tiles.
        bool k = GgmlTypeInfo.Geometry(Q5Fields.FileType(weightType)).BlockSize == BlockLayouts.QK_K;
        int blockSize = k ? BlockLayouts.QK_K : BlockLayouts.QK, first = firstColumn / blockSize, blocks = columns / blockSize;
        byte* quants = panel + first * PanelRows * blockSize;
        byte* scales = panel + PanelRows * n + first * PanelScaleBytes(weightType);
        y += first * (int)GgmlTypeInfo.RowBytes(QuantizedDot.ActivationType(weightType), blockSize);
        // Side data: the block scales, then (offset formats) the offset sums.
        byte* blockScales = side + first * sizeof(float), offsetSums = side + (n / blockSize + first) * sizeof(float);
        for (int t = 0; t < tokens; t += PanelTokensQuantized)
        {
            var rows = new PanelRowSet(y + (long)t * stride, stride, blockScales + (long)t * sideStride, offsetSums + (long)t * sideStride, sideStride,
                output + t * outputStride, outputStride, Math.Min(PanelTokensQuantized, tokens - t), accumulate);
            switch (weightType)
            {
                case GgmlType.Q4_0: Block32Panel<Q4_0Runs>(quants, (float*)scales, blocks, rows); break;
                case GgmlType.Q5_0 or Q5Fields.Type: Block32Panel<Q5_0Runs>(quants, (float*)scales, blocks, rows); break;
                case GgmlType.Q4_1: Block32Panel<Q4_1Runs>(quants, (float*)scales, blocks, rows); break;
                case GgmlType.Q5_1: Block32Panel<Q5_1Runs>(quants, (float*)scales, blocks, rows); break;
                case GgmlType.Q8_0 or GgmlType.IQ4_NL: SignedPanel(quants, (float*)scales, blocks, rows); break;
                case GgmlType.Q2_K: KPanel<Q2KFormat>(quants, scales, blocks, rows); break;
                case GgmlType.Q3_K: KPanel<Q3KFormat>(quants, scales, blocks, rows); break;
                case GgmlType.Q4_K: KPanel<Q4KFormat>(quants, scales, blocks, rows); break;
                case GgmlType.Q5_K: KPanel<Q5KFormat>(quants, scales, blocks, rows); break;
                case GgmlType.Q6_K: KPanel<Q6KFormat>(quants, scales, blocks, rows); break;
                case GgmlType.IQ4_XS when HasIq4XsPanels: Iq4XsPanel(quants, scales, blocks, rows); break;
                case GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ2_S or GgmlType.IQ3_XXS: KPanel<GridWideFormat>(quants, scales, blocks, rows); break;
                case GgmlType.IQ3_S or GgmlType.IQ1_S or GgmlType.IQ1_M: KPanel<GridNarrowFormat>(quants, scales, blocks, rows); break;
                default: throw new NotSupportedException($"No panel kernel for {weightType}.");
            }
        }
    }

    /// <summary>
    /// Four activation rows with their side data and outputs. Fewer than four: the missing ones repeat the last,
    /// computing (and storing) its results again.
    /// </summary>
    private readonly struct PanelRowSet
    {
        public readonly byte* Y0, Y1, Y2, Y3;
        public readonly float* D0, D1, D2, D3;
        public readonly int* C0, C1, C2, C3;
        public readonly float* O0, O1, O2, O3;
        public readonly bool Accumulate;

        public PanelRowSet(byte* y, int stride, byte* scales, byte* offsetSums, int sideStride, float* output, long outputStride, int count, bool accumulate)
        {
            int i1 = Math.Min(1, count - 1), i2 = Math.Min(2, count - 1), i3 = Math.Min(3, count - 1);
            Y0 = y;
            Y1 = y + i1 * stride;
            Y2 = y + i2 * stride;
            Y3 = y + i3 * stride;
            D0 = (float*)scales;
            D1 = (float*)(scales + i1 * sideStride);
            D2 = (float*)(scales + i2 * sideStride);
            D3 = (float*)(scales + i3 * sideStride);
            C0 = (int*)offsetSums;
            C1 = (int*)(offsetSums + i1 * sideStride);
            C2 = (int*)(offsetSums + i2 * sideStride);
            C3 = (int*)(offsetSums + i3 * sideStride);
            O0 = output;
            O1 = output + i1 * outputStride;
            O2 = output + i2 * outputStride;
            O3 = output + i3 * outputStride;
            Accumulate = accumulate;
        }

        /// <summary>Starting values of the four accumulators: zero, or the outputs' partial sums.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Start(out Vector256<float> f0, out Vector256<float> f1, out Vector256<float> f2, out Vector256<float> f3)
        {
            if (Accumulate)
            {
                (f0, f1, f2, f3) = (Vector256.Load(O0), Vector256.Load(O1), Vector256.Load(O2), Vector256.Load(O3));
                return;
            }

            f0 = f1 = f2 = f3 = Vector256<float>.Zero;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(Vector256<float> f0, Vector256<float> f1, Vector256<float> f2, Vector256<float> f3)
        {
            f0.Store(O0);
            f1.Store(O1);
            f2.Store(O2);
            f3.Store(O3);
        }

        /// <summary><see cref="Start"/> for sixteen rows (two panels).</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void StartPair(out Vector512<float> f0, out Vector512<float> f1, out Vector512<float> f2, out Vector512<float> f3)
        {
            if (Accumulate)
            {
                (f0, f1, f2, f3) = (Vector512.Load(O0), Vector512.Load(O1), Vector512.Load(O2), Vector512.Load(O3));
                return;
            }

            f0 = f1 = f2 = f3 = Vector512<float>.Zero;
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void StorePair(Vector512<float> f0, Vector512<float> f1, Vector512<float> f2, Vector512<float> f3)
        {
            f0.Store(O0);
            f1.Store(O1);
            f2.Store(O2);
            f3.Store(O3);
        }
    }

    /// <summary>Four activation bytes at <paramref name="y"/> times the panel step's 32 unsigned quants, pairwise summed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<short> PanelStep(Vector256<byte> w, byte* y) =>
        Avx2.MultiplyAddAdjacent(w, Vector256.Create(*(int*)y).AsSByte());

    /// <summary>
    /// An int16 run of <paramref name="steps"/> (1..8, a constant where it is inlined) consecutive panel steps from
    /// <paramref name="w"/> against four activation rows. Written out step by step: the JIT does not unroll the loop,
    /// and its counter and address arithmetic cost as much as a step's products (measured: +5-18% for Q8_0 panels).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void UnsignedRun(byte* w, int steps, byte* y0, byte* y1, byte* y2, byte* y3,
        out Vector256<short> a0, out Vector256<short> a1, out Vector256<short> a2, out Vector256<short> a3)
    {
        var wv = Vector256.Load(w);
        (a0, a1, a2, a3) = (PanelStep(wv, y0), PanelStep(wv, y1), PanelStep(wv, y2), PanelStep(wv, y3));
        if (steps > 1) AddStep(w, 1, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 2) AddStep(w, 2, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 3) AddStep(w, 3, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 4) AddStep(w, 4, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 5) AddStep(w, 5, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 6) AddStep(w, 6, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
        if (steps > 7) AddStep(w, 7, y0, y1, y2, y3, ref a0, ref a1, ref a2, ref a3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddStep(byte* w, int s, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector256<short> a0, ref Vector256<short> a1, ref Vector256<short> a2, ref Vector256<short> a3)
    {
        var wv = Vector256.Load(w + s * 32);
        a0 += PanelStep(wv, y0 + s * 4);
        a1 += PanelStep(wv, y1 + s * 4);
        a2 += PanelStep(wv, y2 + s * 4);
        a3 += PanelStep(wv, y3 + s * 4);
    }

    /// <summary>How an unsigned 32-element block format runs in <see cref="Block32Panel{TFormat}"/>.</summary>
    private interface IBlock32Format
    {
        /// <summary>
        /// Steps per int16 run: a pair of products is ≤ 15·128·2 = 3,840 for quants ≤ 15 (eight steps fit), ≤ 7,936
        /// for quants ≤ 31 (four).
        /// </summary>
        static abstract int Steps { get; }

        /// <summary>Q4_1/Q5_1: x = d·q + m against Q8_1 rows; else q + offset against Q8_0 rows.</summary>
        static abstract bool HasMin { get; }
    }

    private readonly struct Q4_0Runs : IBlock32Format
    {
        public static int Steps => 8;
        public static bool HasMin => false;
    }

    private readonly struct Q5_0Runs : IBlock32Format
    {
        public static int Steps => 4;
        public static bool HasMin => false;
    }

    private readonly struct Q4_1Runs : IBlock32Format
    {
        public static int Steps => 8;
        public static bool HasMin => true;
    }

    private readonly struct Q5_1Runs : IBlock32Format
    {
        public static int Steps => 4;
        public static bool HasMin => true;
    }

    /// <summary>
    /// Unsigned 32-element blocks: Σq·y per block in int32, scaled by dx·dy. Q4_0/Q5_0 (stored q + offset) start each
    /// block's sum at −offset·Σy; Q4_1/Q5_1 add m·s (s = dy·Σy from the Q8_1 row) per block instead.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Block32Panel<TFormat>(byte* panel, float* scales, int blocks, in PanelRowSet rows) where TFormat : struct, IBlock32Format
    {
        float* d0 = rows.D0, d1 = rows.D1, d2 = rows.D2, d3 = rows.D3;
        int* c0 = rows.C0, c1 = rows.C1, c2 = rows.C2, c3 = rows.C3;
        int actQs = TFormat.HasMin ? BlockLayouts.Q8_1.Qs : BlockLayouts.Q8_0.Qs;
        int actSize = TFormat.HasMin ? BlockLayouts.Q8_1.Size : BlockLayouts.Q8_0.Size;
        int scaleStride = TFormat.HasMin ? 2 * PanelRows : PanelRows;
        byte* y0 = rows.Y0 + actQs, y1 = rows.Y1 + actQs, y2 = rows.Y2 + actQs, y3 = rows.Y3 + actQs;
        var ones = Vector256.Create((short)1);
        rows.Start(out var f0, out var f1, out var f2, out var f3);
        for (int b = 0; b < blocks; b++, panel += 256, y0 += actSize, y1 += actSize, y2 += actSize, y3 += actSize)
        {
            Vector256<int> i0, i1, i2, i3;
            if (TFormat.HasMin)
            {
                i0 = i1 = i2 = i3 = Vector256<int>.Zero;
            }
            else
            {
                i0 = Avx2.BroadcastScalarToVector256(c0 + b);
                i1 = Avx2.BroadcastScalarToVector256(c1 + b);
                i2 = Avx2.BroadcastScalarToVector256(c2 + b);
                i3 = Avx2.BroadcastScalarToVector256(c3 + b);
            }

            for (int s0 = 0; s0 < 8; s0 += TFormat.Steps)
            {
                UnsignedRun(panel + s0 * 32, TFormat.Steps, y0 + s0 * 4, y1 + s0 * 4, y2 + s0 * 4, y3 + s0 * 4, out var a0, out var a1, out var a2, out var a3);
                i0 += Avx2.MultiplyAddAdjacent(a0, ones);
                i1 += Avx2.MultiplyAddAdjacent(a1, ones);
                i2 += Avx2.MultiplyAddAdjacent(a2, ones);
                i3 += Avx2.MultiplyAddAdjacent(a3, ones);
            }

            var dx = Vector256.Load(scales + b * scaleStride);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), dx * d0[b], f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), dx * d1[b], f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), dx * d2[b], f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), dx * d3[b], f3);
            if (TFormat.HasMin)
            {
                // The side's second array holds s = dy·Σy as floats for these formats.
                var m = Vector256.Load(scales + b * scaleStride + PanelRows);
                f0 = Fma.MultiplyAdd(m, Vector256.Create(((float*)c0)[b]), f0);
                f1 = Fma.MultiplyAdd(m, Vector256.Create(((float*)c1)[b]), f1);
                f2 = Fma.MultiplyAdd(m, Vector256.Create(((float*)c2)[b]), f2);
                f3 = Fma.MultiplyAdd(m, Vector256.Create(((float*)c3)[b]), f3);
            }
        }

        rows.Store(f0, f1, f2, f3);
    }

    /// <summary>Q8_0 panels: |x| times y carrying x's sign (products ≤ 127·128·2 fit int16 one step at a time).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void SignedPanel(byte* panel, float* scales, int blocks, in PanelRowSet rows)
    {
        float* d0 = rows.D0, d1 = rows.D1, d2 = rows.D2, d3 = rows.D3;
        byte* y0 = rows.Y0 + BlockLayouts.Q8_0.Qs, y1 = rows.Y1 + BlockLayouts.Q8_0.Qs;
        byte* y2 = rows.Y2 + BlockLayouts.Q8_0.Qs, y3 = rows.Y3 + BlockLayouts.Q8_0.Qs;
        rows.Start(out var f0, out var f1, out var f2, out var f3);
        for (int b = 0; b < blocks; b++, panel += 256, y0 += BlockLayouts.Q8_0.Size, y1 += BlockLayouts.Q8_0.Size,
             y2 += BlockLayouts.Q8_0.Size, y3 += BlockLayouts.Q8_0.Size)
        {
            var i0 = Vector256<int>.Zero;
            var i1 = Vector256<int>.Zero;
            var i2 = Vector256<int>.Zero;
            var i3 = Vector256<int>.Zero;
            // The eight steps written out (see UnsignedRun).
            SignedStep(panel, 0, y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
            SignedStep(panel, 1, y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
            SignedStep(panel, 2, y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
            SignedStep(panel, 3, y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
            SignedStep(panel, 4, y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
            SignedStep(panel, 5, y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
            SignedStep(panel, 6, y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);
            SignedStep(panel, 7, y0, y1, y2, y3, ref i0, ref i1, ref i2, ref i3);

            var dx = Vector256.Load(scales + b * PanelRows);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), dx * d0[b], f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), dx * d1[b], f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), dx * d2[b], f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), dx * d3[b], f3);
        }

        rows.Store(f0, f1, f2, f3);
    }

    /// <summary>Step s of a Q8_0 panel block for four activation rows, widened into their int32 block sums.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void SignedStep(byte* panel, int s, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector256<int> i0, ref Vector256<int> i1, ref Vector256<int> i2, ref Vector256<int> i3)
    {
        var w = Vector256.Load((sbyte*)(panel + s * 32));
        Vector256<byte> absW = Avx2.Abs(w);
        if (AvxVnni.IsSupported)
        {
            // VNNI: the four products of each row straight into its int32 lane, one instruction where the multiply-add
            // pair, its widening and the add took three (the same exact integers).
            i0 = AvxVnni.MultiplyWideningAndAdd(i0, absW, Avx2.Sign(Vector256.Create(*(int*)(y0 + s * 4)).AsSByte(), w));
            i1 = AvxVnni.MultiplyWideningAndAdd(i1, absW, Avx2.Sign(Vector256.Create(*(int*)(y1 + s * 4)).AsSByte(), w));
            i2 = AvxVnni.MultiplyWideningAndAdd(i2, absW, Avx2.Sign(Vector256.Create(*(int*)(y2 + s * 4)).AsSByte(), w));
            i3 = AvxVnni.MultiplyWideningAndAdd(i3, absW, Avx2.Sign(Vector256.Create(*(int*)(y3 + s * 4)).AsSByte(), w));
            return;
        }

        var ones = Vector256.Create((short)1);
        i0 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Vector256.Create(*(int*)(y0 + s * 4)).AsSByte(), w)), ones);
        i1 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Vector256.Create(*(int*)(y1 + s * 4)).AsSByte(), w)), ones);
        i2 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Vector256.Create(*(int*)(y2 + s * 4)).AsSByte(), w)), ones);
        i3 += Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absW, Avx2.Sign(Vector256.Create(*(int*)(y3 + s * 4)).AsSByte(), w)), ones);
    }

    /// <summary>How a K-quant runs in <see cref="KPanel{TFormat}"/>.</summary>
    private interface IKFormat
    {
        /// <summary>Steps (of four columns) per sub-block: 8 (sub-blocks of 32) or 4 (of 16).</summary>
        static abstract int SubBlockSteps { get; }

        /// <summary>Steps per int16 run, as many as the largest quant allows without saturating.</summary>
        static abstract int StepsPerRun { get; }

        /// <summary>True when the paired vectors are mins, scaled by dmin; else scales for the stored offset.</summary>
        static abstract bool HasMins { get; }

        /// <summary>log2 of the offset the quants are stored with (q + 2^shift), when not <see cref="HasMins"/>.</summary>
        static abstract int OffsetShift { get; }
    }

    /// <summary>Q4_K: q ≤ 15, a whole sub-block of 32 per run (≤ 30,720).</summary>
    private readonly struct Q4KFormat : IKFormat
    {
        public static int SubBlockSteps => 8;
        public static int StepsPerRun => 8;
        public static bool HasMins => true;
        public static int OffsetShift => 0;
    }

    /// <summary>Q5_K: q ≤ 31, four steps per run (≤ 31,744).</summary>
    private readonly struct Q5KFormat : IKFormat
    {
        public static int SubBlockSteps => 8;
        public static int StepsPerRun => 4;
        public static bool HasMins => true;
        public static int OffsetShift => 0;
    }

    /// <summary>Q6_K: q + 32 ≤ 63, two steps per run (≤ 32,256).</summary>
    private readonly struct Q6KFormat : IKFormat
    {
        public static int SubBlockSteps => 4;
        public static int StepsPerRun => 2;
        public static bool HasMins => false;
        public static int OffsetShift => 5;
    }

    /// <summary>Q3_K: q + 4 ≤ 7, a whole sub-block of 16 per run.</summary>
    private readonly struct Q3KFormat : IKFormat
    {
        public static int SubBlockSteps => 4;
        public static int StepsPerRun => 4;
        public static bool HasMins => false;
        public static int OffsetShift => 2;
    }

    /// <summary>IQ2_* and IQ3_XXS: |q| ≤ 62 stored as q + 64 ≤ 126, one step per run (≤ 32,256).</summary>
    private readonly struct GridWideFormat : IKFormat
    {
        public static int SubBlockSteps => 4;
        public static int StepsPerRun => 1;
        public static bool HasMins => false;
        public static int OffsetShift => 6;
    }

    /// <summary>IQ3_S and the 1-bit types: |q| ≤ 15 stored as q + 16 ≤ 31, a whole sub-block of 16 per run (≤ 31,744).</summary>
    private readonly struct GridNarrowFormat : IKFormat
    {
        public static int SubBlockSteps => 4;
        public static int StepsPerRun => 4;
        public static bool HasMins => false;
        public static int OffsetShift => 4;
    }

    /// <summary>Q2_K: q ≤ 3 with mins, a whole sub-block of 16 per run.</summary>
    private readonly struct Q2KFormat : IKFormat
    {
        public static int SubBlockSteps => 4;
        public static int StepsPerRun => 4;
        public static bool HasMins => true;
        public static int OffsetShift => 0;
    }

    /// <summary>
    /// K-quants: per sub-block Σq·y in int16 runs, weighted by the sub-block's scale into int32, scaled per super-block
    /// by d·yd. The term from the activation's 16-element sums, Σ_p (v₂ₚ·bsum₂ₚ + v₂ₚ₊₁·bsum₂ₚ₊₁), is either the mins
    /// (Q2_K, Q4_K, Q5_K: scaled by dmin·yd and subtracted) or the scales times the stored offset (Q3_K, Q6_K: taken
    /// off the integer sum).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void KPanel<TFormat>(byte* panel, byte* scaleData, int blocks, in PanelRowSet rows) where TFormat : struct, IKFormat
    {
        int subBlocks = 64 / TFormat.SubBlockSteps, scaleBytes = KScaleBytes(subBlocks);
        byte* y0 = rows.Y0, y1 = rows.Y1, y2 = rows.Y2, y3 = rows.Y3;
        rows.Start(out var f0, out var f1, out var f2, out var f3);
        for (int b = 0; b < blocks; b++, panel += 2048, scaleData += scaleBytes, y0 += BlockLayouts.Q8_K.Size,
             y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size, y3 += BlockLayouts.Q8_K.Size)
        {
            short* paired = (short*)(scaleData + KPairedOffset(subBlocks));
            var i0 = Vector256<int>.Zero;
            var i1 = Vector256<int>.Zero;
            var i2 = Vector256<int>.Zero;
            var i3 = Vector256<int>.Zero;
            if (!TFormat.HasMins)
            {
                PairedSums(paired, y0, y1, y2, y3, out var p0, out var p1, out var p2, out var p3);
                i0 = -Vector256.ShiftLeft(p0, TFormat.OffsetShift);
                i1 = -Vector256.ShiftLeft(p1, TFormat.OffsetShift);
                i2 = -Vector256.ShiftLeft(p2, TFormat.OffsetShift);
                i3 = -Vector256.ShiftLeft(p3, TFormat.OffsetShift);
            }

            for (int j = 0; j < subBlocks; j++)
            {
                var scale = Vector256.Load((short*)(scaleData + KScalesOffset + j * 32));
                for (int s0 = 0; s0 < TFormat.SubBlockSteps; s0 += TFormat.StepsPerRun)
                {
                    int step = j * TFormat.SubBlockSteps + s0, q = BlockLayouts.Q8_K.Qs + step * 4;
                    UnsignedRun(panel + step * 32, TFormat.StepsPerRun, y0 + q, y1 + q, y2 + q, y3 + q, out var a0, out var a1, out var a2, out var a3);
                    i0 += Avx2.MultiplyAddAdjacent(a0, scale);
                    i1 += Avx2.MultiplyAddAdjacent(a1, scale);
                    i2 += Avx2.MultiplyAddAdjacent(a2, scale);
                    i3 += Avx2.MultiplyAddAdjacent(a3, scale);
                }
            }

            var d = Vector256.Load((float*)scaleData);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), d * *(float*)y0, f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), d * *(float*)y1, f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), d * *(float*)y2, f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), d * *(float*)y3, f3);
            if (TFormat.HasMins)
            {
                PairedSums(paired, y0, y1, y2, y3, out var m0, out var m1, out var m2, out var m3);
                var dmin = Vector256.Load((float*)scaleData + PanelRows);
                f0 = Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(m0), dmin * *(float*)y0, f0);
                f1 = Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(m1), dmin * *(float*)y1, f1);
                f2 = Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(m2), dmin * *(float*)y2, f2);
                f3 = Fma.MultiplyAddNegated(Avx.ConvertToVector256Single(m3), dmin * *(float*)y3, f3);
            }
        }

        rows.Store(f0, f1, f2, f3);
    }

    /// <summary>
    /// Σ over the eight int16 pair vectors at <paramref name="pairs"/> of each vector times a broadcast pair of the
    /// activation block's 16-element sums (bsum₂ₚ, bsum₂ₚ₊₁), per activation row: one row's Σ_p of two products per lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PairedSums(short* pairs, byte* y0, byte* y1, byte* y2, byte* y3,
        out Vector256<int> s0, out Vector256<int> s1, out Vector256<int> s2, out Vector256<int> s3)
    {
        s0 = s1 = s2 = s3 = Vector256<int>.Zero;
        for (int p = 0; p < 8; p++)
        {
            var v = Vector256.Load(pairs + p * 16);
            int bs = BlockLayouts.Q8_K.BSums + p * 4;
            s0 += Avx2.MultiplyAddAdjacent(v, Vector256.Create(*(int*)(y0 + bs)).AsInt16());
            s1 += Avx2.MultiplyAddAdjacent(v, Vector256.Create(*(int*)(y1 + bs)).AsInt16());
            s2 += Avx2.MultiplyAddAdjacent(v, Vector256.Create(*(int*)(y2 + bs)).AsInt16());
            s3 += Avx2.MultiplyAddAdjacent(v, Vector256.Create(*(int*)(y3 + bs)).AsInt16());
        }
    }
}
