using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Kaiyuan.Cli.Eval;

/// <summary>One answered item, as saved under <c>--out</c> (one JSON object per line): enough to audit a score and to resume a run.</summary>
internal sealed record EvalRecord
{
    public required int Index { get; init; }
    /// <summary>Which of an item's samples (HumanEval's pass@k draws several); 0 for the one answer of most tasks.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int Sample { get; init; }
    /// <summary>The item's name in its data set (HumanEval's task_id, a custom item's id); null where the index is its name.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Id { get; init; }
    /// <summary>The group an item is reported in (CMMLU's subject).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Subject { get; init; }
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
    /// <summary>The run's wall-clock seconds when this answer was saved, counting earlier runs it resumed: a resumed run's wall time (and so a local model's cost) covers every answer.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double WallSeconds { get; init; }
    public string FinishReason { get; init; } = "stop";
    /// <summary>What the scorer read from the output (a choice letter, a completion, JSON); null for GSM8K, whose readings are <see cref="Strict"/> and <see cref="Flexible"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Extracted { get; init; }
    /// <summary>The scorer's verdict; null for GSM8K, whose verdicts are <see cref="StrictCorrect"/> and <see cref="FlexibleCorrect"/>.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public bool? Correct { get; init; }
    /// <summary>How the verdict was reached (CMMLU: "logprobs" or "generated"), or why it failed (a sandbox's outcome and output, a schema error).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Detail { get; init; }
    /// <summary>Each choice's log-probability as the answer's first token, where the model gave them.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Dictionary<string, double>? ChoiceLogprobs { get; init; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>
    /// The records already saved in <paramref name="path"/> (a run that was stopped): each (index, sample) once. A last line cut
    /// short by a kill is dropped (its item runs again); any other unreadable line is an error, not silently skipped.
    /// </summary>
    public static Dictionary<(int Index, int Sample), EvalRecord> ReadSaved(string path)
    {
        var saved = new Dictionary<(int, int), EvalRecord>();
        if (!File.Exists(path)) return saved;
        string[] lines = File.ReadAllLines(path);
        for (int i = 0; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i])) continue;
            try
            {
                var record = JsonSerializer.Deserialize<EvalRecord>(lines[i], Json) ?? throw new JsonException("null");
                saved[(record.Index, record.Sample)] = record;
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
