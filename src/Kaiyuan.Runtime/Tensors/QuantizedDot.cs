using Kaiyuan.Gguf;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// Dot products of a weight row with an activation row prepared in the weight type's companion format, as llama.cpp's
/// CPU backend computes them (quantize the activations once per row, then integer block sums scaled per block).
/// </summary>
internal static class QuantizedDot
{
    /// <summary>The activation format llama.cpp pairs with a weight type (type_traits_cpu vec_dot_type).</summary>
    public static GgmlType ActivationType(GgmlType weightType) => weightType switch
    {
        GgmlType.F32 => GgmlType.F32,
        GgmlType.F16 => GgmlType.F16,
        GgmlType.BF16 => GgmlType.BF16,
        GgmlType.Q4_0 or GgmlType.Q5_0 or Q5Fields.Type or GgmlType.Q8_0 => GgmlType.Q8_0,
        GgmlType.Q4_1 or GgmlType.Q5_1 => GgmlType.Q8_1,
        GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.IQ4_XS
            or GgmlType.TQ1_0 or GgmlType.TQ2_0 => GgmlType.Q8_K,
        _ when IqGridDecoder.Handles(weightType) => GgmlType.Q8_K,
        GgmlType.IQ4_NL => GgmlType.Q8_0,
        _ => throw new NotSupportedException($"No vector dot for weight type {weightType}."),
    };

    /// <summary>The kernel tier this machine runs, as `bench` reports it: avx512, avx-vnni, avx2, arm64-neon-dot or scalar.</summary>
    public static string KernelTier => IsaLevels.Best switch
    {
        IsaLevel.Avx512 => "avx512",
        IsaLevel.AvxVnni => "avx-vnni",
        IsaLevel.Avx2 => "avx2",
        IsaLevel.Neon => "arm64-neon-dot",
        _ => "scalar",
    };

    /// <summary>True when <see cref="VecDot(GgmlType, ReadOnlySpan{byte}, ReadOnlySpan{byte}, int)"/> handles this weight type.</summary>
    public static bool IsSupported(GgmlType weightType) => weightType is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16
        or GgmlType.Q4_0 or GgmlType.Q4_1 or GgmlType.Q5_0 or GgmlType.Q5_1 or GgmlType.Q8_0
        or GgmlType.Q2_K or GgmlType.Q3_K or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K or GgmlType.IQ4_NL or GgmlType.IQ4_XS
        or GgmlType.TQ1_0 or GgmlType.TQ2_0 || IqGridDecoder.Handles(weightType) || (weightType == Q5Fields.Type && Q5Fields.Used);

    /// <summary>
    /// Converts or quantizes <paramref name="x"/> into <paramref name="activationType"/> (F32, F16, BF16, Q8_0, Q8_1 or
    /// Q8_K), bit-exactly as llama.cpp's x86 build does. <paramref name="dst"/> needs
    /// <c>GgmlTypeInfo.RowBytes(activationType, x.Length)</c> bytes.
    /// </summary>
    public static void QuantizeActivations(GgmlType activationType, ReadOnlySpan<float> x, Span<byte> dst)
    {
        var (blockSize, _) = GgmlTypeInfo.Geometry(activationType);
        if (activationType is not (GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 or GgmlType.Q8_0 or GgmlType.Q8_1 or GgmlType.Q8_K))
        {
            throw new NotSupportedException($"{activationType} is not an activation format.");
        }

        if (x.Length % blockSize != 0)
        {
            throw new ArgumentException($"Row length {x.Length} is not a multiple of the {activationType} block size {blockSize}.", nameof(x));
        }

        long needed = GgmlTypeInfo.RowBytes(activationType, x.Length);
        if (dst.Length < needed)
        {
            throw new ArgumentException($"Destination holds {dst.Length} bytes; {needed} are needed.", nameof(dst));
        }

        ActivationQuantizer.Row(activationType, x, dst);
    }

