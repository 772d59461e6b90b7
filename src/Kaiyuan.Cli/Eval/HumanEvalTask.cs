using System.IO.Compression;
using System.Text.Json;

namespace Kaiyuan.Cli.Eval;

/// <summary>A HumanEval problem: a function signature and docstring to complete, and the tests that check it.</summary>
internal sealed record HumanEvalProblem(string TaskId, string Prompt, string CanonicalSolution, string Test, string EntryPoint);

/// <summary>
/// HumanEval: completions run against each problem's tests in the <see cref="CodeSandbox"/>; a problem's samples give
/// pass@k by the unbiased estimator, averaged over problems (as the reference harness reports it).
/// </summary>
internal static class HumanEvalTask
{
    public const string Name = "humaneval";

    /// <summary>Reads HumanEval problems from JSONL, or gzip-compressed JSONL (<c>.gz</c>, as the dataset ships).</summary>
    public static Dictionary<string, HumanEvalProblem> LoadProblems(string path)
    {
        var problems = new Dictionary<string, HumanEvalProblem>(StringComparer.Ordinal);
        foreach (var row in ReadJsonLines(path))
        {
            var p = new HumanEvalProblem(Text(row, "task_id"), Text(row, "prompt"), Text(row, "canonical_solution", ""), Text(row, "test"), Text(row, "entry_point"));
            problems[p.TaskId] = p;
        }
        return problems;
    }

    /// <summary>Reads samples (<c>task_id</c>, <c>completion</c>) in file order.</summary>
    public static List<(string TaskId, string Completion)> LoadSamples(string path) =>
        ReadJsonLines(path).Select(row => (Text(row, "task_id"), Text(row, "completion"))).ToList();

    /// <summary>The program a completion is checked with: the prompt, the completion, the tests, and the call of the check.</summary>
    public static string Program(HumanEvalProblem problem, string completion) =>
        $"{problem.Prompt}{completion}\n\n{problem.Test}\n\ncheck({problem.EntryPoint})\n";

    /// <summary>Runs every sample (at most <paramref name="concurrency"/> at once) and returns pass@k per problem for each k.</summary>
    public static async Task<(Dictionary<int, double> PassAtK, List<(string TaskId, SandboxResult Result)> Results)> ScoreAsync(
        IReadOnlyDictionary<string, HumanEvalProblem> problems, IReadOnlyList<(string TaskId, string Completion)> samples, int[] ks, CodeSandbox sandbox,
        int concurrency, CancellationToken cancel)
    {
        foreach (var (id, _) in samples)
            if (!problems.ContainsKey(id)) throw new FormatException($"sample for '{id}', which is not a problem of the task");
        var results = new (string TaskId, SandboxResult Result)[samples.Count];
        await Parallel.ForAsync(0, samples.Count, new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancel }, async (i, ct) =>
        {
            var (id, completion) = samples[i];
            results[i] = (id, await sandbox.RunAsync(Program(problems[id], completion), ct));
        });
        var perProblem = PerProblem(results);
        var passAtK = new Dictionary<int, double>();
        foreach (int k in ks)
        {
            // As the reference harness: pass@k only where every problem has at least k samples.
            if (perProblem.Count > 0 && perProblem.All(p => p.N >= k)) passAtK[k] = perProblem.Average(p => Statistics.PassAtK(p.N, p.Correct, k));
        }
        return (passAtK, results.ToList());
    }

    /// <summary>Samples and passing samples of each problem, in the order problems first appear.</summary>
    public static List<(int N, int Correct)> PerProblem(IEnumerable<(string TaskId, SandboxResult Result)> results) =>
        results.GroupBy(r => r.TaskId).Select(g => (g.Count(), g.Count(r => r.Result.Outcome == SandboxOutcome.Passed))).ToList();

    private static IEnumerable<JsonElement> ReadJsonLines(string path)
    {
        using Stream file = File.OpenRead(path);
        using Stream stream = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(file, CompressionMode.Decompress) : file;
        using var reader = new StreamReader(stream);
        int line = 0;
        while (reader.ReadLine() is { } text)
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            JsonElement row;
            try
            {
                using var doc = JsonDocument.Parse(text);
                row = doc.RootElement.Clone();
            }
            catch (JsonException e)
            {
                throw new FormatException($"{path}:{line}: not JSON ({e.Message})");
            }
            yield return row;
        }
    }

    private static string Text(JsonElement row, string name, string? fallback = null) =>
        row.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : fallback ?? throw new FormatException($"a row has no string '{name}'");
}
