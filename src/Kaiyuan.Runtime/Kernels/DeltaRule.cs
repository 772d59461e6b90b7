using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Kaiyuan.Kernels;

/// <summary>
/// The gated delta rule of one head (Gated DeltaNet; Qwen3.5's linear attention). The state S maps keys to values; each
/// token decays it by e^g, writes its value under its key with strength β (replacing what the state recalled for that
/// key), and reads it with its query:
/// <code>
///   S ← e^g S;   u = β (v − S k);   S ← S + u kᵀ;   o = S q
/// </code>
/// The state is stored transposed, key-major (dimK rows of dimV values), so every step is a vector multiply-add over
/// value dimensions. <see cref="Step"/> applies the rule to one token. <see cref="Chunk"/> applies it to many in the
/// chunked (WY) form: within a chunk the writes u solve a small triangular system, and the rest is matrix products
/// (<see cref="SmallGemm"/>), so the state is read and updated once per chunk instead of once per token. Both give the
/// same results up to float rounding.
/// </summary>
internal static class DeltaRule
{
    /// <summary>Tokens per chunk of <see cref="Chunk"/>: the triangular system grows with its square.</summary>
    public const int ChunkTokens = 64;

    /// <summary>Floats of scratch <see cref="Chunk"/> needs.</summary>
    public static int ScratchFloats(int dimK, int dimV) => ChunkTokens * (dimK + ChunkTokens + dimV + 2);

