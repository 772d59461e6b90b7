using Kaiyuan.Gguf;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Tensors;
using Kaiyuan.Tests.Models;

namespace Kaiyuan.Tests.Inference;

public class KvCacheTests
{
    /// <summary>An F16 cache rounds keys and values to 11-bit mantissas; logits stay within the F16 bound of the fixtures README.</summary>
    [Theory]
    [InlineData("llama")]
    [InlineData("deepseek2")]
    public void F16CacheStaysCloseToGoldens(string folder)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath(folder, $"{folder}-f32.gguf"));
        using var pool = new WorkerPool(2);
        var session = new InferenceSession(model, 128, pool, cacheType: GgmlType.F16);
        Assert.Equal(model.CacheRowWidths.Sum() * 2L, session.Cache.BytesPerToken);
        var golden = Goldens.Load(folder, "f32")[0];
        var logits = session.Evaluate(golden.PromptIds).ToArray();
        for (int step = 0; step < golden.Ids.Length; step++)
        {
            Assert.True(Goldens.MaxAbsDiff(logits, golden.Logits[step]) < 0.05f, $"step {step}");
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
