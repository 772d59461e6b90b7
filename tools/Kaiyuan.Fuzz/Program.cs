using System.Diagnostics;
using Kaiyuan.Fuzz;
using Kaiyuan.Fuzz.Targets;

// Fuzzing of every surface that takes outside input, two ways over the same targets (Targets/) and the same per-input
// check (a clean error or a result; no other exception, on any thread; within a time bound and an allocation budget):
//   Kaiyuan.Fuzz TARGET|all [SECONDS] [--seed N] [--out DIR] [--fixtures DIR]   mutation fuzzing in process (tools/fuzz.sh):
//     seeds from the real fixtures, each surface's own syntax as a dictionary, structure-aware GGUF mutations.
//   Kaiyuan.Fuzz afl TARGET        coverage-guided: the harness afl-fuzz (AFL++) runs, through SharpFuzz, over a copy of
//     this build whose Kaiyuan assemblies are instrumented (tools/fuzz-afl.sh builds, instruments, seeds, runs, reports)
//   Kaiyuan.Fuzz afl-prepare TARGET DIR   AFL's seeds, dictionary and what to instrument; prints afl-fuzz's -t
//   Kaiyuan.Fuzz replay TARGET FILE...    inputs (AFL's findings, say) through the in-process check, problems in full
//   Kaiyuan.Fuzz soak [REQUESTS] [--concurrency N] [--seed N] [--fixtures DIR]   a mixed-request soak of a real server
// CI runs both kinds of fuzzing for a bounded time per target (.ci/run), and the soak.
var targets = new Func<FuzzTarget>[]
{
    () => new GgufTarget(), () => new TokenizerTarget(), () => new JinjaTarget(), () => new OutputParserTarget(),
    () => new GrammarTarget(), () => new HttpTarget(), () => new ImatrixTarget(),
};
if (args.FirstOrDefault() == "soak")
{
    // Kaiyuan.Fuzz soak [REQUESTS] [--concurrency N] [--seed N] [--fixtures DIR]
    string Opt(string name, string fallback) => Array.IndexOf(args, name) is int k and >= 0 && k + 1 < args.Length ? args[k + 1] : fallback;
    string root = RepositoryRoot();
    string shared = Path.GetFullPath(Opt("--fixtures", Path.Combine(root, "../shared/fixtures")));
    if (!Directory.Exists(shared))
    {
        Console.WriteLine($"soak: {shared} is absent; it serves a fixture model, so nothing is run");
        return 0;
    }
    int count = args.Length > 1 && int.TryParse(args[1], out int n) ? n : 10_000;
    return await Soak.RunAsync(shared, count, int.Parse(Opt("--concurrency", "32"), System.Globalization.CultureInfo.InvariantCulture),
        int.Parse(Opt("--seed", "1"), System.Globalization.CultureInfo.InvariantCulture)) ? 0 : 1;
}

if (args.FirstOrDefault() is "afl" or "afl-prepare" or "replay")
{
    string Opt(string name, string fallback) => Array.IndexOf(args, name) is int k and >= 0 && k + 1 < args.Length ? args[k + 1] : fallback;
    string root = RepositoryRoot();
    string shared = Path.GetFullPath(Opt("--fixtures", Path.Combine(root, "../shared/fixtures")));
    string findings = Path.GetFullPath(Opt("--out", Path.Combine(root, "artifacts/fuzz")));
    var positional = args.Where((a, i) => !a.StartsWith("--", StringComparison.Ordinal) && (i == 0 || !args[i - 1].StartsWith("--", StringComparison.Ordinal))).ToList();
    var target = positional.Count > 1 ? targets.Select(make => make()).FirstOrDefault(t => t.Name == positional[1]) : null;
    if (target is null || (args[0] == "afl-prepare" && positional.Count != 3))
    {
        Console.Error.WriteLine($"usage: Kaiyuan.Fuzz afl TARGET | afl-prepare TARGET DIR | replay TARGET FILE...; targets: {string.Join(", ", targets.Select(t => t().Name))}");
        return 2;
    }
    if (!Directory.Exists(shared))
    {
        Console.Error.WriteLine($"fuzz: {shared} is absent; the targets' seeds and vocabularies come from the fixtures");
        return 2;
    }
    using var _ = target;
    return args[0] switch
    {
        "afl" => Afl.Harness(target, shared, findings),
        "afl-prepare" => Afl.Prepare(target, shared, Path.Combine(root, "tools/Kaiyuan.Fuzz/corpus"), Path.GetFullPath(positional[2])),
        _ => Afl.Replay(target, shared, findings, positional.Skip(2)),
    };
}

