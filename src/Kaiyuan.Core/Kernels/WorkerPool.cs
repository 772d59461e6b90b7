namespace Kaiyuan.Kernels;

/// <summary>
/// Splits an operation's index range across a fixed number of threads. The calling thread takes a share of the
/// work itself, so a pool of one thread runs everything inline.
/// </summary>
public sealed class WorkerPool
{
    public static WorkerPool Shared { get; } = new(Environment.ProcessorCount);

    public WorkerPool(int threads) => Threads = Math.Max(1, threads);

    public int Threads { get; }

    /// <summary>Calls <paramref name="body"/>(start, end) over contiguous chunks of [0, count).</summary>
    public void For(int count, Action<int, int> body, int minChunk = 1) => For(count, (s, e, _) => body(s, e), minChunk);

    /// <summary>Calls <paramref name="body"/>(start, end, worker) with worker in [0, Threads): per-worker scratch.</summary>
    public void For(int count, Action<int, int, int> body, int minChunk = 1)
    {
        int workers = Math.Min(Threads, Math.Max(1, count / Math.Max(1, minChunk)));
        if (workers <= 1)
        {
            body(0, count, 0);
            return;
        }
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
        {
            long start = (long)count * w / workers, end = (long)count * (w + 1) / workers;
            if (end > start) body((int)start, (int)end, w);
        });
    }
}
