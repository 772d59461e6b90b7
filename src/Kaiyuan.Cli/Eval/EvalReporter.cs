using System.Text.Json.Nodes;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// What <c>kaiyuan eval</c> does with each (task, model) summary line, whatever the task: fills its cost, saves it to
/// <c>--out/summary.jsonl</c>; and at the end of the run, the side-by-side table and report.html from everything saved there.
/// </summary>
internal sealed class EvalReporter(string outDir, EvalPrices prices, CostRates rates)
{
    public string OutDir => outDir;

    /// <summary>Fills <paramref name="summary"/>'s cost (in place) and appends it to summary.jsonl; returns it.</summary>
    public JsonObject Add(JsonObject summary, EvalModelKind kind)
    {
        EvalCost.Fill(summary, kind, prices, rates);
        EvalSummaryLog.Append(outDir, summary);
        return summary;
    }

    /// <summary>Writes report.html from summary.jsonl and, unless <paramref name="table"/> is null, prints the table there; returns the report's path.</summary>
    public string Finish(TextWriter? table) => Report(outDir, prices.ShippedAsOf, table);

    /// <summary>The table and report.html from the summaries saved in <paramref name="outDir"/>.</summary>
    public static string Report(string outDir, string pricesAsOf, TextWriter? table)
    {
        var rows = EvalSummaryLog.Read(outDir).Select(EvalRow.From).ToList();
        if (table is not null) EvalTable.Write(table, ReferenceEquals(table, Console.Out) && !Console.IsOutputRedirected, rows);
        return EvalHtmlReport.Write(outDir, rows, pricesAsOf);
    }
}
