using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

using static Kaiyuan.Tensors.IqGridKernels;

namespace Kaiyuan.Tensors;

/// <summary>
/// The grid i-quants with the largest grids — IQ1_S and IQ1_M (2,048 points), IQ2_S (1,024) — on AVX-512 BW: two
/// sub-blocks (eight groups, 64 weights) per 512-bit step where the 256-bit grid kernel takes one. Their grids have no
/// in-register lookup (IQ1's 16-bit codes would fill 64 registers), so each step's eight indices are formed in int32
/// lanes (low bytes widened, high bits shifted out of the qh fields) and their points fetched by two 4-wide gathers,
/// where the 256-bit kernel spends a scalar load and an insert per group. The rest is its arithmetic on twice the
/// width: the magnitudes against the activations negated where the values are negative, the pair sums times each 16
/// weights' odd multiplier, taken from the block's sixteen by a word permute per step. A step's decoding is shared by
/// all activation rows of a small batch (<see cref="GatherGridTile{TGrid, TRows}"/>). Lanes 0–7 of the int32 sums are
/// the first sub-block's in the 256-bit kernel's lane layout, lanes 8–15 the second's; integer sums are exact, so the
/// two halves added are its sums and every result is the same to the bit.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>True when <paramref name="type"/> runs on the gathered-grid kernels here.</summary>
    private static bool HasGatherGrid(GgmlType type) => HasWideKQuants && type is GgmlType.IQ1_S or GgmlType.IQ1_M or GgmlType.IQ2_S;

    /// <summary>A gathered-grid type's row against Q8_K.</summary>
    private static float GatherGrid(GgmlType type, byte* x, byte* y, int blocks) => type switch
    {
        GgmlType.IQ1_S => GatherGridDot<Iq1SGather>(x, y, blocks),
        GgmlType.IQ1_M => GatherGridDot<Iq1MGather>(x, y, blocks),
        _ => GatherGridDot<Iq2SGather>(x, y, blocks),
    };

    /// <summary>How one gathered-grid type decodes its blocks.</summary>
    private interface IGatherGrid
    {
        static abstract GgmlType Type { get; }

        static abstract int BlockBytes { get; }

        /// <summary>The type's grid of 8-byte points.</summary>
        static abstract long* Grid { get; }

        /// <summary>The block's scale d (the kernels' integers count in <see cref="GridUnit"/>·d).</summary>
        static abstract float Scale(byte* x, float* halves);

        /// <summary>What the block's steps share: its sixteen odd multipliers (words 0–15, one per 16 weights), and IQ1_S's shifts.</summary>
        static abstract GatherBlock Begin(byte* x);

        /// <summary>
        /// Step <paramref name="p"/>'s 64 magnitudes, and in <paramref name="negative"/> the bytes whose value is negative;
        /// the points fetched by scalar loads where <paramref name="loads"/>, else by gathers (<see cref="Points"/>).
        /// </summary>
        static abstract Vector512<byte> Step(byte* x, int p, in GatherTables tables, in GatherBlock block, bool loads, out Vector512<sbyte> negative);
    }

    /// <summary>A block's sixteen multipliers and (IQ1_S) the per-16-weight shift bytes, as words 0–15.</summary>
    private readonly struct GatherBlock(Vector512<short> multipliers, Vector512<short> shifts)
    {
        public readonly Vector512<short> Multipliers = multipliers, Shifts = shifts;
    }

    /// <summary>
    /// A kernel's static tables, read before its loop (a static read inside it cost a class-initialisation check every
    /// step and spilled every register around it): the type's grid of 8-byte points and, at 32p, step p's permute of
    /// the sixteen fields (words 8k..8k + 7 take field 4p + k).
    /// </summary>
    private readonly struct GatherTables(long* grid)
    {
        public readonly long* Grid = grid;
        public readonly short* Controls = GatherFieldControls;
    }

    /// <summary>The four steps' field permutes (<see cref="GatherTables.Controls"/>), 64-byte aligned.</summary>
    private static readonly short* GatherFieldControls = BuildGatherFieldControls();

    private static short* BuildGatherFieldControls()
    {
        var controls = (short*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(4 * 32 * sizeof(short), 64);
        for (int p = 0; p < 4; p++)
            for (int w = 0; w < 32; w++) controls[32 * p + w] = (short)(4 * p + w / 8);
        return controls;
    }

    /// <summary>IQ1_S: 11-bit indices (qs byte, 3 bits of the sub-block's qh word); values 8·grid ± 1, the shift sign and multiplier per sub-block.</summary>
    private readonly struct Iq1SGather : IGatherGrid
    {
        public static GgmlType Type => GgmlType.IQ1_S;

        public static int BlockBytes => BlockLayouts.IQ1_S.Size;

        public static long* Grid => (long*)Grid1;

        public static float Scale(byte* x, float* halves) => halves[*(ushort*)(x + BlockLayouts.IQ1_S.D)];

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static GatherBlock Begin(byte* x)
        {
            // Each sub-block's qh word twice (words 2j and 2j + 1), so the fields go by 16 weights as the other types'.
            var qh = Avx2.Shuffle(Vector256.Create(Vector128.Load(x + BlockLayouts.IQ1_S.Qh)),
                Vector256.Create((byte)0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15, 14, 15)).AsInt16();
            // Bits 12–14 make the multiplier 2s + 1; bit 15 the shift sign, as bytes of ±1.
            var multipliers = Vector256.ShiftRightLogical(qh, 11) & Vector256.Create((short)0xE) | Vector256<short>.One;
            var shifts = Vector256.ShiftRightArithmetic(qh, 15) | Vector256.Create((short)0x0101);
            return new GatherBlock(multipliers.ToVector512Unsafe(), shifts.ToVector512Unsafe());
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Step(byte* x, int p, in GatherTables tables, in GatherBlock block, bool loads, out Vector512<sbyte> negative)
        {
            // Both sub-blocks' qh words in one dword: indices 0–3 shift the first down, 4–7 the second.
            var points = Points(tables.Grid, x + BlockLayouts.IQ1_S.Qs + 8 * p, *(uint*)(x + BlockLayouts.IQ1_S.Qh + 4 * p), Vector256.Create(0u, 3, 6, 9, 16, 19, 22, 25), 7, loads);
            return Magnitudes(Eighths(points, Avx512BW.PermuteVar32x16(block.Shifts, Vector512.Load(tables.Controls + 32 * p)).AsSByte()), out negative);
        }
    }

    /// <summary>
    /// IQ1_M: a step's eight high-bit nibbles are one dword of qh (bits 0–2 of nibble g: index g's top bits; bit 3: group
    /// g's shift sign), the multipliers 3-bit fields of the four scale words, whose top nibbles hold d.
    /// </summary>
    private readonly struct Iq1MGather : IGatherGrid
    {
        public static GgmlType Type => GgmlType.IQ1_M;

        public static int BlockBytes => BlockLayouts.IQ1_M.Size;

        public static long* Grid => (long*)Grid1;

        public static float Scale(byte* x, float* halves) => GridScale(GgmlType.IQ1_M, x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static GatherBlock Begin(byte* x)
        {
            // Field f is bits 3(f % 4)..+2 of scale word f / 4.
            return new GatherBlock(FieldMultipliers(*(ulong*)(x + BlockLayouts.IQ1_M.Scales),
                Vector256.Create((byte)0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7),
                Vector256.Create((ushort)0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9), 7), default);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Step(byte* x, int p, in GatherTables tables, in GatherBlock block, bool loads, out Vector512<sbyte> negative)
        {
            uint high = *(uint*)(x + BlockLayouts.IQ1_M.Qh + 4 * p);
            // Group g's shift: all its bytes −1 where its sign bit is set, else 1.
            var shiftBits = Avx512F.ShiftRightLogicalVariable(Vector512.Create((ulong)high), Vector512.Create(3UL, 7, 11, 15, 19, 23, 27, 31)) & Vector512<ulong>.One;
            var points = Points(tables.Grid, x + BlockLayouts.IQ1_M.Qs + 8 * p, high, Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28), 7, loads);
            return Magnitudes(Eighths(points, (Vector512<ulong>.Zero - shiftBits | Vector512.Create(0x0101010101010101UL)).AsSByte()), out negative);
        }
    }

    /// <summary>IQ2_S: 10-bit indices (qs byte, 2 bits of the sub-block's qh byte) into magnitudes, one sign bit per weight, a scale nibble per 16.</summary>
    private readonly struct Iq2SGather : IGatherGrid
    {
        public static GgmlType Type => GgmlType.IQ2_S;

        public static int BlockBytes => BlockLayouts.IQ2_S.Size;

        public static long* Grid => (long*)Grid2S;

        public static float Scale(byte* x, float* halves) => halves[*(ushort*)(x + BlockLayouts.IQ2_S.D)];

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static GatherBlock Begin(byte* x)
        {
            // Field f is nibble f % 2 of scale byte f / 2.
            return new GatherBlock(FieldMultipliers(*(ulong*)(x + BlockLayouts.IQ2_S.Scales),
                Vector256.Create((byte)0, 0x80, 0, 0x80, 1, 0x80, 1, 0x80, 2, 0x80, 2, 0x80, 3, 0x80, 3, 0x80, 4, 0x80, 4, 0x80, 5, 0x80, 5, 0x80, 6, 0x80, 6, 0x80, 7, 0x80, 7, 0x80),
                Vector256.Create((ushort)0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4), 0xF), default);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<byte> Step(byte* x, int p, in GatherTables tables, in GatherBlock block, bool loads, out Vector512<sbyte> negative)
        {
            var points = Points(tables.Grid, x + BlockLayouts.IQ2_S.Qs + 8 * p, *(ushort*)(x + BlockLayouts.IQ2_S.Qh + 2 * p), Vector256.Create(0u, 2, 4, 6, 8, 10, 12, 14), 3, loads);
            // Byte j takes byte j / 8 of the step's sign qword (a shuffle within each 128-bit lane, which holds the qword
            // twice), then bit j % 8 of it.
            var signBit = Vector512.Create(0x8040201008040201UL).AsByte();
            var bits = Avx512BW.Shuffle(Vector512.Create(*(ulong*)(x + BlockLayouts.IQ2_S.Signs + 8 * p)).AsByte(), Vector512.Create(
                Vector256.Create(Vector128.Create((byte)0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), Vector128.Create((byte)2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)),
                Vector256.Create(Vector128.Create((byte)4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5), Vector128.Create((byte)6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7))));
            negative = Vector512.Equals(bits & signBit, signBit).AsSByte();
            return points.AsByte();
        }
    }

    /// <summary>A gathered-grid row against one Q8_K row (see the file's summary).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float GatherGridDot<TGrid>(byte* x, byte* y, int blocks) where TGrid : struct, IGatherGrid
    {
        float* halves = HalfTable;
        var tables = new GatherTables(TGrid.Grid);
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += TGrid.BlockBytes, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, TGrid.BlockBytes);
            var block = TGrid.Begin(x);
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            var sums = Vector512<int>.Zero;
            for (int p = 0; p < 4; p++)
            {
                var magnitudes = TGrid.Step(x, p, in tables, in block, loads: false, out var negative);
                sums += GatherGridSums(magnitudes, negative, q8 + 64 * p, Avx512BW.PermuteVar32x16(block.Multipliers, Vector512.Load(tables.Controls + 32 * p)));
            }

            acc = BlockFma(TGrid.Scale(x, halves) * *(float*)(y + BlockLayouts.Q8_K.D), sums.GetLower() + sums.GetUpper(), acc);
        }

        return GridUnit(TGrid.Type) * HorizontalSum(acc);
    }

    /// <summary>
    /// A gathered-grid type against <typeparamref name="TRows"/> activation rows (2–7) <paramref name="stride"/> bytes
    /// apart, for <paramref name="weightRows"/> weight rows <paramref name="rowBytes"/> apart (weight row r's results at
    /// <c>output[r + k * outputStride]</c>): each step gathered and decoded once for every activation row. Each row's
    /// sums and float operations are <see cref="GatherGridDot{TGrid}"/>'s, so every result is the same to the bit.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void GatherGridTile<TGrid, TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, int stride, int blocks, float* output, long outputStride)
        where TGrid : struct, IGatherGrid where TRows : struct, ITileRows
    {
        float* halves = HalfTable;
        var tables = new GatherTables(TGrid.Grid);
        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y0 = activations;
            // One pointer per activation row, as in Q4KWideTile; a row past the tile's count points at row 0 and is never read.
            byte* y1 = Row<TRows>(y0, stride, 1), y2 = Row<TRows>(y0, stride, 2), y3 = Row<TRows>(y0, stride, 3), y4 = Row<TRows>(y0, stride, 4),
                y5 = Row<TRows>(y0, stride, 5), y6 = Row<TRows>(y0, stride, 6);
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default;
            for (int b = 0; b < blocks; b++, x += TGrid.BlockBytes, y0 += BlockLayouts.Q8_K.Size, y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size,
                 y3 += BlockLayouts.Q8_K.Size, y4 += BlockLayouts.Q8_K.Size, y5 += BlockLayouts.Q8_K.Size, y6 += BlockLayouts.Q8_K.Size)
            {
                PrefetchBlock(x, TGrid.BlockBytes);
                var block = TGrid.Begin(x);
                Vector512<int> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default;
                for (int p = 0; p < 4; p++)
                {
                    var magnitudes = TGrid.Step(x, p, in tables, in block, ScalarLoads<TGrid, TRows>(), out var negative);
                    var multipliers = Avx512BW.PermuteVar32x16(block.Multipliers, Vector512.Load(tables.Controls + 32 * p));
                    int q = BlockLayouts.Q8_K.Qs + 64 * p;
                    s0 += GatherGridSums(magnitudes, negative, (sbyte*)(y0 + q), multipliers);
                    if (TRows.Count > 1) s1 += GatherGridSums(magnitudes, negative, (sbyte*)(y1 + q), multipliers);
                    if (TRows.Count > 2) s2 += GatherGridSums(magnitudes, negative, (sbyte*)(y2 + q), multipliers);
                    if (TRows.Count > 3) s3 += GatherGridSums(magnitudes, negative, (sbyte*)(y3 + q), multipliers);
                    if (TRows.Count > 4) s4 += GatherGridSums(magnitudes, negative, (sbyte*)(y4 + q), multipliers);
                    if (TRows.Count > 5) s5 += GatherGridSums(magnitudes, negative, (sbyte*)(y5 + q), multipliers);
                    if (TRows.Count > 6) s6 += GatherGridSums(magnitudes, negative, (sbyte*)(y6 + q), multipliers);
                }

                CloseTileRows<TRows>(TGrid.Scale(x, halves), new TileRows(y0, y1, y2, y3, y4, y5, y6), s0, s1, s2, s3, s4, s5, s6, ref a0, ref a1, ref a2, ref a3, ref a4, ref a5, ref a6);
            }

            StoreTileRows<TRows>(GridUnit(TGrid.Type), a0, a1, a2, a3, a4, a5, a6, output, outputStride);
        }
    }

    /// <summary>
    /// Whether a tile fetches its grid points by scalar loads: from four rows on, where the gathers (about a cycle per
    /// point, on the vector side) competed with the rows' sums. `bench matmul` 4864 × 4096, -t 2, gathers → loads:
    /// IQ1_S 4 rows 84 → 93 GMAC/s, 7 rows 89 → 133; IQ2_S 99 → 104, 124 → 150; at 2 rows loads were 6–9% slower, and
    /// IQ1_M 2–6% slower at every count.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool ScalarLoads<TGrid, TRows>() where TGrid : struct, IGatherGrid where TRows : struct, ITileRows =>
        TRows.Count >= 4 && TGrid.Type != GgmlType.IQ1_M;

    /// <summary>A step's magnitudes against one activation row negated where the values are negative: pair sums times the multipliers of their 16-bit lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> GatherGridSums(Vector512<byte> magnitudes, Vector512<sbyte> negative, sbyte* q8, Vector512<short> multipliers)
    {
        var activations = Vector512.Load(q8);
        var signed = Vector512.ConditionalSelect(negative, -activations, activations);
        return Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(magnitudes, signed), multipliers);
    }

    /// <summary>
    /// A block's sixteen odd multipliers 2f + 1 (words 0–15) from its packed scale fields: word f takes the bytes of
    /// <paramref name="scales"/> that <paramref name="spread"/> picks, shifted down by its <paramref name="shifts"/> word and masked.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<short> FieldMultipliers(ulong scales, Vector256<byte> spread, Vector256<ushort> shifts, short mask)
    {
        var fields = Avx512BW.VL.ShiftRightLogicalVariable(Avx2.Shuffle(Vector256.Create(scales).AsByte(), spread).AsUInt16(), shifts).AsInt16() & Vector256.Create(mask);
        return (fields + fields + Vector256<short>.One).ToVector512Unsafe();
    }

    /// <summary>
    /// A step's eight 8-byte grid points: index g is qs byte g with the bits of <paramref name="high"/> from bit
    /// (lane g of <paramref name="shifts"/>) on, <paramref name="mask"/> keeping them, as bits 8 and up; fetched by two
    /// 4-wide gathers, or (<paramref name="loads"/>) by eight scalar loads.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Points(long* grid, byte* qs, uint high, Vector256<uint> shifts, uint mask, bool loads)
    {
        if (!loads) return GatherPoints(grid, GatherIndices(qs, high, shifts, mask));
        var low = Vector256.Create(
            Vector128.Create(grid[PointIndex(qs, 0, high, shifts, mask)], grid[PointIndex(qs, 1, high, shifts, mask)]),
            Vector128.Create(grid[PointIndex(qs, 2, high, shifts, mask)], grid[PointIndex(qs, 3, high, shifts, mask)]));
        var up = Vector256.Create(
            Vector128.Create(grid[PointIndex(qs, 4, high, shifts, mask)], grid[PointIndex(qs, 5, high, shifts, mask)]),
            Vector128.Create(grid[PointIndex(qs, 6, high, shifts, mask)], grid[PointIndex(qs, 7, high, shifts, mask)]));
        return Avx512F.InsertVector256(low.ToVector512Unsafe(), up, 1).AsSByte();
    }

    /// <summary>Grid index <paramref name="g"/> of a step (<see cref="Points"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint PointIndex(byte* qs, int g, uint high, Vector256<uint> shifts, uint mask) => qs[g] | (high >> (int)shifts.GetElement(g) & mask) << 8;

    /// <summary>
    /// A step's eight grid indices in int32 lanes: the step's eight qs bytes at <paramref name="qs"/>, with the bits of
    /// <paramref name="high"/> that each lane's shift brings down and <paramref name="mask"/> keeps as bits 8 and up.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> GatherIndices(byte* qs, uint high, Vector256<uint> shifts, uint mask) =>
        Avx2.ConvertToVector256Int32(qs) | Vector256.ShiftLeft(Avx2.ShiftRightLogicalVariable(Vector256.Create(high), shifts) & Vector256.Create(mask), 8).AsInt32();

    /// <summary>IQ1 values' magnitudes, and in <paramref name="negative"/> the bytes whose value is negative (the values are odd, never zero).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<byte> Magnitudes(Vector512<sbyte> values, out Vector512<sbyte> negative)
    {
        negative = Vector512.LessThan(values, Vector512<sbyte>.Zero);
        return Vector512.Abs(values).AsByte();
    }

    /// <summary>A grid's 8-byte points at eight indices, in index order, by two 4-wide gathers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> GatherPoints(long* grid, Vector256<int> indices)
    {
        var first = Avx2.GatherVector256(grid, indices.GetLower(), 8);
        var second = Avx2.GatherVector256(grid, indices.GetUpper(), 8);
        // An insert: Vector512.Create of the halves went through the stack (measured).
        return Avx512F.InsertVector256(first.ToVector512Unsafe(), second, 1).AsSByte();
    }

    /// <summary><see cref="Eighths(Vector256{sbyte}, Vector256{sbyte})"/> on 64 values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<sbyte> Eighths(Vector512<sbyte> points, Vector512<sbyte> shifts) =>
        (Vector512.ShiftLeft(points.AsInt16(), 3).AsSByte() & Vector512.Create((sbyte)-8)) + shifts;
}
