using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// F32 / F16 / BF16 dots for x86. llama.cpp on an AVX-512 machine computes these matmuls with llamafile's tinyBLAS: one
/// 16-lane FMA accumulator per output, then _mm512_reduce_add_ps. We keep exactly that lane layout: natively with
/// 512-bit vectors (<c>wide</c>), or as two 256-bit halves on AVX2, so both tiers give the same bits.
/// Elements past the last multiple of 16 are added one by one at the end.
/// </summary>
internal static unsafe class FloatDot
{
    private const float TwoPow112 = 5.192296858534828e33f;

    public static float F32(byte* x, byte* y, int n, bool wide) => Dot<F32Elements>(x, y, n, wide);

    public static float F16(byte* x, byte* y, int n, bool wide) => Dot<F16Elements>(x, y, n, wide);

    public static float BF16(byte* x, byte* y, int n, bool wide) => Dot<BF16Elements>(x, y, n, wide);

    /// <summary>How one element type widens to float: 8 or 16 at a time, or one (the tail).</summary>
    private interface IElements
    {
        static abstract Vector256<float> Load8(byte* p, int i);
        static abstract Vector512<float> Load16(byte* p, int i);
        static abstract float Load1(byte* p, int i);
    }

    private readonly struct F32Elements : IElements
    {
        public static Vector256<float> Load8(byte* p, int i) => Vector256.Load((float*)p + i);
        public static Vector512<float> Load16(byte* p, int i) => Vector512.Load((float*)p + i);
        public static float Load1(byte* p, int i) => ((float*)p)[i];
    }

    private readonly struct F16Elements : IElements
    {
        public static Vector256<float> Load8(byte* p, int i) => HalfToSingle8((ushort*)p + i);
        public static Vector512<float> Load16(byte* p, int i) => HalfToSingle16((ushort*)p + i);
        public static float Load1(byte* p, int i) => Half16.ToSingle(((ushort*)p)[i]);
    }

