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
        // Per worker: scores (heads × tile), running max and normaliser and the output so far per (token, head), a tile of
        // converted rows and, for the 512-bit scores, the tile's keys transposed. Each worker's part starts on its own
        // cache line and the outputs are written once per item: the threads wrote lines they shared (heads at a group's
        // edge, one worker's last floats and the next one's first) on every tile, and ran 1.5× slower side by side.
        int slots = QueryBlock * perItem;
        int perWorker = Align(slots * (Tile + 2 + dimV) + (cache.IsF32 ? 0 : Tile * width) + (wide && dimK % 16 == 0 ? Tile * dimK : 0));
        var scratch = ws.Array(Buf.Scores, pool.Threads * perWorker + LineFloats);

        using var scope = pool.Enter();
        var job = pool.Job<Job>();
        job.Set(batch, cache, layer, q, qStride, heads, headsKv, group, splits, perItem, dimK, dimV, keyOffset, valueOffset, scale, output, scratch, perWorker, blocks, wide);
        pool.Run(job, blockCount * headsKv * splits);
    }

    /// <summary>Tokens per query block at most.</summary>
    internal const int QueryBlock = 8;

    private const int LineFloats = 16;

    private static int Align(int floats) => (floats + LineFloats - 1) / LineFloats * LineFloats;

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
            fixed (float* all = _scratch)
            fixed (float* qAll = _q)
            fixed (float* outAll = _output)
            {
                int slots = QueryBlock * _perItem;
                float* mine = (float*)(((nint)all + 63) & ~(nint)63) + worker * _perWorker;
                float* scores = mine, max = mine + slots * Tile, sum = max + slots, acc = sum + slots, converted = acc + slots * dimV;
                float* transposed = converted + (_cache.IsF32 ? 0 : Tile * width);
                bool byColumns = _wide && dimK % 16 == 0;
                for (int i = start; i < end; i++)
                {
                    int b = i / (_headsKv * _splits), g = i / _splits % _headsKv, part = i % _splits;
                    int h0 = g * _group + part * _perItem, count = Math.Min(_perItem, (g + 1) * _group - h0);
                    if (count <= 0) continue;
                    int t0 = _blocks[b], tokens = _blocks[b + 1] - t0;
                    int slot = _batch.Slots[t0], first = _batch.Positions[t0] + 1, len = _batch.Positions[t0 + tokens - 1] + 1;
                    new Span<float>(acc, tokens * count * dimV).Clear();
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
                            if (byColumns) ScoresByColumns(qAll, t0, _qStride, h0, tokens, count, dimK, keys, stride, tile, _scale, transposed, scores);
                            for (int k = 0; k < tokens; k++)
                            {
                                // Causal: token k sees rows up to its own position. Its weights past them are zero, so every
                                // (token, head) of the item can take its share of each value row in one pass.
                                int visible = Math.Min(tile, first + k - j0);
                                float* q = qAll + (t0 + k) * _qStride + h0 * dimK;
                                float* output = acc + k * count * dimV;
                                for (int h = 0; h < count; h++)
                                {
                                    int at = k * count + h;
                                    float* s = scores + at * Tile;
                                    if (visible <= 0)
                                    {
                                        new Span<float>(s, tile).Clear();
                                        continue;
                                    }
                                    if (!byColumns) Scores(q + h * dimK, keys, stride, dimK, visible, _scale, s);
                                    OnlineSoftmax(s, visible, ref max[at], ref sum[at], output + h * dimV, dimV, _wide);
                                    new Span<float>(s + visible, tile - visible).Clear();
                                }
                            }
                            WeightedSums(scores, tokens, count, tile, values, stride, dimV, acc, count * dimV, _wide);
                        }
                    }

                    for (int k = 0; k < tokens; k++)
                        for (int h = 0; h < count; h++)
                            TensorPrimitives.Multiply(new ReadOnlySpan<float>(acc + (k * count + h) * dimV, dimV), 1f / sum[k * count + h],
                                new Span<float>(outAll + ((t0 + k) * _heads + h0 + h) * dimV, dimV));
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
        float tileMax = Max(scores, count);
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

    /// <summary>
    /// The scores of every (token, head) pair of an item over one tile, 512 bits wide: the tile's keys are transposed
    /// once (<see cref="Transpose16"/>) so that each pair's 32 scores build up in two vectors, one multiply-add per
    /// query element and no sums across lanes; four pairs at a time share each column of keys. Pair (k, h) gets
    /// <c>scores[(k·heads + h)·Tile …]</c>; rows past the tile score against zeros (their weights are cleared after).
    /// </summary>
    private static void ScoresByColumns(float* qAll, int t0, int qStride, int h0, int tokens, int heads, int dim, float* keys, int stride, int tile,
        float scale, float* transposed, float* scores)
    {
        for (int rb = 0; rb < tile; rb += 16)
            for (int d = 0; d < dim; d += 16)
                Transpose16(keys + rb * stride + d, stride, Math.Min(16, tile - rb), transposed + d * Tile + rb, Tile);
        if (tile <= 16)
            for (int d = 0; d < dim; d++) Vector512<float>.Zero.Store(transposed + d * Tile + 16);
        int pairs = tokens * heads;
        for (int p = 0; p < pairs; p += 4)
        {
            // A last batch of fewer than four repeats its last pair (the same scores, written twice).
            int p1 = Math.Min(p + 1, pairs - 1), p2 = Math.Min(p + 2, pairs - 1), p3 = Math.Min(p + 3, pairs - 1);
            Scores4ByColumns(transposed, dim, scale,
                qAll + (t0 + p / heads) * qStride + (h0 + p % heads) * dim, qAll + (t0 + p1 / heads) * qStride + (h0 + p1 % heads) * dim,
                qAll + (t0 + p2 / heads) * qStride + (h0 + p2 % heads) * dim, qAll + (t0 + p3 / heads) * qStride + (h0 + p3 % heads) * dim,
                scores + p * Tile, scores + p1 * Tile, scores + p2 * Tile, scores + p3 * Tile);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Scores4ByColumns(float* columns, int dim, float scale, float* q0, float* q1, float* q2, float* q3, float* s0, float* s1, float* s2, float* s3)
    {
        Vector512<float> a0 = default, a1 = default, b0 = default, b1 = default, c0 = default, c1 = default, e0 = default, e1 = default;
        float* end = columns + dim * Tile;
        for (float* k = columns; k < end; k += Tile, q0++, q1++, q2++, q3++)
        {
            var k0 = Vector512.Load(k);
            var k1 = Vector512.Load(k + 16);
            var x = Vector512.Create(*q0);
            a0 = Vector512.FusedMultiplyAdd(x, k0, a0);
            a1 = Vector512.FusedMultiplyAdd(x, k1, a1);
            x = Vector512.Create(*q1);
            b0 = Vector512.FusedMultiplyAdd(x, k0, b0);
            b1 = Vector512.FusedMultiplyAdd(x, k1, b1);
            x = Vector512.Create(*q2);
            c0 = Vector512.FusedMultiplyAdd(x, k0, c0);
            c1 = Vector512.FusedMultiplyAdd(x, k1, c1);
            x = Vector512.Create(*q3);
            e0 = Vector512.FusedMultiplyAdd(x, k0, e0);
            e1 = Vector512.FusedMultiplyAdd(x, k1, e1);
        }
        var sc = Vector512.Create(scale);
        (a0 * sc).Store(s0);
        (a1 * sc).Store(s0 + 16);
        (b0 * sc).Store(s1);
        (b1 * sc).Store(s1 + 16);
        (c0 * sc).Store(s2);
        (c1 * sc).Store(s2 + 16);
        (e0 * sc).Store(s3);
        (e1 * sc).Store(s3 + 16);
    }

    /// <summary>
    /// Sixteen rows of sixteen floats (<paramref name="src"/>, rows <paramref name="stride"/> apart; the first
    /// <paramref name="rows"/> read, the rest zero) written as sixteen columns, column c to <c>dst + c·dstStride</c>: two
    /// rounds of in-lane unpacks make 4 × 4 blocks, two rounds of 128-bit lane shuffles put the blocks in place.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose16(float* src, nint stride, int rows, float* dst, nint dstStride)
    {
        var r0 = 0 < rows ? Vector512.Load(src + 0 * stride) : Vector512<float>.Zero;
        var r1 = 1 < rows ? Vector512.Load(src + 1 * stride) : Vector512<float>.Zero;
        var r2 = 2 < rows ? Vector512.Load(src + 2 * stride) : Vector512<float>.Zero;
        var r3 = 3 < rows ? Vector512.Load(src + 3 * stride) : Vector512<float>.Zero;
        var r4 = 4 < rows ? Vector512.Load(src + 4 * stride) : Vector512<float>.Zero;
        var r5 = 5 < rows ? Vector512.Load(src + 5 * stride) : Vector512<float>.Zero;
        var r6 = 6 < rows ? Vector512.Load(src + 6 * stride) : Vector512<float>.Zero;
        var r7 = 7 < rows ? Vector512.Load(src + 7 * stride) : Vector512<float>.Zero;
        var r8 = 8 < rows ? Vector512.Load(src + 8 * stride) : Vector512<float>.Zero;
        var r9 = 9 < rows ? Vector512.Load(src + 9 * stride) : Vector512<float>.Zero;
        var r10 = 10 < rows ? Vector512.Load(src + 10 * stride) : Vector512<float>.Zero;
        var r11 = 11 < rows ? Vector512.Load(src + 11 * stride) : Vector512<float>.Zero;
        var r12 = 12 < rows ? Vector512.Load(src + 12 * stride) : Vector512<float>.Zero;
        var r13 = 13 < rows ? Vector512.Load(src + 13 * stride) : Vector512<float>.Zero;
        var r14 = 14 < rows ? Vector512.Load(src + 14 * stride) : Vector512<float>.Zero;
        var r15 = 15 < rows ? Vector512.Load(src + 15 * stride) : Vector512<float>.Zero;
        var t0 = Avx512F.UnpackLow(r0, r1); var t1 = Avx512F.UnpackHigh(r0, r1);
        var t2 = Avx512F.UnpackLow(r2, r3); var t3 = Avx512F.UnpackHigh(r2, r3);
        var t4 = Avx512F.UnpackLow(r4, r5); var t5 = Avx512F.UnpackHigh(r4, r5);
        var t6 = Avx512F.UnpackLow(r6, r7); var t7 = Avx512F.UnpackHigh(r6, r7);
        var t8 = Avx512F.UnpackLow(r8, r9); var t9 = Avx512F.UnpackHigh(r8, r9);
        var t10 = Avx512F.UnpackLow(r10, r11); var t11 = Avx512F.UnpackHigh(r10, r11);
        var t12 = Avx512F.UnpackLow(r12, r13); var t13 = Avx512F.UnpackHigh(r12, r13);
        var t14 = Avx512F.UnpackLow(r14, r15); var t15 = Avx512F.UnpackHigh(r14, r15);
        r0 = Avx512F.UnpackLow(t0.AsDouble(), t2.AsDouble()).AsSingle(); r1 = Avx512F.UnpackHigh(t0.AsDouble(), t2.AsDouble()).AsSingle();
        r2 = Avx512F.UnpackLow(t1.AsDouble(), t3.AsDouble()).AsSingle(); r3 = Avx512F.UnpackHigh(t1.AsDouble(), t3.AsDouble()).AsSingle();
        r4 = Avx512F.UnpackLow(t4.AsDouble(), t6.AsDouble()).AsSingle(); r5 = Avx512F.UnpackHigh(t4.AsDouble(), t6.AsDouble()).AsSingle();
        r6 = Avx512F.UnpackLow(t5.AsDouble(), t7.AsDouble()).AsSingle(); r7 = Avx512F.UnpackHigh(t5.AsDouble(), t7.AsDouble()).AsSingle();
        r8 = Avx512F.UnpackLow(t8.AsDouble(), t10.AsDouble()).AsSingle(); r9 = Avx512F.UnpackHigh(t8.AsDouble(), t10.AsDouble()).AsSingle();
        r10 = Avx512F.UnpackLow(t9.AsDouble(), t11.AsDouble()).AsSingle(); r11 = Avx512F.UnpackHigh(t9.AsDouble(), t11.AsDouble()).AsSingle();
        r12 = Avx512F.UnpackLow(t12.AsDouble(), t14.AsDouble()).AsSingle(); r13 = Avx512F.UnpackHigh(t12.AsDouble(), t14.AsDouble()).AsSingle();
        r14 = Avx512F.UnpackLow(t13.AsDouble(), t15.AsDouble()).AsSingle(); r15 = Avx512F.UnpackHigh(t13.AsDouble(), t15.AsDouble()).AsSingle();
        t0 = Avx512F.Shuffle4x128(r0, r4, 0x88); t4 = Avx512F.Shuffle4x128(r0, r4, 0xDD);
        t8 = Avx512F.Shuffle4x128(r8, r12, 0x88); t12 = Avx512F.Shuffle4x128(r8, r12, 0xDD);
        t1 = Avx512F.Shuffle4x128(r1, r5, 0x88); t5 = Avx512F.Shuffle4x128(r1, r5, 0xDD);
        t9 = Avx512F.Shuffle4x128(r9, r13, 0x88); t13 = Avx512F.Shuffle4x128(r9, r13, 0xDD);
        t2 = Avx512F.Shuffle4x128(r2, r6, 0x88); t6 = Avx512F.Shuffle4x128(r2, r6, 0xDD);
        t10 = Avx512F.Shuffle4x128(r10, r14, 0x88); t14 = Avx512F.Shuffle4x128(r10, r14, 0xDD);
        t3 = Avx512F.Shuffle4x128(r3, r7, 0x88); t7 = Avx512F.Shuffle4x128(r3, r7, 0xDD);
        t11 = Avx512F.Shuffle4x128(r11, r15, 0x88); t15 = Avx512F.Shuffle4x128(r11, r15, 0xDD);
        Avx512F.Shuffle4x128(t0, t8, 0x88).Store(dst + 0 * dstStride); Avx512F.Shuffle4x128(t0, t8, 0xDD).Store(dst + 8 * dstStride);
        Avx512F.Shuffle4x128(t4, t12, 0x88).Store(dst + 4 * dstStride); Avx512F.Shuffle4x128(t4, t12, 0xDD).Store(dst + 12 * dstStride);
        Avx512F.Shuffle4x128(t1, t9, 0x88).Store(dst + 1 * dstStride); Avx512F.Shuffle4x128(t1, t9, 0xDD).Store(dst + 9 * dstStride);
        Avx512F.Shuffle4x128(t5, t13, 0x88).Store(dst + 5 * dstStride); Avx512F.Shuffle4x128(t5, t13, 0xDD).Store(dst + 13 * dstStride);
        Avx512F.Shuffle4x128(t2, t10, 0x88).Store(dst + 2 * dstStride); Avx512F.Shuffle4x128(t2, t10, 0xDD).Store(dst + 10 * dstStride);
        Avx512F.Shuffle4x128(t6, t14, 0x88).Store(dst + 6 * dstStride); Avx512F.Shuffle4x128(t6, t14, 0xDD).Store(dst + 14 * dstStride);
        Avx512F.Shuffle4x128(t3, t11, 0x88).Store(dst + 3 * dstStride); Avx512F.Shuffle4x128(t3, t11, 0xDD).Store(dst + 11 * dstStride);
        Avx512F.Shuffle4x128(t7, t15, 0x88).Store(dst + 7 * dstStride); Avx512F.Shuffle4x128(t7, t15, 0xDD).Store(dst + 15 * dstStride);
    }

    /// <summary>The largest of <paramref name="count"/> finite floats (TensorPrimitives.Max's NaN handling costs more than a tile's exponentials).</summary>
    private static float Max(float* values, int count)
    {
        int j = 0;
        var top = Vector256.Create(float.NegativeInfinity);
        for (; j + 8 <= count; j += 8) top = Vector256.Max(top, Vector256.Load(values + j));
        float max = float.NegativeInfinity;
        for (int i = 0; i < 8; i++) max = MathF.Max(max, top[i]);
        for (; j < count; j++) max = MathF.Max(max, values[j]);
        return max;
    }

    /// <summary>
    /// scores[j] = scale · (q · keys[j]) for <paramref name="count"/> keys <paramref name="stride"/> floats apart: the 256-bit
    /// path and head sizes <see cref="ScoresByColumns"/> does not take.
    /// </summary>
    private static void Scores(float* q, float* keys, int stride, int dim, int count, float scale, float* scores)
    {
        int j = 0;
        if (dim % 8 == 0 && Avx.IsSupported) j = Scores8(q, keys, stride, dim, count, scale, scores);
        for (; j < count; j++)
            scores[j] = TensorPrimitives.Dot(new ReadOnlySpan<float>(q, dim), new ReadOnlySpan<float>(keys + j * stride, dim)) * scale;
    }

    /// <summary>Eight keys at a time, their eight dot products summed across lanes together (<see cref="Sum8"/>); returns the keys done.</summary>
    /// <remarks>Eight row pointers stepped by the loop: indexing each row as <c>keys + n·stride + d</c> cost more integer
    /// instructions than the multiply-adds they fed.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int Scores8(float* q, float* keys, int stride, int dim, int count, float scale, float* scores)
    {
        int j = 0;
        nint step = stride;
        for (; j + 8 <= count; j += 8)
        {
            float* k0 = keys + j * step, k1 = k0 + step, k2 = k1 + step, k3 = k2 + step, k4 = k3 + step, k5 = k4 + step, k6 = k5 + step, k7 = k6 + step;
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default, a6 = default, a7 = default;
            for (float* qd = q, qEnd = q + dim; qd < qEnd; qd += 8, k0 += 8, k1 += 8, k2 += 8, k3 += 8, k4 += 8, k5 += 8, k6 += 8, k7 += 8)
            {
                var x = Vector256.Load(qd);
                a0 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k0), a0);
                a1 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k1), a1);
                a2 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k2), a2);
                a3 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k3), a3);
                a4 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k4), a4);
                a5 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k5), a5);
                a6 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k6), a6);
                a7 = Vector256.FusedMultiplyAdd(x, Vector256.Load(k7), a7);
            }
            (Sum8(a0, a1, a2, a3, a4, a5, a6, a7) * scale).Store(scores + j);
        }
        return j;
    }

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

    /// <summary>
    /// <see cref="WeightedSum"/> for every (token, head) pair of an item: pair (k, h)'s weights are
    /// <c>weights[(k·heads + h)·Tile …]</c> and its output <c>output + k·tokenStride + h·dim</c>. Pairs go four (or two) at a
    /// time, so each value row is loaded once for all of them and their sums form independent chains; each pair's sums are
    /// the same operations in the same order as <see cref="WeightedSum"/>'s, so the result does not depend on the batch.
    /// </summary>
    private static void WeightedSums(float* weights, int tokens, int heads, int count, float* values, int stride, int dim, float* output, int tokenStride, bool wide)
    {
        int pairs = tokens * heads, p = 0;
        if (wide && dim % 64 == 0)
            for (; p + 4 <= pairs; p += 4)
                WeightedSum4Wide(weights + p * Tile, values, stride, dim, count,
                    Pair(output, p, heads, tokenStride, dim), Pair(output, p + 1, heads, tokenStride, dim),
                    Pair(output, p + 2, heads, tokenStride, dim), Pair(output, p + 3, heads, tokenStride, dim));
        else if (!wide && dim % 32 == 0)
            for (; p + 2 <= pairs; p += 2)
                WeightedSum2(weights + p * Tile, values, stride, dim, count, Pair(output, p, heads, tokenStride, dim), Pair(output, p + 1, heads, tokenStride, dim));
        for (; p < pairs; p++) WeightedSum(weights + p * Tile, values, stride, dim, count, Pair(output, p, heads, tokenStride, dim), wide);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float* Pair(float* output, int pair, int heads, int tokenStride, int dim) => output + pair / heads * tokenStride + pair % heads * dim;

    /// <summary>Four pairs' weighted sums (weights <see cref="Tile"/> floats apart) in 64-float strips: sixteen accumulators.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedSum4Wide(float* w, float* values, int stride, int dim, int count, float* out0, float* out1, float* out2, float* out3)
    {
        for (int d = 0; d < dim; d += 64)
        {
            float* v = values + d;
            var a0 = Vector512.Load(out0 + d); var a1 = Vector512.Load(out0 + d + 16); var a2 = Vector512.Load(out0 + d + 32); var a3 = Vector512.Load(out0 + d + 48);
            var b0 = Vector512.Load(out1 + d); var b1 = Vector512.Load(out1 + d + 16); var b2 = Vector512.Load(out1 + d + 32); var b3 = Vector512.Load(out1 + d + 48);
            var c0 = Vector512.Load(out2 + d); var c1 = Vector512.Load(out2 + d + 16); var c2 = Vector512.Load(out2 + d + 32); var c3 = Vector512.Load(out2 + d + 48);
            var e0 = Vector512.Load(out3 + d); var e1 = Vector512.Load(out3 + d + 16); var e2 = Vector512.Load(out3 + d + 32); var e3 = Vector512.Load(out3 + d + 48);
            for (int j = 0; j < count; j++, v += stride)
            {
                var v0 = Vector512.Load(v); var v1 = Vector512.Load(v + 16); var v2 = Vector512.Load(v + 32); var v3 = Vector512.Load(v + 48);
                var x = Vector512.Create(w[j]);
                a0 = Vector512.FusedMultiplyAdd(x, v0, a0); a1 = Vector512.FusedMultiplyAdd(x, v1, a1);
                a2 = Vector512.FusedMultiplyAdd(x, v2, a2); a3 = Vector512.FusedMultiplyAdd(x, v3, a3);
                x = Vector512.Create(w[Tile + j]);
                b0 = Vector512.FusedMultiplyAdd(x, v0, b0); b1 = Vector512.FusedMultiplyAdd(x, v1, b1);
                b2 = Vector512.FusedMultiplyAdd(x, v2, b2); b3 = Vector512.FusedMultiplyAdd(x, v3, b3);
                x = Vector512.Create(w[2 * Tile + j]);
                c0 = Vector512.FusedMultiplyAdd(x, v0, c0); c1 = Vector512.FusedMultiplyAdd(x, v1, c1);
                c2 = Vector512.FusedMultiplyAdd(x, v2, c2); c3 = Vector512.FusedMultiplyAdd(x, v3, c3);
                x = Vector512.Create(w[3 * Tile + j]);
                e0 = Vector512.FusedMultiplyAdd(x, v0, e0); e1 = Vector512.FusedMultiplyAdd(x, v1, e1);
                e2 = Vector512.FusedMultiplyAdd(x, v2, e2); e3 = Vector512.FusedMultiplyAdd(x, v3, e3);
            }
            a0.Store(out0 + d); a1.Store(out0 + d + 16); a2.Store(out0 + d + 32); a3.Store(out0 + d + 48);
            b0.Store(out1 + d); b1.Store(out1 + d + 16); b2.Store(out1 + d + 32); b3.Store(out1 + d + 48);
            c0.Store(out2 + d); c1.Store(out2 + d + 16); c2.Store(out2 + d + 32); c3.Store(out2 + d + 48);
            e0.Store(out3 + d); e1.Store(out3 + d + 16); e2.Store(out3 + d + 32); e3.Store(out3 + d + 48);
        }
    }

    /// <summary>Two pairs' weighted sums in 32-float strips of 256-bit vectors (eight accumulators: AVX2 has sixteen registers).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightedSum2(float* w, float* values, int stride, int dim, int count, float* out0, float* out1)
    {
        for (int d = 0; d < dim; d += 32)
        {
            float* v = values + d;
            var a0 = Vector256.Load(out0 + d); var a1 = Vector256.Load(out0 + d + 8); var a2 = Vector256.Load(out0 + d + 16); var a3 = Vector256.Load(out0 + d + 24);
            var b0 = Vector256.Load(out1 + d); var b1 = Vector256.Load(out1 + d + 8); var b2 = Vector256.Load(out1 + d + 16); var b3 = Vector256.Load(out1 + d + 24);
            for (int j = 0; j < count; j++, v += stride)
            {
                var v0 = Vector256.Load(v); var v1 = Vector256.Load(v + 8); var v2 = Vector256.Load(v + 16); var v3 = Vector256.Load(v + 24);
                var x = Vector256.Create(w[j]);
                a0 = Vector256.FusedMultiplyAdd(x, v0, a0); a1 = Vector256.FusedMultiplyAdd(x, v1, a1);
                a2 = Vector256.FusedMultiplyAdd(x, v2, a2); a3 = Vector256.FusedMultiplyAdd(x, v3, a3);
                x = Vector256.Create(w[Tile + j]);
                b0 = Vector256.FusedMultiplyAdd(x, v0, b0); b1 = Vector256.FusedMultiplyAdd(x, v1, b1);
                b2 = Vector256.FusedMultiplyAdd(x, v2, b2); b3 = Vector256.FusedMultiplyAdd(x, v3, b3);
            }
            a0.Store(out0 + d); a1.Store(out0 + d + 8); a2.Store(out0 + d + 16); a3.Store(out0 + d + 24);
            b0.Store(out1 + d); b1.Store(out1 + d + 8); b2.Store(out1 + d + 16); b3.Store(out1 + d + 24);
        }
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
