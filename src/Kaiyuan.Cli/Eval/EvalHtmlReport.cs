using System.Globalization;
using System.Net;
using System.Text;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// <c>--out/report.html</c>: one self-contained page (inline CSS and SVG, no script, nothing fetched) with the results
/// table and, per task, score against cost per 1,000 tasks (with the Pareto frontier) and score against tokens/s.
/// </summary>
internal static class EvalHtmlReport
{
    public const string FileName = "report.html";

    public static string Write(string outDir, IReadOnlyList<EvalRow> rows, string pricesAsOf)
    {
        Directory.CreateDirectory(outDir);
        string path = Path.Combine(outDir, FileName);
        File.WriteAllText(path, Render(rows, pricesAsOf, DateTimeOffset.UtcNow));
        return path;
    }

    public static string Render(IReadOnlyList<EvalRow> rows, string pricesAsOf, DateTimeOffset generated)
    {
        var html = new StringBuilder();
        html.Append("""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>kaiyuan eval report</title>
            <style>
            body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#222;max-width:1200px}
            table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
            th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
            th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
            tr.best td{font-weight:600} .note{color:#666;font-size:.85rem}
            figure{display:inline-block;margin:.5rem 1rem .5rem 0} svg{max-width:100%;height:auto}
            </style></head><body>
            <h1>kaiyuan eval report</h1>

            """);
        html.Append(CultureInfo.InvariantCulture, $"<p class=\"note\">Generated {E(generated.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture))}. ");
        html.Append(CultureInfo.InvariantCulture, $"Scores with 95% confidence intervals. API costs from list prices as of {E(pricesAsOf)} (or the user's prices.json); ");
        html.Append("local models' costs are their wall-clock time, at their concurrency, times the machine's hourly rate.</p>\n");
        html.Append("<table><thead><tr><th>task</th><th>model</th><th>score [95% CI]</th><th>n</th><th>tokens in</th><th>tokens out</th>"
                    + "<th>tokens/s</th><th>TTFT ms</th><th>$ / 1k tasks</th><th>cost basis</th><th>vs best</th></tr></thead><tbody>\n");
        foreach (var task in rows.GroupBy(r => r.Task))
        {
            var group = task.ToList();
            var best = group.MaxBy(r => r.Score);
            foreach (var r in group)
            {
                html.Append(ReferenceEquals(r, best) && group.Count > 1 ? "<tr class=\"best\">" : "<tr>");
                html.Append(CultureInfo.InvariantCulture, $"<td>{E(r.Task)}</td><td>{E(r.Model)}</td><td>{E(r.ScoreText)} {E(r.Metric)}</td>");
                foreach (string cell in new[] { EvalRow.Count(r.N), EvalRow.Count(r.TokensIn), EvalRow.Count(r.TokensOut), EvalRow.Fixed(r.TokensPerSecond, "0.0"), EvalRow.Fixed(r.TtftMs, "0"), r.CostText })
                    html.Append(CultureInfo.InvariantCulture, $"<td class=\"num\">{E(cell)}</td>");
                html.Append(CultureInfo.InvariantCulture, $"<td title=\"{E(r.CostNote ?? "")}\">{E(r.CostBasis ?? "–")}</td><td>{E(EvalComparison.Versus(r, group))}</td></tr>\n");
            }
        }
        html.Append("</tbody></table>\n");
        var missing = rows.Where(r => r.CostPer1k is null && r.CostNote is not null).ToList();
        if (missing.Count > 0)
        {
            html.Append("<ul class=\"note\">");
            foreach (var r in missing) html.Append(CultureInfo.InvariantCulture, $"<li>{E(r.Task)} · {E(r.Model)}: no cost: {E(r.CostNote!)}</li>");
            html.Append("</ul>\n");
        }
        foreach (var task in rows.GroupBy(r => r.Task))
        {
            var group = task.ToList();
            html.Append(CultureInfo.InvariantCulture, $"<h2>{E(task.Key)}</h2>\n");
            string? cost, speed;
            try
            {
                (cost, speed) = (EvalPlots.ScoreVersusCost(task.Key, group), EvalPlots.ScoreVersusSpeed(task.Key, group));
            }
            catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or BadImageFormatException)
            {
                // A platform without SkiaSharp's native library still gets the table; the plots are what it cannot draw.
                html.Append(CultureInfo.InvariantCulture, $"<p class=\"note\">No plots: the drawing library could not load here ({E(e.GetBaseException().Message)}).</p>\n");
                continue;
            }
            if (cost is not null)
                html.Append("<figure>").Append(cost).Append("<figcaption class=\"note\">Filled points and the dashed line: the Pareto frontier, models that no other beats on both score and cost.</figcaption></figure>\n");
            else html.Append("<p class=\"note\">No model of this task has a cost, so there is no cost plot.</p>\n");
            if (speed is not null) html.Append("<figure>").Append(speed).Append("</figure>\n");
        }
        html.Append("</body></html>\n");
        return html.ToString();
    }

    private static string E(string s) => WebUtility.HtmlEncode(s);
}
