using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Kaiyuan.Sampling;

namespace Kaiyuan.AspNetCore.Api;

/// <summary>
/// OpenAI's <c>n</c>: several answers to one prompt, each its own sequence in the scheduler (the prompt's prefix is
/// shared through the prefix cache), streamed interleaved as they come.
/// </summary>
internal static class Choices
{
    /// <summary>The <c>n</c> of a request (1…128; OpenAI's <c>best_of</c> is refused).</summary>
    public static int Count(JsonRequest r, ServerState state)
    {
        int n = r.Int("n", 1, 128) ?? 1;
        int room = state.Options.Parallel + state.Options.MaxQueue;
        if (n > room) throw RequestException.BadRequest($"'n' is {n}, more answers than this server can run or queue at once ({room})", "n");
        return n;
    }

    /// <summary>
    /// The sampling of choice <paramref name="index"/>: with a seed, choice i samples with seed + i, so the choices are
    /// reproducible and still differ (greedy ones are identical whatever the seed); without one, each draws its own.
    /// </summary>
    public static SamplerOptions Sampling(SamplerOptions sampling, int index) =>
        index > 0 && sampling.Seed is { } seed ? sampling with { Seed = unchecked(seed + (ulong)index) } : sampling;

    /// <summary>
    /// Reads several streams at once: each item tagged with its stream's index as it comes, and each stream's end as an
    /// item with <c>End</c> set (its outcome is complete then). A stream that fails ends the whole with its error. Leaving
    /// early is for the owner of the streams to follow by disposing them, which ends their readers.
    /// </summary>
    public static async IAsyncEnumerable<(int Index, T? Item, bool End)> MergeAsync<T>(IReadOnlyList<IAsyncEnumerable<T>> sources,
        [EnumeratorCancellation] CancellationToken cancel)
    {
        if (sources.Count == 1)
        {
            await foreach (var item in sources[0].WithCancellation(cancel)) yield return (0, item, false);
            yield return (0, default, true);
            yield break;
        }
        var channel = Channel.CreateUnbounded<(int, T?, bool)>(new UnboundedChannelOptions { SingleReader = true });
        int remaining = sources.Count;
        for (int i = 0; i < sources.Count; i++)
        {
            int index = i;
            _ = Task.Run(async () =>
            {
                try
                {
                    await foreach (var item in sources[index].WithCancellation(cancel)) channel.Writer.TryWrite((index, item, false));
                    channel.Writer.TryWrite((index, default, true));
                    if (Interlocked.Decrement(ref remaining) == 0) channel.Writer.TryComplete();
                }
                catch (Exception e)
                {
                    channel.Writer.TryComplete(e);
                }
            }, CancellationToken.None);
        }
        await foreach (var item in channel.Reader.ReadAllAsync(cancel)) yield return item;
    }
}
