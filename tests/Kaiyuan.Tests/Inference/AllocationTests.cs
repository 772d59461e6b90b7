using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;

namespace Kaiyuan.Tests.Inference;

/// <summary>Steady-state decoding allocates no managed memory, on the calling thread or on the pool's workers.</summary>
public class AllocationTests
{
    [Theory]
    [InlineData("llama", "llama-f32.gguf")]
    [InlineData("qwen3moe", "qwen3moe-f32.gguf")]
    [InlineData("deepseek2", "deepseek2-f32.gguf")]
    [InlineData("deepseek32", "deepseek32-f32.gguf")]
    public void DecodeStepsAllocateNothing(string folder, string file)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath(folder, file));
        using var pool = new WorkerPool(2);
        var session = new InferenceSession(model, 256, pool);
        int token = 1;
        Span<int> one = stackalloc int[1];
        for (int i = 0; i < 24; i++) token = Step(session, one, token); // warm up: buffers grow, JIT tiers settle

        long caller = GC.GetAllocatedBytesForCurrentThread(), workers = pool.WorkerAllocatedBytes;
        for (int i = 0; i < 32; i++) token = Step(session, one, token);
        long callerDelta = GC.GetAllocatedBytesForCurrentThread() - caller, workerDelta = pool.WorkerAllocatedBytes - workers;

        Assert.Equal(0, callerDelta);
        Assert.Equal(0, workerDelta);
    }

    private static int Step(InferenceSession session, Span<int> one, int token)
    {
        one[0] = token;
        return VectorOps.ArgMax(session.Evaluate(one));
    }
}
