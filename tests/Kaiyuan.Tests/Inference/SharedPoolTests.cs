using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Tests.Models;

namespace Kaiyuan.Tests.Inference;

public class SharedPoolTests
{
    /// <summary>Sessions on several threads may share one pool: their operations take turns and results stay exact.</summary>
    [Fact]
    public async Task ConcurrentSessionsOnOnePoolMatchGoldens()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("qwen3", "qwen3-f32.gguf"));
        using var pool = new WorkerPool(2);
        var cases = Goldens.Load("qwen3", "f32");
        var tasks = Enumerable.Range(0, 4).Select(i => Task.Run(() =>
        {
            var c = cases[i % cases.Length];
            var session = new InferenceSession(model, 64, pool);
            var logits = session.Evaluate(c.PromptIds).ToArray();
            for (int step = 0; step < c.Ids.Length; step++)
            {
                Assert.True(Goldens.MaxAbsDiff(logits, c.Logits[step]) <= 1e-3f);
                logits = session.Evaluate([c.Ids[step]]).ToArray();
            }
        }, TestContext.Current.CancellationToken)).ToArray();
        await Task.WhenAll(tasks);
    }
}
