using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>
/// Causal softmax attention of each (token, head) over its slot's cached rows 0…position. Query heads map onto
/// key/value heads in groups (GQA; MLA is one group holding every head); a cache row holds every key head followed by
/// every value head.
/// </summary>
/// <remarks>
/// Tiled with an online softmax, as flash attention does: the query heads of one group read each tile of cached rows
/// together (a non-F32 cache is converted once per tile, not once per head), keep a running maximum and normaliser, and
/// rescale their partial outputs when the maximum grows, so nothing grows with the context but the cache itself.
/// </remarks>
internal static unsafe class AttentionKernel
{
    /// <summary>Cached rows per tile.</summary>
    internal const int Tile = 32;

    public static void Run(ForwardContext ctx, int layer, float[] q, int qStride, int heads, int headsKv, int dimK, int dimV,
        int keyOffset, int valueOffset, float scale, float[] output) =>
        Run(ctx, layer, q, qStride, heads, headsKv, dimK, dimV, keyOffset, valueOffset, scale, output, Wide);

    /// <param name="ctx">The forward pass: its batch (slot and position of each token), KV cache, workspace and worker pool.</param>
    /// <param name="layer">The layer whose cached rows are attended to.</param>
    /// <param name="q">The queries: per token, <paramref name="heads"/> × <paramref name="dimK"/> floats.</param>
    /// <param name="qStride">Floats from one token's queries to the next.</param>
    /// <param name="heads">Query heads.</param>
    /// <param name="headsKv">Key/value heads; each takes <paramref name="heads"/> / <paramref name="headsKv"/> consecutive query heads.</param>
    /// <param name="dimK">Floats per query and key head.</param>
    /// <param name="dimV">Floats per value head, and so per output head.</param>
    /// <param name="keyOffset">Floats from the start of a cache row to its first key head.</param>
    /// <param name="valueOffset">Floats from the start of a cache row to its first value head.</param>
    /// <param name="scale">Multiplies every query·key score before the softmax.</param>
    /// <param name="output">The outputs: per token, <paramref name="heads"/> × <paramref name="dimV"/> floats.</param>
    /// <param name="wide">512-bit kernels (tests run both widths on a machine that has them).</param>
    internal static void Run(ForwardContext ctx, int layer, float[] q, int qStride, int heads, int headsKv, int dimK, int dimV,
        int keyOffset, int valueOffset, float scale, float[] output, bool wide)
    {
        var (batch, cache, ws, pool) = ctx;
        int n = batch.Count;
        int group = heads / headsKv;
        // Consecutive tokens of one sequence (a prompt chunk) form a query block that reads each tile of cached rows once
        // for all of its tokens, instead of once per token: a long prompt's attention is bound by those reads.
        var blocks = ws.IntArray(IntBuf.AttentionBlocks, n + 1);
        int blockCount = 0;
        for (int t = 0; t < n; t++)
        {
            int start = blockCount == 0 ? -1 : blocks[blockCount - 1];
            bool extends = start >= 0 && t - start < QueryBlock && batch.Slots[t] == batch.Slots[t - 1] && batch.Positions[t] == batch.Positions[t - 1] + 1;
            if (!extends) blocks[blockCount++] = t;
        }
        blocks[blockCount] = n;
        // Split a group's heads only when there are fewer (block, group) items than threads: a split re-reads the group's
        // cached rows, while one item per group reads each tile once for all its heads (from L1 after the first).
        int splits = Math.Clamp((pool.Threads + blockCount * headsKv - 1) / (blockCount * headsKv), 1, group);
        int perItem = (group + splits - 1) / splits;
        int width = cache.RowWidths[layer];
        // Per worker: scores (heads × tile) and running max and normaliser per (token, head), and a tile of converted rows.
        int perWorker = QueryBlock * perItem * (Tile + 2) + (cache.IsF32 ? 0 : Tile * width);
        var scratch = ws.Array(Buf.Scores, pool.Threads * perWorker);

        using var scope = pool.Enter();
        var job = pool.Job<Job>();
        job.Set(batch, cache, layer, q, qStride, heads, headsKv, group, splits, perItem, dimK, dimV, keyOffset, valueOffset, scale, output, scratch, perWorker, blocks, wide);
        pool.Run(job, blockCount * headsKv * splits);
    }

