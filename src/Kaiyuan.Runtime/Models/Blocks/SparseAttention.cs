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
        var scores = ws.Array(Buf.Scores, pool.Threads * most);
        using var scope = pool.Enter();
        var job = pool.Job<Job>();
        job.Set(q, rows, selected, countsAt, starts, scores, most, heads, dimK, dimV, scale, output);
        pool.Run(job, n * heads);
    }

    private sealed class Job : IParallelJob
    {
        private float[] _q = [], _rows = [], _scores = [], _output = [];
        private int[] _selected = [], _starts = [];
        private int _countsAt, _most, _heads, _dimK, _dimV;
        private float _scale;

        public void Set(float[] q, float[] rows, int[] selected, int countsAt, int[] starts, float[] scores, int most, int heads, int dimK, int dimV,
            float scale, float[] output) =>
            (_q, _rows, _selected, _countsAt, _starts, _scores, _most, _heads, _dimK, _dimV, _scale, _output) =
            (q, rows, selected, countsAt, starts, scores, most, heads, dimK, dimV, scale, output);

        public void Run(int start, int end, int worker)
        {
            var s = _scores.AsSpan(worker * _most, _most);
            int dimK = _dimK, dimV = _dimV;
            for (int item = start; item < end; item++)
            {
                int t = item / _heads, h = item % _heads, m = _selected[_countsAt + t];
                ReadOnlySpan<float> query = _q.AsSpan((t * _heads + h) * dimK, dimK);
                var o = _output.AsSpan((t * _heads + h) * dimV, dimV);
                var keys = _rows.AsSpan(_starts[t] * dimK, m * dimK);
                for (int j = 0; j < m; j++) s[j] = _scale * TensorPrimitives.Dot(query, keys.Slice(j * dimK, dimK));
                var p = s[..m];
                float max = TensorPrimitives.Max(p);
                TensorPrimitives.Subtract(p, max, p);
                TensorPrimitives.Exp(p, p);
                float norm = 1f / TensorPrimitives.Sum(p);
                o.Clear();
                for (int j = 0; j < m; j++) TensorPrimitives.MultiplyAdd(keys.Slice(j * dimK, dimV), p[j] * norm, o, o);
            }
        }
    }
}
