using System.Globalization;

namespace Kaiyuan.Cli.Commands;

/// <summary>One sample of a Prometheus text exposition: <c>name{label="value",…} 42</c>.</summary>
internal sealed record MetricSample(string Name, IReadOnlyList<KeyValuePair<string, string>> Labels, double Value);

/// <summary>Reads the Prometheus text format (what <c>/metrics</c> serves) without knowing its metric names in advance.</summary>
internal static class PrometheusText
{
    /// <summary>The samples in <paramref name="text"/>; comments and lines that do not parse are skipped.</summary>
    public static List<MetricSample> Parse(string text)
    {
        var samples = new List<MetricSample>();
        foreach (string raw in text.Split('\n'))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            int nameEnd = line.IndexOfAny(['{', ' ', '\t']);
            if (nameEnd <= 0) continue;
            var labels = new List<KeyValuePair<string, string>>();
            int rest = nameEnd;
            if (line[nameEnd] == '{' && !TryLabels(line, nameEnd + 1, labels, out rest)) continue;
            var fields = line[rest..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 0 || !TryValue(fields[0], out double value)) continue;
            samples.Add(new MetricSample(line[..nameEnd], labels, value));
        }
        return samples;
    }

    /// <summary>The sum of a metric's samples (all its label sets), or null when it is absent.</summary>
    public static double? Sum(IEnumerable<MetricSample> samples, string name)
    {
        var matching = samples.Where(s => s.Name == name).ToList();
        return matching.Count == 0 ? null : matching.Sum(s => s.Value);
    }

    /// <summary>Reads <c>a="x",b="y"}</c> from <paramref name="i"/>; <paramref name="end"/> is just past the closing brace.</summary>
    private static bool TryLabels(string line, int i, List<KeyValuePair<string, string>> labels, out int end)
    {
        end = i;
        while (true)
        {
            while (i < line.Length && line[i] is ' ' or ',') i++;
            if (i >= line.Length) return false;
            if (line[i] == '}')
            {
                end = i + 1;
                return true;
            }
            int eq = line.IndexOf('=', i);
            if (eq < 0 || eq + 1 >= line.Length || line[eq + 1] != '"') return false;
            string key = line[i..eq].Trim();
            var value = new System.Text.StringBuilder();
            for (i = eq + 2; i < line.Length && line[i] != '"'; i++)
            {
                if (line[i] == '\\' && i + 1 < line.Length)
                {
                    i++;
                    value.Append(line[i] == 'n' ? '\n' : line[i]);
                }
                else value.Append(line[i]);
            }
            if (i >= line.Length) return false;
            labels.Add(new(key, value.ToString()));
            i++;
        }
    }

    private static bool TryValue(string text, out double value)
    {
        switch (text)
        {
            case "+Inf":
                value = double.PositiveInfinity;
                return true;
            case "-Inf":
                value = double.NegativeInfinity;
                return true;
            default:
                return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
        }
    }
}
