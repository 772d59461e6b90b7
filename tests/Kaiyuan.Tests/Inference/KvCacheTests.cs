using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Tensors;
using Kaiyuan.Tests.Models;

namespace Kaiyuan.Tests.Inference;

public class KvCacheTests
{
    /// <summary>
    /// An F16 cache rounds keys and values to 11-bit mantissas, a Q8_0 cache to 8 bits a block; logits stay within the F16
    /// bound of the fixtures README, and a measured bound for Q8_0. Grouped-query models (qwen3: 2 KV heads) read each
    /// group's heads alone from a converted cache, the others whole rows.
    /// </summary>
    [Theory]
    [InlineData("llama", GgmlType.F16)]
    [InlineData("deepseek2", GgmlType.F16)]
    [InlineData("qwen3", GgmlType.F16)]
    [InlineData("qwen3", GgmlType.Q8_0)]
    [InlineData("qwen35", GgmlType.Q8_0)]
    public void ConvertedCachesStayCloseToGoldens(string folder, GgmlType type)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath(folder, $"{folder}-f32.gguf"));
        using var pool = new WorkerPool(2);
        var session = new InferenceSession(model, 128, pool, cacheType: type);
        Assert.Equal(model.CacheRowWidths.Sum(w => GgmlTypeInfo.RowBytes(type, w)), session.Cache.BytesPerToken);
        var golden = Goldens.Load(folder, "f32")[0];
        var logits = session.Evaluate(golden.PromptIds).ToArray();
        float bound = type == GgmlType.F16 ? 0.05f : 0.15f;
        for (int step = 0; step < golden.Ids.Length; step++)
        {
            Assert.True(Goldens.MaxAbsDiff(logits, golden.Logits[step]) < bound, $"step {step}: {Goldens.MaxAbsDiff(logits, golden.Logits[step])}");
            logits = session.Evaluate([golden.Ids[step]]).ToArray();
        }
    }

    [Fact]
    public void RowsRoundTripPerType()
    {
        var row = Enumerable.Range(0, 64).Select(i => MathF.Sin(i) * 3).ToArray();
        var back = new float[64];
        foreach (var (type, tolerance) in new[] { (GgmlType.F32, 0f), (GgmlType.F16, 2e-3f) })
        {
            var cache = new KvCache([64, 64], sequences: 2, contextLength: 4, type);
            Assert.True(cache.Reserve(1, 4));
            cache.Write(1, 1, 3, row);
            cache.Read(1, 1, 3, back);
            Assert.True(Goldens.MaxAbsDiff(row, back) <= tolerance, type.ToString());
        }
        Assert.Throws<NotSupportedException>(() => new KvCache([64], 1, 4, GgmlType.Q4_K));
    }
}
