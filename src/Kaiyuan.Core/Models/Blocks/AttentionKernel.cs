using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using System.Numerics.Tensors;

namespace Kaiyuan.Models.Blocks;

/// <summary>
/// Causal softmax attention of each (token, head) over its slot's cached rows 0…position. Query heads map onto
/// key/value heads in groups (GQA); a cache row holds every key head followed by every value head.
/// </summary>
public static class AttentionKernel
{
    public static void Run(ForwardContext ctx, int layer, float[] q, int qStride, int heads, int headsKv, int dimK, int dimV,
        int keyOffset, int valueOffset, float scale, float[] output)
    {
        var (batch, cache, ws, pool) = ctx;
        int n = batch.Count;
        // Sized for the whole context at once, so a growing sequence never reallocates it.
        int maxLen = cache.ContextLength;
        var scores = ws.Array(Buf.Scores, pool.Threads * maxLen);
        int group = heads / headsKv;

        using var scope = pool.Enter();
        var job = pool.Job<Job>();
        job.Set(batch, cache, layer, q, qStride, heads, group, dimK, dimV, keyOffset, valueOffset, scale, output, scores, maxLen);
        pool.Run(job, n * heads);
    }

    private sealed class Job : IParallelJob
    {
        private ForwardBatch _batch = null!;
        private KvCache _cache = null!;
        private float[] _q = [], _output = [], _scores = [], _rowScratch = [];
        private int _layer, _qStride, _heads, _group, _dimK, _dimV, _keyOffset, _valueOffset, _maxLen;
        private float _scale;

        public void Set(ForwardBatch batch, KvCache cache, int layer, float[] q, int qStride, int heads, int group, int dimK, int dimV,
            int keyOffset, int valueOffset, float scale, float[] output, float[] scores, int maxLen)
        {
            (_batch, _cache, _layer, _q, _qStride, _heads, _group, _dimK, _dimV) = (batch, cache, layer, q, qStride, heads, group, dimK, dimV);
            (_keyOffset, _valueOffset, _scale, _output, _scores, _maxLen) = (keyOffset, valueOffset, scale, output, scores, maxLen);
            int need = scores.Length / maxLen * cache.RowWidths[layer];
            if (!cache.IsF32 && _rowScratch.Length < need) _rowScratch = new float[need];
        }

        public void Run(int start, int end, int worker)
        {
            var s = _scores.AsSpan(worker * _maxLen, _maxLen);
            int width = _cache.RowWidths[_layer];
            // A non-F32 cache is converted one row at a time into per-worker scratch.
            var row = _cache.IsF32 ? default : _rowScratch.AsSpan(worker * width, width);
            for (int i = start; i < end; i++)
            {
                int t = i / _heads, h = i % _heads, g = h / _group, slot = _batch.Slots[t];
                int len = _batch.Positions[t] + 1;
                var qh = _q.AsSpan(t * _qStride + h * _dimK, _dimK);
                var sc = s[..len];
                for (int j = 0; j < len; j++)
                    sc[j] = TensorPrimitives.Dot(qh, Row(slot, j, row).Slice(_keyOffset + g * _dimK, _dimK)) * _scale;
                VectorOps.Softmax(sc);
                var o = _output.AsSpan((t * _heads + h) * _dimV, _dimV);
                o.Clear();
                for (int j = 0; j < len; j++)
                    VectorOps.AddScaled(o, Row(slot, j, row).Slice(_valueOffset + g * _dimV, _dimV), sc[j]);
            }
        }

        private ReadOnlySpan<float> Row(int slot, int position, Span<float> scratch)
        {
            if (_cache.IsF32) return _cache.RowF32(_layer, slot, position);
            _cache.Read(_layer, slot, position, scratch);
            return scratch;
        }
    }
}
