using System.Diagnostics;

namespace Kaiyuan.Kernels;

/// <summary>
/// Chooses how many of a pool's threads a small forward pass (a decode step, a speculative verification) runs on, by
/// timing passes with the count in use against passes with one thread fewer or more, in alternating blocks.
/// </summary>
/// <remarks>
/// A decode step is a chain of hundreds of short operations that only the calling thread issues. Beside another busy
/// process, three runnable threads share two cores: the caller is off its core a third of the time, and the step waits
/// for it while the worker idles, so <c>-t 2</c> ran slower than <c>-t 1</c> (61–65 against 68–74 tokens/s). Guessing
/// contention from run-queue statistics shed threads on idle VMs too (f756f17); comparing the passes themselves cannot
/// pick the slower count for long. Each token count keeps its own figures (a verification pass of 5 tokens is not a
/// decode step), prompts always take every thread, and a probe whose candidate is clearly slower ends after its first
/// pass, so on an idle machine probing costs well under 1%. Every kernel gives the same bits on any thread count, so
/// the choice changes only the speed.
/// </remarks>
internal sealed class ThreadTuner(int threads)
{
    /// <summary>Passes of more tokens than this always run on every thread.</summary>
    internal const int MaxTokens = 16;
    /// <summary>
    /// Passes per block of a probe. Blocks, not single passes, alternate: a worker that slept through a pass on fewer
    /// threads is owed CPU time by the scheduler and runs the next pass unusually fast, and single passes in turn
    /// measured two threads beside a busy process at 12.7 ms against 16 ms when they ran on.
    /// </summary>
    internal const int Block = 4;
    /// <summary>Timed passes of each count per probe.</summary>
    internal const int Samples = 2 * (Block - 1);
    /// <summary>Passes before the first probe: the first ones fault in the mapped weights and run code the JIT has not yet optimised (it waits 100 ms).</summary>
    internal const int WarmPasses = 8;
    private const int FirstWait = 32, MaxWait = 256;
    /// <summary>Fewer threads must be this much faster to be chosen (more threads keep their lead within it).</summary>
    private const double Margin = 0.05;
    /// <summary>A probe whose first pass is this much slower than the count in use ends there.</summary>
    private const double ClearlySlower = 1.15;

    // One state per token count, made up front: a pass of a new size allocates nothing.
    private readonly Key[] _keys = [.. Enumerable.Repeat(new Key { Current = Math.Max(1, threads), Wait = WarmPasses, LastWait = FirstWait / 2 }, MaxTokens + 1)];

    public int Threads { get; } = Math.Max(1, threads);

    /// <summary>Passes of at most <see cref="MaxTokens"/> tokens run so far on each thread count (index = threads), for reports.</summary>
    public long[] PassesByThreads { get; } = new long[Math.Max(1, threads) + 1];

    /// <summary>Sets <paramref name="pool"/> to this tuner's choice for a pass of <paramref name="tokens"/> tokens and times the pass until disposed.</summary>
    public Pass Begin(WorkerPool pool, int tokens)
    {
        int threads = Math.Min(Choose(tokens), pool.Threads);
        pool.ActiveThreads = threads;
        return new Pass(this, pool, tokens, threads, Stopwatch.GetTimestamp());
    }

    public readonly ref struct Pass(ThreadTuner tuner, WorkerPool pool, int tokens, int threads, long start)
    {
        public void Dispose()
        {
            tuner.Record(tokens, threads, Stopwatch.GetTimestamp() - start);
            pool.ActiveThreads = pool.Threads;
        }
    }

    /// <summary>The thread count the next pass of <paramref name="tokens"/> tokens runs on.</summary>
    public int Choose(int tokens)
    {
        if (Threads == 1 || tokens < 1 || tokens > MaxTokens) return Threads;
        ref var k = ref _keys[tokens];
        return k.Probing && OnCandidate(k.Probe) ? k.Candidate : k.Current;
    }

