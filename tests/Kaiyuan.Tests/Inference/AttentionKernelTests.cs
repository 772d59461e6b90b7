using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models.Blocks;
using Kaiyuan.Tensors;

namespace Kaiyuan.Tests.Inference;

/// <summary>The tiled online-softmax kernel against plain two-pass softmax attention computed in double.</summary>
public sealed class AttentionKernelTests
{
    [Theory]
    [InlineData(14, 2, 64, 1, 100, 1)]  // Qwen2.5-0.5B's GQA shape, decode at position 99 (group split across threads)
    [InlineData(14, 2, 64, 40, 0, 2)]   // prefill of 40 tokens from an empty cache
    [InlineData(4, 1, 40, 3, 70, 2)]    // MLA-like: one group, head size not a multiple of 32
    [InlineData(8, 8, 16, 5, 33, 3)]    // plain multi-head attention, tile boundary at 32
    [InlineData(16, 2, 128, 3, 300, 2)] // head size 128, many tiles, a three-token query block
    public void MatchesTwoPassSoftmaxAttention(int heads, int headsKv, int dim, int tokens, int start, int threads)
    {
        // The 512-bit kernels where the machine has them, and the 256-bit ones in every case.
        foreach (bool wide in AttentionKernel.Wide ? new[] { true, false } : [false])
            Check(heads, headsKv, dim, tokens, start, threads, wide);
    }

    private static void Check(int heads, int headsKv, int dim, int tokens, int start, int threads, bool wide)
    {
        foreach (var type in new[] { GgmlType.F32, GgmlType.F16, GgmlType.Q8_0 })
        {
            // A Q8_0 cache holds rows of whole 32-value blocks.
            if (type == GgmlType.Q8_0 && headsKv * 2 * dim % 32 != 0) continue;
            var random = new Random(heads * 100 + tokens);
            int width = headsKv * 2 * dim, context = start + tokens;
            var cache = new KvCache([width], 2, context + 1, type);
            // Sequence 1 reads through a block table whose blocks are interleaved with sequence 0's, as in a shared pool.
            for (int end = KvCache.BlockTokens; end < context + 1 + KvCache.BlockTokens; end += KvCache.BlockTokens)
            {
                cache.Reserve(0, Math.Min(end, context + 1));
                cache.Reserve(1, Math.Min(end, context + 1));
            }
            var stored = new float[context][];
            for (int p = 0; p < start; p++) stored[p] = Write(cache, random, width, p);

            var batch = new ForwardBatch(tokens);
            for (int t = 0; t < tokens; t++)
            {
                stored[start + t] = Write(cache, random, width, start + t);
                batch.Add(0, start + t, 1);
            }
            // Wide-ranging scores so the running maximum grows across tiles and the rescaling path runs.
            var q = Enumerable.Range(0, tokens * heads * dim).Select(_ => (float)(random.NextDouble() * 8 - 4)).ToArray();
            var output = new float[tokens * heads * dim];
            using var pool = new WorkerPool(threads);
            float scale = 1 / MathF.Sqrt(dim);
            AttentionKernel.Run(new ForwardContext(batch, cache, new Workspace(), pool), 0, q, heads * dim, heads, headsKv, dim, dim,
                keyOffset: 0, valueOffset: headsKv * dim, scale, output, wide);

            for (int t = 0; t < tokens; t++)
                for (int h = 0; h < heads; h++)
                {
                    int g = h / (heads / headsKv), len = start + t + 1;
                    var scores = new double[len];
                    for (int j = 0; j < len; j++)
                    {
                        double s = 0;
                        for (int d = 0; d < dim; d++) s += (double)q[(t * heads + h) * dim + d] * stored[j][g * dim + d];
                        scores[j] = s * scale;
                    }
                    double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
                    for (int d = 0; d < dim; d++)
                    {
                        double expected = 0;
                        for (int j = 0; j < len; j++) expected += Math.Exp(scores[j] - max) / sum * stored[j][headsKv * dim + g * dim + d];
                        Assert.True(Math.Abs(expected - output[(t * heads + h) * dim + d]) < 2e-4,
                            $"{type} wide {wide} token {t} head {h} dim {d}: {output[(t * heads + h) * dim + d]} vs {expected}");
                    }
                }
        }
    }

    /// <summary>Writes a random row and returns it as the cache holds it (F16 and Q8_0 round each value), read back one row at a time.</summary>
    private static float[] Write(KvCache cache, Random random, int width, int position)
    {
        var row = Enumerable.Range(0, width).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        cache.Write(0, 1, position, row);
        var held = new float[width];
        cache.Read(0, 1, position, held);
        return held;
    }
}
