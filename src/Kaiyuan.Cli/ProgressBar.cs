using System.Diagnostics;

namespace Kaiyuan.Cli;

/// <summary>
/// A progress line on stderr: a bar redrawn in place on a terminal, or a plain line every ten percent (and at the end)
/// when stderr is redirected. Shows bytes (or items), rate and ETA.
/// </summary>
internal sealed class ProgressBar(string label, bool bytes = true)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly bool _terminal = !Console.IsErrorRedirected;
    private readonly object _gate = new();
    private long _startDone = -1;
    private double _lastDraw = -1;
    private int _lastDecile = -1;
    private bool _drawn;

    public void Report(long done, long total)
    {
        lock (_gate)
        {
            if (_startDone < 0) _startDone = done;
            double now = _clock.Elapsed.TotalSeconds;
            bool finished = total > 0 && done >= total;
            if (_terminal)
            {
                if (!finished && now - _lastDraw < 0.1) return;
                _lastDraw = now;
                Console.Error.Write("\r" + Line(done, total, now) + "\u001b[K");
                _drawn = true;
            }
            else
            {
                int decile = total > 0 ? (int)(done * 10 / total) : (int)(now / 5);
                if (decile == _lastDecile) return;
                _lastDecile = decile;
                Console.Error.WriteLine(Line(done, total, now));
            }
        }
    }

    /// <summary>Ends the in-place line so later output starts on a fresh one.</summary>
    public void Finish()
    {
        lock (_gate)
        {
            if (_terminal && _drawn) Console.Error.WriteLine();
            _drawn = false;
        }
    }

    private string Line(long done, long total, double seconds)
    {
        double rate = seconds > 0 ? (done - Math.Max(0, _startDone)) / seconds : 0;
        string amount = total > 0 ? $"{Format(done)}/{Format(total)}" : Format(done);
        string bar = "";
        if (total > 0)
        {
            const int width = 24;
            int filled = (int)Math.Clamp(done * width / total, 0, width);
            bar = $"[{new string('#', filled)}{new string('.', width - filled)}] {done * 100.0 / total,5:F1}% ";
        }
        string eta = total > 0 && rate > 0 && done < total ? $" ETA {Duration((total - done) / rate)}" : "";
        return $"{label} {bar}{amount} {Format((long)rate)}/s{eta}";
    }

    private string Format(long n) => bytes ? Commands.InfoCommand.Size(n) : n.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string Duration(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Min(seconds, 359999));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:D2}m" : t.TotalMinutes >= 1 ? $"{t.Minutes}m{t.Seconds:D2}s" : $"{t.Seconds}s";
    }
}
