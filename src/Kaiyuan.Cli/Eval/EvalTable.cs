using Spectre.Console;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// The end-of-run table: every (task, model) side by side, drawn with Spectre.Console. On a terminal it has colour and
/// rounded borders; written to a file, a pipe or a test's writer it is plain text (no ANSI codes) with ASCII borders and
/// a fixed width, so logs stay readable.
/// </summary>
internal static class EvalTable
{
    /// <summary>A Spectre console over <paramref name="writer"/>: ANSI only when it is the real terminal.</summary>
    internal static IAnsiConsole ConsoleFor(TextWriter writer, bool isTerminal)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = isTerminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = isTerminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = isTerminal ? InteractionSupport.Detect : InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        // Redirected output has no width to detect; Spectre's default of 80 would wrap every row.
        if (!isTerminal) console.Profile.Width = 180;
        return console;
    }

    public static void Write(TextWriter writer, bool isTerminal, IReadOnlyList<EvalRow> rows, string? title = null)
    {
        var console = ConsoleFor(writer, isTerminal);
        var table = new Table { Border = isTerminal ? TableBorder.Rounded : TableBorder.Ascii };
        if (title is not null) table.Title = new TableTitle(Markup.Escape(title));
        table.AddColumn("task");
        table.AddColumn("model");
        table.AddColumn(Markup.Escape("score [95% CI]"));
        foreach (string right in new[] { "n", "tokens in", "tokens out", "tokens/s", "TTFT ms", "$ / 1k tasks" })
            table.AddColumn(new TableColumn(right).RightAligned());
        table.AddColumn("vs best");
        foreach (var task in rows.GroupBy(r => r.Task))
        {
            var group = task.ToList();
            var best = group.MaxBy(r => r.Score);
            foreach (var row in group)
            {
                string score = $"{row.ScoreText} {row.Metric}";
                table.AddRow(
                    Markup.Escape(row.Task),
                    Markup.Escape(row.Model),
                    ReferenceEquals(row, best) && group.Count > 1 ? $"[bold green]{Markup.Escape(score)}[/]" : Markup.Escape(score),
                    EvalRow.Count(row.N),
                    EvalRow.Count(row.TokensIn),
                    EvalRow.Count(row.TokensOut),
                    EvalRow.Fixed(row.TokensPerSecond, "0.0"),
                    EvalRow.Fixed(row.TtftMs, "0"),
                    row.CostPer1k is null ? "[dim]–[/]" : Markup.Escape(row.CostText),
                    Markup.Escape(EvalComparison.Versus(row, group)));
            }
        }
        console.Write(table);
        // Why a cost is missing matters more than the dash that stands for it.
        foreach (var row in rows.Where(r => r.CostPer1k is null && r.CostNote is not null))
            console.MarkupLine($"[dim]{Markup.Escape($"{row.Task} · {row.Model}: no cost: {row.CostNote}")}[/]");
    }
}