    /// <summary>
    /// Dot product of a weight row of <paramref name="n"/> elements with an activation row prepared by
    /// <see cref="QuantizeActivations"/> in <c>ActivationType(weightType)</c>.
    /// </summary>
    public static float VecDot(GgmlType weightType, ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n)
    {
        if (!IsSupported(weightType))
        {
            throw new NotSupportedException($"No vector dot for weight type {weightType}.");
        }

        var (blockSize, _) = GgmlTypeInfo.Geometry(Q5Fields.FileType(weightType));
        if (n % blockSize != 0)
        {
            throw new ArgumentException($"Row length {n} is not a multiple of the {weightType} block size {blockSize}.", nameof(n));
        }

        if (weightRow.Length < GgmlTypeInfo.RowBytes(Q5Fields.FileType(weightType), n)
            || activationRow.Length < GgmlTypeInfo.RowBytes(ActivationType(weightType), n))
        {
            throw new ArgumentException("A row is shorter than n elements of its type.");
        }

        return VecDot(weightType, weightRow, activationRow, n, IsaLevels.Best);
    }

    private static readonly bool Vnni = IsaLevels.Best == IsaLevel.AvxVnni || IsaLevels.Best == IsaLevel.Avx512 && AvxVnni.IsSupported;

    /// <summary>Checks once per matrix what <see cref="VecDot(GgmlType, ReadOnlySpan{byte}, ReadOnlySpan{byte}, int)"/> checks per call.</summary>
    internal static void CheckRows(GgmlType weightType, int n)
    {
        if (!IsSupported(weightType)) throw new NotSupportedException($"No vector dot for weight type {weightType}.");
        var (blockSize, _) = GgmlTypeInfo.Geometry(Q5Fields.FileType(weightType));
        if (n % blockSize != 0) throw new ArgumentException($"Row length {n} is not a multiple of the {weightType} block size {blockSize}.", nameof(n));
    }

    /// <summary>The dot without argument checks (the caller ran <see cref="CheckRows"/> and sized both rows).</summary>
    internal static unsafe float DotUnchecked(GgmlType weightType, byte* weightRow, int weightBytes, byte* activationRow, int activationBytes, int n) =>
        VecDot(weightType, new ReadOnlySpan<byte>(weightRow, weightBytes), new ReadOnlySpan<byte>(activationRow, activationBytes), n, IsaLevels.Best);

    /// <summary>True when <see cref="Dot4"/> runs for this weight type on this machine.</summary>
    internal static bool HasDot4(GgmlType weightType) => IsaLevels.IsX86(IsaLevels.Best) && Avx2Dot.HasDot4(weightType);

    /// <summary>Bytes of <see cref="PrepareSide"/> data per activation row of <paramref name="n"/> elements (0 for none).</summary>
    internal static int SideBytes(GgmlType weightType, int n) => HasDot4(weightType) ? Avx2Dot.SideBytes(weightType, n) : 0;

    /// <summary>
    /// Derives from an activation row, once per matrix, what <see cref="Dot4"/> and <see cref="Dot1"/> would otherwise
    /// recompute for every weight row (float block scales, Q6_K's bias sums); <paramref name="side"/> holds
    /// <see cref="SideBytes"/> bytes.
    /// </summary>
    internal static unsafe void PrepareSide(GgmlType weightType, byte* activationRow, int n, byte* side) =>
        Avx2Dot.PrepareSide(weightType, activationRow, n, side);

    /// <summary>
    /// One weight row against four activation rows <paramref name="activationStride"/> bytes apart, with their
    /// <see cref="PrepareSide"/> data <paramref name="sideStride"/> bytes apart: <c>output[j * outputStride]</c> gets the
    /// dot with row j, bit-identical to <see cref="DotUnchecked"/>.
    /// </summary>
    internal static unsafe void Dot4(GgmlType weightType, byte* weightRow, byte* activations, byte* side, int activationStride, int sideStride, int n, float* output, long outputStride) =>
        Avx2Dot.Dot4(weightType, weightRow, activations, side, activationStride, sideStride, n, Vnni, output, outputStride);

    /// <summary><see cref="Dot4"/> over two activation rows (same types as <see cref="HasDot4"/>).</summary>
    internal static unsafe void Dot2(GgmlType weightType, byte* weightRow, byte* activations, byte* side, int activationStride, int sideStride, int n, float* output, long outputStride) =>
        Avx2Dot.Dot2(weightType, weightRow, activations, side, activationStride, sideStride, n, Vnni, output, outputStride);

