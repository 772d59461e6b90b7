using System.CommandLine;
using System.Text.Json.Nodes;
using Kaiyuan.Chat;
using Kaiyuan.Cli.Eval;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan eval</c>: models' quality and speed on a benchmark, local models in process and any OpenAI-compatible
/// endpoint side by side: GSM8K, HumanEval (generated and run, or saved samples rescored), CMMLU, and user-defined
/// tasks (issue 18). Every task reports one JSON object per (task, model) through <see cref="EvalReport.ToJson"/>, with
/// each model's cost per 1,000 tasks; a table at the end and --out/report.html (<see cref="EvalReporter"/>).
/// </summary>
internal static class EvalCommand
{
    private const string Custom = "custom";

    public static Command Create()
    {
        var task = new Option<string>("--task")
        {
            Description = "Benchmark to run: gsm8k, humaneval, cmmlu, or a user-defined FILE.jsonl (also: custom --data FILE.jsonl)",
            Required = true,
        };
        var samples = new Option<string>("--samples") { Description = "HumanEval: score saved completions instead of generating, JSONL of {task_id, completion} (the reference harness's format)" };
        var samplesPerTask = new Option<int>("--samples-per-task") { Description = "HumanEval: completions per problem (pass@k for every k up to it among 1, 10, 100)", DefaultValueFactory = _ => 1 };
        var temperature = new Option<float?>("--temperature") { Description = "HumanEval: sampling temperature (default 0, greedy, for one sample per problem; 0.8 for more)" };
        var completions = new Option<bool>("--completions") { Description = "Endpoints complete raw prompts (HumanEval, CMMLU) through /v1/completions instead of chat" };
        var timeout = new Option<double>("--timeout") { Description = "HumanEval and code scorers: seconds each program may run", DefaultValueFactory = _ => 3.0 };
        var subjects = new Option<string>("--subjects") { Description = "CMMLU: only these subjects, comma-separated (file names under test/, e.g. arts,virology)" };
        var models = new Option<string[]>("--model", "-m")
        {
            Description = "Model(s) to evaluate: GGUF paths, store references, or openai:BASE_URL#MODEL for an OpenAI-compatible endpoint (repeat the option for several)",
            AllowMultipleArgumentsPerToken = true,
        };
        var data = new Option<string>("--data") { Description = "The task's data: GSM8K test.jsonl, HumanEval.jsonl.gz, CMMLU's folder (with test/ and dev/), or a custom task's JSONL" };
        var limit = new Option<int>("--limit") { Description = "Evaluate only the first N items (CMMLU: the first N of each subject); 0: all" };
        var concurrency = new Option<int>("--concurrency") { Description = "Items answered at once (batched together)", DefaultValueFactory = _ => 1 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens an answer may have at most (CMMLU reads one)", DefaultValueFactory = _ => 512 };
        var outDir = new Option<string>("--out") { Description = "Directory for every prompt and answer (JSONL per task and model); a stopped run resumes from it", DefaultValueFactory = _ => "eval-results" };
        var apiKeyEnv = new Option<string>("--api-key-env") { Description = "Environment variable holding the API key for openai: models", DefaultValueFactory = _ => "OPENAI_API_KEY" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per (task, model) instead of a table" };
        var (machineCost, powerWatts, electricity, pricesFile) = EvalCostOptions.Create();
        var threads = Arguments.Threads();
        var ctxSize = Arguments.ContextSize();
        Arguments.Range(limit, 0, int.MaxValue, "must be 0 (all) or a number of items");
        Arguments.Range(concurrency, 1, 64, "must be between 1 and 64");
        Arguments.Range(maxTokens, 1, 1 << 20, "must be a positive number of tokens");
        Arguments.Range(samplesPerTask, 1, 1000, "must be between 1 and 1000");
        var command = new Command("eval", "Score models on a benchmark (accuracy with a 95% interval, tokens, speed)")
        {
            task, models, data, samples, samplesPerTask, temperature, completions, timeout, subjects, limit, concurrency, maxTokens, outDir, apiKeyEnv, json, threads, ctxSize,
            machineCost, powerWatts, electricity, pricesFile, EvalReportCommand.Create(),
        };
        command.SetAction(async (p, cancel) =>
        {
            string name = p.GetValue(task)!;
            bool customFile = name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase);
            if (!customFile && name is not (Gsm8kTask.Name or HumanEvalTask.Name or CmmluTask.Name or Custom))
            {
                p.InvocationConfiguration.Error.WriteLine(
                    $"kaiyuan: --task {name}: unknown task (known: {Gsm8kTask.Name}, {HumanEvalTask.Name}, {CmmluTask.Name}, or a user-defined FILE.jsonl)");
                return 1;
            }
            var output = p.InvocationConfiguration.Output;
            try
            {
                var sandbox = new CodeSandbox(TimeSpan.FromSeconds(p.GetValue(timeout)));
                int n = p.GetValue(limit);
                if (name == HumanEvalTask.Name && p.GetValue(samples) is { } file)
                {
                    var problems = HumanEvalTask.LoadProblems(Data(p, data, name));
                    var (_, results) = await HumanEvalTask.ScoreAsync(problems, HumanEvalTask.LoadSamples(file), [1, 10, 100], sandbox, p.GetValue(concurrency), cancel);
                    Write(p, HumanEvalTask.Report(Path.GetFileNameWithoutExtension(file), results.Select(r => (r.TaskId, r.Result.Outcome)).ToList(), [1, 10, 100]), null);
                    return 0;
                }
                IEvalTask evalTask = name switch
                {
                    Gsm8kTask.Name => new Gsm8kTask(Gsm8kTask.Load(Data(p, data, name)) is var items && n > 0 && n < items.Count ? items[..n] : items, p.GetValue(maxTokens)),
                    HumanEvalTask.Name => HumanEval(p, Data(p, data, name), n, p.GetValue(samplesPerTask), p.GetValue(temperature), p.GetValue(maxTokens), sandbox),
                    CmmluTask.Name => CmmluTask.Load(Data(p, data, name), n, p.GetValue(subjects)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)),
                    _ => CustomTask.Load(customFile ? name : Data(p, data, name), n, p.GetValue(maxTokens), sandbox),
                };
                if (p.GetValue(models) is not { Length: > 0 }) throw new ArgumentException($"--task {name} needs at least one --model");
                var reporter = new EvalReporter(p.GetValue(outDir)!, EvalPrices.Load(p.GetValue(pricesFile)), EvalCostOptions.Rates(p, machineCost, powerWatts, electricity));
                foreach (string spec in p.GetValue(models)!)
                {
                    using IEvalModel model = spec.StartsWith(OpenAiEvalModel.Prefix, StringComparison.Ordinal)
                        ? new OpenAiEvalModel(spec, Environment.GetEnvironmentVariable(p.GetValue(apiKeyEnv)!), completions: p.GetValue(completions))
                        : new LocalEvalModel(ModelRuntime.Load(new ModelOptions
                        {
                            ModelPath = StoreCommands.ResolveModel(p, spec),
                            Parallel = p.GetValue(concurrency),
                            Threads = p.GetValue(threads),
                            ContextSize = p.GetValue(ctxSize),
                        }));
                    string records = Path.Combine(p.GetValue(outDir)!, FileName(evalTask.Name), FileName(model.Name) + ".jsonl");
                    var progress = p.GetValue(json) ? null : new EvalProgress($"{evalTask.Name} {model.Name}");
                    var result = await new EvalRunner(model, p.GetValue(concurrency))
                        .RunAsync(evalTask, records, progress is null ? null : (done, total) => progress.Report(done, total), cancel);
                    progress?.Finish();
                    var line = reporter.Add(ToJson(result), model is OpenAiEvalModel ? EvalModelKind.Endpoint : EvalModelKind.Local);
                    if (p.GetValue(json)) output.WriteLine(line.ToJsonString(EvalRecord.Json));
                    else EvalReport.WriteTable(output, result, records);
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
                                         or NotSupportedException or ArgumentException or UnauthorizedAccessException or HttpRequestException or InvalidOperationException
                                         or RequestException)
            {
                p.InvocationConfiguration.Error.WriteLine($"kaiyuan: {e.Message.ReplaceLineEndings(" ").Trim()}");
                return 1;
            }
        });
        return command;
    }

    private static string Data(ParseResult p, Option<string> data, string task) =>
        p.GetValue(data) ?? throw new ArgumentException($"--task {task} needs --data (its data file or folder)");

    private static HumanEvalGeneration HumanEval(ParseResult p, string data, int limit, int samples, float? temperature, int maxTokens, CodeSandbox sandbox)
    {
        var problems = HumanEvalTask.LoadProblemList(data);
        if (limit > 0 && limit < problems.Count) problems = problems[..limit];
        // One sample is the greedy answer; several are draws, at the HumanEval paper's temperature for pass@10 and above.
        float t = temperature ?? (samples > 1 ? 0.8f : 0f);
        if (t < 0 || t > 2) throw new ArgumentException("--temperature must be between 0 and 2");
        if (samples > 1 && t == 0) p.InvocationConfiguration.Error.WriteLine($"kaiyuan: --samples-per-task {samples} at temperature 0: every sample of a problem is the same answer");
        return new HumanEvalGeneration(problems, samples, t, maxTokens, sandbox);
    }

    private static void Write(ParseResult p, EvalResult result, string? records)
    {
        var output = p.InvocationConfiguration.Output;
        if (p.GetValue<bool>("--json")) output.WriteLine(ToJson(result).ToJsonString());
        else EvalReport.WriteTable(output, result, records);
    }

    /// <summary>A model name as a file name: characters a file system refuses become '_'.</summary>
    private static string FileName(string name) => string.Concat(name.Select(c => Path.GetInvalidFileNameChars().Contains(c) || c is ':' or '\\' ? '_' : c));

    /// <summary>The report line of a result: the contract every task shares (<see cref="EvalReport.ToJson"/>).</summary>
    internal static JsonObject ToJson(EvalResult result) => EvalReport.ToJson(result);
}
