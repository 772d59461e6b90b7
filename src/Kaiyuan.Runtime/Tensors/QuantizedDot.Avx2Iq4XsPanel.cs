using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// The IQ4_XS prompt panel, on CPUs with AVX-VNNI. IQ4_XS's levels run from −127 to 113, so stored unsigned (level + 128,
/// up to 241) a pair of products overflows the int16 multiply-add the other panels accumulate in, and signed they need
/// the activations' signs flipped per weight row, as Q8_0's panel does at three times the instructions. VNNI's
/// multiply-add sums four unsigned-by-signed products straight into int32 without saturating: one instruction per panel
/// step and activation row, fewer than Q4_K's panel takes. Each sub-block's int32 sums are multiplied by its scale − 32,
/// and 128·Σ(scale − 32)·Σy, formed from the activations' 16-element sums as Q6_K's offset is, is taken off once per
/// block: the integer block sums are the single-row kernel's exactly, the float side rounds as the other panels do.
/// </summary>
internal static unsafe partial class Avx2Dot
{
    /// <summary>True when IQ4_XS runs on panels here (it takes the small-batch tiles otherwise).</summary>
    private static bool HasIq4XsPanels => AvxVnni.IsSupported;

    /// <summary>IQ4_XS as level + 128 in 1..241: sub-block c % 8 of block c / 8.</summary>
    private readonly struct PanelIq4Xs : IPanelFormat
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<byte> Chunk(byte* row, int c) =>
            Iq4Quants(row + c / 8 * BlockLayouts.IQ4_XS.Size + BlockLayouts.IQ4_XS.Qs + c % 8 * 16).AsByte() ^ Vector256.Create((byte)0x80);
    }

    /// <summary>
    /// Every IQ4_XS block's scales for the eight rows in <see cref="PackKScales"/>'s layout: d as floats (no dmin), each
    /// sub-block's scale − 32 as an int32 per row (the multiplier of its VNNI sums), and the same as (s, s) int16 pairs
    /// for the activations' 16-element sums.
    /// </summary>
    private static void PackIq4XsScales(byte* rows, long rowBytes, int n, byte* scales)
    {
        for (int b = 0; b < n / BlockLayouts.QK_K; b++, scales += KScaleBytes(8))
        {
            for (int r = 0; r < PanelRows; r++)
            {
                byte* x = rows + r * rowBytes + b * BlockLayouts.IQ4_XS.Size;
                uint lowNibbles = *(uint*)(x + BlockLayouts.IQ4_XS.ScalesL);
                int highPairs = *(ushort*)(x + BlockLayouts.IQ4_XS.ScalesH);
                ((float*)scales)[r] = Half(x + BlockLayouts.IQ4_XS.D);
                ((float*)scales)[PanelRows + r] = 0;
                for (int j = 0; j < 8; j++)
                {
                    int scale = Iq4Levels.XsScale(lowNibbles, highPairs, j) - 32;
                    ((int*)(scales + KScalesOffset))[j * PanelRows + r] = scale;
                    ((int*)(scales + KPairedOffset(8)))[j * PanelRows + r] = Int16Pair(scale, scale);
                }
            }
        }
    }

    /// <summary>IQ4_XS panels against four Q8_K rows (see the file's summary).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization | MethodImplOptions.NoInlining)]
    private static void Iq4XsPanel(byte* panel, byte* scaleData, int blocks, in PanelRowSet rows)
    {
        byte* y0 = rows.Y0, y1 = rows.Y1, y2 = rows.Y2, y3 = rows.Y3;
        rows.Start(out var f0, out var f1, out var f2, out var f3);
        for (int b = 0; b < blocks; b++, panel += 2048, scaleData += KScaleBytes(8), y0 += BlockLayouts.Q8_K.Size,
             y1 += BlockLayouts.Q8_K.Size, y2 += BlockLayouts.Q8_K.Size, y3 += BlockLayouts.Q8_K.Size)
        {
            PairedSums((short*)(scaleData + KPairedOffset(8)), y0, y1, y2, y3, out var p0, out var p1, out var p2, out var p3);
            var i0 = -Vector256.ShiftLeft(p0, 7);
            var i1 = -Vector256.ShiftLeft(p1, 7);
            var i2 = -Vector256.ShiftLeft(p2, 7);
            var i3 = -Vector256.ShiftLeft(p3, 7);
            for (int j = 0; j < 8; j++)
            {
                int q = BlockLayouts.Q8_K.Qs + j * 32;
                VnniSubBlock(panel + j * 256, y0 + q, y1 + q, y2 + q, y3 + q, out var s0, out var s1, out var s2, out var s3);
                var scale = Vector256.Load((int*)(scaleData + KScalesOffset) + j * PanelRows);
                i0 += Avx2.MultiplyLow(s0, scale);
                i1 += Avx2.MultiplyLow(s1, scale);
                i2 += Avx2.MultiplyLow(s2, scale);
                i3 += Avx2.MultiplyLow(s3, scale);
            }

            var d = Vector256.Load((float*)scaleData);
            f0 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i0), d * *(float*)y0, f0);
            f1 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i1), d * *(float*)y1, f1);
            f2 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i2), d * *(float*)y2, f2);
            f3 = Fma.MultiplyAdd(Avx.ConvertToVector256Single(i3), d * *(float*)y3, f3);
        }

        rows.Store(f0, f1, f2, f3);
    }

    /// <summary>
    /// The eight steps of one 32-column sub-block against four activation rows, each row's products summed into its
    /// int32 lanes by VNNI. Written out step by step, as <see cref="UnsignedRun(byte*, int, byte*, byte*, byte*, byte*, out Vector256{short}, out Vector256{short}, out Vector256{short}, out Vector256{short})"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void VnniSubBlock(byte* w, byte* y0, byte* y1, byte* y2, byte* y3,
        out Vector256<int> s0, out Vector256<int> s1, out Vector256<int> s2, out Vector256<int> s3)
    {
        // Odd and even steps in separate sums: each multiply-add waits on the last into its register (measured 4 cycles),
        // so four chains of eight left the units idle half the time.
        s0 = s1 = s2 = s3 = Vector256<int>.Zero;
        Vector256<int> t0 = default, t1 = default, t2 = default, t3 = default;
        VnniStep(w, 0, y0, y1, y2, y3, ref s0, ref s1, ref s2, ref s3);
        VnniStep(w, 1, y0, y1, y2, y3, ref t0, ref t1, ref t2, ref t3);
        VnniStep(w, 2, y0, y1, y2, y3, ref s0, ref s1, ref s2, ref s3);
        VnniStep(w, 3, y0, y1, y2, y3, ref t0, ref t1, ref t2, ref t3);
        VnniStep(w, 4, y0, y1, y2, y3, ref s0, ref s1, ref s2, ref s3);
        VnniStep(w, 5, y0, y1, y2, y3, ref t0, ref t1, ref t2, ref t3);
        VnniStep(w, 6, y0, y1, y2, y3, ref s0, ref s1, ref s2, ref s3);
        VnniStep(w, 7, y0, y1, y2, y3, ref t0, ref t1, ref t2, ref t3);
        s0 += t0;
        s1 += t1;
        s2 += t2;
        s3 += t3;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void VnniStep(byte* w, int s, byte* y0, byte* y1, byte* y2, byte* y3,
        ref Vector256<int> s0, ref Vector256<int> s1, ref Vector256<int> s2, ref Vector256<int> s3)
    {
        var wv = Vector256.Load(w + s * 32);
        s0 = AvxVnni.MultiplyWideningAndAdd(s0, wv, Vector256.Create(*(int*)(y0 + s * 4)).AsSByte());
        s1 = AvxVnni.MultiplyWideningAndAdd(s1, wv, Vector256.Create(*(int*)(y1 + s * 4)).AsSByte());
        s2 = AvxVnni.MultiplyWideningAndAdd(s2, wv, Vector256.Create(*(int*)(y2 + s * 4)).AsSByte());
        s3 = AvxVnni.MultiplyWideningAndAdd(s3, wv, Vector256.Create(*(int*)(y3 + s * 4)).AsSByte());
    }
}