    /// <summary><see cref="Dot4"/> over three activation rows (same types as <see cref="HasDot4"/>).</summary>
    internal static unsafe void Dot3(GgmlType weightType, byte* weightRow, byte* activations, byte* side, int activationStride, int sideStride, int n, float* output, long outputStride) =>
        Avx2Dot.Dot3(weightType, weightRow, activations, side, activationStride, sideStride, n, Vnni, output, outputStride);

    /// <summary>
    /// The largest batch that runs as small-batch tiles (<see cref="DotRows"/>, up to seven rows each) rather than panels,
    /// where a type's AVX-512 tiles beat its panels past seven rows; a mixture-of-experts prompt gives its experts about
    /// that many tokens each. Measured with `bench matmul`, 4864 × 4096, 2 threads, Zen 5, GMAC/s by panels against tiles:
    /// Q2_K and Q3_K 105 and 81 against 242 and 204 at 8 rows, 227 and 184 against 257 and 232 at 24, even at 32;
    /// IQ2_XXS, IQ2_XS and IQ3_XXS 82–95 against 138–155 at 8, 133–151 against 146–163 at 16, ahead by panels at 24;
    /// IQ4_XS and IQ3_S 138 and 79 against 177 and 120 at 8, level at 16; IQ1_S and IQ2_S, whose four- to seven-row tiles
    /// load their points (<see cref="Avx2Dot"/>'s gathered grids), 76 and 92 against 93 and 102 at 8, 108–118 against
    /// 128–148 at 12–14, ahead by panels at 15 (three tiles of five); IQ1_M level or behind at 8. Otherwise one below the
    /// panels' <see cref="Kernels.MatMul.PanelMinTokens"/>.
    /// </summary>
    internal static int TileMaxTokens(GgmlType weightType) =>
        !HasDotRows(weightType) || IsaLevels.Best != IsaLevel.Avx512 ? Kernels.MatMul.PanelMinTokens - 1 : weightType switch
        {
            GgmlType.Q2_K or GgmlType.Q3_K => 31,
            GgmlType.IQ2_XXS or GgmlType.IQ2_XS or GgmlType.IQ3_XXS => 19,
            GgmlType.IQ4_XS or GgmlType.IQ3_S => 15,
            GgmlType.IQ1_S or GgmlType.IQ2_S => 14,
            _ => Kernels.MatMul.PanelMinTokens - 1,
        };

    /// <summary>True when <see cref="DotRows"/> runs for this weight type on this machine.</summary>
    internal static bool HasDotRows(GgmlType weightType) => IsaLevels.IsX86(IsaLevels.Best) && Avx2Dot.HasDotRows(weightType);

    /// <summary>
    /// <paramref name="weightRows"/> weight rows <paramref name="rowBytes"/> apart against <paramref name="rows"/> (2–7)
    /// activation rows <paramref name="activationStride"/> bytes apart, with their <see cref="PrepareSide"/> data
    /// <paramref name="sideStride"/> bytes apart, one tile per weight row: <c>output[r + j * outputStride]</c> gets weight
    /// row r's dot with activation row j, bit-identical to <see cref="DotUnchecked"/>.
    /// </summary>
    internal static unsafe void DotRows(GgmlType weightType, int rows, byte* weights, long rowBytes, int weightRows, byte* activations, byte* side, int activationStride,
        int sideStride, int n, float* output, long outputStride) =>
        Avx2Dot.DotRows(weightType, rows, weights, rowBytes, weightRows, activations, side, activationStride, sideStride, n, Vnni, output, outputStride);

    /// <summary>True when <see cref="PairRows"/> runs for this weight type on this machine (AVX-512 BW, the 32-element block types).</summary>
    internal static bool HasPairTiles(GgmlType weightType) => IsaLevels.Best == IsaLevel.Avx512 && Avx2Dot.HasPairTiles(weightType);

    /// <summary>Bytes of <see cref="PackPairs"/> output for <paramref name="tokens"/> activation rows of <paramref name="n"/> elements.</summary>
    internal static int PairBytes(GgmlType weightType, int n, int tokens) => Avx2Dot.PairBytes(weightType, n, tokens);

