using System.Globalization;
using System.Text.Json.Nodes;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// One (task, model) summary line as the table and report read it. Only task, model and score are required; a task that
/// reports no tokens, speed or cost shows "–" there.
/// </summary>
internal sealed record EvalRow(string Task, string Model, string Metric, double Score, double? CiLow, double? CiHigh, long? N,
    long? TokensIn, long? TokensOut, double? TokensPerSecond, double? TtftMs, double? CostPer1k, string? CostBasis, string? CostNote, string? Kind)
{
    public static EvalRow From(JsonObject o)
    {
        double? ciLow = null, ciHigh = null;
        if (o["ci95"] is JsonArray { Count: 2 } ci && EvalCost.Number(ci[0]) is { } l && EvalCost.Number(ci[1]) is { } h)
            (ciLow, ciHigh) = (l, h);
        return new EvalRow((string?)o["task"] ?? "?", (string?)o["model"] ?? "?", (string?)o["metric"] ?? "score",
            EvalCost.Number(o, "score") ?? 0, ciLow, ciHigh, Long(o, "n"), Long(o, "tokens_in"), Long(o, "tokens_out"),
            EvalCost.Number(o, "tokens_per_s"), EvalCost.Number(o, "ttft_ms"), EvalCost.Number(o, "cost_per_1k_tasks_usd"),
            Text(o, "cost_basis"), Text(o, "cost_note"), Text(o, "model_kind"));
    }

    private static long? Long(JsonObject o, string key) => EvalCost.Number(o, key) is { } d ? (long)Math.Round(d) : null;

    private static string? Text(JsonObject o, string key) => o[key] is JsonValue v && v.TryGetValue(out string? s) ? s : null;

    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public string ScoreText => CiLow is { } lo && CiHigh is { } hi
        ? string.Create(C, $"{Score * 100:0.0}% [{lo * 100:0.0}, {hi * 100:0.0}]")
        : string.Create(C, $"{Score * 100:0.0}%");

    public string CostText => CostPer1k is { } cost ? Usd(cost) : "–";

    public static string Usd(double usd) => usd switch
    {
        0 => "$0",
        >= 100 => string.Create(C, $"${usd:N0}"),
        >= 1 => string.Create(C, $"${usd:0.00}"),
        >= 0.01 => string.Create(C, $"${usd:0.000}"),
        // Three significant digits, without an exponent a reader must decode.
        _ => "$" + Math.Round(usd, Math.Min(15, 2 - (int)Math.Floor(Math.Log10(usd)))).ToString("0.############", C),
    };

    public static string Count(long? n) => n is { } v ? v.ToString("N0", C) : "–";

    public static string Fixed(double? v, string format) => v is { } d ? d.ToString(format, C) : "–";
}

/// <summary>How the rows of one task compare: the best score, the cheapest, each row against the best, and the Pareto frontier.</summary>
internal static class EvalComparison
{
    /// <summary>
    /// A row against its task's best-scoring row: points behind it, and how many times cheaper or dearer per 1,000 tasks,
    /// e.g. "best", "−4.0 pts · ×12 cheaper". The cheapest row of a task with several costs says so too.
    /// </summary>
    public static string Versus(EvalRow row, IReadOnlyList<EvalRow> task)
    {
        var c = CultureInfo.InvariantCulture;
        // The first of the best-scoring rows is the one the others are measured against (ties included).
        var best = task.MaxBy(r => r.Score)!;
        var parts = new List<string>();
        if (ReferenceEquals(row, best)) parts.Add("best score");
        else if (row.Score >= best.Score) parts.Add("ties best");
        else parts.Add(string.Create(c, $"−{(best.Score - row.Score) * 100:0.0} pts"));
        if (!ReferenceEquals(row, best) && row.CostPer1k is { } mine && best.CostPer1k is { } theirs)
        {
            // Within 5% a ratio would print as ×1.0, which says nothing: call it the same cost.
            if (mine > 0 && theirs >= mine * 1.05) parts.Add(string.Create(c, $"×{Ratio(theirs / mine)} cheaper"));
            else if (theirs > 0 && mine >= theirs * 1.05) parts.Add(string.Create(c, $"×{Ratio(mine / theirs)} dearer"));
            else parts.Add("about the same cost");
        }
        var priced = task.Where(r => r.CostPer1k is not null).ToList();
        if (priced.Count > 1 && row.CostPer1k is { } cost && cost <= priced.Min(r => r.CostPer1k!.Value)) parts.Add("cheapest");
        return string.Join(" · ", parts);
    }

    private static string Ratio(double r) => r >= 10 ? r.ToString("0", CultureInfo.InvariantCulture) : r.ToString("0.0", CultureInfo.InvariantCulture);

    /// <summary>
    /// The indices of the points no other point dominates: none has a cost as low or lower and a score as high or higher,
    /// one of them strictly. Equal points do not dominate each other.
    /// </summary>
    public static List<int> ParetoFrontier(IReadOnlyList<(double Cost, double Score)> points)
    {
        var frontier = new List<int>();
        for (int i = 0; i < points.Count; i++)
        {
            var (cost, score) = points[i];
            bool dominated = false;
            for (int j = 0; j < points.Count && !dominated; j++)
            {
                var (otherCost, otherScore) = points[j];
                dominated = j != i && otherCost <= cost && otherScore >= score && (otherCost < cost || otherScore > score);
            }
            if (!dominated) frontier.Add(i);
        }
        return frontier;
    }
}
