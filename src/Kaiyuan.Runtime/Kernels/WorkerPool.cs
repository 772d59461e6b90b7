namespace Kaiyuan.Kernels;

/// <summary>A unit of parallel work: processes indices [start, end) on behalf of worker <c>worker</c>.</summary>
internal interface IParallelJob
{
    void Run(int start, int end, int worker);
}

/// <summary>
/// A persistent pool of worker threads that splits each operation's index range into a few contiguous chunks per
/// thread, which the caller and the workers claim in turn. An operation is complete when all its chunks are, not when
/// every worker has checked in: a worker the OS has not scheduled (another busy process on its core) costs nothing,
/// the others take its chunks (decode with `-t 2` beside one busy process: 19–22 → 24–26 tokens/s, no slower than
/// `-t 1`). Claims carry the operation's generation, so a worker that wakes late can never take a
/// chunk of a later operation with a stale view of it. Workers spin briefly between operations (a decode step issues
/// hundreds of small ones) before sleeping. Jobs are reusable objects owned by the pool (<see cref="Job{T}"/>), so
/// dispatching allocates nothing. One caller at a time: an operation must finish before the next starts.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    private static int s_jobTypes;
    private static class JobId<T> { public static readonly int Value = Interlocked.Increment(ref s_jobTypes) - 1; }

    private readonly Thread[] _threads;
    // Kernel-backed events: waking a sleeping worker must not allocate (the slim events' monitor path can).
    private readonly AutoResetEvent[] _wake;
    private readonly long[] _workerAllocated;
    private int _started;
    private object?[] _jobs = new object?[8];
    private IParallelJob? _job;
    private int _count, _done, _helpers;
    private long _generation;
    // The operation's claim word: generation (high 32 bits), chunk count (16 bits), next chunk (16 bits). One CAS both
    // checks that a chunk belongs to the operation a worker woke for and takes it.
    private long _claim;
    private readonly int[] _sleeping;
    // Half a millisecond of spinning before a worker sleeps: long enough to bridge the gaps between the ops of a
    // decode step and between steps (so no kernel wake-up is needed there), short enough not to burn a core when idle.
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 2000;
    private volatile bool _disposed;
    private Exception? _error;

    private static readonly Lazy<WorkerPool> SharedPool = new(() => new WorkerPool(Environment.ProcessorCount));
    public static WorkerPool Shared => SharedPool.Value;

    /// <param name="threads">Threads an operation runs on, the caller's included.</param>
    /// <param name="background">Run the pool's own threads in the OS's lowest scheduling class (<see cref="BackgroundThread"/>).</param>
    public WorkerPool(int threads, bool background = false)
    {
        Threads = Math.Max(1, threads);
        _active = Threads;
        _threads = new Thread[Threads - 1];
        _wake = new AutoResetEvent[Threads - 1];
        _sleeping = new int[Threads];
        _workerAllocated = new long[Threads];
        for (int i = 0; i < _threads.Length; i++)
        {
            _wake[i] = new AutoResetEvent(false);
            int worker = i + 1;
            _threads[i] = new Thread(() => WorkerLoop(worker, background))
            { IsBackground = true, Name = background ? $"kaiyuan-bg-{worker}" : $"kaiyuan-worker-{worker}" };
            _threads[i].Start();
        }
        // Wait until every worker runs and has taken its per-thread state. On a loaded machine a new thread may not be
        // scheduled for milliseconds, and its start-up allocations then counted in whatever ran next (the likely cause
        // of the 7,312 bytes CI once saw a worker allocate in decode steps that allocate nothing).
        // Bounded: a pool whose worker never starts still runs every chunk on the calling thread.
        SpinWait.SpinUntil(() => Volatile.Read(ref _started) >= _threads.Length, TimeSpan.FromSeconds(10));
    }

    public int Threads { get; }

    private volatile int _active;

    /// <summary>
    /// Threads that operations run on from now, 1…<see cref="Threads"/> (a <see cref="ThreadTuner"/>'s choice for a
    /// pass); the others sleep. Results do not depend on it.
    /// </summary>
    public int ActiveThreads
    {
        get => _active;
        set => _active = Math.Clamp(value, 1, Threads);
    }

    /// <summary>Managed bytes allocated on the pool's own worker threads, as of the chunks they last finished (for allocation tests).</summary>
    public long WorkerAllocatedBytes => _workerAllocated.Sum();

    private readonly object _gate = new();

    /// <summary>
    /// Holds the pool for one caller: operations from several threads (sessions sharing a pool) run one after another
    /// instead of trampling the pool's reusable jobs. Take it around <see cref="Job{T}"/>, the job's setup and
    /// <see cref="Run"/>. Re-entrant, allocation-free.
    /// </summary>
    public Scope Enter()
    {
        Monitor.Enter(_gate);
        return new Scope(_gate);
    }

    public readonly ref struct Scope(object gate)
    {
        public void Dispose() => Monitor.Exit(gate);
    }

    /// <summary>The pool's reusable instance of a job type; call it inside <see cref="Enter"/>.</summary>
    public T Job<T>() where T : class, IParallelJob, new()
    {
        if (!Monitor.IsEntered(_gate)) throw new InvalidOperationException("WorkerPool.Job needs the pool held (WorkerPool.Enter)");
        int id = JobId<T>.Value;
        if (id >= _jobs.Length) Array.Resize(ref _jobs, Math.Max(id + 1, _jobs.Length * 2));
        return (T)(_jobs[id] ??= new T());
    }

    /// <summary>Runs <paramref name="job"/> over [0, count) in chunks of at least <paramref name="minChunk"/> indices.</summary>
    public void Run(IParallelJob job, int count, int minChunk = 1)
    {
        using var scope = Enter();
        int threads = _active;
        int chunks = Math.Min(ChunksPerThread * threads, Math.Max(1, count / Math.Max(1, minChunk)));
        if (chunks <= 1 || threads == 1 || _disposed)
        {
            if (count > 0) job.Run(0, count, 0);
            return;
        }
        _job = job;
        _count = count;
        Volatile.Write(ref _done, 0);
        int helpers = Math.Min(threads, chunks) - 1;
        Volatile.Write(ref _helpers, helpers); // before the generation that workers read it after
        long generation = Interlocked.Increment(ref _generation);
        Volatile.Write(ref _claim, (generation << 32) | ((long)chunks << 16));
        // Only sleeping workers need a kernel wake-up; spinning ones see the new generation themselves.
        for (int w = 1; w <= helpers; w++)
            if (Volatile.Read(ref _sleeping[w]) == 1) _wake[w - 1].Set();
        RunChunks((int)generation, 0);
        var spin = new SpinWait();
        while (Volatile.Read(ref _done) < chunks) spin.SpinOnce(sleep1Threshold: -1);
        _job = null;
        if (_error is { } error)
        {
            _error = null;
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
        }
    }

    /// <summary>Chunks per thread: enough to even out a slowed thread, few enough that claiming costs nothing.</summary>
    private const int ChunksPerThread = 8;

    /// <summary>Claims and runs chunks of operation <paramref name="generation"/> until none is left.</summary>
    private void RunChunks(int generation, int worker)
    {
        while (true)
        {
            long claim = Volatile.Read(ref _claim);
            int next = (int)(claim & 0xFFFF), chunks = (int)((claim >> 16) & 0xFFFF);
            if ((int)(claim >> 32) != generation || next >= chunks) return;
            if (Interlocked.CompareExchange(ref _claim, claim + 1, claim) != claim) continue;
            // The chunk is ours, so the operation cannot finish (nor its fields change) before we are done with it.
            try
            {
                int count = _count;
                int start = (int)((long)count * next / chunks), end = (int)((long)count * (next + 1) / chunks);
                if (end > start) _job!.Run(start, end, worker);
            }
            catch (Exception e)
            {
                _error = e; // rethrown on the calling thread
            }
            finally
            {
                // Published before the chunk counts as done, so a caller that returns from Run reads every worker's figure.
                if (worker > 0) _workerAllocated[worker] = GC.GetAllocatedBytesForCurrentThread();
                Interlocked.Increment(ref _done);
            }
        }
    }

    /// <summary>Convenience for code off the hot path (allocates a closure).</summary>
    public void For(int count, Action<int, int, int> body, int minChunk = 1) => Run(new DelegateJob(body), count, minChunk);

    private sealed class DelegateJob(Action<int, int, int> body) : IParallelJob
    {
        public void Run(int start, int end, int worker) => body(start, end, worker);
    }

    private void WorkerLoop(int worker, bool background)
    {
        var wake = _wake[worker - 1];
        // A thread's first wait allocates its wait state (136 B, measured); take it now, not when a worker first
        // sleeps mid-generation, which broke the zero-allocation guarantee whenever a step's gap outlasted the spin.
        wake.WaitOne(0);
        _workerAllocated[worker] = GC.GetAllocatedBytesForCurrentThread();
        Interlocked.Increment(ref _started);
        // After the start-up signal: an idle-class thread on a busy machine may wait long for its next time slice.
        if (background) BackgroundThread.Lower();
        // Generation 0 is "nothing dispatched yet". Reading _generation here instead would race with a first Run()
        // that starts before this thread does, and the worker would then skip that operation forever.
        long seen = 0;
        while (true)
        {
            long spinUntil = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
            int spins = 0;
            while (Volatile.Read(ref _generation) == seen && !_disposed)
            {
                if (System.Diagnostics.Stopwatch.GetTimestamp() < spinUntil)
                {
                    // Yield now and then so an oversubscribed machine can still run the thread we wait for.
                    if ((++spins & 63) == 0) Thread.Yield();
                    else Thread.SpinWait(20);
                    continue;
                }
                // Announce sleep, then re-check: the dispatcher bumps the generation before reading the flag.
                Interlocked.Exchange(ref _sleeping[worker], 1);
                if (Volatile.Read(ref _generation) == seen && !_disposed) wake.WaitOne();
                Interlocked.Exchange(ref _sleeping[worker], 0);
                spinUntil = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
            }
            if (_disposed) return;
            seen = Volatile.Read(ref _generation);
            // A spinning worker left out of this operation (fewer active threads) stays out, so that it goes to sleep.
            if (worker <= Volatile.Read(ref _helpers)) RunChunks((int)seen, worker);
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var w in _wake) w.Set();
    }
}
