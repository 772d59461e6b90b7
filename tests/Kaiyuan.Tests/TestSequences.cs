using Kaiyuan.Chat;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;

namespace Kaiyuan.Tests;

/// <summary>Token sequences for the scheduler tests, and what one sequence decodes alone to compare batches with.</summary>
internal static class TestSequences
{
    /// <summary>A seeded prompt of ids 3…511 after a BOS of 1 (every fixture model's vocabulary has 512 ids or more).</summary>
    public static int[] Prompt(int seed, int length)
    {
        var random = new Random(seed);
        var ids = new int[length];
        ids[0] = 1;
        for (int i = 1; i < length; i++) ids[i] = random.Next(3, 512);
        return ids;
    }

    /// <summary>Greedy ids of a single-sequence session: the reference a batched sequence must equal.</summary>
    public static int[] Solo(TransformerModel model, int[] prompt, int count, WorkerPool pool)
    {
        var session = new InferenceSession(model, 256, pool);
        return Generator.Generate(session, prompt, new Sampler(SamplerOptions.Greedy), new GenerationOptions { MaxTokens = count, IgnoreEndOfGeneration = true })
            .Select(t => t.Id).ToArray();
    }

    public static async Task<int[]> Collect(GenerationStream stream)
    {
        var ids = new List<int>();
        await foreach (var t in stream) ids.Add(t.Id);
        return [.. ids];
    }
}
