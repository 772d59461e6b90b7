using System.Globalization;
using System.Text.Json;

namespace Kaiyuan.AspNetCore;

/// <summary>A model the server may serve: its API name, its GGUF file, and other names a request may use for it.</summary>
public sealed record ServedModel(string Name, string Path)
{
    /// <summary>Further names (a store reference, catalog aliases); the file name, with or without .gguf, always matches too.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    /// <summary>A model file named by <paramref name="alias"/>, else by its file name without .gguf.</summary>
    public static ServedModel ForFile(string path, string? alias = null) => new(alias ?? System.IO.Path.GetFileNameWithoutExtension(path), path);

    /// <summary>Whether a request's "model" names this one (Ollama clients add ":latest").</summary>
    public bool Matches(string requested)
    {
        string name = requested.EndsWith(":latest", StringComparison.Ordinal) ? requested[..^":latest".Length] : requested;
        string file = System.IO.Path.GetFileName(Path);
        return Same(name, Name) || Same(name, file) || Same(name, System.IO.Path.GetFileNameWithoutExtension(file)) || Aliases.Any(a => Same(name, a) || Same(requested, a));
    }

    private static bool Same(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);
}

/// <summary>Ollama's keep_alive: how long a model stays loaded after a request.</summary>
public static class KeepAlive
{
    /// <summary>Ollama's default (OLLAMA_KEEP_ALIVE).</summary>
    public static readonly TimeSpan Default = TimeSpan.FromMinutes(5);

    /// <summary>Keep the model loaded until the server stops.</summary>
    public static readonly TimeSpan Forever = Timeout.InfiniteTimeSpan;

    /// <summary>
    /// A number of seconds or a Go duration ("5m", "1h30m", "30s", "500ms"); 0 unloads at once, a negative value keeps the
    /// model forever (<see cref="Forever"/>).
    /// </summary>
    /// <exception cref="RequestException">The text is neither (status 400, naming keep_alive).</exception>
    public static TimeSpan Parse(string text)
    {
        text = text.Trim();
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds)) return FromSeconds(seconds);
        bool negative = text.StartsWith('-');
        string rest = text.TrimStart('-', '+');
        double total = 0;
        int i = 0;
        while (i < rest.Length)
        {
            int start = i;
            while (i < rest.Length && (char.IsAsciiDigit(rest[i]) || rest[i] == '.')) i++;
            if (i == start || !double.TryParse(rest[start..i], NumberStyles.Float, CultureInfo.InvariantCulture, out double value)) throw Invalid(text);
            int unit = i;
            while (i < rest.Length && !char.IsAsciiDigit(rest[i]) && rest[i] != '.') i++;
            total += rest[unit..i] switch
            {
                "h" => value * 3600,
                "m" => value * 60,
                "s" => value,
                "ms" => value / 1e3,
                "us" or "µs" => value / 1e6,
                "ns" => value / 1e9,
                _ => throw Invalid(text),
            };
        }
        if (rest.Length == 0) throw Invalid(text);
        return FromSeconds(negative ? -total : total);
    }

    /// <summary>A request's keep_alive (a string or a number of seconds), or null when it has none.</summary>
    internal static TimeSpan? FromJson(JsonElement? value) => value switch
    {
        null or { ValueKind: JsonValueKind.Null } => null,
        { ValueKind: JsonValueKind.Number } n => FromSeconds(n.GetDouble()),
        { ValueKind: JsonValueKind.String } s => Parse(s.GetString()!),
        _ => throw RequestException.BadRequest("'keep_alive' must be a duration such as \"5m\" or a number of seconds", "keep_alive"),
    };

    private static TimeSpan FromSeconds(double seconds) =>
        seconds < 0 ? Forever : seconds >= TimeSpan.MaxValue.TotalSeconds / 2 ? Forever : TimeSpan.FromSeconds(seconds);

    private static RequestException Invalid(string text) =>
        RequestException.BadRequest($"'keep_alive' must be a duration such as \"5m\", \"30s\" or \"1h\", or a number of seconds (not '{text}')", "keep_alive");
}
