using Kaiyuan.Kernels;

namespace Kaiyuan.Tests.Inference;

/// <summary>The tuner's decisions from given pass times: which thread count each pass runs on and when it changes.</summary>
public class ThreadTunerTests
{
    /// <summary>Runs <paramref name="passes"/> passes of <paramref name="tokens"/> tokens, each taking <paramref name="ticks"/>(threads); returns the counts used, in order.</summary>
    private static List<int> Drive(ThreadTuner tuner, int passes, Func<int, long> ticks, int tokens = 1)
    {
        var used = new List<int>();
        for (int i = 0; i < passes; i++)
        {
            int threads = tuner.Choose(tokens);
            used.Add(threads);
            tuner.Record(tokens, threads, ticks(threads));
        }
        return used;
    }

    [Fact]
    public void FewerThreadsThatRunFasterAreChosenAfterOneProbe()
    {
        var tuner = new ThreadTuner(2);
        // Beside a busy process: one thread 10% faster than two.
        var used = Drive(tuner, 70, t => t == 1 ? 1000 : 1100);
        Assert.All(used.Take(ThreadTuner.WarmPasses), t => Assert.Equal(2, t)); // warm-up passes on every thread
        // A probe runs blocks of two threads, one, two, one; a second one confirms it; then one thread is kept.
        Assert.Equal([2, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1], used.Skip(ThreadTuner.WarmPasses).Take(8 * ThreadTuner.Block));
        Assert.All(used.Skip(ThreadTuner.WarmPasses + 8 * ThreadTuner.Block), t => Assert.Equal(1, t));
        Assert.Equal(used.Count(t => t == 1), tuner.PassesByThreads[1]);
        Assert.Equal(used.Count(t => t == 2), tuner.PassesByThreads[2]);
    }

    [Fact]
    public void OnAnIdleMachineAClearlySlowerProbeEndsAfterOnePassAndProbesGrowRarer()
    {
        var tuner = new ThreadTuner(2);
        // Idle: one thread takes 1.3× as long as two.
        var used = Drive(tuner, 2000, t => t == 1 ? 1300 : 1000);
        var probes = Enumerable.Range(0, used.Count).Where(i => used[i] == 1).ToList();
        Assert.True(probes.Count is > 2 and < 16, $"{probes.Count} single-thread passes in 2,000");
        // Each probe is a single pass, and the gaps between them grow to the cap.
        for (int i = 1; i < probes.Count; i++) Assert.True(probes[i] - probes[i - 1] >= 30, $"probes at {probes[i - 1]} and {probes[i]}");
        Assert.True(probes[^1] - probes[^2] >= 256, "the gap between probes grows to 256 passes");
    }

    [Fact]
    public void ABurstOfSlowPassesInOneProbeDoesNotGiveUpAThread()
    {
        var tuner = new ThreadTuner(2);
        int pass = 0;
        // Idle, one thread 20% slower, but every two-thread pass of the first probe is slowed (2×).
        var used = Drive(tuner, 200, t => ++pass is > ThreadTuner.WarmPasses and <= ThreadTuner.WarmPasses + 4 * ThreadTuner.Block && t == 2 ? 2000 : t == 1 ? 1200 : 1000);
        Assert.Equal(2, used[^1]);
        // The first probe's two single-thread blocks, then probes that end after their first single-thread pass (the
        // confirming one and two later ones): 11, where keeping one thread until the next probe would take 40 or more.
        Assert.True(used.Count(t => t == 1) <= 2 * ThreadTuner.Block + 3, $"{used.Count(t => t == 1)} passes on one thread");
    }

    [Fact]
    public void SpikesInAThirdOfTheFasterCountsPassesDoNotHideIt()
    {
        var tuner = new ThreadTuner(2);
        int pass = 0;
        // Idle, one thread 10% slower, and every third pass on two threads slowed 2× (interrupts, first-use faults).
        var used = Drive(tuner, 300, t => t == 1 ? 1100 : ++pass % 3 == 0 ? 2000 : 1000);
        Assert.Equal(2, used[^1]);
        Assert.True(used.Count(t => t == 1) <= 4 * 2 * ThreadTuner.Block, $"{used.Count(t => t == 1)} passes on one thread");
    }

