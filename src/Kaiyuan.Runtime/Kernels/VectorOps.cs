using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Kaiyuan.Kernels;

/// <summary>Element-wise and reduction kernels of the forward pass, with llama.cpp's accumulation precision.</summary>
internal static class VectorOps
{
    /// <summary>y = x / sqrt(mean(x²) + eps) ⊙ w. The sum of squares is taken in double, as ggml does.</summary>
    public static void RmsNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, float eps)
    {
        double sum = 0;
        foreach (float v in x) sum += (double)v * v;
        float scale = 1f / MathF.Sqrt((float)(sum / x.Length) + eps);
        TensorPrimitives.Multiply(x, scale, y);
        if (!weight.IsEmpty) TensorPrimitives.Multiply(y, weight, y);
    }

    /// <summary>
    /// y = (x − mean) / sqrt(variance + eps) ⊙ w + b, the mean and variance summed in double as ggml's norm does.
    /// </summary>
    public static void LayerNorm(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, Span<float> y, float eps)
    {
        double sum = 0;
        foreach (float v in x) sum += v;
        float mean = (float)(sum / x.Length);
        double squares = 0;
        for (int i = 0; i < x.Length; i++)
        {
            float d = x[i] - mean;
            y[i] = d;
            squares += (double)d * d;
        }
        float scale = 1f / MathF.Sqrt((float)(squares / x.Length) + eps);
        TensorPrimitives.Multiply(y[..x.Length], scale, y);
        if (!weight.IsEmpty) TensorPrimitives.Multiply(y[..x.Length], weight, y);
        if (!bias.IsEmpty) TensorPrimitives.Add(y[..x.Length], bias, y);
    }

    /// <summary>RmsNorm applied to each of the <paramref name="groups"/> equal slices of <paramref name="x"/> in place.</summary>
    public static void RmsNormGroups(Span<float> x, int groups, ReadOnlySpan<float> weight, float eps)
    {
        int n = x.Length / groups;
        for (int g = 0; g < groups; g++)
        {
            var slice = x.Slice(g * n, n);
            RmsNorm(slice, weight, slice, eps);
        }
    }

    /// <summary>SiLU(gate) ⊙ up, written into gate.</summary>
    public static void SwiGlu(Span<float> gate, ReadOnlySpan<float> up)
    {
        if (up.Length < gate.Length) throw new ArgumentException("up is shorter than gate", nameof(up));
        // Vectorised like ggml's silu (a SIMD exp within a few ulp); prefill calls this on tokens × hidden values.
        int i = 0;
        ref float g0 = ref MemoryMarshal.GetReference(gate);
        ref float u0 = ref MemoryMarshal.GetReference(up);
        for (; i <= gate.Length - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            var g = Vector256.LoadUnsafe(ref g0, (nuint)i);
            var silu = g / (Vector256<float>.One + Vector256.Exp(-g));
            (silu * Vector256.LoadUnsafe(ref u0, (nuint)i)).StoreUnsafe(ref g0, (nuint)i);
        }
        for (; i < gate.Length; i++)
        {
            float g = gate[i];
            gate[i] = g / (1f + MathF.Exp(-g)) * up[i];
        }
    }

    /// <summary>SiLU in place: x · sigmoid(x), vectorised like <see cref="SwiGlu"/>.</summary>
    public static void Silu(Span<float> x)
    {
        int i = 0;
        ref float x0 = ref MemoryMarshal.GetReference(x);
        for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
        {
            var v = Vector256.LoadUnsafe(ref x0, (nuint)i);
            (v / (Vector256<float>.One + Vector256.Exp(-v))).StoreUnsafe(ref x0, (nuint)i);
        }
        for (; i < x.Length; i++) x[i] /= 1f + MathF.Exp(-x[i]);
    }

    /// <summary>In-place softmax; the normaliser is summed in double as ggml's soft_max does.</summary>
    public static void Softmax(Span<float> x)
    {
        float max = TensorPrimitives.Max(x);
        double sum = 0;
        for (int i = 0; i < x.Length; i++)
        {
            float e = MathF.Exp(x[i] - max);
            x[i] = e;
            sum += e;
        }
        TensorPrimitives.Multiply(x, (float)(1.0 / sum), x);
    }

    public static void Sigmoid(Span<float> x)
    {
        for (int i = 0; i < x.Length; i++) x[i] = 1f / (1f + MathF.Exp(-x[i]));
    }

    public static void Add(Span<float> acc, ReadOnlySpan<float> x) => TensorPrimitives.Add(acc, x, acc);

    /// <summary>acc += scale · x.</summary>
    public static void AddScaled(Span<float> acc, ReadOnlySpan<float> x, float scale) => TensorPrimitives.MultiplyAdd(x, scale, acc, acc);

    public static int ArgMax(ReadOnlySpan<float> x)
    {
        // The first maximum wins: llama.cpp's golden sampler picks the lowest id on ties.
        int best = 0;
        for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
        return best;
    }
}
