using System.Diagnostics;
using System.Security.Cryptography;

namespace Kaiyuan.Fuzz;

/// <summary>
/// Runs a target on the checked-in corpus, then on mutations of its seeds for a while, one input at a time on a
/// dedicated thread: each input within the target's time and allocation bounds, or it is written out as a finding.
/// </summary>
internal sealed class Fuzzer(FuzzTarget target, string fixtures, string outDir, int seed)
{
    private readonly Dictionary<string, int> _findings = new();

    public int Executions { get; private set; }
    public int Findings => _findings.Values.Sum();

    /// <summary>Runs each input once; every problem is printed, with <paramref name="kind"/> and the input's name.</summary>
    public bool Replay(IEnumerable<(string Name, byte[] Input)> corpus, string kind = "corpus")
    {
        bool ok = true;
        foreach (var (name, input) in corpus)
        {
            bool hung = RunOne(input, out string? problem);
            if (problem is null) continue;
            Console.WriteLine($"  {kind} {name}: {problem}");
            ok = false;
            if (hung) break; // the worker is stuck; nothing more can run
        }
        return ok;
    }

    /// <summary>Fuzzes for <paramref name="duration"/>; false when it had to stop (a hang leaves the worker stuck).</summary>
    public bool Run(TimeSpan duration)
    {
        var seeds = target.Seeds(fixtures);
        if (seeds.Count == 0) throw new InvalidOperationException($"{target.Name}: no seeds (are the fixtures at {fixtures}?)");
        var mutator = new Mutator(new Random(seed), seeds, target.Dictionary, target.MaxLength, target.MutateStructure);
        var clock = Stopwatch.StartNew();
        // The seeds themselves first: each must pass unmutated.
        foreach (var input in seeds) if (!RunAndRecord(input)) return false;
        var report = TimeSpan.FromMinutes(1);
        while (clock.Elapsed < duration)
        {
            if (!RunAndRecord(mutator.Next())) return false;
            if (clock.Elapsed < report) continue;
            // A long run by hand says how far it has got, so that stopping it early loses nothing.
            Console.WriteLine($"  {clock.Elapsed.TotalMinutes:F0} min: {Executions:N0} inputs, {Findings} findings");
            report += TimeSpan.FromMinutes(1);
        }
        return true;
    }

    private bool RunAndRecord(byte[] input)
    {
        bool hung = RunOne(input, out string? problem);
        if (problem is null) return true;
        // One file per distinct problem (its first line and the innermost frame of ours), a count for the rest.
        string key = problem.Split('\n')[0] + "|" + problem.Split('\n').Skip(1).FirstOrDefault(l => l.Contains("Kaiyuan.", StringComparison.Ordinal));
        _findings[key] = _findings.GetValueOrDefault(key) + 1;
        if (_findings[key] == 1)
        {
            Directory.CreateDirectory(outDir);
            string hash = Convert.ToHexStringLower(SHA256.HashData(input))[..16];
            string file = Path.Combine(outDir, $"{target.Name}-{hash}");
            File.WriteAllBytes(file + ".bin", input);
            File.WriteAllText(file + ".txt", problem);
            Console.WriteLine($"  finding: {problem.Split('\n')[0]} -> {file}.bin");
        }
        return !hung;
    }

    /// <summary>
    /// Runs one input through the target's check (the time bound, the allocation budget, no exception but a clean one);
    /// returns true when it hung (the worker is then abandoned and the run must end). The coverage-guided harness runs
    /// each of AFL's inputs through this too.
    /// </summary>
    public bool RunOne(byte[] input, out string? problem)
    {
        Executions++;
        _worker ??= new Worker(target);
        if (!_worker.TryRun(input, target.TimeBound, out var error, out long allocated))
        {
            problem = $"hang: no answer within {target.TimeBound.TotalSeconds} s";
            _worker = null;
            return true;
        }
        long budget = target.AllocationBudget(input.Length);
        problem = error is not null ? error.ToString()
            : allocated > budget ? $"allocation: {allocated:N0} bytes for a {input.Length:N0}-byte input (budget {budget:N0})"
            : null;
        return false;
    }

    private Worker? _worker;

    /// <summary>The input running now, for the report of an exception that escapes on another thread and ends the process.</summary>
    public static (string Target, byte[] Input) Current { get; private set; } = ("", []);

    /// <summary>A thread of its own for the target, with a 1 MiB stack (less than the pool's), so deep recursion shows early.</summary>
    private sealed class Worker
    {
        private readonly FuzzTarget _target;
        private readonly SemaphoreSlim _go = new(0), _done = new(0);
        private byte[] _input = [];
        private Exception? _error;
        private long _allocated;

        public Worker(FuzzTarget target)
        {
            _target = target;
            new Thread(Loop, 1 << 20) { IsBackground = true, Name = "fuzz " + target.Name }.Start();
        }

        public bool TryRun(byte[] input, TimeSpan bound, out Exception? error, out long allocated)
        {
            _input = input;
            _go.Release();
            bool finished = _done.Wait(bound);
            error = _error;
            allocated = _allocated;
            return finished;
        }

        private void Loop()
        {
            while (true)
            {
                _go.Wait();
                Current = (_target.Name, _input);
                long before = GC.GetAllocatedBytesForCurrentThread();
                try
                {
                    _target.Run(_input);
                    _error = null;
                }
                catch (Exception e)
                {
                    _error = e;
                }
                _allocated = GC.GetAllocatedBytesForCurrentThread() - before;
                _done.Release();
            }
        }
    }
}
