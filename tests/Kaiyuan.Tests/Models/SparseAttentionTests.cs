using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Tests.Models;

/// <summary>
/// DeepSeek sparse attention beyond the goldens (which <see cref="GoldenModelTests"/> checks): the top-k choice, and
/// GLM-5.2's layers that share an earlier layer's choice.
/// </summary>
public sealed class SparseAttentionTests
{
    [Fact]
    public void TopIndicesAreTheLargestValues()
    {
        var random = new Random(5);
        for (int trial = 0; trial < 200; trial++)
        {
            int n = random.Next(1, 300), k = random.Next(1, n + 1);
            var values = Enumerable.Range(0, n).Select(_ => (float)random.NextDouble()).ToArray();
            var chosen = new int[k];
            LightningIndexer.TopIndices(values, k, chosen);
            var expected = Enumerable.Range(0, n).OrderByDescending(i => values[i]).Take(k).Order();
            Assert.Equal(expected, chosen.Order());
        }
    }

    [Fact]
    public void TiesAreBrokenAsCppPartialSortBreaksThem()
    {
        // A later equal value never displaces an earlier one (the comparison is strict)…
        var chosen = new int[3];
        LightningIndexer.TopIndices(new float[10], 3, chosen);
        Assert.Equal([0, 1, 2], chosen.Order());
        // …and a greater one displaces the heap's top, which among equals is not always the last index: std::make_heap
        // on [0, 1] (both 0) puts index 1 on top, so 5 at index 4 evicts it.
        var two = new int[2];
        LightningIndexer.TopIndices([0, 0, 0, 0, 5], 2, two);
        Assert.Equal([0, 4], two.Order());
    }

    /// <summary>A copy of the glm-dsa fixture whose second layer reuses the first layer's choice (GLM-5.2's "shared" indexer layers).</summary>
    private static string WithSharedSecondLayer(string path)
    {
        string copy = Path.Combine(Path.GetTempPath(), $"kaiyuan-glm-dsa-shared-{Guid.NewGuid():N}.gguf");
        using var source = GgufFile.Open(path);
        var writer = new GgufWriter { Alignment = source.Alignment };
        foreach (var (key, value) in source.Metadata.Entries) writer.Metadata.Set(key, value);
        writer.Metadata.Set("glm-dsa.attention.indexer.types", GgufValue.Of(GgufArray.Of(new[] { 1, 0 })));
        foreach (var t in source.Tensors) writer.AddTensor(t.Name, t.Type, t.Dimensions, s => s.Write(t.Bytes));
        writer.Write(copy);
        return copy;
    }

    [Fact]
    public void ASharedLayerAttendsToWhatTheLastFullLayerChose()
    {
        string original = Fixtures.ModelPath("glm-dsa", "glm-dsa-q8_0.gguf");
        string shared = WithSharedSecondLayer(original);
        try
        {
            using var full = ModelLoader.Load(original);
            using var sharing = ModelLoader.Load(shared);
            // The shared layer keeps no indexer key of its own.
            Assert.Equal([256 + 32 + 64, 256 + 32 + 64], full.CacheRowWidths);
            Assert.Equal([256 + 32 + 64, 256 + 32], sharing.CacheRowWidths);

            var prompt = Goldens.Load("glm-dsa", "q8_0")[0].PromptIds;
            using var pool = new WorkerPool(1);
            var fullLogits = new InferenceSession(full, 64, pool).EvaluateAll(prompt);
            var batched = new InferenceSession(sharing, 64, pool).EvaluateAll(prompt);
            var stepped = new InferenceSession(sharing, 64, pool);
            int vocab = sharing.VocabSize;
            for (int i = 0; i < prompt.Length; i++)
            {
                var row = batched.AsSpan(i * vocab, vocab);
                // Up to top-k tokens every layer sees them all; beyond, the second layer's choice is the first layer's.
                if (i < 8) Assert.True(Goldens.MaxAbsDiff(row, fullLogits.AsSpan(i * vocab, vocab)) <= 1e-4f, $"position {i}");
                Assert.True(Goldens.MaxAbsDiff(row, stepped.Evaluate([prompt[i]])) <= 1e-4f, $"position {i}: batched vs single-step");
            }
            Assert.True(Goldens.MaxAbsDiff(batched.AsSpan((prompt.Length - 1) * vocab, vocab), fullLogits.AsSpan((prompt.Length - 1) * vocab, vocab)) > 1e-3f,
                "sharing the first layer's choice changed nothing");
        }
        finally
        {
            File.Delete(shared);
        }
    }
}