    /// <summary>Tokens per query block at most.</summary>
    internal const int QueryBlock = 8;

    private sealed class Job : IParallelJob
    {
        private ForwardBatch _batch = null!;
        private KvCache _cache = null!;
        private float[] _q = [], _output = [], _scratch = [];
        private int[] _blocks = [];
        private int _layer, _qStride, _heads, _headsKv, _group, _splits, _perItem, _dimK, _dimV, _keyOffset, _valueOffset, _perWorker;
        private float _scale;
        private bool _wide;

        public void Set(ForwardBatch batch, KvCache cache, int layer, float[] q, int qStride, int heads, int headsKv, int group, int splits, int perItem,
            int dimK, int dimV, int keyOffset, int valueOffset, float scale, float[] output, float[] scratch, int perWorker, int[] blocks, bool wide)
        {
            _wide = wide;
            (_batch, _cache, _layer, _q, _qStride, _heads, _headsKv, _group, _splits, _perItem) = (batch, cache, layer, q, qStride, heads, headsKv, group, splits, perItem);
            (_dimK, _dimV, _keyOffset, _valueOffset, _scale, _output, _scratch, _perWorker, _blocks) = (dimK, dimV, keyOffset, valueOffset, scale, output, scratch, perWorker, blocks);
        }

        public void Run(int start, int end, int worker)
        {
            int width = _cache.RowWidths[_layer], dimK = _dimK, dimV = _dimV;
            // A converted cache reads only the group's heads when they start on whole blocks of its type (separate K and V
            // heads; MLA's one group shares its latent between key and value, so the row is converted once).
            int block = GgmlTypeInfo.Geometry(_cache.Type).BlockSize;
            bool partial = !_cache.IsF32 && _headsKv > 1 && _keyOffset % block == 0 && _valueOffset % block == 0 && dimK % block == 0 && dimV % block == 0;
            fixed (float* mine = &_scratch[worker * _perWorker])
            fixed (float* qAll = _q)
            fixed (float* outAll = _output)
            {
                int slots = QueryBlock * _perItem;
                float* scores = mine, max = mine + slots * Tile, sum = max + slots, converted = sum + slots;
                for (int i = start; i < end; i++)
                {
                    int b = i / (_headsKv * _splits), g = i / _splits % _headsKv, part = i % _splits;
                    int h0 = g * _group + part * _perItem, count = Math.Min(_perItem, (g + 1) * _group - h0);
                    if (count <= 0) continue;
                    int t0 = _blocks[b], tokens = _blocks[b + 1] - t0;
                    int slot = _batch.Slots[t0], first = _batch.Positions[t0] + 1, len = _batch.Positions[t0 + tokens - 1] + 1;
                    for (int k = 0; k < tokens; k++) new Span<float>(outAll + ((t0 + k) * _heads + h0) * dimV, count * dimV).Clear();
                    new Span<float>(max, tokens * count).Fill(float.NegativeInfinity);
                    new Span<float>(sum, tokens * count).Clear();

                    for (int j0 = 0; j0 < len; j0 += Tile)
                    {
                        int tile = Math.Min(Tile, len - j0);
                        ReadOnlySpan<float> rows;
                        int stride = width, keyAt = _keyOffset + g * dimK, valueAt = _valueOffset + g * dimV;
                        if (_cache.IsF32) rows = _cache.RowsF32(_layer, slot, j0, tile);
                        else if (partial)
                        {
                            // Only this group's key and value heads are converted: rows of [keys | values].
                            stride = dimK + dimV;
                            _cache.ReadTile(_layer, slot, j0, tile, keyAt, dimK, new Span<float>(converted, tile * stride), stride);
                            _cache.ReadTile(_layer, slot, j0, tile, valueAt, dimV, new Span<float>(converted + dimK, tile * stride - dimK), stride);
                            (keyAt, valueAt) = (0, dimK);
                            rows = new ReadOnlySpan<float>(converted, tile * stride);
                        }
                        else
                        {
                            _cache.ReadTile(_layer, slot, j0, tile, 0, width, new Span<float>(converted, tile * width), width);
                            rows = new ReadOnlySpan<float>(converted, tile * width);
                        }

                        fixed (float* tileRows = rows)
                        {
                            float* keys = tileRows + keyAt, values = tileRows + valueAt;
                            for (int k = 0; k < tokens; k++)
                            {
                                // Causal: token k sees rows up to its own position.
                                int visible = Math.Min(tile, first + k - j0);
                                if (visible <= 0) continue;
                                float* q = qAll + (t0 + k) * _qStride + h0 * dimK;
                                float* output = outAll + ((t0 + k) * _heads + h0) * dimV;
                                for (int h = 0; h < count; h++)
                                {
                                    int at = k * count + h;
                                    float* s = scores + at * Tile;
                                    Scores(q + h * dimK, keys, stride, dimK, visible, _scale, s, _wide);
                                    OnlineSoftmax(s, visible, ref max[at], ref sum[at], output + h * dimV, dimV, _wide);
                                    WeightedSum(s, values, stride, dimV, visible, output + h * dimV, _wide);
                                }
                            }
                        }
                    }

                    for (int k = 0; k < tokens; k++)
                        for (int h = 0; h < count; h++)
                        {
                            var o = new Span<float>(outAll + ((t0 + k) * _heads + h0 + h) * dimV, dimV);
                            TensorPrimitives.Multiply(o, 1f / sum[k * count + h], o);
                        }
                }
            }
        }
    }

