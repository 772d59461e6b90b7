using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;
using Kaiyuan.Tensors;
using Kaiyuan.Tests.Models;

namespace Kaiyuan.Tests.Inference;

/// <summary>
/// Prefix caching must not change a single logit: every sequence evaluated over shared, copied-on-write and evicted
/// blocks is compared with the same tokens evaluated from an empty cache.
/// </summary>
public sealed class PrefixCacheTests
{
    private static int[] Tokens(int seed, int length, int vocab)
    {
        var random = new Random(seed);
        var ids = new int[length];
        ids[0] = 1;
        for (int i = 1; i < length; i++) ids[i] = random.Next(3, Math.Min(vocab, 500));
        return ids;
    }

    /// <summary>Evaluates a whole sequence through the prefix cache (reusing what it can) and returns its last logits and how many tokens were reused.</summary>
    private static (float[] Logits, int Reused) Cached(TransformerModel model, PrefixCache prefix, WorkerPool pool, int sequence, int[] tokens)
    {
        int reused = prefix.Match(sequence, tokens);
        Assert.True(prefix.Reserve(sequence, tokens.Length));
        var batch = new ForwardBatch(tokens.Length);
        for (int p = reused; p < tokens.Length; p++) batch.Add(tokens[p], p, sequence);
        var want = new bool[batch.Count];
        want[^1] = true;
        var logits = new float[model.VocabSize];
        model.Forward(new ForwardContext(batch, prefix.Cache, new Workspace(), pool), want, logits);
        prefix.Release(sequence, tokens, tokens.Length);
        return (logits, reused);
    }

    private static float[] Fresh(TransformerModel model, WorkerPool pool, int[] tokens, GgmlType type) =>
        new InferenceSession(model, 512, pool, cacheType: type).Evaluate(tokens).ToArray();

    [Theory]
    [InlineData("llama", GgmlType.F32)]
    [InlineData("qwen2", GgmlType.F32)]
    [InlineData("qwen3", GgmlType.F32)]
    [InlineData("qwen3moe", GgmlType.F32)]
    [InlineData("deepseek2", GgmlType.F32)]
    [InlineData("glm4", GgmlType.F32)]
    [InlineData("glm4moe", GgmlType.F32)]
    [InlineData("minimax-m2", GgmlType.F32)]
    [InlineData("llama", GgmlType.F16)]
    [InlineData("deepseek2", GgmlType.Q8_0)]
    [InlineData("deepseek32", GgmlType.F32)]
    [InlineData("deepseek32", GgmlType.Q8_0)]
    public void SharedCopiedAndExtendedPrefixesGiveTheSameLogits(string folder, GgmlType type)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath(folder, $"{folder}-f32.gguf"));
        using var pool = new WorkerPool(1);
        var prefix = new PrefixCache(model.CreateCache(2, 512, type));
        const int T = KvCache.BlockTokens;
        var base100 = Tokens(7, 100, model.VocabSize);
        var divergent = base100[..70].Concat(Tokens(8, 30, model.VocabSize)[1..]).ToArray();
        int[][] sequences =
        [
            base100,                                                        // nothing cached
            divergent,                                                      // diverges mid-block at 70
            base100[..(2 * T)],                                             // strict prefix ending on a block boundary
            base100[..50],                                                  // strict prefix ending mid-block
            base100.Concat(Tokens(9, 41, model.VocabSize)[1..]).ToArray(),  // extends a cached sequence
            divergent,                                                      // repeated exactly
        ];
        int[] expectedReuse = [0, 70, 2 * T - 1, 49, 100, 98];
        for (int i = 0; i < sequences.Length; i++)
        {
            var (logits, reused) = Cached(model, prefix, pool, i % 2, sequences[i]);
            Assert.Equal(expectedReuse[i], reused);
            float diff = Goldens.MaxAbsDiff(Fresh(model, pool, sequences[i], type), logits);
            Assert.True(diff <= 1e-4f, $"sequence {i}: logits differ by {diff}");
        }
        var stats = prefix.Stats;
        Assert.Equal(0, stats.UsedBlocks);
        Assert.Equal(stats.CapacityBlocks, stats.CachedBlocks + stats.FreeBlocks);
    }

    [Fact]
    public void EvictionUnderATinyPoolKeepsLogitsAndLeaksNoBlock()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("llama", "llama-f32.gguf"));
        using var pool = new WorkerPool(1);
        // Room for one 160-token sequence and a little more: most of what finishes is evicted again.
        var prefix = new PrefixCache(model.CreateCache(1, 160, capacityBlocks: 7));
        var random = new Random(3);
        var stems = Enumerable.Range(0, 3).Select(s => Tokens(20 + s, 120, model.VocabSize)).ToArray();
        long reusedTotal = 0;
        for (int i = 0; i < 12; i++)
        {
            var stem = stems[random.Next(stems.Length)];
            var tokens = stem[..random.Next(2, stem.Length)].Concat(Tokens(100 + i, random.Next(2, 40), model.VocabSize)[1..]).ToArray();
            var (logits, reused) = Cached(model, prefix, pool, 0, tokens);
            reusedTotal += reused;
            Assert.True(Goldens.MaxAbsDiff(Fresh(model, pool, tokens, GgmlType.F32), logits) <= 1e-4f, $"request {i}");
        }
        var stats = prefix.Stats;
        Assert.True(stats.Evictions > 0, "the pool was meant to be too small to keep everything");
        Assert.True(reusedTotal > 0);
        Assert.Equal(0, stats.UsedBlocks);
        Assert.Equal(7, stats.CachedBlocks + stats.FreeBlocks);
    }

    [Fact]
    public void DisabledCacheSharesNothingAndFreesEverything()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        using var pool = new WorkerPool(1);
        var prefix = new PrefixCache(model.CreateCache(1, 128), enabled: false);
        var tokens = Tokens(1, 90, model.VocabSize);
        Assert.Equal(0, Cached(model, prefix, pool, 0, tokens).Reused);
        Assert.Equal(0, Cached(model, prefix, pool, 0, tokens).Reused);
        Assert.Equal(0, prefix.Stats.CachedBlocks);
        Assert.Equal(prefix.Stats.CapacityBlocks, prefix.Stats.FreeBlocks);
    }
}
