namespace Kaiyuan.Fuzz;

/// <summary>
/// One input surface. <see cref="Run"/> returns for a result or a clean error (the exceptions the surface documents) and
/// throws anything else: that is a finding, as are a hang past the time bound and an allocation past the budget.
/// </summary>
internal abstract class FuzzTarget : IDisposable
{
    public abstract string Name { get; }

    /// <summary>Inputs to mutate, built from the fixtures (read where they are, never copied into the repository).</summary>
    public abstract IReadOnlyList<byte[]> Seeds(string fixtures);

    /// <summary>
    /// A few small seeds for coverage-guided fuzzing (AFL mutates every byte of a seed, so small ones go further in the
    /// same time): by default the seeds of at most 8 KiB, no more than 16 of them, spread over the list.
    /// </summary>
    public virtual IReadOnlyList<byte[]> SmallSeeds(string fixtures)
    {
        var small = Seeds(fixtures).Where(s => s.Length is > 0 and <= 8 << 10).ToList();
        int step = Math.Max(1, (small.Count + 15) / 16);
        return [.. small.Where((_, i) => i % step == 0)];
    }

    /// <summary>
    /// What coverage-guided fuzzing instruments for this surface: per line an assembly and, optionally, the namespaces
    /// (prefixes) of it to instrument, all of it when none. Only the code the surface runs on the input's thread: code
    /// that runs in the set-up or on other threads meanwhile (the kernels' workers, a server's scheduler) would make the
    /// same input's coverage vary from run to run.
    /// </summary>
    public abstract IReadOnlyList<string> Instrumented { get; }

    /// <summary>Words the mutator inserts: the surface's own syntax, so that mutations reach past the first check.</summary>
    public virtual IReadOnlyList<byte[]> Dictionary => [];

    public virtual int MaxLength => 1 << 16;

    /// <summary>How long one input may take.</summary>
    public virtual TimeSpan TimeBound => TimeSpan.FromSeconds(10);

    /// <summary>Bytes one input may allocate on the fuzzing thread: a base plus a multiple of its length.</summary>
    public virtual long AllocationBudget(int length) => (64L << 20) + 256L * length;

    /// <summary>Loads what every input shares (a vocabulary, a server); the fixtures root is given.</summary>
    public virtual void Setup(string fixtures)
    {
    }

    public abstract void Run(byte[] input);

    /// <summary>
    /// A mutation that knows the format (half the inputs when a target has one): it keeps the input parseable, so the
    /// mutations reach the code behind the parser. Null: byte-level mutations only.
    /// </summary>
    public virtual byte[]? MutateStructure(Random random, byte[] seed) => null;

    /// <summary>How deep the inputs went (how many passed the first checks), for the report; empty when not counted.</summary>
    public virtual string Summary => "";

    public virtual void Dispose()
    {
    }

    protected static byte[][] Words(params string[] words) => [.. words.Select(w => System.Text.Encoding.UTF8.GetBytes(w))];
}

/// <summary>A result that breaks the surface's rule without an exception (a 5xx answer, a server that stopped answering).</summary>
internal sealed class FuzzFinding(string message) : Exception(message);
