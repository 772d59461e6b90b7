using Kaiyuan.Kernels;

namespace Kaiyuan.Tests.Inference;

public class WorkerPoolTests
{
    private sealed class CountingJob : IParallelJob
    {
        public int[] Hits = [];
        public int SlowWorker = -1;

        public void Run(int start, int end, int worker)
        {
            // A worker descheduled mid-chunk: the operation must wait for it, and still see each index once.
            if (worker == SlowWorker && start % 7 == 0) Thread.Sleep(1);
            for (int i = start; i < end; i++) Interlocked.Increment(ref Hits[i]);
        }
    }

    /// <summary>
    /// Thousands of operations of random sizes, some with a worker that stalls: every index runs exactly once per
    /// operation, whichever threads took part (claims are tagged by operation, so a late worker never runs a chunk twice
    /// or one of the next operation).
    /// </summary>
    [Fact]
    public void EveryIndexRunsExactlyOnceWhateverTheWorkersTiming()
    {
        using var pool = new WorkerPool(4);
        var job = new CountingJob();
        var random = new Random(17);
        for (int op = 0; op < 3000; op++)
        {
            int count = random.Next(0, 300);
            job.Hits = new int[count];
            job.SlowWorker = op % 50 == 0 ? random.Next(0, 4) : -1;
            // Now and then let the workers fall asleep, so wake-ups race with the next operation too.
            if (op % 500 == 0) Thread.Sleep(3);
            pool.Run(job, count, minChunk: random.Next(1, 9));
            for (int i = 0; i < count; i++)
                Assert.True(job.Hits[i] == 1, $"operation {op}: index {i} of {count} ran {job.Hits[i]} times");
        }
    }

    private sealed class OrderJob : IParallelJob
    {
        public readonly System.Collections.Concurrent.ConcurrentQueue<(int Worker, int Start)> Chunks = new();
        public int SlowWorker = -1;

        public void Run(int start, int end, int worker)
        {
            if (worker == SlowWorker) Thread.Sleep(1);
            Chunks.Enqueue((worker, start));
        }
    }

    /// <summary>
    /// Each thread runs its own consecutive chunks front to back (one stream through a matrix, which the prefetchers
    /// follow), and a thread that has run out takes the others' from the back: a stalled worker's share goes to the
    /// caller, which finishes the operation, every chunk once.
    /// </summary>
    [Fact]
    public void ThreadsRunTheirOwnChunksInOrderAndTakeAStalledWorkersFromTheBack()
    {
        using var pool = new WorkerPool(3);
        var random = new Random(5);
        for (int op = 0; op < 200; op++)
        {
            int count = random.Next(24, 200);
            var job = new OrderJob { SlowWorker = op % 2 == 0 ? 1 : -1 };
            pool.Run(job, count, minChunk: 1);
            var chunks = job.Chunks.ToArray();
            var starts = chunks.Select(c => c.Start).Order().ToArray();
            Assert.Equal(starts.Distinct().Count(), chunks.Length);
            Assert.Equal(0, starts[0]);
            // Every chunk's run: the threads' runs are equal thirds of the chunks.
            int total = chunks.Length;
            int Owner(int start) => Array.IndexOf(starts, start) * 3 / total;
            foreach (int worker in chunks.Select(c => c.Worker).Distinct())
            {
                var mine = chunks.Where(c => c.Worker == worker).Select(c => c.Start).ToArray();
                var own = mine.Where(s => Owner(s) == worker).ToArray();
                Assert.True(own.SequenceEqual(own.Order()), $"operation {op}: worker {worker} ran its own chunks out of order: {string.Join(",", own)}");
                foreach (int other in Enumerable.Range(0, 3).Where(o => o != worker))
                {
                    var taken = mine.Where(s => Owner(s) == other).ToArray();
                    Assert.True(taken.SequenceEqual(taken.OrderDescending()), $"operation {op}: worker {worker} took worker {other}'s chunks not from the back: {string.Join(",", taken)}");
                }
            }
            if (job.SlowWorker == 1)
                Assert.Contains(chunks, c => c.Worker != 1 && Owner(c.Start) == 1);
        }
    }

    private sealed class FailingJob : IParallelJob
    {
        public void Run(int start, int end, int worker)
        {
            if (start == 0) throw new InvalidOperationException("chunk 0 failed");
        }
    }

    [Fact]
    public void AChunksExceptionReachesTheCallerAndThePoolGoesOn()
    {
        using var pool = new WorkerPool(3);
        var error = Assert.Throws<InvalidOperationException>(() => pool.Run(new FailingJob(), 1000));
        Assert.Equal("chunk 0 failed", error.Message);
        var job = new CountingJob { Hits = new int[500] };
        pool.Run(job, 500);
        Assert.All(job.Hits, h => Assert.Equal(1, h));
    }

    private sealed class ThreadIdJob : IParallelJob
    {
        public readonly System.Collections.Concurrent.ConcurrentDictionary<int, int> Workers = new();

        public void Run(int start, int end, int worker)
        {
            Workers.TryAdd(worker, BackgroundThread.CurrentLinuxThreadId() ?? -1);
            // Long enough that every worker wakes and claims a chunk of its own.
            Thread.Sleep(2);
        }
    }

    /// <summary>
    /// With fewer active threads the others take no chunk, even those still spinning from an operation on every thread
    /// just before, and every index still runs once; set back, every thread takes part again.
    /// </summary>
    [Fact]
    public void OnlyTheActiveThreadsTakePart()
    {
        using var pool = new WorkerPool(3);
        var all = new ThreadIdJob();
        for (int attempt = 0; attempt < 50 && all.Workers.Count < 3; attempt++) pool.Run(all, 64, minChunk: 1);
        Assert.Equal(3, all.Workers.Count);
        foreach (int active in new[] { 2, 1 })
        {
            var job = new ThreadIdJob();
            var count = new CountingJob();
            for (int op = 0; op < 20; op++)
            {
                // Every worker busy, so each is spinning when the restricted operation comes.
                pool.ActiveThreads = 3;
                count.Hits = new int[3000];
                pool.Run(count, 3000);
                pool.ActiveThreads = active;
                pool.Run(job, 16, minChunk: 1);
                count.Hits = new int[200];
                pool.Run(count, 200);
                Assert.All(count.Hits, h => Assert.Equal(1, h));
            }
            Assert.All(job.Workers.Keys, w => Assert.True(w < active, $"worker {w} ran a chunk with {active} active threads"));
        }
        pool.ActiveThreads = 9;
        Assert.Equal(3, pool.ActiveThreads);
        pool.ActiveThreads = 0;
        Assert.Equal(1, pool.ActiveThreads);
    }

    /// <summary>A background pool's own threads run in Linux's SCHED_IDLE class (policy 5); the caller's thread is left as it was.</summary>
    [Fact]
    public void ABackgroundPoolsWorkersRunInTheIdleSchedulingClass()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var pool = new WorkerPool(3, background: true);
        var job = new ThreadIdJob();
        for (int attempt = 0; attempt < 50 && job.Workers.Count < 3; attempt++) pool.Run(job, 64, minChunk: 1);
        Assert.Equal(3, job.Workers.Count);
        Assert.Equal(0, BackgroundThread.LinuxPolicy(job.Workers[0]));
        Assert.Equal(5, BackgroundThread.LinuxPolicy(job.Workers[1]));
        Assert.Equal(5, BackgroundThread.LinuxPolicy(job.Workers[2]));
    }
}
