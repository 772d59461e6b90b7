using System.Numerics.Tensors;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>
/// Softmax attention of each (token, head) over a chosen set of its slot's cached rows (DeepSeek sparse attention's
/// top-k), as one-KV-head MQA: every head reads the same rows, so each token's rows are gathered once (converted from
/// the cache's type once) and shared by its heads. The cost follows the rows chosen, not the context.
/// </summary>
internal static class SparseAttention
{
    /// <param name="ctx">The forward pass (batch, cache, workspace, threads).</param>
    /// <param name="layer">The layer whose cached rows are read.</param>
    /// <param name="q">Per token, <paramref name="heads"/> queries of <paramref name="dimK"/> floats.</param>
    /// <param name="heads">Query heads.</param>
    /// <param name="dimK">Floats of a query and of a cached key (the row's first floats).</param>
    /// <param name="dimV">Floats of a value (the row's first floats too: MLA's latent is key and value).</param>
    /// <param name="scale">Multiplies every score before the softmax.</param>
    /// <param name="selected">
    /// Per token, <paramref name="stride"/> slots of positions, of which the first are read; from
    /// <paramref name="countsAt"/> on, how many per token.
    /// </param>
    /// <param name="countsAt">Where in <paramref name="selected"/> the per-token counts are.</param>
    /// <param name="stride">Slots per token in <paramref name="selected"/>.</param>
    /// <param name="output">Per token, <paramref name="heads"/> outputs of <paramref name="dimV"/> floats.</param>
    public static void Run(ForwardContext ctx, int layer, float[] q, int heads, int dimK, int dimV, float scale,
        int[] selected, int countsAt, int stride, float[] output)
    {
        var (batch, cache, ws, pool) = ctx;
        int n = batch.Count, width = cache.RowWidths[layer];
        var counts = selected.AsSpan(countsAt, n);
        var starts = ws.IntArray(IntBuf.SelectedStarts, n + 1);
        starts[0] = 0;
        for (int t = 0; t < n; t++) starts[t + 1] = starts[t] + counts[t];
        // The chosen rows' keys, gathered token by token (for an F32 cache straight from its blocks).
        var rows = ws.Array(Buf.SelectedRows, starts[n] * dimK);
        var row = ws.Floats(Buf.CacheRow, width);
        for (int t = 0; t < n; t++)
            for (int i = 0; i < counts[t]; i++)
            {
                int position = selected[t * stride + i];
                var dst = rows.AsSpan((starts[t] + i) * dimK, dimK);
                if (cache.IsF32) cache.RowsF32(layer, batch.Slots[t], position, 1)[..dimK].CopyTo(dst);
                else
                {
                    cache.Read(layer, batch.Slots[t], position, row);
                    row[..dimK].CopyTo(dst);
                }
            }
        int most = 0;
        for (int t = 0; t < n; t++) most = Math.Max(most, counts[t]);
        // Work items are (token, a chunk of heads): a chunk reads its token's rows tile by tile for all its heads, so the
        // rows come from memory twice (scores, then values) rather than twice per head.
        int chunks = Math.Clamp(2 * pool.Threads / n, 1, heads), perChunk = (heads + chunks - 1) / chunks;
        var scores = ws.Array(Buf.Scores, pool.Threads * perChunk * most);
        using var scope = pool.Enter();
        var job = pool.Job<Job>();
        job.Set(q, rows, selected, countsAt, starts, scores, most, heads, perChunk, dimK, dimV, scale, output);
        pool.Run(job, n * chunks);
    }

    private sealed class Job : IParallelJob
    {
        /// <summary>Rows per tile: their keys stay in the first-level cache while every head of a chunk reads them.</summary>
        private const int Tile = 16;
        private float[] _q = [], _rows = [], _scores = [], _output = [];
        private int[] _selected = [], _starts = [];
        private int _countsAt, _most, _heads, _perChunk, _dimK, _dimV;
        private float _scale;

        public void Set(float[] q, float[] rows, int[] selected, int countsAt, int[] starts, float[] scores, int most, int heads, int perChunk,
            int dimK, int dimV, float scale, float[] output) =>
            (_q, _rows, _selected, _countsAt, _starts, _scores, _most, _heads, _perChunk, _dimK, _dimV, _scale, _output) =
            (q, rows, selected, countsAt, starts, scores, most, heads, perChunk, dimK, dimV, scale, output);

        public void Run(int start, int end, int worker)
        {
            int dimK = _dimK, dimV = _dimV, chunks = (_heads + _perChunk - 1) / _perChunk;
            var mine = _scores.AsSpan(worker * _perChunk * _most, _perChunk * _most);
            for (int item = start; item < end; item++)
            {
                int t = item / chunks, h0 = item % chunks * _perChunk, count = Math.Min(_perChunk, _heads - h0), m = _selected[_countsAt + t];
                var keys = _rows.AsSpan(_starts[t] * dimK, m * dimK);
                for (int j0 = 0; j0 < m; j0 += Tile)
                {
                    int tile = Math.Min(Tile, m - j0);
                    for (int h = 0; h < count; h++)
                    {
                        ReadOnlySpan<float> query = _q.AsSpan((t * _heads + h0 + h) * dimK, dimK);
                        var s = mine.Slice(h * _most + j0, tile);
                        for (int j = 0; j < tile; j++) s[j] = _scale * TensorPrimitives.Dot(query, keys.Slice((j0 + j) * dimK, dimK));
                    }
                }
                for (int h = 0; h < count; h++)
                {
                    var p = mine.Slice(h * _most, m);
                    float max = TensorPrimitives.Max(p);
                    TensorPrimitives.Subtract(p, max, p);
                    TensorPrimitives.Exp(p, p);
                    TensorPrimitives.Multiply(p, 1f / TensorPrimitives.Sum(p), p);
                    _output.AsSpan((t * _heads + h0 + h) * dimV, dimV).Clear();
                }
                for (int j0 = 0; j0 < m; j0 += Tile)
                {
                    int tile = Math.Min(Tile, m - j0);
                    for (int h = 0; h < count; h++)
                    {
                        var o = _output.AsSpan((t * _heads + h0 + h) * dimV, dimV);
                        var p = mine.Slice(h * _most + j0, tile);
                        for (int j = 0; j < tile; j++) TensorPrimitives.MultiplyAdd(keys.Slice((j0 + j) * dimK, dimV), p[j], o, o);
                    }
                }
            }
        }
    }
}