string? which = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal));
double seconds = args.Where(a => !a.StartsWith("--", StringComparison.Ordinal)).Skip(1).Select(double.Parse).FirstOrDefault(30);
string Option(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}
int seed = int.Parse(Option("--seed", Environment.TickCount.ToString(System.Globalization.CultureInfo.InvariantCulture)), System.Globalization.CultureInfo.InvariantCulture);
string repo = RepositoryRoot();
string fixtures = Path.GetFullPath(Option("--fixtures", Path.Combine(repo, "../shared/fixtures")));
string outDir = Path.GetFullPath(Option("--out", Path.Combine(repo, "artifacts/fuzz")));
string corpusRoot = Path.Combine(repo, "tools/Kaiyuan.Fuzz/corpus");

var chosen = targets.Select(make => make()).Where(t => which is "all" || t.Name == which).ToList();
if (which is null || chosen.Count == 0)
{
    Console.Error.WriteLine($"usage: Kaiyuan.Fuzz TARGET|all [SECONDS] [--seed N] [--out DIR] [--fixtures DIR]; targets: {string.Join(", ", targets.Select(t => t().Name))}");
    return 2;
}
if (!Directory.Exists(fixtures))
{
    Console.WriteLine($"fuzz: {fixtures} is absent; the targets' seeds come from the fixtures, so nothing is fuzzed");
    return 0;
}

// An exception that escapes on a thread of ours ends the process: say which input did it first.
AppDomain.CurrentDomain.UnhandledException += (_, e) =>
{
    var (target, input) = Fuzzer.Current;
    Directory.CreateDirectory(outDir);
    string file = Path.Combine(outDir, $"{target}-unhandled.bin");
    File.WriteAllBytes(file, input);
    Console.WriteLine($"  finding: unhandled exception on a background thread ({e.ExceptionObject.GetType().Name}) -> {file}\n{e.ExceptionObject}");
};
int unobserved = 0;
TaskScheduler.UnobservedTaskException += (_, e) =>
{
    Interlocked.Increment(ref unobserved);
    Console.WriteLine($"  finding: unobserved task exception: {e.Exception.InnerException?.GetType().Name}: {e.Exception.InnerException?.Message}");
};

Console.WriteLine($"fuzz: seed {seed}, {seconds} s per target, findings to {outDir}");
bool clean = true;
foreach (var target in chosen)
{
    using var _ = target;
    var clock = Stopwatch.StartNew();
    target.Setup(fixtures);
    var fuzzer = new Fuzzer(target, fixtures, outDir, seed);
    string corpusDir = Path.Combine(corpusRoot, target.Name);
    var corpus = Directory.Exists(corpusDir)
        ? Directory.GetFiles(corpusDir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).Select(f => (Path.GetFileName(f), File.ReadAllBytes(f))).ToList()
        : [];
    bool replayed = fuzzer.Replay(corpus);
    bool finished = fuzzer.Run(TimeSpan.FromSeconds(seconds));
    Console.WriteLine($"{target.Name}: {fuzzer.Executions:N0} inputs ({corpus.Count} from the corpus) in {clock.Elapsed.TotalSeconds:F1} s, " +
        $"{fuzzer.Executions / clock.Elapsed.TotalSeconds:N0}/s, {fuzzer.Findings} findings{(finished ? "" : ", stopped by a hang")}" +
        (target.Summary.Length > 0 ? $" ({target.Summary})" : ""));
    clean &= replayed && finished && fuzzer.Findings == 0;
    if (!finished) break;
}
GC.Collect();
GC.WaitForPendingFinalizers();
return clean && unobserved == 0 ? 0 : 1;

// The repository (for the corpus and the fixtures beside it): above the build output, or else above the working directory.
static string RepositoryRoot()
{
    foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Kaiyuan.slnx"))) return dir.FullName;
    return Directory.GetCurrentDirectory();
}
