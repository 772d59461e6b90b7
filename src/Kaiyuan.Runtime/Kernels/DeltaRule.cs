using System.Numerics.Tensors;

namespace Kaiyuan.Kernels;

/// <summary>
/// The gated delta rule of one head (Gated DeltaNet; Qwen3.5's linear attention). The state S maps keys to values: row
/// j holds, for value dimension j, a weight per key dimension. Each token decays the state by e^g, writes its value under
/// its key with strength β (replacing what the state recalled for that key), and reads the state with its query:
/// <code>
///   S ← e^g S;   u = β (v − S k);   S ← S + u kᵀ;   o = S q
/// </code>
/// <see cref="Step"/> applies that to one token; <see cref="Chunk"/> applies it to many at once in the chunked (WY)
/// form: within a chunk the writes u solve a small triangular system, so the state is read and updated once per chunk
/// instead of once per token. Both give the same results up to float rounding.
/// </summary>
internal static class DeltaRule
{
    /// <summary>Tokens per chunk of <see cref="Chunk"/>: the triangular system grows with its square.</summary>
    public const int ChunkTokens = 64;

    /// <summary>Floats of scratch <see cref="Chunk"/> needs for value heads of <paramref name="dimV"/> floats.</summary>
    public static int ScratchFloats(int dimV) => ChunkTokens * dimV + 2 * ChunkTokens;

    /// <summary>One token: decays and updates <paramref name="state"/> (dimV rows of dimK) and writes the read-out to <paramref name="output"/>.</summary>
    public static void Step(Span<float> state, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, float g, float beta, Span<float> output)
    {
        int dimK = k.Length;
        float decay = MathF.Exp(g);
        for (int j = 0; j < v.Length; j++)
        {
            var row = state.Slice(j * dimK, dimK);
            TensorPrimitives.Multiply(row, decay, row);
            float u = beta * (v[j] - TensorPrimitives.Dot(row, k));
            TensorPrimitives.MultiplyAdd(k, u, row, row);
            output[j] = TensorPrimitives.Dot(row, q);
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
        if (tokens > ChunkTokens) throw new ArgumentOutOfRangeException(nameof(tokens));
        var u = scratch[..(tokens * dimV)];
        var cumulative = scratch.Slice(ChunkTokens * dimV, tokens);
        var coefficients = scratch.Slice(ChunkTokens * dimV + ChunkTokens, tokens);
        float sum = 0;
        for (int i = 0; i < tokens; i++) cumulative[i] = sum += g[i * gStride];
        ReadOnlySpan<float> Key(ReadOnlySpan<float> k, int i) => k.Slice(i * stride, dimK);

        // What the chunk's starting state S0 recalls for each key and query: u_i starts as β_i (v_i − e^γ_i S0 k_i), and the
        // inter-chunk part of o_i is e^γ_i S0 q_i (γ: the decay summed from the chunk's start).
        for (int j = 0; j < dimV; j++)
        {
            ReadOnlySpan<float> row = state.Slice(j * dimK, dimK);
            for (int i = 0; i < tokens; i++)
            {
                float decay = MathF.Exp(cumulative[i]);
                u[i * dimV + j] = beta[i * gStride] * (v[i * stride + j] - decay * TensorPrimitives.Dot(row, Key(k, i)));
                output[i * outStride + j] = decay * TensorPrimitives.Dot(row, Key(q, i));
            }
        }
        // Each write also corrects what earlier writes of the chunk put under similar keys: forward substitution of
        // u_i += −β_i Σ_{s<i} e^(γ_i−γ_s) (k_i·k_s) u_s.
        for (int i = 1; i < tokens; i++)
        {
            var ui = u.Slice(i * dimV, dimV);
            for (int s = 0; s < i; s++)
            {
                float c = -beta[i * gStride] * MathF.Exp(cumulative[i] - cumulative[s]) * TensorPrimitives.Dot(Key(k, i), Key(k, s));
                TensorPrimitives.MultiplyAdd(u.Slice(s * dimV, dimV), c, ui, ui);
            }
        }
        // The intra-chunk read-out: o_i += Σ_{s≤i} e^(γ_i−γ_s) (q_i·k_s) u_s.
        for (int i = 0; i < tokens; i++)
        {
            var oi = output.Slice(i * outStride, dimV);
            for (int s = 0; s <= i; s++)
            {
                float c = MathF.Exp(cumulative[i] - cumulative[s]) * TensorPrimitives.Dot(Key(q, i), Key(k, s));
                TensorPrimitives.MultiplyAdd(u.Slice(s * dimV, dimV), c, oi, oi);
            }
        }
        // The state after the chunk: S = e^γ_last S0 + Σ_s e^(γ_last−γ_s) u_s k_sᵀ.
        float last = cumulative[tokens - 1];
        for (int s = 0; s < tokens; s++) coefficients[s] = MathF.Exp(last - cumulative[s]);
        float total = MathF.Exp(last);
        for (int j = 0; j < dimV; j++)
        {
            var row = state.Slice(j * dimK, dimK);
            TensorPrimitives.Multiply(row, total, row);
            for (int s = 0; s < tokens; s++) TensorPrimitives.MultiplyAdd(Key(k, s), coefficients[s] * u[s * dimV + j], row, row);
        }
    }
}
