using Spectre.Console;

namespace Kaiyuan.Cli.Eval;

/// <summary>
/// A Spectre.Console progress bar on stderr for one (task, model) run, with the runner's <c>(done, total)</c> callback
/// shape and <see cref="ProgressBar"/>'s <c>Report</c>/<c>Finish</c>, so either drops in for the other. On a terminal
/// Spectre redraws it in place (bar, percentage, rate, remaining time); when stderr is redirected there is no live display,
/// only a plain line at each tenth and at the end, and no ANSI codes.
/// </summary>
internal sealed class EvalProgress
{
    private readonly string _label;
    private readonly bool _terminal;
    private readonly object _gate = new();
    private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task? _display;
    private readonly TextWriter _error;
    private long _done, _total;
    private int _lastTenth = -1;

    public EvalProgress(string label, bool? terminal = null)
    {
        _label = label;
        _error = Console.Error;
        _terminal = terminal ?? !Console.IsErrorRedirected;
        if (!_terminal) return;
        var console = EvalTable.ConsoleFor(_error, isTerminal: true);
        // Spectre's live display runs until the work it wraps ends; here the work is the runner's, reported through
        // Report, so the display waits on Finish.
        _display = console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(Markup.Escape(label), autoStart: true, maxValue: 1);
                while (!_finished.Task.IsCompleted)
                {
                    Update(task);
                    await Task.WhenAny(_finished.Task, Task.Delay(100));
                }
                Update(task);
                task.StopTask();
            });
    }

    private void Update(ProgressTask task)
    {
        lock (_gate)
        {
            if (_total > 0) task.MaxValue = _total;
            task.Value = _done;
            // The items, not bytes: Spectre's speed column would print them as B/s.
            task.Description = $"{Markup.Escape(_label)} {_done}/{_total}";
        }
    }

    public void Report(long done, long total)
    {
        lock (_gate)
        {
            (_done, _total) = (done, total);
            if (_terminal) return;
            int tenth = total > 0 ? (int)(done * 10 / total) : 0;
            if (tenth == _lastTenth) return;
            _lastTenth = tenth;
            _error.WriteLine($"{_label}: {done}/{total}");
        }
    }

    /// <summary>Ends the live display (its last frame stays), so later output starts below it.</summary>
    public void Finish()
    {
        _finished.TrySetResult();
        _display?.GetAwaiter().GetResult();
    }
}
