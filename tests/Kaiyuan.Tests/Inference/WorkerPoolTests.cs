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
}

/// <summary>
/// The pool against other busy threads on the machine (run alone: the tests' own parallel load would be such a
/// neighbour). Asserts what the OS scheduler makes certain, not speed: with as many spinning threads as CPUs beside it,
/// the pool's threads wait for a CPU and it drops to one; once they stop, it tries all of them again.
/// </summary>
[CollectionDefinition("Oversubscription", DisableParallelization = true)]
public class OversubscriptionCollection;

[Collection("Oversubscription")]
public class WorkerPoolContentionTests
{
    private sealed class BusyJob : IParallelJob
    {
        public void Run(int start, int end, int worker)
        {
            double x = 0;
            for (int i = start * 200; i < end * 200; i++) x += Math.Sqrt(i);
            if (x < 0) throw new InvalidOperationException();
        }
    }

    [Fact]
    public void UsesFewerThreadsWhileOtherThreadsKeepTheCpusBusy()
    {
        if (!RunQueueClock.Supported)
            Assert.Skip("needs Linux's per-thread scheduler statistics (/proc/thread-self/schedstat)");
        using var pool = new WorkerPool(2);
        var job = new BusyJob();
        using var stop = new CancellationTokenSource();
        var neighbours = Enumerable.Range(0, Environment.ProcessorCount).Select(_ => new Thread(() =>
        {
            while (!stop.IsCancellationRequested) Thread.SpinWait(1000);
        })
        { IsBackground = true }).ToList();
        neighbours.ForEach(t => t.Start());
        int fewest = RunUntil(pool, job, () => pool.ActiveThreads == 1, TimeSpan.FromSeconds(20));
        stop.Cancel();
        neighbours.ForEach(t => t.Join());
        Assert.Equal(1, fewest);
        // The pool tries all its threads again within the back-off (two seconds at most). Whether they stay depends on
        // what else runs on the machine, which a test cannot promise; that the probe comes back is what is asserted.
        Assert.Equal(2, RunUntil(pool, job, () => pool.ActiveThreads == 2, TimeSpan.FromSeconds(30)));
    }

    private static int RunUntil(WorkerPool pool, IParallelJob job, Func<bool> done, TimeSpan limit)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!done() && clock.Elapsed < limit) pool.Run(job, 256);
        return pool.ActiveThreads;
    }
}