    [Fact]
    public void UnevenPassesBesideABusyProcessAreJudgedByTheirTypicalTime()
    {
        var tuner = new ThreadTuner(2);
        int pass = 0;
        // Beside a busy process: every third pass on two threads, both threads got a core and it ran 15% faster than
        // one thread; the others ran 30% slower. One thread is faster on the whole (1,000 against 1,150 on average).
        var used = Drive(tuner, 300, t => t == 1 ? 1000 : ++pass % 3 == 0 ? 850 : 1300);
        Assert.Equal(1, used[^1]);
        Assert.True(used.Count(t => t == 1) >= 250, $"{used.Count(t => t == 1)} passes on one thread");
    }

    [Fact]
    public void MarginallyFasterFewerThreadsAreNotChosen()
    {
        var tuner = new ThreadTuner(2);
        var used = Drive(tuner, 280, t => t == 1 ? 990 : 1000); // 1% is within the margin
        Assert.Equal(2, used[^1]);
        // Three full probes in 280 passes (after the warm-up passes, then waits of 32 and 64), none kept.
        Assert.Equal(3 * 2 * ThreadTuner.Block, used.Count(t => t == 1));
    }

    [Fact]
    public void TheTunerGoesBackToEveryThreadWhenTheyBecomeFaster()
    {
        var tuner = new ThreadTuner(2);
        bool busy = true;
        var used = Drive(tuner, 100, t => busy ? (t == 1 ? 1000 : 1200) : (t == 1 ? 1300 : 1000));
        Assert.Equal(1, used[^1]);
        busy = false;
        // The next probe (within the longest wait, 256 passes) finds two threads faster and keeps them.
        used = Drive(tuner, 300, t => busy ? (t == 1 ? 1000 : 1200) : (t == 1 ? 1300 : 1000));
        Assert.Equal(2, used[^1]);
        Assert.True(used.TakeLast(100).Count(t => t == 2) >= 98, "back on two threads but for a probe");
    }

    [Fact]
    public void WithMoreThreadsItStepsDownOneAtATimeAndProbesBothWays()
    {
        var tuner = new ThreadTuner(4);
        // Best at 2 threads: 4 → 3 → 2, and from 2 both 1 and 3 are tried and found slower.
        long Cost(int t) => t switch { 1 => 1500, 2 => 1000, 3 => 1100, _ => 1200 };
        var used = Drive(tuner, 1500, Cost);
        Assert.Equal(2, used[^1]);
        Assert.Contains(1, used.Skip(500));
        Assert.Contains(3, used.Skip(500));
    }

    [Fact]
    public void PromptsAndSingleThreadPoolsAreLeftAlone()
    {
        var tuner = new ThreadTuner(2);
        var used = Drive(tuner, 200, t => t == 1 ? 100 : 1000, tokens: ThreadTuner.MaxTokens + 1);
        Assert.All(used, t => Assert.Equal(2, t));
        Assert.Equal(0, tuner.PassesByThreads.Sum());
        var single = new ThreadTuner(1);
        Assert.All(Drive(single, 100, _ => 1000), t => Assert.Equal(1, t));
    }

    [Fact]
    public void EachTokenCountKeepsItsOwnFigures()
    {
        var tuner = new ThreadTuner(2);
        // One-token decode steps are faster on one thread, five-token verifications on two; interleaved as speculation does.
        for (int i = 0; i < 200; i++)
        {
            int a = tuner.Choose(1);
            tuner.Record(1, a, a == 1 ? 1000 : 1200);
            int b = tuner.Choose(5);
            tuner.Record(5, b, b == 1 ? 3000 : 2000);
        }
        Assert.Equal(1, tuner.Choose(1));
        Assert.Equal(2, tuner.Choose(5));
    }
}
