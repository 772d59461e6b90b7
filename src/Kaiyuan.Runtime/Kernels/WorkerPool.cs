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
    private int _count, _chunks, _done, _helpers;
    private long _generation;
    // Each participating thread's run of chunks, one claim word per thread a cache line apart: generation (high 32
    // bits), end (16 bits), next (16 bits). The owner takes chunks from the front, a thread that has run out takes them
    // from the back of another's; one CAS both checks that a chunk belongs to the operation a worker woke for and takes it.
    private readonly long[] _runs;
    private const int RunStride = 8;
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
        _runs = new long[Threads * RunStride];
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
        _chunks = chunks;
        Volatile.Write(ref _done, 0);
        int helpers = Math.Min(threads, chunks) - 1;
        Volatile.Write(ref _helpers, helpers); // before the generation that workers read it after
        // Each thread's chunks are consecutive, so that it reads its share of a matrix as one stream: with chunks dealt
        // out in turn, every chunk restarted the prefetchers (decode's small matrices took 30% longer from memory).
        long generation = _generation + 1; // only Run, under the gate, advances it
        for (int p = 0; p <= helpers; p++)
            Volatile.Write(ref _runs[p * RunStride], (generation << 32) | ((long)(chunks * (p + 1) / (helpers + 1)) << 16) | (long)(chunks * p / (helpers + 1)));
        Interlocked.Increment(ref _generation);
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

    /// <summary>
    /// Runs the worker's own chunks of operation <paramref name="generation"/> front to back, then takes the last chunks
    /// of the other threads' runs until none is left (a slowed thread's share moves to the others).
    /// </summary>
    private void RunChunks(int generation, int worker)
    {
        // Read once, not per chunk: the fields share a cache line with _done, which the other threads write.
        var job = _job;
        int count = _count, chunks = _chunks, participants = Volatile.Read(ref _helpers) + 1, ran = 0;
        // A worker that read the fields of another operation (it woke late, and this one is over) claims nothing below.
        for (int own; (own = Claim(worker, generation, fromBack: false)) >= 0; ran++) RunChunk(job!, own, count, chunks, worker);
        for (int k = 1; k < participants; k++)
        {
            int victim = (worker + k) % participants;
            for (int taken; (taken = Claim(victim, generation, fromBack: true)) >= 0; ran++) RunChunk(job!, taken, count, chunks, worker);
        }
        if (ran == 0) return;
        // Published before the chunks count as done, so a caller that returns from Run reads every worker's figure.
        if (worker > 0) _workerAllocated[worker] = GC.GetAllocatedBytesForCurrentThread();
        // Once per thread, not per chunk: the caller waits for the total.
        Interlocked.Add(ref _done, ran);
    }

    /// <summary>Takes the next (or, <paramref name="fromBack"/>, the last) chunk of thread <paramref name="owner"/>'s run; −1 when it is empty or belongs to another operation.</summary>
    private int Claim(int owner, int generation, bool fromBack)
    {
        ref long run = ref _runs[owner * RunStride];
        while (true)
        {
            long claim = Volatile.Read(ref run);
            int next = (int)(claim & 0xFFFF), end = (int)((claim >> 16) & 0xFFFF);
            if ((int)(claim >> 32) != generation || next >= end) return -1;
            long taken = fromBack ? claim - (1L << 16) : claim + 1;
            if (Interlocked.CompareExchange(ref run, taken, claim) == claim) return fromBack ? end - 1 : next;
        }
    }

    private void RunChunk(IParallelJob job, int chunk, int count, int chunks, int worker)
    {
        // The chunk is ours, so the operation cannot finish (nor its fields change) before we are done with it.
        try
        {
            int start = (int)((long)count * chunk / chunks), end = (int)((long)count * (chunk + 1) / chunks);
            if (end > start) job.Run(start, end, worker);
        }
        catch (Exception e)
        {
            _error = e; // rethrown on the calling thread
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
