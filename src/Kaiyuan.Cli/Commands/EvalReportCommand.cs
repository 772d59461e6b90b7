using System.CommandLine;
using Kaiyuan.Cli.Eval;

namespace Kaiyuan.Cli.Commands;

/// <summary>
/// <c>kaiyuan eval report --out DIR</c>: the table and DIR/report.html again from DIR/summary.jsonl, without running a model
/// (after runs of single models into one folder, or to re-price: <c>--reprice</c> fills costs anew from today's prices and rates).
/// </summary>
internal static class EvalReportCommand
{
    public static Command Create()
    {
        var outDir = new Option<string>("--out") { Description = "The eval output directory holding summary.jsonl", DefaultValueFactory = _ => "eval-results" };
        var reprice = new Option<bool>("--reprice") { Description = "Compute every cost again from the current prices and the rates given here (saved lines keep their own otherwise)" };
        var (machine, watts, electricity, prices) = EvalCostOptions.Create();
        var command = new Command("report", "Rebuild the results table and report.html from the summaries an eval run saved") { outDir, reprice, machine, watts, electricity, prices };
        command.SetAction(p =>
        {
            try
            {
                string dir = p.GetValue(outDir)!;
                var table = EvalPrices.Load(p.GetValue(prices));
                if (p.GetValue(reprice))
                {
                    var rates = EvalCostOptions.Rates(p, machine, watts, electricity);
                    var lines = EvalSummaryLog.Read(dir);
                    foreach (var line in lines)
                        EvalCost.Fill(line, (string?)line["model_kind"] == "endpoint" ? EvalModelKind.Endpoint : EvalModelKind.Local, table, rates);
                    File.WriteAllLines(EvalSummaryLog.PathIn(dir), lines.Select(l => l.ToJsonString(EvalRecord.Json)));
                }
                string report = EvalReporter.Report(dir, table.ShippedAsOf, p.InvocationConfiguration.Output);
                p.InvocationConfiguration.Error.WriteLine($"report: {report}");
                return 0;
            }
            catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or FormatException or IOException or ArgumentException or UnauthorizedAccessException)
            {
                p.InvocationConfiguration.Error.WriteLine($"kaiyuan: {e.Message.ReplaceLineEndings(" ").Trim()}");
                return 1;
            }
        });
        return command;
    }
}

/// <summary>The cost options <c>eval</c> and <c>eval report</c> share.</summary>
internal static class EvalCostOptions
{
    public static (Option<double?> Machine, Option<double?> Watts, Option<double?> Electricity, Option<string> Prices) Create() =>
    (
        new Option<double?>("--machine-cost-per-hour") { Description = "Local models: what the machine costs per hour in USD (rent or amortisation); cost = wall time × rate" },
        new Option<double?>("--power-watts") { Description = "Local models: the machine's power draw in watts while evaluating (with --electricity-price)" },
        new Option<double?>("--electricity-price") { Description = "Local models: USD per kWh (with --power-watts); added to --machine-cost-per-hour when both are given" },
        new Option<string>("--prices") { Description = "API prices to lay over the shipped ones (default: KAIYUAN_HOME/prices.json when it exists)" }
    );

    public static CostRates Rates(ParseResult p, Option<double?> machine, Option<double?> watts, Option<double?> electricity)
    {
        var rates = new CostRates(p.GetValue(machine), p.GetValue(watts), p.GetValue(electricity));
        rates.Validate();
        return rates;
    }
}
