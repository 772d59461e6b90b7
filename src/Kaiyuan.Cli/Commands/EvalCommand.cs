using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;
using Kaiyuan.Cli.Eval;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan eval</c>: models' quality and speed on a public benchmark, local models in process and any
/// OpenAI-compatible endpoint side by side, with each one's cost per 1,000 tasks, a table at the end and --out/report.html (Eval/EvalReporter).
/// </summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var task = new Option<string>("--task") { Description = "Benchmark to run: gsm8k, or humaneval (scores a --samples file)", Required = true };
        var samples = new Option<string>("--samples") { Description = "HumanEval: completions to score, JSONL of {task_id, completion} (the reference harness's format)" };
        var timeout = new Option<double>("--timeout") { Description = "HumanEval: seconds each program may run", DefaultValueFactory = _ => 3.0 };
        var models = new Option<string[]>("--model", "-m")
        {
            Description = "Model(s) to evaluate: GGUF paths, store references, or openai:BASE_URL#MODEL for an OpenAI-compatible endpoint (repeat the option for several)",
            AllowMultipleArgumentsPerToken = true,
        };
        var data = new Option<string>("--data") { Description = "The task's data file (GSM8K: test.jsonl of openai/grade-school-math; HumanEval: HumanEval.jsonl.gz)", Required = true };
        var limit = new Option<int>("--limit") { Description = "Evaluate only the first N items (0: all)" };
        var concurrency = new Option<int>("--concurrency") { Description = "Items answered at once (batched together)", DefaultValueFactory = _ => 1 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens an answer may have at most", DefaultValueFactory = _ => 512 };
        var outDir = new Option<string>("--out") { Description = "Directory for every prompt and answer (JSONL per task and model); a stopped run resumes from it", DefaultValueFactory = _ => "eval-results" };
        var apiKeyEnv = new Option<string>("--api-key-env") { Description = "Environment variable holding the API key for openai: models", DefaultValueFactory = _ => "OPENAI_API_KEY" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per (task, model) instead of a table" };
        var (machineCost, powerWatts, electricity, pricesFile) = EvalCostOptions.Create();
        var threads = Arguments.Threads();
        var ctxSize = Arguments.ContextSize();
        Arguments.Range(limit, 0, int.MaxValue, "must be 0 (all) or a number of items");
        Arguments.Range(concurrency, 1, 64, "must be between 1 and 64");
        Arguments.Range(maxTokens, 1, 1 << 20, "must be a positive number of tokens");
        var command = new Command("eval", "Score models on a public benchmark (accuracy with a 95% interval, tokens, speed)")
        {
            task, models, data, samples, timeout, limit, concurrency, maxTokens, outDir, apiKeyEnv, json, threads, ctxSize,
            machineCost, powerWatts, electricity, pricesFile, EvalReportCommand.Create(),
        };
        command.SetAction(async (p, cancel) =>
        {
            string name = p.GetValue(task)!;
            if (name is not (Gsm8kTask.Name or HumanEvalTask.Name))
            {
                p.InvocationConfiguration.Error.WriteLine($"kaiyuan: --task {name}: unknown task (known: {Gsm8kTask.Name}, {HumanEvalTask.Name})");
                return 1;
            }
            try
            {
                if (name == HumanEvalTask.Name)
                {
                    string file = p.GetValue(samples) ?? throw new ArgumentException("--task humaneval scores a --samples file (generating completions with a model comes next)");
                    var problems = HumanEvalTask.LoadProblems(p.GetValue(data)!);
                    var (passAtK, results) = await HumanEvalTask.ScoreAsync(problems, HumanEvalTask.LoadSamples(file), [1, 10, 100],
                        new CodeSandbox(TimeSpan.FromSeconds(p.GetValue(timeout))), p.GetValue(concurrency), cancel);
                    WriteHumanEval(p, Path.GetFileNameWithoutExtension(file), passAtK, results);
                    return 0;
                }
                if (p.GetValue(models) is not { Length: > 0 }) throw new ArgumentException($"--task {name} needs at least one --model");
                var items = Gsm8kTask.Load(p.GetValue(data)!);
                int n = p.GetValue(limit);
                if (n > 0 && n < items.Count) items = items.Take(n).ToList();
                var reporter = new EvalReporter(p.GetValue(outDir)!, EvalPrices.Load(p.GetValue(pricesFile)), EvalCostOptions.Rates(p, machineCost, powerWatts, electricity));
                foreach (string spec in p.GetValue(models)!)
                {
                    using IEvalModel model = spec.StartsWith(OpenAiEvalModel.Prefix, StringComparison.Ordinal)
                        ? new OpenAiEvalModel(spec, Environment.GetEnvironmentVariable(p.GetValue(apiKeyEnv)!))
                        : new LocalEvalModel(ModelRuntime.Load(new ModelOptions
                        {
                            ModelPath = StoreCommands.ResolveModel(p, spec),
                            Parallel = p.GetValue(concurrency),
                            Threads = p.GetValue(threads),
                            ContextSize = p.GetValue(ctxSize),
                        }));
                    string records = Path.Combine(p.GetValue(outDir)!, name, FileName(model.Name) + ".jsonl");
                    var progress = p.GetValue(json) ? null : new EvalProgress($"{name} {model.Name}");
                    var summary = await new EvalRunner(model, p.GetValue(concurrency), p.GetValue(maxTokens))
                        .RunGsm8kAsync(items, records, progress is null ? null : (done, total) => progress.Report(done, total), cancel);
                    progress?.Finish();
                    var output = p.InvocationConfiguration.Output;
                    var line = reporter.Add(ToJson(summary), model is OpenAiEvalModel ? EvalModelKind.Endpoint : EvalModelKind.Local);
                    if (p.GetValue(json)) output.WriteLine(line.ToJsonString(EvalRecord.Json));
                    else WriteTable(output, summary, records);
                }
                string report = reporter.Finish(p.GetValue(json) ? null : p.InvocationConfiguration.Output);
                p.InvocationConfiguration.Error.WriteLine($"report: {report}");
                return 0;
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                p.InvocationConfiguration.Error.WriteLine("kaiyuan: stopped; the answers so far are saved, and the same command resumes");
                return 130;
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or FormatException or IOException or InvalidDataException
                                         or NotSupportedException or ArgumentException or UnauthorizedAccessException or HttpRequestException or InvalidOperationException)
            {
                p.InvocationConfiguration.Error.WriteLine($"kaiyuan: {e.Message.ReplaceLineEndings(" ").Trim()}");
                return 1;
            }
        });
        return command;
    }

    private static void WriteHumanEval(ParseResult p, string name, Dictionary<int, double> passAtK, List<(string TaskId, SandboxResult Result)> results)
    {
        var output = p.InvocationConfiguration.Output;
        int problems = results.Select(r => r.TaskId).Distinct().Count();
        // The interval of pass@1 by bootstrap over problems (each problem's own pass@1 is its fraction of passing samples).
        var (low, high) = Statistics.Bootstrap(HumanEvalTask.PerProblem(results).Select(p => Statistics.PassAtK(p.N, p.Correct, 1)).ToList());
        if (p.GetValue<bool>("--json"))
        {
            var line = new JsonObject
            {
                ["task"] = HumanEvalTask.Name,
                ["model"] = name,
                ["metric"] = "pass@1",
                ["score"] = passAtK.GetValueOrDefault(1),
                ["ci95"] = new JsonArray(low, high),
                ["n"] = problems,
                ["samples"] = results.Count,
                ["timed_out"] = results.Count(r => r.Result.Outcome == SandboxOutcome.TimedOut),
                ["network_isolated"] = CodeSandbox.IsolatesNetwork,
            };
            foreach (var (k, v) in passAtK) line[$"pass@{k}"] = v;
            output.WriteLine(line.ToJsonString());
            return;
        }
        output.WriteLine($"{HumanEvalTask.Name} · {name} · {problems} problems, {results.Count} samples");
        foreach (var (k, v) in passAtK) output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  pass@{k} {v:P1}") + (k == 1 ? string.Create(CultureInfo.InvariantCulture, $"  (95% CI {low:P1} – {high:P1})") : ""));
        output.WriteLine($"  timed out: {results.Count(r => r.Result.Outcome == SandboxOutcome.TimedOut)}; network {(CodeSandbox.IsolatesNetwork ? "isolated" : "NOT isolated (no unprivileged namespaces here)")}");
    }

    /// <summary>A model name as a file name: characters a file system refuses become '_'.</summary>
    private static string FileName(string name) => string.Concat(name.Select(c => Path.GetInvalidFileNameChars().Contains(c) || c is ':' or '\\' ? '_' : c));

    /// <summary>The report line's contract: task, model, metric, score, ci95, n, tokens, speed, cost (null until prices are known).</summary>
    internal static JsonObject ToJson(EvalSummary s)
    {
        var (low, high) = Statistics.Wilson(s.StrictCorrect, s.N);
        var (flexLow, flexHigh) = Statistics.Wilson(s.FlexibleCorrect, s.N);
        return new JsonObject
        {
            ["task"] = s.Task,
            ["model"] = s.Model,
            ["metric"] = "exact_match",
            ["score"] = s.Score,
            ["ci95"] = new JsonArray(low, high),
            ["n"] = s.N,
            ["tokens_in"] = s.TokensIn,
            ["tokens_out"] = s.TokensOut,
            ["tokens_per_s"] = Math.Round(s.TokensPerSecond, 2),
            ["ttft_ms"] = Math.Round(s.TtftMsMedian, 1),
            ["cost_per_1k_tasks_usd"] = null,
            ["filter"] = "strict-match",
            ["flexible_score"] = s.FlexibleScore,
            ["flexible_ci95"] = new JsonArray(flexLow, flexHigh),
            ["wall_s"] = Math.Round(s.WallSeconds, 2),
        };
    }

    private static void WriteTable(TextWriter output, EvalSummary s, string records)
    {
        var c = CultureInfo.InvariantCulture;
        var (low, high) = Statistics.Wilson(s.StrictCorrect, s.N);
        var (flexLow, flexHigh) = Statistics.Wilson(s.FlexibleCorrect, s.N);
        output.WriteLine(string.Create(c, $"{s.Task} · {s.Model} · {s.N} items"));
        output.WriteLine(string.Create(c, $"  exact match, strict   {s.Score:P1}  (95% CI {low:P1} – {high:P1})"));
        output.WriteLine(string.Create(c, $"  exact match, flexible {s.FlexibleScore:P1}  (95% CI {flexLow:P1} – {flexHigh:P1})"));
        output.WriteLine(string.Create(c, $"  tokens in/out {s.TokensIn:N0} / {s.TokensOut:N0}, {s.TokensPerSecond:F1} tokens/s per answer, median time to first token {s.TtftMsMedian:F0} ms, wall {s.WallSeconds:F1} s"));
        output.WriteLine($"  answers: {records}");
    }
}
