using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Kaiyuan.Cli.Eval;
using Kaiyuan.Tests.Hub;

namespace Kaiyuan.Tests.Eval;

/// <summary>The comparison logic of the report: the Pareto frontier and each row against the best.</summary>
public sealed class EvalComparisonTests
{
    [Fact]
    public void TheParetoFrontierKeepsOnlyModelsNoOtherIsBothBetterAndCheaperThan()
    {
        (double, double)[] points =
        [
            (0.24, 0.61), // 0: cheapest: on the frontier
            (0.34, 0.91), // 1: on it
            (0.41, 0.90), // 2: dominated by 1 (dearer, worse)
            (0.80, 0.82), // 3: dominated by 1
            (1.75, 0.93), // 4: best score: on it
            (1.75, 0.92), // 5: dominated by 4 (same cost, worse)
            (0.34, 0.91), // 6: equal to 1: neither dominates the other
            (3.00, 0.93), // 7: dominated by 4 (same score, dearer)
        ];
        Assert.Equal([0, 1, 4, 6], EvalComparison.ParetoFrontier(points));
        Assert.Empty(EvalComparison.ParetoFrontier([]));
        Assert.Equal([0], EvalComparison.ParetoFrontier([(0, 0)]));
    }

    private static EvalRow Row(string model, double score, double? cost) =>
        new("gsm8k", model, "exact_match", score, null, null, 100, null, null, null, null, cost, null, null, null);

    [Fact]
    public void EachRowSaysHowFarBehindTheBestAndHowManyTimesCheaper()
    {
        var best = Row("big", 0.93, 1.75);
        var cheap = Row("small", 0.61, 0.25);
        var dear = Row("local", 0.55, 3.50);
        var unpriced = Row("mine", 0.70, null);
        var tie = Row("twin", 0.93, 0.875);
        var close = Row("close", 0.90, 1.70);
        var task = new List<EvalRow> { best, cheap, dear, unpriced, tie, close };
        Assert.Equal("best score", EvalComparison.Versus(best, task));
        Assert.Equal("−32.0 pts · ×7.0 cheaper · cheapest", EvalComparison.Versus(cheap, task));
        Assert.Equal("−38.0 pts · ×2.0 dearer", EvalComparison.Versus(dear, task));
        Assert.Equal("−23.0 pts", EvalComparison.Versus(unpriced, task));
        Assert.Equal("ties best · ×2.0 cheaper", EvalComparison.Versus(tie, task));
        Assert.Equal("−3.0 pts · about the same cost", EvalComparison.Versus(close, task));
    }

    [Fact]
    public void SmallCostsKeepThreeSignificantDigitsWithoutAnExponent()
    {
        Assert.Equal("$0.00758", EvalRow.Usd(0.0075812));
        Assert.Equal("$0.0000461", EvalRow.Usd(0.0000461));
        Assert.Equal("$0.244", EvalRow.Usd(0.2444));
        Assert.Equal("$1.75", EvalRow.Usd(1.752));
        Assert.Equal("$1,234", EvalRow.Usd(1234.4));
    }
}

/// <summary>
/// The table and report.html through the real command line: <c>eval report</c> on hand-made summaries, and a real
/// GSM8K run on the fixture model with the cost filled, summary.jsonl saved and the report written.
/// </summary>
[Collection("Console")]
public sealed class EvalReportTests : IDisposable
{
    private readonly string _out = Directory.CreateTempSubdirectory("kaiyuan-evalreport-").FullName;

    public void Dispose() => Directory.Delete(_out, recursive: true);

    private static string Line(string task, string model, double score, double lo, double hi, int n, long tokensIn, long tokensOut, double wall, string kind,
        double tokensPerSecond = 20) => new JsonObject
        {
            ["task"] = task,
            ["model"] = model,
            ["metric"] = task == "humaneval" ? "pass@1" : "exact_match",
            ["score"] = score,
            ["ci95"] = new JsonArray(lo, hi),
            ["n"] = n,
            ["tokens_in"] = tokensIn,
            ["tokens_out"] = tokensOut,
            ["tokens_per_s"] = tokensPerSecond,
            ["ttft_ms"] = 300.0,
            ["cost_per_1k_tasks_usd"] = null,
            ["wall_s"] = wall,
            ["model_kind"] = kind,
        }.ToJsonString();

