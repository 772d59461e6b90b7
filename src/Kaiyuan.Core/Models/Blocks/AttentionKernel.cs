using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
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
public static unsafe class AttentionKernel
{
    /// <summary>Cached rows per tile.</summary>
    internal const int Tile = 32;

    public static void Run(ForwardContext ctx, int layer, float[] q, int qStride, int heads, int headsKv, int dimK, int dimV,
        int keyOffset, int valueOffset, float scale, float[] output)
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
        // Split a group's heads only when there are too few (block, group) items to keep every thread busy.
        int splits = Math.Clamp((2 * pool.Threads + blockCount * headsKv - 1) / (blockCount * headsKv), 1, group);
        int perItem = (group + splits - 1) / splits;
        int width = cache.RowWidths[layer];
        // Per worker: scores (heads × tile) and running max and normaliser per (token, head), and a tile of converted rows.
        int perWorker = QueryBlock * perItem * (Tile + 2) + (cache.IsF32 ? 0 : Tile * width);
        var scratch = ws.Array(Buf.Scores, pool.Threads * perWorker);

        using var scope = pool.Enter();
        var job = pool.Job<Job>();
        job.Set(batch, cache, layer, q, qStride, heads, headsKv, group, splits, perItem, dimK, dimV, keyOffset, valueOffset, scale, output, scratch, perWorker, blocks);
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

        public void Set(ForwardBatch batch, KvCache cache, int layer, float[] q, int qStride, int heads, int headsKv, int group, int splits, int perItem,
            int dimK, int dimV, int keyOffset, int valueOffset, float scale, float[] output, float[] scratch, int perWorker, int[] blocks)
        {
            (_batch, _cache, _layer, _q, _qStride, _heads, _headsKv, _group, _splits, _perItem) = (batch, cache, layer, q, qStride, heads, headsKv, group, splits, perItem);
            (_dimK, _dimV, _keyOffset, _valueOffset, _scale, _output, _scratch, _perWorker, _blocks) = (dimK, dimV, keyOffset, valueOffset, scale, output, scratch, perWorker, blocks);
        }

        public void Run(int start, int end, int worker)
        {
            int width = _cache.RowWidths[_layer], dimK = _dimK, dimV = _dimV;
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
                        if (_cache.IsF32) rows = _cache.RowsF32(_layer, slot, j0, tile);
                        else
                        {
                            for (int j = 0; j < tile; j++) _cache.Read(_layer, slot, j0 + j, new Span<float>(converted + j * width, width));
                            rows = new ReadOnlySpan<float>(converted, tile * width);
                        }

                        fixed (float* tileRows = rows)
                        {
                            float* keys = tileRows + _keyOffset + g * dimK, values = tileRows + _valueOffset + g * dimV;
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
                                    Scores(q + h * dimK, keys, width, dimK, visible, _scale, s);
                                    OnlineSoftmax(s, visible, ref max[at], ref sum[at], output + h * dimV, dimV);
                                    WeightedSum(s, values, width, dimV, visible, output + h * dimV);
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

    /// <summary>
    /// One tile of an online softmax: raises the running maximum to the tile's, rescaling the normaliser and the output
    /// accumulated so far when it grows, then turns the scores into exp(score − max) and adds them to the normaliser.
    /// </summary>
    private static void OnlineSoftmax(float* scores, int count, ref float max, ref float sum, float* output, int dim)
    {
        float tileMax = float.NegativeInfinity;
        int j = 0;
        if (count >= 8)
        {
            var m = Vector256.Load(scores);
            for (j = 8; j + 8 <= count; j += 8) m = Vector256.Max(m, Vector256.Load(scores + j));
            var half = Vector128.Max(m.GetLower(), m.GetUpper());
            tileMax = MathF.Max(MathF.Max(half[0], half[1]), MathF.Max(half[2], half[3]));
        }
        for (; j < count; j++) tileMax = MathF.Max(tileMax, scores[j]);

        if (tileMax > max)
        {
            float correction = MathF.Exp(max - tileMax);
            sum *= correction;
            TensorPrimitives.Multiply(new ReadOnlySpan<float>(output, dim), correction, new Span<float>(output, dim));
            max = tileMax;
        }

        var top = Vector256.Create(max);
        var total = Vector256<float>.Zero;
        for (j = 0; j + 8 <= count; j += 8)
        {
            var e = Vector256.Exp(Vector256.Load(scores + j) - top);
            e.Store(scores + j);
            total += e;
        }
        float tail = 0;
        for (; j < count; j++)
        {
            scores[j] = MathF.Exp(scores[j] - max);
            tail += scores[j];
        }
        sum += Vector256.Sum(total) + tail;
    }

    /// <summary>scores[j] = scale · (q · keys[j]) for <paramref name="count"/> keys <paramref name="stride"/> floats apart.</summary>
    private static void Scores(float* q, float* keys, int stride, int dim, int count, float scale, float* scores)
    {
        int vec = dim & ~7, j = 0;
        for (; j + 4 <= count; j += 4)
        {
            float* k0 = keys + j * stride, k1 = k0 + stride, k2 = k1 + stride, k3 = k2 + stride;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (int d = 0; d < vec; d += 8)
            {
                var qd = Vector256.Load(q + d);
                a0 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k0 + d), a0);
                a1 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k1 + d), a1);
                a2 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k2 + d), a2);
                a3 = Vector256.FusedMultiplyAdd(qd, Vector256.Load(k3 + d), a3);
            }
            scores[j] = (Vector256.Sum(a0) + Tail(q, k0, vec, dim)) * scale;
            scores[j + 1] = (Vector256.Sum(a1) + Tail(q, k1, vec, dim)) * scale;
            scores[j + 2] = (Vector256.Sum(a2) + Tail(q, k2, vec, dim)) * scale;
            scores[j + 3] = (Vector256.Sum(a3) + Tail(q, k3, vec, dim)) * scale;
        }
        for (; j < count; j++)
            scores[j] = TensorPrimitives.Dot(new ReadOnlySpan<float>(q, dim), new ReadOnlySpan<float>(keys + j * stride, dim)) * scale;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(float* a, float* b, int from, int dim)
    {
        float s = 0;
        for (int d = from; d < dim; d++) s += a[d] * b[d];
        return s;
    }

    /// <summary>output += Σ_j weights[j] · values[j], in 32-float strips so the strip's sums stay in registers.</summary>
    private static void WeightedSum(float* weights, float* values, int stride, int dim, int count, float* output)
    {
        int d = 0;
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
