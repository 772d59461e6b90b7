using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// Multi-token kernels for prompt processing: one weight row against four activation rows, each weight block decoded
/// once and applied to all four. Every result is bit-identical to <see cref="Dot"/> on that activation row (the same
/// integer sums, the same float operations in the same order per row).
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>True when <see cref="Dot4"/> has a kernel for <paramref name="weightType"/>.</summary>
    public static bool HasDot4(GgmlType weightType) => weightType is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type or GgmlType.IQ4_NL or GgmlType.Q4_K or GgmlType.Q6_K or GgmlType.IQ4_XS
        || IqGridDecoder.Handles(weightType);

    /// <summary>Bytes of side data <see cref="PrepareSide"/> derives from each activation row of <paramref name="n"/> elements.</summary>
    public static int SideBytes(GgmlType weightType, int n) => weightType switch
    {
        _ when HasVbmiPair(weightType) => n / BlockLayouts.QK * sizeof(float) + n / 2 * sizeof(short),
        GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 or GgmlType.IQ4_NL => n / BlockLayouts.QK * sizeof(float),
        GgmlType.Q6_K => n / 2 * sizeof(short),
        _ => 0,
    };

    /// <summary>
    /// Per activation row, what the kernels would otherwise recompute for every weight row: Q8_0 block scales as floats,
    /// followed for Q4_0 and Q5_0 on AVX-512 VBMI by their pair bias (<see cref="PairBias"/>), for IQ4_NL by its lane bias
    /// (<see cref="NegatedLaneBias"/>, with VNNI too); Q6_K's pair bias (<see cref="Q6KPairBias"/>).
    /// </summary>
    public static void PrepareSide(GgmlType weightType, byte* y, int n, byte* side)
    {
        switch (weightType)
        {
            case GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type or GgmlType.IQ4_NL:
                for (int b = 0; b < n / BlockLayouts.QK; b++) ((float*)side)[b] = Half(y + b * BlockLayouts.Q8_0.Size);
                if (weightType == GgmlType.IQ4_NL && HasVbmiPair(weightType))
                    NegatedLaneBias(y, n, (int*)(side + n / BlockLayouts.QK * sizeof(float)), Iq4NlVbmiPair.Offset);
                else if (HasVbmiPair(weightType))
                    PairBias(y, n, (short*)(side + n / BlockLayouts.QK * sizeof(float)), weightType == GgmlType.Q4_0 ? Q4VbmiPair.Offset : Q5VbmiPair.Offset);
                break;
            case GgmlType.Q6_K:
                Q6KPairBias(y, n, (short*)side);
                break;
        }
    }

    /// <summary>
    /// <c>output[j * outputStride] = Dot(x, y + j * activationStride)</c> for j = 0..3, where <paramref name="y"/> holds
    /// four activation rows <paramref name="activationStride"/> bytes apart and <paramref name="side"/> their
    /// <see cref="PrepareSide"/> data, <paramref name="sideStride"/> bytes apart.
    /// </summary>
    public static void Dot4(GgmlType weightType, byte* x, byte* y, byte* side, int activationStride, int sideStride, int n, bool vnni, float* output, long outputStride) =>
        FixedTile(weightType, 4, x, y, side, activationStride, sideStride, n, vnni, output, outputStride);

    /// <summary>
    /// <see cref="Dot4"/> over two activation rows (the types of <see cref="HasDot4"/>): a decode step of two streams,
    /// or the odd rows of a small batch, decodes each weight block once instead of once per row.
    /// </summary>
    public static void Dot2(GgmlType weightType, byte* x, byte* y, byte* side, int activationStride, int sideStride, int n, bool vnni, float* output, long outputStride) =>
        FixedTile(weightType, 2, x, y, side, activationStride, sideStride, n, vnni, output, outputStride);

    /// <summary><see cref="Dot4"/> over three activation rows: a step of two decoding streams and one prompt token.</summary>
    public static void Dot3(GgmlType weightType, byte* x, byte* y, byte* side, int activationStride, int sideStride, int n, bool vnni, float* output, long outputStride) =>
        FixedTile(weightType, 3, x, y, side, activationStride, sideStride, n, vnni, output, outputStride);

    /// <summary>
    /// One weight row against 2, 3 or 4 activation rows: <see cref="DotRows"/> where a type has it, else the 256-bit
    /// K-quant tiles, IQ4_XS's and the grid types'.
    /// </summary>
    private static void FixedTile(GgmlType weightType, int rows, byte* x, byte* y, byte* side, int activationStride, int sideStride, int n, bool vnni, float* output,
        long outputStride)
    {
        if (HasDotRows(weightType))
        {
            DotRows(weightType, rows, x, 0, 1, y, side, activationStride, sideStride, n, vnni, output, outputStride);
            return;
        }
        int blocks = n / BlockLayouts.QK_K, biasStride = sideStride / sizeof(short);
        switch (weightType, rows)
        {
            case (GgmlType.Q4_K, 2): Q4KTile<TwoRows>(x, y, activationStride, blocks, output, outputStride); break;
            case (GgmlType.Q4_K, 3): Q4KTile<ThreeRows>(x, y, activationStride, blocks, output, outputStride); break;
            case (GgmlType.Q4_K, 4): Q4KTile<FourRows>(x, y, activationStride, blocks, output, outputStride); break;
            case (GgmlType.Q6_K, 2): Q6KTile<TwoRows>(x, y, (short*)side, activationStride, biasStride, blocks, output, outputStride); break;
            case (GgmlType.Q6_K, 3): Q6KTile<ThreeRows>(x, y, (short*)side, activationStride, biasStride, blocks, output, outputStride); break;
            case (GgmlType.Q6_K, 4): Q6KTile<FourRows>(x, y, (short*)side, activationStride, biasStride, blocks, output, outputStride); break;
            case (GgmlType.IQ4_XS, _): Iq4XsTile(x, y, activationStride, rows, blocks, output, outputStride); break;
            case var _ when IqGridDecoder.Handles(weightType): GridTile(weightType, x, y, activationStride, rows, blocks, output, outputStride); break;
            default: throw new NotSupportedException($"No {rows}-row dot for {weightType}.");
        }
    }

    /// <summary>True when <see cref="DotRows"/> takes any small batch (2–7 activation rows) of <paramref name="weightType"/> as one tile.</summary>
    public static bool HasDotRows(GgmlType weightType) => HasDot8(weightType) || (weightType is GgmlType.Q4_K or GgmlType.Q6_K && HasWideKQuants)
        || HasQ8KTiles(weightType) || HasWideLowK(weightType) || (weightType is GgmlType.Q4_1 or GgmlType.Q5_1 && HasVbmi);

    /// <summary>True when <paramref name="weightType"/> has a 2–7-row tile against Q8_K rows without side data here (<see cref="Q8KTileRows"/>).</summary>
    private static bool HasQ8KTiles(GgmlType weightType) => (weightType == GgmlType.IQ4_XS && HasWideKQuants) || HasGatherGrid(weightType)
        || (weightType is GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ3_XXS or GgmlType.IQ3_S && HasVbmi);

    /// <summary>
    /// IQ4_XS or a grid i-quant against <paramref name="rows"/> Q8_K rows (2–7) in one tile: each kernel decodes a weight
    /// block's step once for all of them.
    /// </summary>
    private static void Q8KTileRows(GgmlType type, int rows, byte* x, long rowBytes, int weightRows, byte* y, int stride, int blocks, float* output, long outputStride)
    {
        switch (rows)
        {
            case 2: Q8KTile<TwoRows>(type, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 3: Q8KTile<ThreeRows>(type, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 4: Q8KTile<FourRows>(type, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 5: Q8KTile<FiveRows>(type, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 6: Q8KTile<SixRows>(type, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case 7: Q8KTile<SevenRows>(type, x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(rows), rows, "a small-batch tile takes 2–7 rows");
        }
    }

    private static void Q8KTile<TRows>(GgmlType type, byte* x, long rowBytes, int weightRows, byte* y, int stride, int blocks, float* output, long outputStride)
        where TRows : struct, ITileRows
    {
        switch (type)
        {
            case GgmlType.IQ4_XS: Iq4XsWideTile<TRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.IQ1_S: GatherGridTile<Iq1SGather, TRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.IQ1_M: GatherGridTile<Iq1MGather, TRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.IQ2_S: GatherGridTile<Iq2SGather, TRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.IQ2_XXS: Iq2XxsVbmi<TRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.IQ2_XS: Iq2XsVbmi<TRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.IQ3_XXS: Iq3XxsVbmi<TRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            case GgmlType.IQ3_S: Iq3SVbmi<TRows>(x, rowBytes, weightRows, y, stride, blocks, output, outputStride); break;
            default: throw new NotSupportedException($"No small-batch tile for {type}.");
        }
    }

    /// <summary>
    /// <see cref="Dot4"/> over <paramref name="rows"/> activation rows (2–7; 8 too for the types of <see cref="HasDot8"/>) at once: a verifying pass of speculative
    /// decoding, a decode step of a few streams or a small expert's tokens decodes each weight block once for the whole
    /// batch, not once per 4-, 3- or 2-row tile.
    /// </summary>
    public static void DotRows(GgmlType weightType, int rows, byte* x, long rowBytes, int weightRows, byte* y, byte* side, int activationStride, int sideStride, int n, bool vnni,
        float* output, long outputStride)
    {
        int blocks = n / BlockLayouts.QK;
        switch (weightType)
        {
            case GgmlType.Q8_0: Block32Rows<Q8Block>(rows, x, rowBytes, weightRows, y, side, activationStride, sideStride, blocks, vnni, output, outputStride); break;
            case GgmlType.Q4_0: Block32Rows<Q4Block>(rows, x, rowBytes, weightRows, y, side, activationStride, sideStride, blocks, vnni, output, outputStride); break;
            // The one-token kernel's float order (even and odd blocks apart), which the 256-bit tiles do not keep: eight rows too.
            case GgmlType.Q5_0 when HasVbmi: Q5WideRows<Q5VbmiPair>(rows, x, rowBytes, weightRows, y, side, activationStride, sideStride, blocks, vnni, output, outputStride); break;
            case Q5Fields.Type: Q5WideRows<Q5FieldsVbmiPair>(rows, x, rowBytes, weightRows, y, side, activationStride, sideStride, blocks, vnni, output, outputStride); break;
            case GgmlType.Q5_0: Block32Rows<Q5Block>(rows, x, rowBytes, weightRows, y, side, activationStride, sideStride, blocks, vnni, output, outputStride); break;
            case GgmlType.IQ4_NL: Block32Rows<Iq4NlBlock>(rows, x, rowBytes, weightRows, y, side, activationStride, sideStride, blocks, vnni, output, outputStride); break;
            case GgmlType.Q4_1 or GgmlType.Q5_1 when HasVbmi && rows < 8: MinPairRows(weightType, rows, x, rowBytes, weightRows, y, activationStride, blocks, vnni, output, outputStride); break;
            case var _ when HasQ8KTiles(weightType): Q8KTileRows(weightType, rows, x, rowBytes, weightRows, y, activationStride, n / BlockLayouts.QK_K, output, outputStride); break;
            case var _ when HasWideLowK(weightType): LowKRows(weightType, rows, x, rowBytes, weightRows, y, activationStride, n / BlockLayouts.QK_K, output, outputStride); break;
            case GgmlType.Q4_K or GgmlType.Q6_K when HasWideKQuants: WideKRows(weightType, rows, x, rowBytes, weightRows, y, side, activationStride, sideStride, n, output, outputStride); break;
            default: throw new NotSupportedException($"No small-batch tile for {weightType}.");
        }
    }

    /// <summary>True when <see cref="Dot8"/> has a kernel for <paramref name="weightType"/>.</summary>
    public static bool HasDot8(GgmlType weightType) => weightType is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type or GgmlType.IQ4_NL;

    /// <summary><see cref="Dot4"/> over eight activation rows (the types of <see cref="HasDot8"/>).</summary>
    public static void Dot8(GgmlType weightType, byte* x, byte* y, byte* side, int activationStride, int sideStride, int n, bool vnni, float* output, long outputStride)
    {
        if (!HasDot8(weightType)) throw new NotSupportedException($"No eight-row dot for {weightType}.");
        DotRows(weightType, 8, x, 0, 1, y, side, activationStride, sideStride, n, vnni, output, outputStride);
    }

    /// <summary>True when <see cref="Dot1Rows2"/> has a kernel for <paramref name="weightType"/> on this machine.</summary>
    public static bool HasDot1Rows2(GgmlType weightType) => weightType is GgmlType.Q8_0 or GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type or GgmlType.IQ4_NL
        || (weightType is GgmlType.Q4_K or GgmlType.Q6_K or GgmlType.IQ4_XS && HasWideKQuants) || HasWideLowK(weightType) || (weightType is GgmlType.Q4_1 or GgmlType.Q5_1 && HasVbmi);

    /// <summary>
    /// <see cref="Dot1"/> of two weight rows (<paramref name="weightStride"/> bytes apart) with one activation row, into
    /// <c>output[0]</c> and <c>output[outputStride]</c>, each bit-identical to <see cref="Dot1"/>. A one-token multiply
    /// walks the two halves of each worker's rows this way: twice the memory streams in flight per core, and two
    /// independent accumulation chains where one waited on its own latency (`bench matmul --rows 16384 --cols 4096
    /// --tokens 1 -t 2`, Zen 5, interleaved with the one-row build: Q8_0 45–49 → 60–70 GMAC/s, Q4_0 40–48 → 46–52,
    /// Q5_0 24–27 → 31–35 with its VBMI kernel).
    /// </summary>
    public static void Dot1Rows2(GgmlType weightType, byte* x, long weightStride, byte* y, byte* side, int n, bool vnni, float* output, long outputStride)
    {
        int blocks = n / BlockLayouts.QK;
        switch (weightType)
        {
            case GgmlType.Q5_0 when HasVbmi: PairVbmi<Q5VbmiPair>(x, weightStride, y, side, 2, blocks, vnni, output, outputStride); break;
            case Q5Fields.Type: PairVbmi<Q5FieldsVbmiPair>(x, weightStride, y, side, 2, blocks, vnni, output, outputStride); break;
            case GgmlType.Q4_0 when HasVbmi: PairVbmi<Q4VbmiPair>(x, weightStride, y, side, 2, blocks, vnni, output, outputStride); break;
            case GgmlType.IQ4_NL when HasVbmiPair(weightType): PairVbmi<Iq4NlVbmiPair>(x, weightStride, y, side, 2, blocks, vnni, output, outputStride); break;
            case GgmlType.Q4_1 when HasVbmi: MinPairVbmi<Q41Pair>(x, weightStride, y, 2, blocks, vnni, output, outputStride); break;
            case GgmlType.Q5_1 when HasVbmi: MinPairVbmi<Q51Pair>(x, weightStride, y, 2, blocks, vnni, output, outputStride); break;
            case GgmlType.Q4_K when HasWideKQuants: Q4_KWide(x, weightStride, y, 2, n / BlockLayouts.QK_K, output, outputStride); break;
            case var _ when HasWideLowK(weightType): LowKDot(weightType, x, weightStride, y, 2, n / BlockLayouts.QK_K, output, outputStride); break;
            case GgmlType.Q6_K when HasWideKQuants: Q6_KWide(x, weightStride, y, (short*)side, 2, n / BlockLayouts.QK_K, output, outputStride); break;
            case GgmlType.IQ4_XS when HasWideKQuants: Iq4XsWide(x, weightStride, y, 2, n / BlockLayouts.QK_K, output, outputStride); break;
            case GgmlType.Q8_0: Tile1Rows2<Q8Block>(x, weightStride, y, (float*)side, blocks, vnni, output, outputStride); break;
            case GgmlType.Q4_0: Tile1Rows2<Q4Block>(x, weightStride, y, (float*)side, blocks, vnni, output, outputStride); break;
            case GgmlType.Q5_0: Tile1Rows2<Q5Block>(x, weightStride, y, (float*)side, blocks, vnni, output, outputStride); break;
            case GgmlType.IQ4_NL: Tile1Rows2<Iq4NlBlock>(x, weightStride, y, (float*)side, blocks, vnni, output, outputStride); break;
            default: throw new NotSupportedException($"No two-weight-row dot for {weightType}.");
        }
    }

    /// <summary>True when <see cref="Dot1Rows4"/> has a kernel for <paramref name="weightType"/> on this machine.</summary>
    // Not Q4_0: its four-row kernel ran faster in cache (108–110 against 93–97 GMAC/s, 4864 × 4096) but slower from
    // memory, where a decode reads (a Llama-1B-shaped Q4_0 file: tg64 57–59 against 65–66 tok/s with two rows).
    public static bool HasDot1Rows4(GgmlType weightType) => weightType == Q5Fields.Type || (weightType == GgmlType.Q5_0 && HasVbmi);

    /// <summary>
    /// <see cref="Dot1"/> of four weight rows — two adjacent rows at <paramref name="x"/> and two at <paramref name="x"/> +
    /// <paramref name="weightStride"/> — with one activation row, into <c>output[0]</c>, <c>output[1]</c>,
    /// <c>output[outputStride]</c> and <c>output[outputStride + 1]</c>, each bit-identical to <see cref="Dot1"/>.
    /// </summary>
    public static void Dot1Rows4(GgmlType weightType, byte* x, int rowBytes, long weightStride, byte* y, byte* side, int n, bool vnni, float* output, long outputStride)
    {
        if (weightType == GgmlType.Q5_0 && HasVbmi) PairVbmiRows4<Q5VbmiPair>(x, rowBytes, weightStride, y, side, n / BlockLayouts.QK, vnni, output, outputStride);
        else if (weightType == Q5Fields.Type) PairVbmiRows4<Q5FieldsVbmiPair>(x, rowBytes, weightStride, y, side, n / BlockLayouts.QK, vnni, output, outputStride);
        else throw new NotSupportedException($"No four-weight-row dot for {weightType}.");
    }

    /// <summary>The single-row dot with the row's <see cref="PrepareSide"/> data (see <see cref="Dot4"/>).</summary>
    public static float Dot1(GgmlType weightType, byte* x, byte* y, byte* side, int n, bool vnni)
    {
        int blocks = n / BlockLayouts.QK;
        return weightType switch
        {
            GgmlType.Q8_0 => Tile1<Q8Block>(x, y, (float*)side, blocks, vnni),
            GgmlType.Q4_0 when HasVbmi => Q4_0Vbmi(x, y, side, blocks, vnni),
            GgmlType.Q4_0 => Tile1<Q4Block>(x, y, (float*)side, blocks, vnni),
            GgmlType.Q5_0 when HasVbmi => Q5_0Vbmi(x, y, side, blocks, vnni),
            Q5Fields.Type => PairVbmi<Q5FieldsVbmiPair>(x, y, side, blocks, vnni),
            GgmlType.Q5_0 => Tile1<Q5Block>(x, y, (float*)side, blocks, vnni),
            GgmlType.IQ4_NL when HasVbmiPair(weightType) => PairVbmi<Iq4NlVbmiPair>(x, y, side, blocks, vnni),
            GgmlType.IQ4_NL => Tile1<Iq4NlBlock>(x, y, (float*)side, blocks, vnni),
            GgmlType.Q4_1 or GgmlType.Q5_1 when HasVbmi => MinPairDot(weightType, x, y, blocks, vnni),
            GgmlType.Q4_K when HasWideKQuants => Q4_KWide(x, y, n / BlockLayouts.QK_K),
            GgmlType.Q4_K => Q4_K(x, y, n / BlockLayouts.QK_K),
            _ when HasWideLowK(weightType) => LowKDot(weightType, x, y, n / BlockLayouts.QK_K),
            GgmlType.Q2_K => Q2_K(x, y, n / BlockLayouts.QK_K),
            GgmlType.Q3_K => Q3_K(x, y, n / BlockLayouts.QK_K),
            GgmlType.Q5_K => Q5_K(x, y, n / BlockLayouts.QK_K),
            GgmlType.IQ4_XS when HasWideKQuants => Iq4XsWide(x, y, n / BlockLayouts.QK_K),
            GgmlType.IQ4_XS => Iq4XsTile1(x, y, n / BlockLayouts.QK_K),
            GgmlType.Q6_K when HasWideKQuants => Q6_KWide(x, y, (short*)side, n / BlockLayouts.QK_K),
            GgmlType.Q6_K => Q6KScaled(x, y, (short*)side, n / BlockLayouts.QK_K),
            _ when IqGridDecoder.Handles(weightType) => GridQuant(weightType, x, y, n / BlockLayouts.QK_K, IsaLevels.Best == IsaLevel.Avx512),
            _ => throw new NotSupportedException($"No scaled dot for {weightType}."),
        };
    }

    /// <summary>The single-row IQ4_XS dot: <see cref="Iq4XsTile"/> over one row.</summary>
    private static float Iq4XsTile1(byte* x, byte* y, int blocks)
    {
        float result;
        Iq4XsTile(x, y, 0, 1, blocks, &result, 0);
        return result;
    }

    /// <summary>
    /// IQ4_XS against one to four Q8_K rows <paramref name="stride"/> bytes apart: each 32-element sub-block's levels are
    /// looked up once for all rows, and its byte-pair sums weighted by the sub-block's scale − 32 in the 16-to-32-bit
    /// multiply-add, as llama.cpp's AVX2 kernel does (exact: pair sums stay within int16, products within int32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Iq4XsTile(byte* x, byte* y, int stride, int rows, int blocks, float* output, long outputStride)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < blocks; b++, x += BlockLayouts.IQ4_XS.Size, y += BlockLayouts.Q8_K.Size)
        {
            PrefetchBlock(x, BlockLayouts.IQ4_XS.Size);
            uint lowNibbles = *(uint*)(x + BlockLayouts.IQ4_XS.ScalesL);
            int highPairs = *(ushort*)(x + BlockLayouts.IQ4_XS.ScalesH);
            byte* qs = x + BlockLayouts.IQ4_XS.Qs;
            sbyte* q8 = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
            Vector256<int> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int ib = 0; ib < 8; ib++, qs += 16, q8 += 32)
            {
                var scale = Vector256.Create((short)(Iq4Levels.XsScale(lowNibbles, highPairs, ib) - 32));
                Vector256<sbyte> q = Iq4Quants(qs);
                Vector256<byte> absQ = Avx2.Sign(q, q).AsByte();
                s0 += ScaledPairSums(absQ, q, q8, scale);
                if (rows > 1) s1 += ScaledPairSums(absQ, q, q8 + stride, scale);
                if (rows > 2) s2 += ScaledPairSums(absQ, q, q8 + 2 * stride, scale);
                if (rows > 3) s3 += ScaledPairSums(absQ, q, q8 + 3 * stride, scale);
            }

            float dx = Half(x);
            a0 = BlockFma(dx * *(float*)(y + BlockLayouts.Q8_K.D), s0, a0);
            if (rows > 1) a1 = BlockFma(dx * *(float*)(y + stride + BlockLayouts.Q8_K.D), s1, a1);
            if (rows > 2) a2 = BlockFma(dx * *(float*)(y + 2 * stride + BlockLayouts.Q8_K.D), s2, a2);
            if (rows > 3) a3 = BlockFma(dx * *(float*)(y + 3 * stride + BlockLayouts.Q8_K.D), s3, a3);
        }

        output[0] = HorizontalSum(a0);
        if (rows > 1) output[outputStride] = HorizontalSum(a1);
        if (rows > 2) output[2 * outputStride] = HorizontalSum(a2);
        if (rows > 3) output[3 * outputStride] = HorizontalSum(a3);
    }

    /// <summary>Σ over each group of 4 elements of q·y, each pair of products times <paramref name="scale"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> ScaledPairSums(Vector256<byte> absQ, Vector256<sbyte> q, sbyte* y, Vector256<short> scale) =>
        Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(absQ, Avx2.Sign(Vector256.Load(y), q)), scale);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Tile1<T>(byte* x, byte* y, float* ys, int blocks, bool vnni) where T : struct, IBlock32
    {
        var acc = Vector256<float>.Zero;
        for (int b = 0; b < blocks; b++, x += T.Size, y += BlockLayouts.Q8_0.Size)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            Vector256<sbyte> qx = T.Quants(x);
            Vector256<byte> absX = Avx2.Sign(qx, qx).AsByte();
            acc = TokenStep(qx, absX, Vector256.Create(Half(x)) * Vector256.Create(ys[b]), y, vnni, acc);
        }

        return HorizontalSum(acc);
    }

    /// <summary><see cref="Tile1{T}"/> over two weight rows <paramref name="weightStride"/> bytes apart and one activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile1Rows2<T>(byte* x, long weightStride, byte* y, float* ys, int blocks, bool vnni, float* output, long outputStride) where T : struct, IBlock32
    {
        var acc0 = Vector256<float>.Zero;
        var acc1 = Vector256<float>.Zero;
        byte* x1 = x + weightStride;
        for (int b = 0; b < blocks; b++, x += T.Size, x1 += T.Size, y += BlockLayouts.Q8_0.Size)
        {
            Sse.Prefetch0(x + PrefetchDistance);
            Sse.Prefetch0(x1 + PrefetchDistance);
            Vector256<sbyte> q0 = T.Quants(x), q1 = T.Quants(x1);
            var dy = Vector256.Create(ys[b]);
            acc0 = TokenStep(q0, Avx2.Sign(q0, q0).AsByte(), Vector256.Create(Half(x)) * dy, y, vnni, acc0);
            acc1 = TokenStep(q1, Avx2.Sign(q1, q1).AsByte(), Vector256.Create(Half(x1)) * dy, y, vnni, acc1);
        }

        output[0] = HorizontalSum(acc0);
        output[outputStride] = HorizontalSum(acc1);
    }

    private interface IBlock32
    {
        static abstract int Size { get; }

        /// <summary>The block's 32 signed quants.</summary>
        static abstract Vector256<sbyte> Quants(byte* x);
    }

    private readonly struct Q8Block : IBlock32
    {
        public static int Size => BlockLayouts.Q8_0.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x) => Vector256.Load((sbyte*)(x + BlockLayouts.Q8_0.Qs));
    }

    private readonly struct Iq4NlBlock : IBlock32
    {
        public static int Size => BlockLayouts.IQ4_NL.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x) => Iq4Quants(x + BlockLayouts.IQ4_NL.Qs);
    }

    private readonly struct Q4Block : IBlock32
    {
        public static int Size => BlockLayouts.Q4_0.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x) => (Nibbles32(x + BlockLayouts.Q4_0.Qs) - Vector256.Create((byte)8)).AsSByte();
    }

    private readonly struct Q5Block : IBlock32
    {
        public static int Size => BlockLayouts.Q5_0.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x)
        {
            // q - 16 as a byte: OR 0xF0 into the nibble where the fifth bit is clear (e.g. 0x0F | 0xF0 = -1).
            Vector256<byte> highClear = ~BytesFromBits(x + BlockLayouts.Q5_0.Qh) & Vector256.Create((byte)0xF0);
            return (Nibbles32(x + BlockLayouts.Q5_0.Qs) | highClear).AsSByte();
        }
    }

    /// <summary>A repacked Q5_0 block (<see cref="Q5Fields"/>, VBMI only): q = u − 16 from <see cref="Q5FieldsUnsigned"/>.</summary>
    private readonly struct Q5FieldsBlock : IBlock32
    {
        public static int Size => BlockLayouts.Q5_0.Size;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<sbyte> Quants(byte* x) => (Q5FieldsUnsigned(x) - Vector256.Create((byte)16)).AsSByte();
    }

    /// <summary>
    /// A repacked Q5_0 block's u = q + 16 in element order: a 32-byte load from the block's start (the buffer's
    /// <see cref="Q5Fields.Padding"/> covers its end), the first block's permute and multishift of <see cref="Q5FieldPair"/>, a mask.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<byte> Q5FieldsUnsigned(byte* x) =>
        Avx512Vbmi.VL.MultiShift(Vector256.Load(Q5FieldControls + 64), Avx512Vbmi.VL.PermuteVar32x8(Vector256.Load(x), Vector256.Load(Q5FieldControls)).AsUInt64()).AsByte()
        & Vector256.Create((byte)0x1F);

    /// <summary>
    /// <paramref name="weightRows"/> weight rows of a 32-element block type (<paramref name="rowBytes"/> apart; weight row
    /// r's results at <c>output[r + k * outputStride]</c>), each against <typeparamref name="TRows"/> activation rows
    /// (2–8): each block unpacked once (the costly part for Q4_0/Q5_0) for every activation row, and each row's share as the one-token kernel's
    /// (SumProductsSigned with |x| hoisted, then the block FMA), so each result is the same bits. Eight accumulators
    /// still fit AVX2's sixteen vector registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<T, TRows>(byte* weights, long rowBytes, int weightRows, byte* activations, float* scales, int stride, int scaleStride, int blocks, bool vnni,
        float* output, long outputStride)
        where T : struct, IBlock32 where TRows : struct, ITileRows
    {
        for (int row = 0; row < weightRows; row++, output++)
        {
            byte* x = weights + row * rowBytes, y = activations;
            float* ys = scales;
            var a0 = Vector256<float>.Zero;
            var a1 = Vector256<float>.Zero;
            var a2 = Vector256<float>.Zero;
            var a3 = Vector256<float>.Zero;
            var a4 = Vector256<float>.Zero;
            var a5 = Vector256<float>.Zero;
            var a6 = Vector256<float>.Zero;
            var a7 = Vector256<float>.Zero;
            for (int b = 0; b < blocks; b++, x += T.Size, y += BlockLayouts.Q8_0.Size, ys++)
            {
                Sse.Prefetch0(x + PrefetchDistance);
                Vector256<sbyte> qx = T.Quants(x);
                Vector256<byte> absX = Avx2.Sign(qx, qx).AsByte();
                var dx = Vector256.Create(Half(x));
                a0 = TokenStep(qx, absX, dx * Vector256.Create(ys[0]), y, vnni, a0);
                if (TRows.Count > 1) a1 = TokenStep(qx, absX, dx * Vector256.Create(ys[scaleStride]), y + stride, vnni, a1);
                if (TRows.Count > 2) a2 = TokenStep(qx, absX, dx * Vector256.Create(ys[2 * scaleStride]), y + 2 * stride, vnni, a2);
                if (TRows.Count > 3) a3 = TokenStep(qx, absX, dx * Vector256.Create(ys[3 * scaleStride]), y + 3 * stride, vnni, a3);
                if (TRows.Count > 4) a4 = TokenStep(qx, absX, dx * Vector256.Create(ys[4 * scaleStride]), y + 4 * stride, vnni, a4);
                if (TRows.Count > 5) a5 = TokenStep(qx, absX, dx * Vector256.Create(ys[5 * scaleStride]), y + 5 * stride, vnni, a5);
                if (TRows.Count > 6) a6 = TokenStep(qx, absX, dx * Vector256.Create(ys[6 * scaleStride]), y + 6 * stride, vnni, a6);
                if (TRows.Count > 7) a7 = TokenStep(qx, absX, dx * Vector256.Create(ys[7 * scaleStride]), y + 7 * stride, vnni, a7);
            }

            StoreSums<TRows>(output, outputStride, a0, a1, a2, a3, a4, a5, a6, a7);
        }
    }

    /// <summary>The first <typeparamref name="TRows"/> accumulators' lane sums into <c>output[k * outputStride]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreSums<TRows>(float* output, long outputStride, Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3,
        Vector256<float> a4, Vector256<float> a5, Vector256<float> a6, Vector256<float> a7) where TRows : struct, ITileRows
    {
        output[0] = HorizontalSum(a0);
        if (TRows.Count > 1) output[outputStride] = HorizontalSum(a1);
        if (TRows.Count > 2) output[2 * outputStride] = HorizontalSum(a2);
        if (TRows.Count > 3) output[3 * outputStride] = HorizontalSum(a3);
        if (TRows.Count > 4) output[4 * outputStride] = HorizontalSum(a4);
        if (TRows.Count > 5) output[5 * outputStride] = HorizontalSum(a5);
        if (TRows.Count > 6) output[6 * outputStride] = HorizontalSum(a6);
        if (TRows.Count > 7) output[7 * outputStride] = HorizontalSum(a7);
    }

    /// <summary><see cref="Tile{T, TRows}"/> for a row count known only at run time (2–8).</summary>
    private static void Block32Rows<T>(int rows, byte* x, long rowBytes, int weightRows, byte* y, byte* side, int stride, int sideStride, int blocks, bool vnni, float* output,
        long outputStride)
        where T : struct, IBlock32
    {
        float* ys = (float*)side;
        int scaleStride = sideStride / sizeof(float);
        switch (rows)
        {
            case 2: Tile<T, TwoRows>(x, rowBytes, weightRows, y, ys, stride, scaleStride, blocks, vnni, output, outputStride); break;
            case 3: Tile<T, ThreeRows>(x, rowBytes, weightRows, y, ys, stride, scaleStride, blocks, vnni, output, outputStride); break;
            case 4: Tile<T, FourRows>(x, rowBytes, weightRows, y, ys, stride, scaleStride, blocks, vnni, output, outputStride); break;
            case 5: Tile<T, FiveRows>(x, rowBytes, weightRows, y, ys, stride, scaleStride, blocks, vnni, output, outputStride); break;
            case 6: Tile<T, SixRows>(x, rowBytes, weightRows, y, ys, stride, scaleStride, blocks, vnni, output, outputStride); break;
            case 7: Tile<T, SevenRows>(x, rowBytes, weightRows, y, ys, stride, scaleStride, blocks, vnni, output, outputStride); break;
            case 8: Tile<T, EightRows>(x, rowBytes, weightRows, y, ys, stride, scaleStride, blocks, vnni, output, outputStride); break;
            default: throw new ArgumentOutOfRangeException(nameof(rows), rows, "a tile takes 2–8 rows");
        }
    }

    /// <summary>One activation row's share of a block: SumProductsSigned with |x| hoisted, then the block FMA.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> TokenStep(Vector256<sbyte> qx, Vector256<byte> absX, Vector256<float> scale, byte* y, bool vnni, Vector256<float> acc) =>
        BlockFma(scale, SumProductsUnsigned(absX, Avx2.Sign(Vector256.Load((sbyte*)(y + BlockLayouts.Q8_0.Qs)), qx), vnni), acc);

}