    private readonly struct BF16Elements : IElements
    {
        public static Vector256<float> Load8(byte* p, int i) => BFloatToSingle8((ushort*)p + i);
        public static Vector512<float> Load16(byte* p, int i) => BFloatToSingle16((ushort*)p + i);
        public static float Load1(byte* p, int i) => BFloat16.ToSingle(((ushort*)p)[i]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Dot<T>(byte* x, byte* y, int n, bool wide) where T : struct, IElements
    {
        int main = n & ~15;
        float sum;
        if (wide)
        {
            var acc = Vector512<float>.Zero;
            for (int i = 0; i < main; i += 16)
            {
                acc = Avx512F.FusedMultiplyAdd(T.Load16(x, i), T.Load16(y, i), acc);
            }

            sum = Reduce(acc.GetLower(), acc.GetUpper());
        }
        else
        {
            Vector256<float> low = Vector256<float>.Zero, high = Vector256<float>.Zero;
            for (int i = 0; i < main; i += 16)
            {
                low = Fma.MultiplyAdd(T.Load8(x, i), T.Load8(y, i), low);
                high = Fma.MultiplyAdd(T.Load8(x, i + 8), T.Load8(y, i + 8), high);
            }

            sum = Reduce(low, high);
        }

        for (int i = main; i < n; i++)
        {
            sum += T.Load1(x, i) * T.Load1(y, i);
        }

        return sum;
    }

    /// <summary>GCC's _mm512_reduce_add_ps order: halves, then quarters, then (t0 + t2) + (t1 + t3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Reduce(Vector256<float> low, Vector256<float> high)
    {
        Vector256<float> t3 = high + low;
        Vector128<float> t6 = t3.GetUpper() + t3.GetLower();
        Vector128<float> t8 = t6 + Sse.Shuffle(t6, t6, 0b01_00_11_10);
        return t8.GetElement(0) + t8.GetElement(1);
    }

    /// <summary>Exact fp16 to float for 8 values (as F16C vcvtph2ps; NaN payloads are not preserved).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfToSingle8(ushort* p)
    {
        Vector256<uint> h = Avx2.ConvertToVector256Int32(Vector128.Load(p)).AsUInt32();
        Vector256<uint> magnitude = h & Vector256.Create(0x7FFFu);
        Vector256<uint> shifted = Vector256.ShiftLeft(magnitude, 13);
        Vector256<float> finite = shifted.AsSingle() * Vector256.Create(TwoPow112);
        Vector256<float> special = (shifted | Vector256.Create(0x7F800000u)).AsSingle();
        Vector256<float> value = Vector256.ConditionalSelect(
            Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)).AsSingle(), special, finite);
        return (value.AsUInt32() | Vector256.ShiftLeft(h & Vector256.Create(0x8000u), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> HalfToSingle16(ushort* p)
    {
        Vector512<uint> h = Avx512F.ConvertToVector512UInt32(Vector256.Load(p));
        Vector512<uint> magnitude = h & Vector512.Create(0x7FFFu);
        Vector512<uint> shifted = Vector512.ShiftLeft(magnitude, 13);
        Vector512<float> finite = shifted.AsSingle() * Vector512.Create(TwoPow112);
        Vector512<float> special = (shifted | Vector512.Create(0x7F800000u)).AsSingle();
        Vector512<float> value = Vector512.ConditionalSelect(
            Vector512.GreaterThanOrEqual(magnitude, Vector512.Create(0x7C00u)).AsSingle(), special, finite);
        return (value.AsUInt32() | Vector512.ShiftLeft(h & Vector512.Create(0x8000u), 16)).AsSingle();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> BFloatToSingle8(ushort* p) =>
        Vector256.ShiftLeft(Avx2.ConvertToVector256Int32(Vector128.Load(p)).AsUInt32(), 16).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> BFloatToSingle16(ushort* p) =>
        Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load(p)), 16).AsSingle();

    // Prompt GEMM for the float types: eight weight rows widened to float and packed column-major (one vector per
    // column holds the eight rows), then one FMA per column meets a broadcast activation of each of eight rows.

    /// <summary>Activation rows <see cref="PanelMultiply"/> takes at once (eight accumulators, one per row).</summary>
    public const int PanelTokens = 8;

    /// <summary>Bytes of a float panel of eight rows of <paramref name="n"/> elements.</summary>
    public static int PanelBytes(int n) => Avx2Dot.PanelRows * n * sizeof(float);

    /// <summary>
    /// Widens eight rows (<paramref name="rowBytes"/> apart) of <paramref name="n"/> (a multiple of 8) elements to
    /// float and stores them column by column.
    /// </summary>
    public static void PackPanel(GgmlType type, byte* rows, long rowBytes, int n, float* panel)
    {
        switch (type)
        {
            case GgmlType.F32: PackPanel<F32Elements>(rows, rowBytes, n, panel); break;
            case GgmlType.F16: PackPanel<F16Elements>(rows, rowBytes, n, panel); break;
            case GgmlType.BF16: PackPanel<BF16Elements>(rows, rowBytes, n, panel); break;
            default: throw new NotSupportedException($"No float panel for {type}.");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackPanel<T>(byte* rows, long rowBytes, int n, float* panel) where T : struct, IElements
    {
        for (int c = 0; c < n; c += 8, panel += 64)
        {
            Avx2Dot.Transpose8x8(T.Load8(rows, c).AsInt32(), T.Load8(rows + rowBytes, c).AsInt32(), T.Load8(rows + 2 * rowBytes, c).AsInt32(),
                T.Load8(rows + 3 * rowBytes, c).AsInt32(), T.Load8(rows + 4 * rowBytes, c).AsInt32(), T.Load8(rows + 5 * rowBytes, c).AsInt32(),
                T.Load8(rows + 6 * rowBytes, c).AsInt32(), T.Load8(rows + 7 * rowBytes, c).AsInt32(), (byte*)panel);
        }
    }

    /// <summary>An F16 or BF16 activation row (already rounded as llama.cpp rounds it) widened back to float, exactly.</summary>
    public static void WidenRow(GgmlType type, byte* row, int n, float* output)
    {
        int i = 0;
        for (; i + 8 <= n; i += 8)
            (type == GgmlType.F16 ? F16Elements.Load8(row, i) : BF16Elements.Load8(row, i)).Store(output + i);
        for (; i < n; i++) output[i] = type == GgmlType.F16 ? F16Elements.Load1(row, i) : BF16Elements.Load1(row, i);
    }

    /// <summary>
    /// The panel's eight rows over <paramref name="columns"/> columns against <paramref name="count"/> (1..<see cref="PanelTokens"/>) float
    /// activation rows <paramref name="stride"/> floats apart; row t's eight results go to
    /// <c>output + t * outputStride</c> (added there when <paramref name="accumulate"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    public static void PanelMultiply(float* panel, int columns, float* x, int stride, int count, bool accumulate, float* output, long outputStride)
    {
        // Fewer than eight rows: the missing ones repeat the last (computed and stored again).
        int last = count - 1;
        float* x0 = x, x1 = x + Math.Min(1, last) * stride, x2 = x + Math.Min(2, last) * stride, x3 = x + Math.Min(3, last) * stride;
        float* x4 = x + Math.Min(4, last) * stride, x5 = x + Math.Min(5, last) * stride, x6 = x + Math.Min(6, last) * stride, x7 = x + last * stride;
        float* o0 = output, o1 = output + Math.Min(1, last) * outputStride, o2 = output + Math.Min(2, last) * outputStride, o3 = output + Math.Min(3, last) * outputStride;
        float* o4 = output + Math.Min(4, last) * outputStride, o5 = output + Math.Min(5, last) * outputStride;
        float* o6 = output + Math.Min(6, last) * outputStride, o7 = output + last * outputStride;
        Vector256<float> a0, a1, a2, a3, a4, a5, a6, a7;
        if (accumulate)
        {
            (a0, a1, a2, a3) = (Vector256.Load(o0), Vector256.Load(o1), Vector256.Load(o2), Vector256.Load(o3));
            (a4, a5, a6, a7) = (Vector256.Load(o4), Vector256.Load(o5), Vector256.Load(o6), Vector256.Load(o7));
        }
        else
        {
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = Vector256<float>.Zero;
        }

        for (int k = 0; k < columns; k++, panel += Avx2Dot.PanelRows)
        {
            var w = Vector256.Load(panel);
            a0 = Fma.MultiplyAdd(w, Vector256.Create(x0[k]), a0);
            a1 = Fma.MultiplyAdd(w, Vector256.Create(x1[k]), a1);
            a2 = Fma.MultiplyAdd(w, Vector256.Create(x2[k]), a2);
            a3 = Fma.MultiplyAdd(w, Vector256.Create(x3[k]), a3);
            a4 = Fma.MultiplyAdd(w, Vector256.Create(x4[k]), a4);
            a5 = Fma.MultiplyAdd(w, Vector256.Create(x5[k]), a5);
            a6 = Fma.MultiplyAdd(w, Vector256.Create(x6[k]), a6);
            a7 = Fma.MultiplyAdd(w, Vector256.Create(x7[k]), a7);
        }

        a0.Store(o0);
        a1.Store(o1);
        a2.Store(o2);
        a3.Store(o3);
        a4.Store(o4);
        a5.Store(o5);
        a6.Store(o6);
        a7.Store(o7);
    }
}