    /// <summary>One token: decays and updates <paramref name="state"/> (dimK rows of dimV) and writes the read-out to <paramref name="output"/>.</summary>
    public static void Step(Span<float> state, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, float g, float beta, Span<float> output)
    {
        int dimK = k.Length, dimV = v.Length;
        float decay = MathF.Exp(g);
        // What the decayed state recalls for the key, then the write u = β (v − e^g Sk), in output until the read-out.
        output[..dimV].Clear();
        SmallGemm.MultiplyAdd(k, dimK, state, dimV, output, dimV, 1, dimV, dimK);
        Span<float> u = stackalloc float[dimV];
        for (int j = 0; j < dimV; j++) u[j] = beta * (v[j] - decay * output[j]);
        output[..dimV].Clear();
        // One pass over the state rows: decay, write, and read with the query.
        ref float o0 = ref MemoryMarshal.GetReference(output);
        ref float u0 = ref MemoryMarshal.GetReference(u);
        int w = Vector<float>.Count;
        for (int i = 0; i < dimK; i++)
        {
            var row = state.Slice(i * dimV, dimV);
            ref float r0 = ref MemoryMarshal.GetReference(row);
            float ki = k[i], qi = q[i];
            int j = 0;
            for (; j + w <= dimV; j += w)
            {
                var r = Vector.FusedMultiplyAdd(new Vector<float>(ki), Vector.LoadUnsafe(ref u0, (nuint)j), Vector.LoadUnsafe(ref r0, (nuint)j) * decay);
                r.StoreUnsafe(ref r0, (nuint)j);
                Vector.FusedMultiplyAdd(new Vector<float>(qi), r, Vector.LoadUnsafe(ref o0, (nuint)j)).StoreUnsafe(ref o0, (nuint)j);
            }
            for (; j < dimV; j++)
            {
                float r = row[j] * decay + ki * u[j];
                row[j] = r;
                output[j] += qi * r;
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="tokens"/> tokens (at most <see cref="ChunkTokens"/>) through the rule. Token i's query, key
    /// and value start at <c>i × stride</c> in <paramref name="q"/>, <paramref name="k"/>, <paramref name="v"/>, its log
    /// decay and write strength are <paramref name="g"/>[i × gStride] and <paramref name="beta"/>[i × gStride], and its
    /// read-out goes to <c>i × outStride</c> in <paramref name="output"/>.
    /// </summary>
    public static void Chunk(Span<float> state, int dimK, int dimV, int tokens,
        ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int stride,
        ReadOnlySpan<float> g, ReadOnlySpan<float> beta, int gStride,
        Span<float> output, int outStride, Span<float> scratch)
    {
        const int C = ChunkTokens;
        if (tokens > C) throw new ArgumentOutOfRangeException(nameof(tokens));
        int n = tokens;
        var keysT = scratch[..(dimK * C)];                       // keysT[i·C + s] = k_s[i]
        var mix = scratch.Slice(dimK * C, C * C);                // token × token coefficients
        var u = scratch.Slice(dimK * C + C * C, C * dimV);       // the writes, token-major
        var cumulative = scratch.Slice(dimK * C + C * C + C * dimV, C);
        var coefficients = scratch.Slice(dimK * C + C * C + C * dimV + C, C);
        float sum = 0;
        for (int i = 0; i < n; i++) cumulative[i] = sum += g[i * gStride];

        // What the chunk's starting state S0 recalls for each key and query: u_i starts as β_i (v_i − e^γ_i S0 k_i), and the
        // inter-chunk read-out is e^γ_i S0 q_i (γ: the decay summed from the chunk's start).
        u[..(n * dimV)].Clear();
        SmallGemm.MultiplyAdd(k, stride, state, dimV, u, dimV, n, dimV, dimK);
        for (int i = 0; i < n; i++) output.Slice(i * outStride, dimV).Clear();
        SmallGemm.MultiplyAdd(q, stride, state, dimV, output, outStride, n, dimV, dimK);
        for (int i = 0; i < n; i++)
        {
            float decay = MathF.Exp(cumulative[i]), b = beta[i * gStride];
            var ui = u.Slice(i * dimV, dimV);
            // u_i = β_i v_i − β_i e^γ_i (S0 k_i)
            TensorPrimitives.Multiply(ui, -b * decay, ui);
            TensorPrimitives.MultiplyAdd(v.Slice(i * stride, dimV), b, ui, ui);
            var oi = output.Slice(i * outStride, dimV);
            TensorPrimitives.Multiply(oi, decay, oi);
        }

        for (int s = 0; s < n; s++)
            for (int i = 0; i < dimK; i++) keysT[i * C + s] = k[s * stride + i];

        // Each write also corrects what earlier writes of the chunk put under similar keys (forward substitution):
        // u_i −= β_i Σ_{s<i} e^(γ_i−γ_s) (k_i·k_s) u_s.
        mix[..(n * C)].Clear();
        SmallGemm.MultiplyAdd(k, stride, keysT, C, mix, C, n, n, dimK);
        for (int i = 1; i < n; i++)
        {
            var row = mix.Slice(i * C, i);
            float b = -beta[i * gStride];
            for (int s = 0; s < i; s++) row[s] *= b * MathF.Exp(cumulative[i] - cumulative[s]);
            SmallGemm.MultiplyAdd(row, C, u, dimV, u[(i * dimV)..], dimV, 1, dimV, i);
        }

        // The intra-chunk read-out: o_i += Σ_{s≤i} e^(γ_i−γ_s) (q_i·k_s) u_s.
        mix[..(n * C)].Clear();
        SmallGemm.MultiplyAdd(q, stride, keysT, C, mix, C, n, n, dimK);
        for (int i = 0; i < n; i++)
        {
            var row = mix.Slice(i * C, n);
            for (int s = 0; s <= i; s++) row[s] *= MathF.Exp(cumulative[i] - cumulative[s]);
            row[(i + 1)..].Clear();
        }
        SmallGemm.MultiplyAdd(mix, C, u, dimV, output, outStride, n, dimV, n);

        // The state after the chunk: S = e^γ_last S0 + Σ_s e^(γ_last−γ_s) u_s k_sᵀ (key-major: rows of keysT times u).
        float last = cumulative[n - 1];
        for (int s = 0; s < n; s++) coefficients[s] = MathF.Exp(last - cumulative[s]);
        for (int i = 0; i < dimK; i++) TensorPrimitives.Multiply(keysT.Slice(i * C, n), coefficients[..n], keysT.Slice(i * C, n));
        TensorPrimitives.Multiply(state[..(dimK * dimV)], MathF.Exp(last), state[..(dimK * dimV)]);
        SmallGemm.MultiplyAdd(keysT, C, u, dimV, state, dimV, dimK, dimV, n);
    }
}
