using ScottPlot;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// The report's plots, drawn with ScottPlot as SVG (text stays text, and the file needs nothing else to show): score
/// against cost per 1,000 tasks with the Pareto frontier, and score against tokens/s; 95% intervals as error bars.
/// </summary>
internal static class EvalPlots
{
    public const int Width = 760, Height = 480;

    /// <summary>
    /// Score against cost per 1,000 tasks for the rows of one task that have a cost, with the frontier of models no other
    /// beats on both; null when fewer than one row has a cost. Costs spanning more than 20× are drawn on a log axis.
    /// </summary>
    public static string? ScoreVersusCost(string task, IReadOnlyList<EvalRow> rows)
    {
        var priced = rows.Where(r => r.CostPer1k is not null).ToList();
        if (priced.Count == 0) return null;
        var costs = priced.Select(r => r.CostPer1k!.Value).ToList();
        bool log = costs.All(c => c > 0) && costs.Max() / costs.Min() > 20;
        Func<double, double> x = log ? Math.Log10 : c => c;

        var plot = NewPlot($"{task}: score vs cost", log ? "USD per 1,000 tasks (log scale)" : "USD per 1,000 tasks", priced[0].Metric);
        var frontier = EvalComparison.ParetoFrontier(priced.Select(r => (r.CostPer1k!.Value, r.Score)).ToList());
        var onFrontier = frontier.Select(i => priced[i]).OrderBy(r => r.CostPer1k).ThenBy(r => r.Score).ToList();
        if (onFrontier.Count > 1)
        {
            var line = plot.Add.ScatterLine(onFrontier.Select(r => x(r.CostPer1k!.Value)).ToArray(), onFrontier.Select(r => r.Score).ToArray());
            line.LineWidth = 2;
            line.LinePattern = LinePattern.Dashed;
            line.Color = Colors.OrangeRed;
            line.LegendText = "Pareto frontier";
        }
        Points(plot, priced, r => x(r.CostPer1k!.Value), r => onFrontier.Contains(r));
        if (log)
        {
            // Ticks at the decades, labelled in dollars rather than their logarithms.
            var ticks = new ScottPlot.TickGenerators.NumericManual();
            int low = (int)Math.Floor(costs.Min(Math.Log10)), high = (int)Math.Ceiling(costs.Max(Math.Log10));
            for (int d = low; d <= high; d++) ticks.AddMajor(d, EvalRow.Usd(Math.Pow(10, d)));
            plot.Axes.Bottom.TickGenerator = ticks;
        }
        plot.ShowLegend(Alignment.LowerRight);
        return Svg(plot);
    }

    /// <summary>Score against generation speed for the rows of one task that report one; null when none does.</summary>
    public static string? ScoreVersusSpeed(string task, IReadOnlyList<EvalRow> rows)
    {
        var timed = rows.Where(r => r.TokensPerSecond is > 0).ToList();
        if (timed.Count == 0) return null;
        var plot = NewPlot($"{task}: score vs speed", "tokens/s per answer", timed[0].Metric);
        Points(plot, timed, r => r.TokensPerSecond!.Value, _ => true);
        return Svg(plot);
    }

    private static Plot NewPlot(string title, string xLabel, string metric)
    {
        var plot = new Plot();
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel($"{metric} (95% CI)");
        return plot;
    }

    /// <summary>One marker per model with its interval as a vertical error bar and its name beside it; the highlighted ones filled.</summary>
    private static void Points(Plot plot, List<EvalRow> rows, Func<EvalRow, double> x, Func<EvalRow, bool> highlight)
    {
        double[] xs = rows.Select(x).ToArray(), ys = rows.Select(r => r.Score).ToArray();
        double[] above = rows.Select(r => r.CiHigh is { } hi ? Math.Max(0, hi - r.Score) : 0).ToArray();
        double[] below = rows.Select(r => r.CiLow is { } lo ? Math.Max(0, r.Score - lo) : 0).ToArray();
        double[] none = new double[rows.Count];
        var bars = new ScottPlot.Plottables.ErrorBar(xs, ys, none, none, above, below) { LineWidth = 1.5f, CapSize = 6 };
        bars.Color = Colors.Gray;
        plot.Add.Plottable(bars);
        // Neighbours along x take turns above and below their point, so close models' names do not print over each other.
        var byX = Enumerable.Range(0, rows.Count).OrderBy(i => xs[i]).ToList();
        for (int k = 0; k < byX.Count; k++)
        {
            int i = byX[k];
            bool lit = highlight(rows[i]);
            var marker = plot.Add.Marker(xs[i], ys[i], lit ? MarkerShape.FilledCircle : MarkerShape.OpenCircle, 10, lit ? Colors.SteelBlue : Colors.DimGray);
            marker.LegendText = "";
            var label = plot.Add.Text(rows[i].Model, xs[i], ys[i]);
            label.LabelFontSize = 12;
            label.LabelOffsetX = 8;
            label.LabelOffsetY = k % 2 == 0 ? -18 : 6;
            label.LabelFontColor = Colors.Black;
        }
        // Room for the intervals and the names (which extend right of their points); scores stay within [0, 1].
        double xMin = xs.Min(), xMax = xs.Max(), pad = xMax > xMin ? (xMax - xMin) * 0.1 : Math.Max(Math.Abs(xMin) * 0.5, 0.5);
        double yMin = rows.Min(r => r.CiLow ?? r.Score), yMax = rows.Max(r => r.CiHigh ?? r.Score);
        double yPad = Math.Max(0.05, (yMax - yMin) * 0.1);
        plot.Axes.SetLimits(xMin - pad, xMax + pad * 3.5, Math.Max(-0.02, yMin - yPad), Math.Min(1.02, yMax + yPad));
    }

    private static string Svg(Plot plot)
    {
        string svg = plot.GetSvgXml(Width, Height);
        // Inline in HTML, the XML declaration is noise.
        int start = svg.IndexOf("<svg", StringComparison.Ordinal);
        return start > 0 ? svg[start..] : svg;
    }
}