    /// <summary>Records a pass of <paramref name="tokens"/> tokens that ran on <paramref name="threads"/> threads in <paramref name="ticks"/> (<see cref="Stopwatch"/> ticks).</summary>
    public void Record(int tokens, int threads, long ticks)
    {
        if (Threads == 1 || tokens < 1 || tokens > MaxTokens) return;
        PassesByThreads[Math.Clamp(threads, 0, Threads)]++;
        ref var k = ref _keys[tokens];
        if (!k.Probing)
        {
            if (--k.Wait > 0) return;
            // Start a probe: one thread fewer, or more (in turn where both exist).
            k.Candidate = k.Current == Threads || (k.Current > 1 && k.Down) ? k.Current - 1 : k.Current + 1;
            k.Down = !k.Down;
            k.Probing = true;
            k.Probe = 0;
            return;
        }
        bool candidate = OnCandidate(k.Probe);
        if (threads != (candidate ? k.Candidate : k.Current)) { k.Probing = false; k.Wait = FirstWait; return; } // someone changed the pool under us
        int probe = k.Probe++, place = probe % Block;
        // The candidate's first pass, clearly slower than the current count's typical (middle) pass of the first block:
        // an idle machine's probe ends here.
        if (probe == Block && ticks > Ranked(((ReadOnlySpan<long>)k.CurrentTicks)[..(Block - 1)], (Block - 1) / 2) * ClearlySlower)
        {
            Settle(ref k, switched: false);
            return;
        }
        // A block's first pass is not counted: it still runs in the scheduling state the other count left behind.
        if (place > 0)
        {
            int at = probe / (2 * Block) * (Block - 1) + place - 1;
            if (candidate) k.CandidateTicks[at] = ticks;
            else k.CurrentTicks[at] = ticks;
        }
        if (k.Probe < 4 * Block) return;
        long current = Ranked(k.CurrentTicks, Samples / 2 - 1), other = Ranked(k.CandidateTicks, Samples / 2 - 1);
        bool fewer = k.Candidate < k.Current;
        bool better = fewer ? other * (1 + Margin) < current : other < current * (1 + Margin);
        if (better && fewer && !k.Confirming)
        {
            // Giving up a thread takes a second probe, at once: one can be fooled by a burst of slow passes.
            k.Confirming = true;
            k.Probe = 0;
            return;
        }
        k.Confirming = false;
        if (better) k.Current = k.Candidate;
        Settle(ref k, better);
    }

    /// <summary>
    /// The pass of the given rank, fastest first. A probe's six passes of each count are compared by their third-fastest,
    /// a low median. Spikes (a MoE's experts faulted in on first use, interrupts) only ever slow passes down, and on an
    /// idle machine a few of them made the plain median prefer one thread. But beside a busy process two threads' passes
    /// are uneven: now and then both threads get a core (10.0 ms against a median of 13.8 and one thread's 12.2), and
    /// the second-fastest pass, which such a pass often is, kept two threads for 363 of 384 steps at 69.7 tokens/s
    /// against 77.3 for <c>-t 1</c> in the same minutes.
    /// </summary>
    private static long Ranked(ReadOnlySpan<long> values, int rank)
    {
        Span<long> sorted = stackalloc long[values.Length];
        values.CopyTo(sorted);
        sorted.Sort();
        return sorted[rank];
    }

    /// <summary>A probe runs blocks of <see cref="Block"/> passes: current, candidate, current, candidate.</summary>
    private static bool OnCandidate(int probe) => probe / Block % 2 == 1;

    private static void Settle(ref Key k, bool switched)
    {
        k.Probing = false;
        k.Wait = switched ? FirstWait : Math.Min(MaxWait, Math.Max(FirstWait, k.LastWait * 2));
        k.LastWait = k.Wait;
    }

    private struct Key
    {
        public int Current, Candidate, Wait, LastWait, Probe;
        public bool Probing, Down, Confirming;
        public Ticks CurrentTicks, CandidateTicks;
    }

    [System.Runtime.CompilerServices.InlineArray(Samples)]
    private struct Ticks
    {
        private long _first;
    }
}