    /// <summary>Interleaves 2–7 prepared (Q8_0) activation rows in pairs for <see cref="PairRows"/>, once per matrix multiply.</summary>
    internal static unsafe void PackPairs(GgmlType weightType, byte* activations, int activationStride, int tokens, int n, byte* pairs) =>
        Avx2Dot.PackPairs(weightType, activations, activationStride, tokens, n, pairs);

    /// <summary>
    /// <see cref="DotRows"/> from activation rows packed by <see cref="PackPairs"/>: <c>output[r + j * outputStride]</c>
    /// gets weight row r's dot with activation row j, bit-identical to <see cref="DotUnchecked"/>.
    /// </summary>
    internal static unsafe void PairRows(GgmlType weightType, int tokens, byte* weights, long rowBytes, int weightRows, byte* pairs, int n, float* output, long outputStride) =>
        Avx2Dot.PairRows(weightType, tokens, weights, rowBytes, weightRows, pairs, n, output, outputStride);

    /// <summary>True when <see cref="Dot8"/> runs for this weight type on this machine.</summary>
    internal static bool HasDot8(GgmlType weightType) => IsaLevels.IsX86(IsaLevels.Best) && Avx2Dot.HasDot8(weightType);

    /// <summary><see cref="Dot4"/> over eight activation rows.</summary>
    internal static unsafe void Dot8(GgmlType weightType, byte* weightRow, byte* activations, byte* side, int activationStride, int sideStride, int n, float* output, long outputStride) =>
        Avx2Dot.Dot8(weightType, weightRow, activations, side, activationStride, sideStride, n, Vnni, output, outputStride);

    /// <summary>True when <see cref="Dot1Rows2"/> runs for this weight type on this machine.</summary>
    internal static bool HasDot1Rows2(GgmlType weightType) => IsaLevels.IsX86(IsaLevels.Best) && Avx2Dot.HasDot1Rows2(weightType);

    /// <summary><see cref="Dot1"/> of two weight rows <paramref name="weightStride"/> bytes apart with one activation row, into <c>output[0]</c> and <c>output[outputStride]</c>.</summary>
    internal static unsafe void Dot1Rows2(GgmlType weightType, byte* weightRow, long weightStride, byte* activations, byte* side, int n, float* output, long outputStride) =>
        Avx2Dot.Dot1Rows2(weightType, weightRow, weightStride, activations, side, n, Vnni, output, outputStride);

    /// <summary>True when <see cref="Dot1Rows4"/> runs for this weight type on this machine.</summary>
    internal static bool HasDot1Rows4(GgmlType weightType) => IsaLevels.IsX86(IsaLevels.Best) && Avx2Dot.HasDot1Rows4(weightType);

    /// <summary>
    /// Four weight rows against one activation row: rows <paramref name="weightRow"/> and the one after it
    /// (<paramref name="rowBytes"/> on) into <c>output[0]</c> and <c>output[1]</c>, the same two
    /// <paramref name="weightStride"/> bytes on into <c>output[outputStride]</c> and <c>output[outputStride + 1]</c>;
    /// each bit-identical to <see cref="Dot1"/>.
    /// </summary>
    internal static unsafe void Dot1Rows4(GgmlType weightType, byte* weightRow, int rowBytes, long weightStride, byte* activations, byte* side, int n, float* output, long outputStride) =>
        Avx2Dot.Dot1Rows4(weightType, weightRow, rowBytes, weightStride, activations, side, n, Vnni, output, outputStride);

    /// <summary>The single-row form of <see cref="Dot4"/> (same types, same result as <see cref="DotUnchecked"/>).</summary>
    internal static unsafe float Dot1(GgmlType weightType, byte* weightRow, byte* activations, byte* side, int n) =>
        Avx2Dot.Dot1(weightType, weightRow, activations, side, n, Vnni);

    /// <summary>True when the 8-row panel GEMM (<see cref="PackPanel"/>, <see cref="PanelMultiply"/>) runs for this weight type here.</summary>
    internal static bool HasPanels(GgmlType weightType) => IsaLevels.IsX86(IsaLevels.Best) && Avx2Dot.HasPanels(weightType);

    /// <summary>Weight rows per panel.</summary>
    internal const int PanelRows = Avx2Dot.PanelRows;

