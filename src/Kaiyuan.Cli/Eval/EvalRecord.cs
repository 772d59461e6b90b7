using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Kaiyuan.Cli.Eval;

/// <summary>One answered item, as saved under <c>--out</c> (one JSON object per line): enough to audit a score and to resume a run.</summary>
internal sealed record EvalRecord
{
    public required int Index { get; init; }
    public required string Prompt { get; init; }
    public required string Reference { get; init; }
    public required string Output { get; init; }
    public string? Strict { get; init; }
    public string? Flexible { get; init; }
    public bool StrictCorrect { get; init; }
    public bool FlexibleCorrect { get; init; }
    public int TokensIn { get; init; }
    public int TokensOut { get; init; }
    public double TtftMs { get; init; }
    public double GenerationSeconds { get; init; }
    public string FinishReason { get; init; } = "stop";

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>
    /// The records already saved in <paramref name="path"/> (a run that was stopped): each index once. A last line cut
    /// short by a kill is dropped (its item runs again); any other unreadable line is an error, not silently skipped.
    /// </summary>
    public static Dictionary<int, EvalRecord> ReadSaved(string path)
    {
        var saved = new Dictionary<int, EvalRecord>();
        if (!File.Exists(path)) return saved;
        string[] lines = File.ReadAllLines(path);
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            try
            {
                var record = JsonSerializer.Deserialize<EvalRecord>(lines[i], Json) ?? throw new JsonException("null");
                saved[record.Index] = record;
            }
            catch (JsonException) when (i == lines.Length - 1)
            {
                // A write interrupted mid-line.
            }
            catch (JsonException e)
            {
                throw new FormatException($"{path}:{i + 1}: not a saved eval record ({e.Message}); move the file away to start over");
            }
        }
        return saved;
    }
}
