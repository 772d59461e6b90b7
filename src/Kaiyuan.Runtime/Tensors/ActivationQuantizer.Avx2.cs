using Kaiyuan.Gguf;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Kaiyuan.Tensors;

/// <summary>
/// AVX2 activation quantization, byte-identical to <see cref="ActivationQuantizer"/>'s scalar reference: the same
/// scale, the same per-element multiply and round-half-to-even (vroundps), saturating packs where ggml packs.
/// </summary>
internal static unsafe class Avx2ActivationQuantizer
{
    public static void Row(GgmlType activationType, ReadOnlySpan<float> x, Span<byte> dst)
    {
        fixed (float* source = x)
        fixed (byte* destination = dst)
        {
            switch (activationType)
            {
                case GgmlType.Q8_0:
                    for (int b = 0; b < x.Length / BlockLayouts.QK; b++)
                    {
                        Q8Block(source + b * BlockLayouts.QK, destination + b * BlockLayouts.Q8_0.Size, withSum: false);
                    }

                    return;
                case GgmlType.Q8_1:
                    for (int b = 0; b < x.Length / BlockLayouts.QK; b++)
                    {
                        Q8Block(source + b * BlockLayouts.QK, destination + b * BlockLayouts.Q8_1.Size, withSum: true);
                    }

                    return;
                case GgmlType.Q8_K:
                    for (int b = 0; b < x.Length / BlockLayouts.QK_K; b++)
                    {
                        Q8_KBlock(source + b * BlockLayouts.QK_K, destination + b * BlockLayouts.Q8_K.Size);
                    }

                    return;
            }
        }

        ActivationQuantizer.ScalarRow(activationType, x, dst);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Abs(Vector256<float> v) => Vector256.AndNot(v, Vector256.Create(-0.0f));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float HorizontalMax(Vector256<float> v)
    {
        Vector128<float> m = Sse.Max(v.GetUpper(), v.GetLower());
        m = Sse.Max(m, Sse.MoveHighToLow(m, m));
        m = Sse.MaxScalar(m, Sse3.MoveHighAndDuplicate(m));
        return m.ToScalar();
    }

    /// <summary>32 int32 in four vectors to 32 saturated bytes in element order (packs work per 128-bit lane).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<sbyte> PackToBytes(Vector256<int> i0, Vector256<int> i1, Vector256<int> i2, Vector256<int> i3)
    {
        Vector256<short> low = Avx2.PackSignedSaturate(i0, i1);
        Vector256<short> high = Avx2.PackSignedSaturate(i2, i3);
        Vector256<sbyte> bytes = Avx2.PackSignedSaturate(low, high);
        return Avx2.PermuteVar8x32(bytes.AsInt32(), Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).AsSByte();
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> RoundToInt(Vector256<float> v, Vector256<float> multiplier) =>
        Avx.ConvertToVector256Int32(Avx.RoundToNearestInteger(v * multiplier));

    private static void Q8Block(float* x, byte* y, bool withSum)
    {
        var v0 = Vector256.Load(x);
        var v1 = Vector256.Load(x + 8);
        var v2 = Vector256.Load(x + 16);
        var v3 = Vector256.Load(x + 24);
        float maxAbs = HorizontalMax(Vector256.Max(Vector256.Max(Abs(v0), Abs(v1)), Vector256.Max(Abs(v2), Abs(v3))));

        float d = maxAbs / 127.0f;
        var inverse = Vector256.Create(maxAbs != 0.0f ? 127.0f / maxAbs : 0.0f);
        Vector256<int> i0 = RoundToInt(v0, inverse), i1 = RoundToInt(v1, inverse);
        Vector256<int> i2 = RoundToInt(v2, inverse), i3 = RoundToInt(v3, inverse);

        *(ushort*)y = Half16.FromSingle(d);
        if (withSum)
        {
            int sum = Vector256.Sum(i0 + i1 + i2 + i3);
            *(ushort*)(y + BlockLayouts.Q8_1.S) = Half16.FromSingle(d * sum);
        }

        PackToBytes(i0, i1, i2, i3).Store((sbyte*)(y + (withSum ? BlockLayouts.Q8_1.Qs : BlockLayouts.Q8_0.Qs)));
    }

    private static void Q8_KBlock(float* x, byte* y)
    {
        var maxAbsLanes = Vector256<float>.Zero;
        for (int j = 0; j < BlockLayouts.QK_K; j += 8)
        {
            maxAbsLanes = Vector256.Max(maxAbsLanes, Abs(Vector256.Load(x + j)));
        }

        float amax = HorizontalMax(maxAbsLanes);
        sbyte* qs = (sbyte*)(y + BlockLayouts.Q8_K.Qs);
        short* bsums = (short*)(y + BlockLayouts.Q8_K.BSums);
        if (amax == 0)
        {
            *(float*)y = 0.0f;
            new Span<byte>(y + BlockLayouts.Q8_K.Qs, BlockLayouts.QK_K + 32).Clear();
            return;
        }

        // The reference keeps the first element of largest magnitude, with its sign.
        float max = 0;
        for (int j = 0; j < BlockLayouts.QK_K; j++)
        {
            if (MathF.Abs(x[j]) == amax)
            {
                max = x[j];
                break;
            }
        }

        float iscale = -127.0f / max;
        var multiplier = Vector256.Create(iscale);
        for (int chunk = 0; chunk < BlockLayouts.QK_K; chunk += 32)
        {
            Vector256<int> i0 = RoundToInt(Vector256.Load(x + chunk), multiplier);
            Vector256<int> i1 = RoundToInt(Vector256.Load(x + chunk + 8), multiplier);
            Vector256<int> i2 = RoundToInt(Vector256.Load(x + chunk + 16), multiplier);
            Vector256<int> i3 = RoundToInt(Vector256.Load(x + chunk + 24), multiplier);
            PackToBytes(i0, i1, i2, i3).Store(qs + chunk);
            bsums[chunk / 16] = (short)Vector256.Sum(Vector256.Min(i0, Vector256.Create(127)) + Vector256.Min(i1, Vector256.Create(127)));
            bsums[chunk / 16 + 1] = (short)Vector256.Sum(Vector256.Min(i2, Vector256.Create(127)) + Vector256.Min(i3, Vector256.Create(127)));
        }

        *(float*)y = 1.0f / iscale;
    }
}