    /// <summary>Widest column range per <see cref="PanelMultiply"/> call that keeps its data in L1.</summary>
    internal static int PanelColumns(GgmlType weightType) => Avx2Dot.PanelColumns(weightType);

    /// <summary>Bytes of one packed panel of <see cref="PanelRows"/> rows of <paramref name="n"/> elements.</summary>
    internal static int PanelBytes(GgmlType weightType, int n) => Avx2Dot.PanelBytes(weightType, n);

    /// <summary>Bytes of <see cref="PreparePanelSide"/> data per activation row.</summary>
    internal static int PanelSideBytes(GgmlType weightType, int n) => Avx2Dot.PanelSideBytes(weightType, n);

    /// <summary>What the panel kernels derive once from each activation row (block scales, offset sums).</summary>
    internal static unsafe void PreparePanelSide(GgmlType weightType, byte* activationRow, int n, byte* side)
    {
        if (Avx2Dot.PanelSideBytes(weightType, n) > 0) Avx2Dot.PreparePanelSide(weightType, activationRow, n, side);
    }

    /// <summary>Repacks <see cref="PanelRows"/> weight rows, <paramref name="rowBytes"/> apart, into one panel.</summary>
    internal static unsafe void PackPanel(GgmlType weightType, byte* rows, long rowBytes, int n, byte* panel) =>
        Avx2Dot.PackPanel(weightType, rows, rowBytes, n, panel);

    /// <summary>
    /// A panel's rows over columns [<paramref name="firstColumn"/>, + <paramref name="columns"/>) against
    /// <paramref name="tokens"/> activation rows: the eight results for activation row t go to
    /// <c>output + t * outputStride</c>, or are added there when <paramref name="accumulate"/>.
    /// </summary>
    internal static unsafe void PanelMultiply(GgmlType weightType, byte* panel, int n, int firstColumn, int columns, byte* activations, int activationStride,
        byte* side, int sideStride, int tokens, bool accumulate, float* output, long outputStride) =>
        Avx2Dot.PanelMultiply(weightType, panel, n, firstColumn, columns, activations, activationStride, side, sideStride, tokens, accumulate, output, outputStride);

    /// <summary>True when <see cref="PanelPairMultiply"/> takes two panels of this weight type at once here.</summary>
    internal static bool HasPanelPairs(GgmlType weightType) => HasPanels(weightType) && Avx2Dot.HasPanelPairs(weightType);

    /// <summary>
    /// <see cref="PanelMultiply"/> of two panels at once, <paramref name="panelB"/>'s rows after <paramref name="panelA"/>'s:
    /// the sixteen results for activation row t go to <c>output + t * outputStride</c>, each equal to the 8-row call's.
    /// </summary>
    internal static unsafe void PanelPairMultiply(GgmlType weightType, byte* panelA, byte* panelB, int n, int firstColumn, int columns, byte* activations,
        int activationStride, byte* side, int sideStride, int tokens, bool accumulate, float* output, long outputStride) =>
        Avx2Dot.PanelPairMultiply(weightType, panelA, panelB, n, firstColumn, columns, activations, activationStride, side, sideStride, tokens, accumulate, output, outputStride);

    /// <summary>The dot on an explicit instruction-set tier (tests compare the tiers); arguments are not re-checked.</summary>
    internal static float VecDot(GgmlType weightType, ReadOnlySpan<byte> weightRow, ReadOnlySpan<byte> activationRow, int n, IsaLevel isa) => isa switch
    {
        IsaLevel.Avx2 => Avx2Dot.Dot(weightType, weightRow, activationRow, n, vnni: false, wide: false),
        IsaLevel.AvxVnni => Avx2Dot.Dot(weightType, weightRow, activationRow, n, vnni: true, wide: false),
        // llama.cpp's integer kernels stay 256-bit on AVX-512 machines; the float types widen, and IQ2_XXS where VBMI
        // decodes its grid in registers (its lanes fold back to the 256-bit layout, so every tier agrees to the bit).
        IsaLevel.Avx512 => Avx2Dot.Dot(weightType, weightRow, activationRow, n, vnni: AvxVnni.IsSupported, wide: true),
        IsaLevel.Neon => NeonDot.Dot(weightType, weightRow, activationRow, n),
        _ => ScalarDot.Dot(weightType, weightRow, activationRow, n),
    };
}
