using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Sampling;
using Kaiyuan.Scheduling;
using Kaiyuan.Chat;

namespace Kaiyuan.Tests.Server;

/// <summary>The continuous-batching scheduler against the single-sequence decode loop.</summary>
public sealed class SchedulerTests : IDisposable
{

    // Each test owns its worker pool: a pool serves one caller at a time, and test classes run in parallel.
    private readonly WorkerPool _pool = new(2);

    private int[] Solo(TransformerModel model, int[] prompt, int count) => TestSequences.Solo(model, prompt, count, _pool);


    [Fact]
    public async Task BatchedSequencesEqualSoloDecodingWithChunkedPrefill()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 4, ContextLength = 256, PrefillChunk = 16 }, _pool);
        int[][] prompts = [TestSequences.Prompt(1, 40), TestSequences.Prompt(2, 7), TestSequences.Prompt(3, 70), TestSequences.Prompt(4, 3), TestSequences.Prompt(5, 25)];
        const int count = 12;
        var streams = prompts.Select(p => scheduler.Submit(new GenerationRequest { Prompt = p, MaxTokens = count }, CancellationToken.None)).ToArray();
        var results = await Task.WhenAll(streams.Select(TestSequences.Collect));
        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(Solo(model, prompts[i], count), results[i]);
            Assert.Equal(FinishReason.MaxTokens, streams[i].Finish);
        }
        // Batched: far fewer forward passes than tokens processed one sequence at a time.
        int tokens = prompts.Sum(p => p.Length) + prompts.Length * count;
        Assert.True(scheduler.Steps < prompts.Sum(p => (p.Length + 15) / 16 + count), $"{scheduler.Steps} steps for {tokens} tokens");
        Assert.Equal(0, scheduler.Load.BusySlots);
    }

    [Fact]
    public async Task QueueLimitCancellationAndEndOfGeneration()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 1, ContextLength = 128, MaxQueue = 1 }, _pool);
        using var cancel = new CancellationTokenSource();
        // Cancelled from the scheduler's thread at its first token, so it cannot run all 100 before a slow reader cancels.
        var first = scheduler.Submit(new GenerationRequest
        {
            Prompt = TestSequences.Prompt(1, 8),
            MaxTokens = 100,
            IsEndOfGeneration = _ =>
            {
                cancel.Cancel();
                return false;
            },
        }, cancel.Token);
        var accepted = new List<GenerationStream>();
        Assert.Throws<QueueFullException>(() =>
        {
            for (int i = 0; i < 3; i++) accepted.Add(scheduler.Submit(new GenerationRequest { Prompt = TestSequences.Prompt(2, 8), MaxTokens = 2 }, CancellationToken.None));
        });
        await TestSequences.Collect(first);
        Assert.Equal(FinishReason.Cancelled, first.Finish);
        foreach (var s in accepted) await TestSequences.Collect(s);

        // Stops at the first token the request calls end-of-generation.
        int[] solo = Solo(model, TestSequences.Prompt(3, 8), 5);
        var eog = scheduler.Submit(new GenerationRequest { Prompt = TestSequences.Prompt(3, 8), MaxTokens = 50, IsEndOfGeneration = id => id == solo[2] }, CancellationToken.None);
        var ids = await TestSequences.Collect(eog);
        Assert.Equal(FinishReason.EndOfGeneration, eog.Finish);
        Assert.Equal(solo[..(Array.IndexOf(solo, solo[2]) + 1)], ids);

        Assert.Throws<ContextOverflowException>(() => scheduler.Submit(new GenerationRequest { Prompt = TestSequences.Prompt(4, 128) }, CancellationToken.None));
        var full = scheduler.Submit(new GenerationRequest { Prompt = TestSequences.Prompt(4, 120) }, CancellationToken.None);
        Assert.Equal(9, (await TestSequences.Collect(full)).Length);
        Assert.Equal(FinishReason.ContextFull, full.Finish);
    }

    [Fact]
    public async Task RepeatedPrefixesAreReusedAndReported()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 2, ContextLength = 256 }, _pool);
        var shared = TestSequences.Prompt(10, 100);
        int[] first = [.. shared, .. TestSequences.Prompt(11, 10)[1..]], second = [.. shared, .. TestSequences.Prompt(12, 10)[1..]];
        var a = scheduler.Submit(new GenerationRequest { Prompt = first, MaxTokens = 4 }, CancellationToken.None);
        Assert.Equal(Solo(model, first, 4), await TestSequences.Collect(a));
        var b = scheduler.Submit(new GenerationRequest { Prompt = second, MaxTokens = 4 }, CancellationToken.None);
        Assert.Equal(Solo(model, second, 4), await TestSequences.Collect(b));
        Assert.Equal(0, a.CachedTokens);
        // Three full blocks are shared, and the first 4 rows of the fourth are copied.
        Assert.Equal(100, b.CachedTokens);
        var report = scheduler.Cache;
        Assert.Equal(100, report.HitTokens);
        Assert.Equal(first.Length + second.Length - 100, report.PrefillTokens);
        Assert.Equal(0, report.UsedBlocks);
    }

    [Fact]
    public async Task RandomMixesUnderATinyPoolKeepOutputsAndLeakNoBlock()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        // CacheBytes = 1 asks for less than the minimum: the pool holds one full context (6 blocks) and a spare block,
        // so sequences wait, get preempted and find their blocks evicted.
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 3, ContextLength = 192, PrefillChunk = 32, CacheBytes = 1 }, _pool);
        Assert.Equal(7, scheduler.Cache.CapacityBlocks);
        var random = new Random(5);
        var stems = Enumerable.Range(0, 3).Select(i => TestSequences.Prompt(40 + i, 110)).ToArray();
        var runs = new List<(int[] Prompt, int Count, GenerationStream Stream, Task<int[]> Ids, bool Cancelled)>();
        for (int i = 0; i < 24; i++)
        {
            var stem = stems[random.Next(stems.Length)];
            int[] prompt = [.. stem[..random.Next(2, stem.Length)], .. TestSequences.Prompt(100 + i, random.Next(2, 30))[1..]];
            int count = random.Next(1, 30);
            bool cancel = i % 5 == 3;
            var cts = new CancellationTokenSource();
            var stream = scheduler.Submit(new GenerationRequest { Prompt = prompt, MaxTokens = count }, cts.Token);
            if (cancel) cts.CancelAfter(random.Next(0, 20));
            runs.Add((prompt, count, stream, TestSequences.Collect(stream), cancel));
            if (i % 6 == 5) await Task.WhenAll(runs.Select(r => r.Ids));
        }
        await Task.WhenAll(runs.Select(r => r.Ids));
        foreach (var r in runs.Where(r => !r.Cancelled))
            Assert.Equal(Solo(model, r.Prompt, r.Count), await r.Ids);
        foreach (var r in runs.Where(r => r.Cancelled))
            Assert.Equal(Solo(model, r.Prompt, r.Count)[..(await r.Ids).Length], await r.Ids);

        var report = scheduler.Cache;
        Assert.True(report.Evictions > 0, "the pool was meant to be too small to keep everything");
        Assert.True(report.HitTokens > 0);
        Assert.Equal(0, report.UsedBlocks);
        Assert.Equal(report.CapacityBlocks, report.CachedBlocks + report.FreeBlocks);
        Assert.Equal(0, scheduler.Load.BusySlots);
    }

    /// <summary>
    /// A long prompt that arrives while others decode prefills on threads of its own (SplitPrefill), chunk by chunk: every
    /// output equals solo decoding, a cancelled long prompt stops at a chunk's end, and no block is left in use.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ALongPromptBesideDecodingStreamsPrefillsOnItsOwnThreadsWithTheSameOutputs(bool background)
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 4, ContextLength = 256, PrefillChunk = 32, BackgroundPrefill = background }, _pool);
        int[][] running = [TestSequences.Prompt(61, 5), TestSequences.Prompt(62, 9)];
        var streams = running.Select(p => scheduler.Submit(new GenerationRequest { Prompt = p, MaxTokens = 240 }, CancellationToken.None)).ToArray();
        // Both decode before the long prompts arrive (a first token means the prompt is done).
        var decoding = running.Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
        var collected = streams.Select((s, i) => CollectSignallingFirst(s, decoding[i])).ToArray();
        await Task.WhenAll(decoding.Select(d => d.Task));
        int[] longPrompt = TestSequences.Prompt(63, 200), cancelledPrompt = TestSequences.Prompt(64, 220);
        var longStream = scheduler.Submit(new GenerationRequest { Prompt = longPrompt, MaxTokens = 10 }, CancellationToken.None);
        using var cts = new CancellationTokenSource();
        var cancelled = scheduler.Submit(new GenerationRequest { Prompt = cancelledPrompt, MaxTokens = 10 }, cts.Token);
        var cancelledIds = TestSequences.Collect(cancelled);
        cts.CancelAfter(2);

        Assert.Equal(Solo(model, longPrompt, 10), await TestSequences.Collect(longStream));
        for (int i = 0; i < running.Length; i++) Assert.Equal(Solo(model, running[i], 240), await collected[i]);
        int[] partial = await cancelledIds;
        Assert.Equal(Solo(model, cancelledPrompt, 10)[..partial.Length], partial);
        Assert.True(scheduler.SplitChunks > 0, "the long prompt was meant to prefill beside the decoding streams");
        if (OperatingSystem.IsLinux())
            Assert.Equal(background ? 5 : 0, BackgroundThread.LinuxPolicy(scheduler.PrefillLinuxThreadId!.Value)); // SCHED_IDLE : SCHED_OTHER
        var report = scheduler.Cache;
        Assert.Equal(0, report.UsedBlocks);
        Assert.Equal(0, scheduler.Load.BusySlots);
    }

    private static async Task<int[]> CollectSignallingFirst(GenerationStream stream, TaskCompletionSource first)
    {
        var ids = new List<int>();
        await foreach (var t in stream)
        {
            ids.Add(t.Id);
            first.TrySetResult();
        }
        first.TrySetResult();
        return [.. ids];
    }

    [Fact]
    public async Task ASequenceThatRunsOutOfBlocksIsPreemptedAndResumesWithTheSameOutput()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        // Five blocks: two 60-token prompts fit (two blocks each), but both cannot grow to 120 tokens (four each).
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 2, ContextLength = 128, CacheBytes = 1 }, _pool);
        Assert.Equal(5, scheduler.Cache.CapacityBlocks);
        int[][] prompts = [TestSequences.Prompt(60, 60), TestSequences.Prompt(61, 60)];
        var streams = prompts.Select(p => scheduler.Submit(new GenerationRequest { Prompt = p, MaxTokens = 60 }, CancellationToken.None)).ToArray();
        var results = await Task.WhenAll(streams.Select(TestSequences.Collect));
        for (int i = 0; i < prompts.Length; i++) Assert.Equal(Solo(model, prompts[i], 60), results[i]);
        var report = scheduler.Cache;
        Assert.True(report.Preemptions > 0, "one sequence had to make way mid-generation");
        Assert.Equal(0, report.UsedBlocks);
        Assert.Equal(report.CapacityBlocks, report.CachedBlocks + report.FreeBlocks);
    }

    [Fact]
    public async Task EmbeddingsArePooledAndNormalised()
    {
        using var model = ModelLoader.Load(Fixtures.ModelPath("stories260K", "stories260K-f32.gguf"));
        using var scheduler = new ContinuousBatchScheduler(model, new SchedulerOptions { Slots = 1, ContextLength = 128, PrefillChunk = 8 }, _pool);
        var vectors = await scheduler.EmbedAsync([TestSequences.Prompt(1, 20), TestSequences.Prompt(2, 5), TestSequences.Prompt(1, 20)], CancellationToken.None);
        Assert.Equal(3, vectors.Length);
        Assert.All(vectors, v => Assert.Equal(1.0, Math.Sqrt(v.Sum(x => (double)x * x)), 4));
        Assert.Equal(vectors[0], vectors[2]);
        Assert.NotEqual(vectors[0], vectors[1]);
    }

    [Fact]
    public void ChatMlOutputParserSplitsAcrossChunkBoundaries()
    {
        var parser = new ChatMlFormatter().CreateParser("<|im_start|>assistant\n", toolsOffered: true);
        string output = "<think>hmm</think>\n\nSure.<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call>";
        var deltas = new List<ChatDelta>();
        foreach (char c in output) deltas.AddRange(parser.Push(c.ToString()));
        deltas.AddRange(parser.Finish());
        Assert.Equal("hmm", string.Concat(deltas.Where(d => d.Kind == ChatDeltaKind.Reasoning).Select(d => d.Text)).Trim());
        Assert.Equal("Sure.", string.Concat(deltas.Where(d => d.Kind == ChatDeltaKind.Content).Select(d => d.Text)).Trim());
        var calls = new ToolCallAccumulator();
        foreach (var d in deltas.Where(d => d.Kind == ChatDeltaKind.ToolCall)) calls.Add(d);
        var call = Assert.Single(calls.Calls);
        Assert.Equal("f", call.Name);
        Assert.Equal(1, System.Text.Json.JsonDocument.Parse(call.Arguments).RootElement.GetProperty("x").GetInt32());

        // Without tools on offer, call syntax is plain text.
        var plain = new ChatMlFormatter().CreateParser("", toolsOffered: false);
        var text = plain.Push("a <tool_call>{}</tool_call>").Concat(plain.Finish()).Select(d => d.Text);
        Assert.Equal("a <tool_call>{}</tool_call>", string.Concat(text));
    }

    public void Dispose() => _pool.Dispose();
}
