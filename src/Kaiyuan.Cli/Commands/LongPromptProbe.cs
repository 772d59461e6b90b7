using System.Diagnostics;

namespace Kaiyuan.Cli.Commands;

/// <summary>What a long prompt does to streams already running: their inter-token latency before and while it prefills, and how soon it answers.</summary>
/// <param name="PromptTokens">Tokens of the long prompt.</param>
/// <param name="FirstByteMs">From sending it to the first line of its response (headers and a keep-alive or first chunk).</param>
/// <param name="TtftMs">From sending it to its first generated token.</param>
/// <param name="IdleItl">The running streams' inter-token gaps (ms) before the long prompt was sent.</param>
/// <param name="LoadedItl">Their gaps while it prefilled (from sending it to its first token).</param>
/// <param name="IdleAfterItl">Their gaps once it answered, idle again at the depth they had by then.</param>
internal sealed record LongPromptResult(int PromptTokens, double FirstByteMs, double TtftMs, double[] IdleItl, double[] LoadedItl, double[] IdleAfterItl);

/// <summary>
/// <c>kaiyuan bench prefix --long N</c>: two streams decode; after their latency settles, one prompt of N tokens arrives and
/// prefills while they keep decoding. Stall-free batching should keep their gaps within about 2× of idle and answer the
/// long request's headers at once.
/// </summary>
internal static class LongPromptProbe
{
    // 64 idle gaps per stream: with 24, the idle p50 and p95 moved by a third between runs of one build.
    private const int Streams = 2, IdleGaps = 64, StreamPromptTokens = 32;

    public static async Task<LongPromptResult> RunAsync(HttpClient http, Random random, int[] vocabulary, int longTokens, int context)
    {
        var clock = Stopwatch.StartNew();
        var arrivals = Enumerable.Range(0, Streams).Select(_ => new List<double>()).ToArray();
        using var stop = new CancellationTokenSource();
        var prompts = Enumerable.Range(0, Streams).Select(i => Draw(random, vocabulary, StreamPromptTokens, salt: i)).ToArray();
        var streams = Enumerable.Range(0, Streams).Select(i => Task.Run(async () =>
        {
            int[] prompt = prompts[i];
            try
            {
                await StreamingCompletion.PostAsync(http, "v1/completions", new Dictionary<string, object>
                {
                    ["prompt"] = prompt,
                    ["max_tokens"] = context - StreamPromptTokens - 1,
                    ["temperature"] = 0,
                    ["ignore_eos"] = true,
                }, cancel: stop.Token, onOutput: _ =>
                {
                    lock (arrivals[i]) arrivals[i].Add(clock.Elapsed.TotalMilliseconds);
                });
            }
            catch (OperationCanceledException)
            {
            }
        })).ToArray();

        // Until every stream has this many arrivals (a stream that ended early throws its error here).
        async Task WaitForArrivals(Func<int, int> count)
        {
            while (Enumerable.Range(0, Streams).Any(i => Count(arrivals[i]) < count(i)))
            {
                if (streams.FirstOrDefault(t => t.IsCompleted) is { } ended) await ended;
                await Task.Delay(20);
            }
        }

        // Idle: both streams decoding, nothing else.
        await WaitForArrivals(_ => IdleGaps + 4);
        double sent = clock.Elapsed.TotalMilliseconds;
        double firstByte = double.NaN;
        var longRequest = await StreamingCompletion.PostAsync(http, "v1/completions", new Dictionary<string, object>
        {
            ["prompt"] = Draw(random, vocabulary, longTokens, salt: 99),
            ["max_tokens"] = 1,
            ["temperature"] = 0,
            ["ignore_eos"] = true,
        }, onFirstLine: ms => firstByte = ms);
        double answered = sent + longRequest.TtftMs;
        // Idle again at the depth the streams have reached: their own contexts grew by thousands of tokens while the
        // prompt prefilled, which alone slows their steps (attention reads every row they hold).
        int[] atAnswer = arrivals.Select(Count).ToArray();
        await WaitForArrivals(i => atAnswer[i] + IdleGaps + 2);
        await stop.CancelAsync();
        await Task.WhenAll(streams);

        var idle = new List<double>();
        var loaded = new List<double>();
        var idleAfter = new List<double>();
        for (int i = 0; i < Streams; i++)
        {
            double[] times;
            lock (arrivals[i]) times = [.. arrivals[i]];
            for (int j = 1; j < times.Length; j++)
            {
                double gap = times[j] - times[j - 1];
                // Skip each stream's first gaps: its own prompt and the JIT's warm-up; and the first after the answer.
                if (times[j] <= sent && j >= 4) idle.Add(gap);
                else if (times[j - 1] >= sent && times[j] <= answered) loaded.Add(gap);
                else if (j > atAnswer[i] && j <= atAnswer[i] + IdleGaps) idleAfter.Add(gap);
            }
        }
        return new LongPromptResult(longTokens, firstByte, longRequest.TtftMs, [.. idle], [.. loaded], [.. idleAfter]);
    }

    private static int Count(List<double> list)
    {
        lock (list) return list.Count;
    }

    private static int[] Draw(Random random, int[] vocabulary, int count, int salt)
    {
        var ids = new int[count];
        for (int i = 0; i < count; i++) ids[i] = vocabulary[random.Next(vocabulary.Length)];
        // Different first tokens: no prefix is shared with the other streams or part A.
        ids[0] = vocabulary[(salt * 31 + 7) % vocabulary.Length];
        return ids;
    }

    public static double Percentile(double[] values, double p)
    {
        if (values.Length == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        return sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
    }
}
