using System.Text;

namespace Kaiyuan.Fuzz;

/// <summary>
/// Coverage-guided fuzzing with AFL++ through SharpFuzz (tools/fuzz-afl.sh drives it): the same targets and the same
/// per-input check as the mutation fuzzer, with AFL choosing the inputs by the edges they reach in the instrumented
/// Kaiyuan assemblies.
/// </summary>
internal static class Afl
{
    /// <summary>
    /// <c>afl TARGET</c>: the harness afl-fuzz runs (<c>afl-fuzz … -- dotnet Kaiyuan.Fuzz.dll afl TARGET</c>). SharpFuzz's
    /// out-of-process server talks to afl-fuzz and restarts the child that runs the inputs whenever it dies. Each input
    /// goes through <see cref="Fuzzer.RunOne"/>: a problem (an unclean exception, an allocation past the budget) is thrown
    /// for SharpFuzz to report as a crash; an input that overruns the target's time bound ends the child, which afl-fuzz
    /// also sees as a crash, since the stuck worker thread would otherwise spin on beside the next inputs. The per-input
    /// time bound afl-fuzz itself enforces (<see cref="TimeoutMilliseconds"/>) is longer, for a child whose runtime is
    /// wedged as a whole; those inputs land in AFL's hangs.
    /// </summary>
    public static int Harness(FuzzTarget target, string fixtures, string outDir)
    {
        Fuzzer? fuzzer = null;
        SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
        {
            // Set up in the child on its first input, not in the server process that only relays to afl-fuzz.
            if (fuzzer is null)
            {
                target.Setup(fixtures);
                fuzzer = new Fuzzer(target, fixtures, outDir, seed: 0);
            }
            var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            if (fuzzer.RunOne(buffer.ToArray(), out string? problem))
            {
                Console.Error.WriteLine(problem);
                Environment.Exit(3);
            }
            if (problem is not null) throw new FuzzFinding(problem);
        });
        return 0;
    }

    /// <summary>
    /// afl-fuzz's own time bound for one input: the target's, and time for a fresh child to start and set up, since the
    /// first input after a crash pays for both.
    /// </summary>
    public static int TimeoutMilliseconds(FuzzTarget target) => (int)(target.TimeBound.TotalMilliseconds * 2) + 20_000;

    /// <summary>
    /// <c>afl-prepare TARGET DIR</c>: writes DIR/seeds (the checked-in corpus, seeds/ included, and the target's small
    /// seeds from the fixtures), DIR/dictionary (the target's words, in AFL's format) and DIR/instrument (the assemblies
    /// and namespaces to instrument, a line each), and prints the time bound for afl-fuzz's -t in milliseconds.
    /// </summary>
    public static int Prepare(FuzzTarget target, string fixtures, string corpusRoot, string dir)
    {
        string seeds = Path.Combine(dir, "seeds");
        Directory.CreateDirectory(seeds);
        int n = 0;
        string corpus = Path.Combine(corpusRoot, target.Name);
        if (Directory.Exists(corpus))
            foreach (var file in Directory.GetFiles(corpus, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
                File.Copy(file, Path.Combine(seeds, $"{n++:D3}-{Path.GetFileName(file)}"));
        foreach (var seed in target.SmallSeeds(fixtures)) File.WriteAllBytes(Path.Combine(seeds, $"{n++:D3}-fixture.bin"), seed);

        var dictionary = new StringBuilder();
        int w = 0;
        foreach (var word in target.Dictionary.Where(d => d.Length is > 0 and <= 128).DistinctBy(Convert.ToHexString))
        {
            dictionary.Append($"w{w++}=\"");
            foreach (byte b in word) dictionary.Append(b is >= 0x20 and < 0x7F and not (byte)'"' and not (byte)'\\' ? ((char)b).ToString() : $"\\x{b:X2}");
            dictionary.Append("\"\n");
        }
        File.WriteAllText(Path.Combine(dir, "dictionary"), dictionary.ToString());
        File.WriteAllLines(Path.Combine(dir, "instrument"), target.Instrumented);
        Console.WriteLine(TimeoutMilliseconds(target));
        return 0;
    }

    /// <summary>
    /// <c>replay TARGET FILE…</c>: each file through the in-process check, uninstrumented, as the mutation fuzzer runs its
    /// corpus; every problem printed in full. Exit code 1 when any file has one.
    /// </summary>
    public static int Replay(FuzzTarget target, string fixtures, string outDir, IEnumerable<string> files)
    {
        target.Setup(fixtures);
        var fuzzer = new Fuzzer(target, fixtures, outDir, seed: 0);
        var inputs = files.Select(f => (Path.GetFileName(f), File.ReadAllBytes(f))).ToList();
        bool clean = fuzzer.Replay(inputs, kind: "input");
        Console.WriteLine($"{target.Name}: {inputs.Count} inputs replayed, {(clean ? "no problem" : "problems above")}" +
            (target.Summary.Length > 0 ? $" ({target.Summary})" : ""));
        return clean ? 0 : 1;
    }
}