    private void HandMadeSummaries()
    {
        File.WriteAllLines(Path.Combine(_out, "summary.jsonl"),
        [
            Line("gsm8k", "qwen3-8b-q4_k_m", 0.10, 0.05, 0.15, 500, 120_000, 95_000, 3600, "local"), // replaced below: the latest line wins
            Line("gsm8k", "gpt-4.1", 0.93, 0.905, 0.95, 500, 110_000, 82_000, 500, "endpoint", 55),
            Line("gsm8k", "gpt-4.1-mini-2025-04-14", 0.91, 0.88, 0.93, 500, 110_000, 80_000, 400, "endpoint", 70),
            Line("gsm8k", "my-vllm-model", 0.70, 0.66, 0.74, 500, 112_000, 85_000, 300, "endpoint", 90),
            Line("gsm8k", "qwen3-8b-q4_k_m", 0.82, 0.79, 0.85, 500, 120_000, 95_000, 3600, "local", 14),
            Line("humaneval", "gpt-4.1-mini", 0.80, 0.73, 0.86, 164, 30_000, 38_000, 200, "endpoint", 70),
            Line("humaneval", "qwen3-8b-q4_k_m", 0.55, 0.47, 0.63, 164, 30_000, 40_000, 2000, "local", 13),
        ]);
    }

    private string NoUserPrices()
    {
        string path = Path.Combine(_out, "no-prices.json");
        File.WriteAllText(path, """{"models": {}}""");
        return path;
    }

