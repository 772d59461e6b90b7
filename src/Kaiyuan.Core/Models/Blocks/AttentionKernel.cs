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
        int maxLen = 0;
        for (int t = 0; t < n; t++) maxLen = Math.Max(maxLen, batch.Positions[t] + 1);
        var scores = ws.Array(Buf.Scores, pool.Threads * maxLen);
        float[] kv = cache.LayerArray(layer);
        int width = cache.RowWidths[layer];
        int group = heads / headsKv;

        pool.For(n * heads, (start, end, worker) =>
        {
            var s = scores.AsSpan(worker * maxLen, maxLen);
            for (int i = start; i < end; i++)
            {
                int t = i / heads, h = i % heads, g = h / group;
                int len = batch.Positions[t] + 1;
                int slotBase = cache.SlotOffset(layer, batch.Slots[t]);
                var qh = q.AsSpan(t * qStride + h * dimK, dimK);
                var sc = s[..len];
                for (int j = 0; j < len; j++)
                    sc[j] = TensorPrimitives.Dot(qh, kv.AsSpan(slotBase + j * width + keyOffset + g * dimK, dimK)) * scale;
                VectorOps.Softmax(sc);
                var o = output.AsSpan((t * heads + h) * dimV, dimV);
                o.Clear();
                for (int j = 0; j < len; j++)
                    VectorOps.AddScaled(o, kv.AsSpan(slotBase + j * width + valueOffset + g * dimV, dimV), sc[j]);
            }
        });
    }
}
