using System.Globalization;
using System.Text.Json.Nodes;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// A benchmark as the runner sees it: items, each answered <see cref="SamplesPerItem"/> times from a prompt, each answer
/// scored into a record as soon as it arrives (the records are what a stopped run resumes from), and the records summed
/// up into a result.
/// </summary>
internal interface IEvalTask
{
    /// <summary>The task's name in reports and under <c>--out</c>.</summary>
    string Name { get; }

    int Count { get; }

    int SamplesPerItem { get; }

    /// <summary>What the model is asked for item <paramref name="index"/>'s sample <paramref name="sample"/>.</summary>
    EvalRequest Request(int index, int sample, IEvalModel model);

    /// <summary>A shorter request for item <paramref name="index"/> after an endpoint refused <paramref name="refused"/> as too long for its context; null: none.</summary>
    EvalRequest? Shorten(int index, EvalRequest refused) => null;

    /// <summary>The record of an answer (the runner's <paramref name="answered"/> has the prompt, output and costs) with the task's verdict.</summary>
    Task<EvalRecord> ScoreAsync(EvalRecord answered, EvalAnswer answer, CancellationToken cancel);

    /// <summary>The score of all records (in item, then sample order); <paramref name="recordsPath"/> is where they are saved, beside which a task may write more.</summary>
    EvalResult Summarize(string model, IReadOnlyList<EvalRecord> records, string recordsPath);
}

/// <summary>The cost of a run: tokens, speed per answer, median time to first token, wall time.</summary>
internal sealed record EvalSpeed(long TokensIn, long TokensOut, double TokensPerSecond, double TtftMsMedian, double WallSeconds)
{
    public static EvalSpeed Of(IReadOnlyList<EvalRecord> records, TimeSpan wall)
    {
        double generation = records.Sum(r => r.GenerationSeconds);
        var ttfts = records.Select(r => r.TtftMs).Order().ToList();
        return new EvalSpeed(records.Sum(r => (long)r.TokensIn), records.Sum(r => (long)r.TokensOut), generation > 0 ? records.Sum(r => r.TokensOut) / generation : 0,
            ttfts.Count == 0 ? 0 : ttfts[ttfts.Count / 2], wall.TotalSeconds);
    }
}

/// <summary>
/// What one (task, model) run measured: the headline score with its 95% interval, the cost (null when no model ran, as
/// when saved HumanEval samples are rescored), the task's further figures for the JSON line, and its lines for the table.
/// </summary>
internal sealed record EvalResult(string Task, string Model, string Metric, double Score, double CiLow, double CiHigh, int N)
{
    public EvalSpeed? Speed { get; init; }

    /// <summary>Keys added to the JSON line after the contract's.</summary>
    public JsonObject Extra { get; init; } = [];

    /// <summary>The table's lines about the score (a header first); the costs and the records' path follow them.</summary>
    public IReadOnlyList<string> Lines { get; init; } = [];
}

/// <summary>The two outputs every task shares: the JSON line (the report contract) and the table.</summary>
internal static class EvalReport
{
    /// <summary>
    /// The report line's contract: task, model, metric, score, ci95, n, tokens, speed, cost (null until prices are known),
    /// then the task's own keys.
    /// </summary>
    public static JsonObject ToJson(EvalResult r)
    {
        var line = new JsonObject
        {
            ["task"] = r.Task,
            ["model"] = r.Model,
            ["metric"] = r.Metric,
            ["score"] = r.Score,
            ["ci95"] = new JsonArray(r.CiLow, r.CiHigh),
            ["n"] = r.N,
            ["tokens_in"] = r.Speed?.TokensIn,
            ["tokens_out"] = r.Speed?.TokensOut,
            ["tokens_per_s"] = r.Speed is { } s ? Math.Round(s.TokensPerSecond, 2) : null,
            ["ttft_ms"] = r.Speed is { } t ? Math.Round(t.TtftMsMedian, 1) : null,
            ["cost_per_1k_tasks_usd"] = null,
        };
        foreach (var (key, value) in r.Extra) line[key] = value?.DeepClone();
        if (r.Speed is { } w) line["wall_s"] = Math.Round(w.WallSeconds, 2);
        return line;
    }

    public static void WriteTable(TextWriter output, EvalResult r, string? records)
    {
        foreach (string line in r.Lines) output.WriteLine(line);
        if (r.Speed is { } s)
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  tokens in/out {s.TokensIn:N0} / {s.TokensOut:N0}, {s.TokensPerSecond:F1} tokens/s per answer, median time to first token {s.TtftMsMedian:F0} ms, wall {s.WallSeconds:F1} s"));
        if (records is not null) output.WriteLine($"  answers: {records}");
    }

    /// <summary>"  {label} {score}  (95% CI {low} – {high})", as the table writes a score.</summary>
    public static string ScoreLine(string label, double score, double low, double high) =>
        string.Create(CultureInfo.InvariantCulture, $"  {label} {score:P1}  (95% CI {low:P1} – {high:P1})");
}
