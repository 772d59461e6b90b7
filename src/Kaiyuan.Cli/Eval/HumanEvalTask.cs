using System.Globalization;
using System.IO.Compression;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Kaiyuan.Cli.Eval;

/// <summary>A HumanEval problem: a function signature and docstring to complete, and the tests that check it.</summary>
internal sealed record HumanEvalProblem(string TaskId, string Prompt, string CanonicalSolution, string Test, string EntryPoint);

/// <summary>
/// HumanEval: completions run against each problem's tests in the <see cref="CodeSandbox"/>; a problem's samples give
/// pass@k by the unbiased estimator, averaged over problems (as the reference harness reports it).
/// </summary>
internal static partial class HumanEvalTask
{
    public const string Name = "humaneval";

    /// <summary>The ends of a function body the reference samples were cut at (the HumanEval paper's stop sequences).</summary>
    public static readonly string[] StopSequences = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"];

    /// <summary>Reads HumanEval problems from JSONL, or gzip-compressed JSONL (<c>.gz</c>, as the dataset ships).</summary>
    public static Dictionary<string, HumanEvalProblem> LoadProblems(string path) => LoadProblemList(path).ToDictionary(p => p.TaskId, StringComparer.Ordinal);

    /// <summary>The problems in file order.</summary>
    public static List<HumanEvalProblem> LoadProblemList(string path)
    {
        var problems = new List<HumanEvalProblem>();
        foreach (var row in ReadJsonLines(path))
            problems.Add(new HumanEvalProblem(Text(row, "task_id"), Text(row, "prompt"), Text(row, "canonical_solution", ""), Text(row, "test"), Text(row, "entry_point")));
        if (problems.Select(p => p.TaskId).Distinct(StringComparer.Ordinal).Count() != problems.Count) throw new FormatException($"{path}: a task_id appears twice");
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
        return (PassAtK(PerProblem(results), ks), results.ToList());
    }

    /// <summary>pass@k averaged over problems, for each k every problem has samples enough for (as the reference harness).</summary>
    public static Dictionary<int, double> PassAtK(List<(int N, int Correct)> perProblem, int[] ks)
    {
        var passAtK = new Dictionary<int, double>();
        foreach (int k in ks)
            if (perProblem.Count > 0 && perProblem.All(p => p.N >= k)) passAtK[k] = perProblem.Average(p => Statistics.PassAtK(p.N, p.Correct, k));
        return passAtK;
    }

    /// <summary>The report of scored samples (saved ones rescored, or generated ones): pass@1 with a bootstrap interval over problems, and pass@k.</summary>
    public static EvalResult Report(string model, IReadOnlyList<(string TaskId, SandboxOutcome Outcome)> results, int[] ks)
    {
        var perProblem = PerProblem(results.Select(r => (r.TaskId, new SandboxResult(r.Outcome, null, ""))));
        var passAtK = PassAtK(perProblem, ks);
        // The interval of pass@1 by bootstrap over problems (each problem's own pass@1 is its fraction of passing samples).
        var (low, high) = Statistics.Bootstrap(perProblem.Select(p => Statistics.PassAtK(p.N, p.Correct, 1)).ToList());
        int timedOut = results.Count(r => r.Outcome == SandboxOutcome.TimedOut);
        var extra = new JsonObject
        {
            ["samples"] = results.Count,
            ["timed_out"] = timedOut,
            ["network_isolated"] = CodeSandbox.IsolatesNetwork,
        };
        foreach (var (k, v) in passAtK) extra[$"pass@{k}"] = v;
        var c = CultureInfo.InvariantCulture;
        var lines = new List<string> { $"{Name} · {model} · {perProblem.Count} problems, {results.Count} samples" };
        foreach (var (k, v) in passAtK)
            lines.Add(k == 1 ? EvalReport.ScoreLine("pass@1", v, low, high) : string.Create(c, $"  pass@{k} {v:P1}"));
        lines.Add($"  timed out: {timedOut}; network {(CodeSandbox.IsolatesNetwork ? "isolated" : "NOT isolated (no unprivileged namespaces here)")}");
        return new EvalResult(Name, model, "pass@1", passAtK.GetValueOrDefault(1), low, high, perProblem.Count) { Extra = extra, Lines = lines };
    }

    /// <summary>
    /// The completion a chat answer gives: its first code block (or the whole answer without one). A block that defines
    /// the entry point again is appended after the prompt as a whole (the prompt's own function, a docstring only, is
    /// valid Python and is then replaced); otherwise the block is taken for the body.
    /// </summary>
    public static string CompletionFromChat(HumanEvalProblem problem, string answer)
    {
        var block = CodeBlock().Match(answer);
        string code = block.Success ? block.Groups[1].Value : answer;
        bool definesEntry = code.Split('\n').Any(l => l.StartsWith($"def {problem.EntryPoint}(", StringComparison.Ordinal));
        return definesEntry ? "\n" + code : code;
    }