    [Fact]
    public void ReportRebuildsTheTableAndAnHtmlPageWithPlotsFromSavedSummaries()
    {
        HandMadeSummaries();
        var (code, output, error) = ConsoleRunner.Run("eval", "report", "--out", _out, "--reprice", "--machine-cost-per-hour", "0.40", "--prices", NoUserPrices());
        Assert.True(code == 0, error);
        Assert.DoesNotContain('\u001b', output); // redirected: no ANSI codes
        // One row per (task, model), the later qwen3-8b line having replaced the earlier one; costs hand-computed:
        // gpt-4.1 (110,000 × $2 + 82,000 × $8) / 1M / 500 × 1000 = $1.752; qwen3-8b one hour at $0.40 for 500 items = $0.80.
        Assert.Matches(@"\| gsm8k +\| gpt-4\.1 +\| 93\.0% \[90\.5, 95\.0\] exact_match +\| +500 \| +110,000 \| +82,000 \| +55\.0 \| +300 \| +\$1\.75 \| best score", output);
        Assert.Matches(@"\| gsm8k +\| qwen3-8b-q4_k_m +\| 82\.0% .*\| +\$0\.800 \| −11\.0 pts · ×2\.2 cheaper", output);
        Assert.Matches(@"\| gsm8k +\| my-vllm-model .*\| +– \| −23\.0 pts", output);
        Assert.Contains("no API price for 'my-vllm-model'", output);
        Assert.DoesNotContain("10.0%", output);

        var saved = File.ReadAllLines(Path.Combine(_out, "summary.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(6, saved.Count);
        Assert.Equal(1.752, (double)saved.Single(s => (string)s["model"]! == "gpt-4.1")["cost_per_1k_tasks_usd"]!, 9);

        string html = File.ReadAllText(Path.Combine(_out, "report.html"));
        Assert.StartsWith("<!DOCTYPE html>", html);
        foreach (string model in new[] { "gpt-4.1", "gpt-4.1-mini-2025-04-14", "my-vllm-model", "qwen3-8b-q4_k_m", "gpt-4.1-mini" })
            Assert.Contains($"<td>{model}</td>", html);
        Assert.Equal(7, Regex.Count(html, "<tr")); // the header and six rows
        Assert.Equal(4, Regex.Count(html, "<svg")); // per task: score vs cost, score vs speed
        Assert.Contains("Pareto frontier", html);
        Assert.Contains("gsm8k: score vs cost", html);
        Assert.Contains("humaneval: score vs speed", html);
        // Self-contained: nothing to fetch.
        Assert.DoesNotMatch("(src|href)=\"(https?:)?//", html);
        Assert.DoesNotContain("<script", html);
    }

    [Fact]
    public void ReportWithoutSummariesOrWithABrokenOneIsAClearError()
    {
        var (code, _, error) = ConsoleRunner.Run("eval", "report", "--out", _out);
        Assert.Equal(1, code);
        Assert.Contains("summary.jsonl: no summaries here", error);

        File.WriteAllText(Path.Combine(_out, "summary.jsonl"), "{\"task\":\"gsm8k\"}\n{}\n");
        (code, _, error) = ConsoleRunner.Run("eval", "report", "--out", _out);
        Assert.Equal(1, code);
        Assert.Contains("summary.jsonl:1: not an eval summary", error);
    }

    private (int Code, string Out, string Err) Eval(params string[] more) => ConsoleRunner.Run(
        ["eval", "--task", "gsm8k", "-m", Fixtures.ModelPath("qwen3", "qwen3-q8_0.gguf"), "--data", Fixtures.Require("eval", "gsm8k", "test.jsonl"),
         "--limit", "2", "--max-tokens", "8", "-t", "1", "--out", _out, "--prices", NoUserPrices(), .. more]);

    [Fact]
    public void ARealRunPrintsOneJsonLinePerModelWithItsCostAndWritesTheReport()
    {
        var (code, output, error) = Eval("--json", "--machine-cost-per-hour", "3.6");
        Assert.True(code == 0, error);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var line = Assert.Single(lines);
        var summary = JsonNode.Parse(line)!.AsObject();
        Assert.Equal("machine_hour", (string)summary["cost_basis"]!);
        Assert.Equal("local", (string)summary["model_kind"]!);
        // $3.60 an hour is $0.001 a second: the cost is the wall time in ms / 1000, and per 1,000 tasks that over 2 items × 1000.
        double wall = (double)summary["wall_s"]!, cost = (double)summary["cost_usd"]!;
        Assert.Equal(wall * 0.001, cost, 6);
        Assert.Equal(cost / 2 * 1000, (double)summary["cost_per_1k_tasks_usd"]!, 5);

        var saved = JsonNode.Parse(Assert.Single(File.ReadAllLines(Path.Combine(_out, "summary.jsonl"))))!.AsObject();
        Assert.Equal(summary.ToJsonString(), saved.ToJsonString());
        string html = File.ReadAllText(Path.Combine(_out, "report.html"));
        Assert.Contains("<td>qwen3-q8_0</td>", html);
        Assert.Contains("<svg", html);
    }

    [Fact]
    public void ARealRunEndsWithThePlainTextTable()
    {
        var (code, output, error) = Eval("--power-watts", "100", "--electricity-price", "0.2");
        Assert.True(code == 0, error);
        Assert.DoesNotContain('\u001b', output);
        Assert.DoesNotContain('\u001b', error);
        Assert.Matches(@"\| gsm8k +\| qwen3-q8_0 +\| 0\.0% \[0\.0, 65\.8\] exact_match +\| +2 \|.*\| +\$[0-9.]+ \| best score", output);
        Assert.Contains("gsm8k qwen3-q8_0: 2/2", error); // the progress, as plain lines when redirected
        Assert.Contains("report: " + Path.Combine(_out, "report.html"), error);

        var (halfCode, _, halfError) = Eval("--power-watts", "100");
        Assert.Equal(1, halfCode);
        Assert.Contains("--power-watts and --electricity-price go together", halfError);
    }
}
