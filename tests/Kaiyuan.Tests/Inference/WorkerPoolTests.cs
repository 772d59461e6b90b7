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
