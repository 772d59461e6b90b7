using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;

namespace Kaiyuan.Tests.Models;

/// <summary>
/// A forward pass gives the same bits on any number of threads. The thread tuner relies on it: it changes a session's
/// thread count between decode steps by timing, so any difference would make greedy output depend on the machine's load.
/// </summary>
public class ThreadCountTests
{
    public static TheoryData<string, string> Files => new()
    {
        { "llama", "q4_k_m" }, { "llama", "iq2_xxs" }, { "qwen2", "q8_0" }, { "qwen3moe", "iq4_xs" }, { "deepseek2", "q4_k_m" },
        { "deepseek32", "f32" }, { "glm4moe", "q8_0" }, { "qwen35moe", "f32" }, { "minimax-m2", "f32" },
    };

    [Theory]
    [MemberData(nameof(Files))]
    public void PromptAndDecodeLogitsAreIdenticalOnOneTwoAndThreeThreads(string folder, string type)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath(folder, $"{folder}-{type}.gguf"));
        var prompt = Goldens.Load(folder, type)[0].PromptIds;
        float[][]? reference = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            using var pool = new WorkerPool(threads);
            var session = new InferenceSession(model, 512, pool);
            var steps = new List<float[]> { session.Evaluate(prompt).ToArray() };
            // Decode steps of one and of several tokens (a speculative verification's shape).
            for (int i = 0; i < 3; i++) steps.Add(session.Evaluate([VectorOps.ArgMax(steps[^1])]).ToArray());
            steps.Add(session.Evaluate([1, 2, 3, 4, 5]).ToArray());
            if (reference is null) { reference = [.. steps]; continue; }
            for (int s = 0; s < steps.Count; s++)
                Assert.True(reference[s].AsSpan().SequenceEqual(steps[s]), $"{folder}-{type}: step {s} differs between 1 and {threads} threads");
        }
    }
}