    /// <summary>A raw completion cut at the first stop sequence (an endpoint may apply fewer stop sequences than asked).</summary>
    public static string CutAtStop(string completion)
    {
        int at = completion.Length;
        foreach (string stop in StopSequences)
        {
            int i = completion.IndexOf(stop, StringComparison.Ordinal);
            if (i >= 0 && i < at) at = i;
        }
        return completion[..at];
    }

    [GeneratedRegex(@"```[A-Za-z0-9_+-]*[ \t]*\r?\n(.*?)```", RegexOptions.Singleline)]
    public static partial Regex CodeBlock();

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

/// <summary>
/// HumanEval with a model: each problem's prompt completed <c>--samples-per-task</c> times and run against its tests.
/// A local model (or an endpoint named with <c>--completions</c>) completes the raw prompt, stopped at the reference stop
/// sequences, as the reference samples were made; a chat endpoint is asked to complete the function and its code block
/// is taken (<see cref="HumanEvalTask.CompletionFromChat"/>). The samples are saved beside the records in the reference
/// harness's format (<c>{task_id, completion}</c>), so <c>--samples</c> can score them again.
/// </summary>
internal sealed class HumanEvalGeneration(IReadOnlyList<HumanEvalProblem> problems, int samples, float temperature, int maxTokens, CodeSandbox sandbox) : IEvalTask
{
    /// <summary>The instruction before a problem's prompt when the model answers in chat.</summary>
    public const string ChatInstruction = "Complete the following Python function. Answer with the complete function, including the signature, in one ```python code block.";

    private static readonly int[] Ks = [1, 10, 100];

    public string Name => HumanEvalTask.Name;

    public int Count => problems.Count;

    public int SamplesPerItem => samples;

    public EvalRequest Request(int index, int sample, IEvalModel model)
    {
        var problem = problems[index];
        return new EvalRequest
        {
            Prompt = model.CompletesRawText ? problem.Prompt : $"{ChatInstruction}\n\n```python\n{problem.Prompt}```",
            Raw = model.CompletesRawText,
            MaxTokens = maxTokens,
            Stop = model.CompletesRawText ? HumanEvalTask.StopSequences : [],
            Temperature = temperature,
            // Each draw its own seed, the same in every run: a resumed run draws what the stopped one would have.
            Seed = temperature > 0 ? (ulong)index * 1_000_003UL + (ulong)sample + 1 : null,
        };
    }

    public async Task<EvalRecord> ScoreAsync(EvalRecord answered, EvalAnswer answer, CancellationToken cancel)
    {
        var problem = problems[answered.Index];
        // A raw prompt's record says so by its prompt being the problem's own.
        string completion = answered.Prompt == problem.Prompt ? HumanEvalTask.CutAtStop(answer.Content) : HumanEvalTask.CompletionFromChat(problem, answer.Content);
        var result = await sandbox.RunAsync(HumanEvalTask.Program(problem, completion), cancel);
        string tail = result.Output.Length <= 500 ? result.Output : result.Output[^500..];
        return answered with
        {
            Id = problem.TaskId,
            Reference = problem.EntryPoint,
            Extracted = completion,
            Correct = result.Outcome == SandboxOutcome.Passed,
            Detail = result.Outcome == SandboxOutcome.Passed ? nameof(SandboxOutcome.Passed) : $"{result.Outcome}\n{tail}".TrimEnd(),
        };
    }

    public EvalResult Summarize(string model, IReadOnlyList<EvalRecord> records, string recordsPath)
    {
        // The samples in the reference harness's format, beside the records.
        string samplesPath = Path.ChangeExtension(recordsPath, ".samples.jsonl");
        File.WriteAllLines(samplesPath, records.Select(r => new JsonObject { ["task_id"] = r.Id, ["completion"] = r.Extracted }.ToJsonString()));
        var results = records.Select(r => (r.Id ?? "", Outcome(r))).ToList();
        var report = HumanEvalTask.Report(model, results, Ks);
        report.Extra["samples_per_task"] = samples;
        report.Extra["temperature"] = temperature;
        report.Extra["samples_file"] = samplesPath;
        return report with { Lines = [.. report.Lines, $"  samples: {samplesPath} (temperature {temperature.ToString(CultureInfo.InvariantCulture)})"] };
    }

    private static SandboxOutcome Outcome(EvalRecord r)
    {
        string first = (r.Detail ?? "").Split('\n')[0];
        return Enum.TryParse<SandboxOutcome>(first, out var outcome) ? outcome : r.Correct == true ? SandboxOutcome.Passed : SandboxOutcome.Failed;
    }
}