    /// <summary>512-bit vectors where the runtime accelerates them.</summary>
    internal static readonly bool Wide = Vector512.IsHardwareAccelerated;

    /// <summary>
    /// One tile of an online softmax: raises the running maximum to the tile's, rescaling the normaliser and the output
    /// accumulated so far when it grows, then turns the scores into exp(score − max) and adds them to the normaliser.
    /// </summary>
    private static void OnlineSoftmax(float* scores, int count, ref float max, ref float sum, float* output, int dim, bool wide)
    {
        float tileMax = TensorPrimitives.Max(new ReadOnlySpan<float>(scores, count));
        if (tileMax > max)
        {
            float correction = MathF.Exp(max - tileMax);
            sum *= correction;
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(output, dim), correction, new Span<float>(output, dim));
            max = tileMax;
        }

        int j = 0;
        float total = 0;
        if (wide)
        {
            var top = Vector512.Create(max);
            var acc = Vector512<float>.Zero;
            for (; j + 16 <= count; j += 16)
            {
                var e = FastExp.Exp(Vector512.Load(scores + j) - top);
                e.Store(scores + j);
                acc += e;
            }
            total = Vector512.Sum(acc);
        }
        var top8 = Vector256.Create(max);
        var narrow = Vector256<float>.Zero;
        for (; j + 8 <= count; j += 8)
        {
            var e = FastExp.Exp(Vector256.Load(scores + j) - top8);
            e.Store(scores + j);
            narrow += e;
        }
        for (; j < count; j++)
        {
            scores[j] = MathF.Exp(scores[j] - max);
            total += scores[j];
        }
        sum += total + Vector256.Sum(narrow);
    }

    /// <summary>scores[j] = scale · (q · keys[j]) for <paramref name="count"/> keys <paramref name="stride"/> floats apart.</summary>
    private static void Scores(float* q, float* keys, int stride, int dim, int count, float scale, float* scores, bool wide)
    {
        int j = 0;
        if (wide && dim % 16 == 0) j = Scores8Wide(q, keys, stride, dim, count, scale, scores);
        else if (dim % 8 == 0 && Avx.IsSupported) j = Scores8(q, keys, stride, dim, count, scale, scores);
        for (; j < count; j++)
            scores[j] = TensorPrimitives.Dot(new ReadOnlySpan<float>(q, dim), new ReadOnlySpan<float>(keys + j * stride, dim)) * scale;
    }

    /// <summary>Eight keys at a time, their eight dot products summed across lanes together (<see cref="Sum8"/>); returns the keys done.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Scores8(float* q, float* keys, int stride, int dim, int count, float scale, float* scores)
    {
        int j = 0;
        for (; j + 8 <= count; j += 8)
        {
            float* k = keys + j * stride;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (int d = 0; d < dim; d += 8)
            {
                var qd = Vector256.Load(q + d);
                a0 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k + d), a0);
                a1 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k + stride + d), a1);
                a2 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k + 2 * stride + d), a2);
                a3 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k + 3 * stride + d), a3);
                a4 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k + 4 * stride + d), a4);
                a5 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k + 5 * stride + d), a5);
                a6 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k + 6 * stride + d), a6);
                a7 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k + 7 * stride + d), a7);
            }
            (Sum8(a0, a1, a2, a3, a4, a5, a6, a7) * scale).Store(scores + j);
        }
        return j;
    }

    /// <summary><see cref="Scores8"/> with 512-bit vectors (head sizes that are multiples of 16).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Scores8Wide(float* q, float* keys, int stride, int dim, int count, float scale, float* scores)
    {
        int j = 0;
        for (; j + 8 <= count; j += 8)
        {
            float* k = keys + j * stride;
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (int d = 0; d < dim; d += 16)
            {
                var qd = Vector512.Load(q + d);
                a0 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(k + d), a0);
                a1 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(k + stride + d), a1);
                a2 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(k + 2 * stride + d), a2);
                a3 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(k + 3 * stride + d), a3);
                a4 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(k + 4 * stride + d), a4);
                a5 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(k + 5 * stride + d), a5);
                a6 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(k + 6 * stride + d), a6);
                a7 = Vector512.FusedMultiplyAdd(qd, Vector512.Load(k + 7 * stride + d), a7);
            }
            (Sum8(Halves(a0), Halves(a1), Halves(a2), Halves(a3), Halves(a4), Halves(a5), Halves(a6), Halves(a7)) * scale).Store(scores + j);
        }
        return j;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Halves(Vector512<float> v) => v.GetLower() + v.GetUpper();

    /// <summary>
    /// The lane sums of eight vectors as one vector, [Σa0 … Σa7]: two rounds of pairwise horizontal adds, then the two
    /// 128-bit halves of each four-way sum put side by side and added (seven instructions instead of eight reductions).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Sum8(Vector256<float> a0, Vector256<float> a1, Vector256<float> a2, Vector256<float> a3,
        Vector256<float> a4, Vector256<float> a5, Vector256<float> a6, Vector256<float> a7)
    {
        var low = Avx.HorizontalAdd(Avx.HorizontalAdd(a0, a1), Avx.HorizontalAdd(a2, a3));
        var high = Avx.HorizontalAdd(Avx.HorizontalAdd(a4, a5), Avx.HorizontalAdd(a6, a7));
        return Avx.Permute2x128(low, high, 0x20) + Avx.Permute2x128(low, high, 0x31);
    }

    /// <summary>output += Σ_j weights[j] · values[j], in strips whose sums stay in registers over all the rows.</summary>
    private static void WeightedSum(float* weights, float* values, int stride, int dim, int count, float* output, bool wide)
    {
        int d = 0;
        if (wide)
        {
            for (; d + 64 <= dim; d += 64)
            {
                var o0 = Vector512.Load(output + d);
                var o1 = Vector512.Load(output + d + 16);
                var o2 = Vector512.Load(output + d + 32);
                var o3 = Vector512.Load(output + d + 48);
                float* v = values + d;
                for (int j = 0; j < count; j++, v += stride)
                {
                    var w = Vector512.Create(weights[j]);
                    o0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v), o0);
                    o1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 16), o1);
                    o2 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 32), o2);
                    o3 = Vector512.FusedMultiplyAdd(w, Vector512.Load(v + 48), o3);
                }
                o0.Store(output + d);
                o1.Store(output + d + 16);
                o2.Store(output + d + 32);
                o3.Store(output + d + 48);
            }
        }
        for (; d + 32 <= dim; d += 32)
        {
            var o0 = Vector256.Load(output + d);
            var o1 = Vector256.Load(output + d + 8);
            var o2 = Vector256.Load(output + d + 16);
            var o3 = Vector256.Load(output + d + 24);
            float* v = values + d;
            for (int j = 0; j < count; j++, v += stride)
            {
                var w = Vector256.Create(weights[j]);
                o0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v), o0);
                o1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 8), o1);
                o2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 16), o2);
                o3 = Vector256.FusedMultiplyAdd(w, Vector256.Load(v + 24), o3);
            }
            o0.Store(output + d);
            o1.Store(output + d + 8);
            o2.Store(output + d + 16);
            o3.Store(output + d + 24);
        }
        for (; d < dim; d++)
        {
            float acc = output[d];
            for (int j = 0; j < count; j++) acc += weights[j] * values[j * stride + d];
            output[d] = acc;
        }
    }
}
