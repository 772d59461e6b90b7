using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Kaiyuan.Kernels;

/// <summary>
/// e^x for the softmax of attention, within about 1 ulp over the range softmax feeds it (x ≤ 0): Cody–Waite reduction
/// by ln 2 in two parts, a degree-6 polynomial (Cephes' expf coefficients), and the power of two put straight into the
/// exponent bits. The runtime's Vector256.Exp is exact to the last bit but several times slower, and exp was a third of
/// decode attention at depth.
/// </summary>
internal static class FastExp
{
    private const float Log2E = 1.44269504088896341f, Ln2High = 0.693359375f, Ln2Low = -2.12194440e-4f;
    // Below this, e^x is under the smallest normal float; softmax weights that small are zero for every purpose.
    private const float Lowest = -87.3365f, Highest = 88.3762626647949f;
    private const float P0 = 1.9875691500e-4f, P1 = 1.3981999507e-3f, P2 = 8.3334519073e-3f, P3 = 4.1665795894e-2f, P4 = 1.6666665459e-1f, P5 = 5.0000001201e-1f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Exp(Vector256<float> x)
    {
        x = Vector256.Min(Vector256.Max(x, Vector256.Create(Lowest)), Vector256.Create(Highest));
        var n = Vector256.Round(x * Vector256.Create(Log2E));
        x = Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2Low), Vector256.FusedMultiplyAdd(n, Vector256.Create(-Ln2High), x));
        var p = Vector256.FusedMultiplyAdd(Vector256.Create(P0), x, Vector256.Create(P1));
        p = Vector256.FusedMultiplyAdd(p, x, Vector256.Create(P2));
        p = Vector256.FusedMultiplyAdd(p, x, Vector256.Create(P3));
        p = Vector256.FusedMultiplyAdd(p, x, Vector256.Create(P4));
        p = Vector256.FusedMultiplyAdd(p, x, Vector256.Create(P5));
        p = Vector256.FusedMultiplyAdd(p, x * x, x) + Vector256<float>.One;
        var scale = Vector256.ShiftLeft(Vector256.ConvertToInt32(n) + Vector256.Create(127), 23).AsSingle();
        return p * scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(Lowest)), Vector512.Create(Highest));
        var n = Vector512.Round(x * Vector512.Create(Log2E));
        x = Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2Low), Vector512.FusedMultiplyAdd(n, Vector512.Create(-Ln2High), x));
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(P0), x, Vector512.Create(P1));
        p = Vector512.FusedMultiplyAdd(p, x, Vector512.Create(P2));
        p = Vector512.FusedMultiplyAdd(p, x, Vector512.Create(P3));
        p = Vector512.FusedMultiplyAdd(p, x, Vector512.Create(P4));
        p = Vector512.FusedMultiplyAdd(p, x, Vector512.Create(P5));
        p = Vector512.FusedMultiplyAdd(p, x * x, x) + Vector512<float>.One;
        var scale = Vector512.ShiftLeft(Vector512.ConvertToInt32(n) + Vector512.Create(127), 23).AsSingle();
        return p * scale;
    }
}
