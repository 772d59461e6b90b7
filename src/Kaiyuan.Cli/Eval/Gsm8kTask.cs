using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.Cli.Eval;

/// <summary>One GSM8K question and its reference number.</summary>
internal sealed record Gsm8kItem(int Index, string Question, string Reference);

/// <summary>
/// GSM8K (grade-school math word problems), chat zero-shot: the model is asked to reason step by step and end with
/// <c>#### N</c>, the dataset's own answer line; answers are scored by lm-evaluation-harness's strict and flexible
/// matches (<see cref="NumericAnswers"/>).
/// </summary>
internal sealed class Gsm8kTask(IReadOnlyList<Gsm8kItem> items, int maxTokens) : IEvalTask
{
    public const string Name = "gsm8k";

    string IEvalTask.Name => Name;

    public int Count => items.Count;

    public int SamplesPerItem => 1;

    /// <summary>The question as a chat message, answered greedily.</summary>
    public EvalRequest Request(int index, int sample, IEvalModel model) => new() { Prompt = Prompt(items[index]), MaxTokens = maxTokens };

    public Task<EvalRecord> ScoreAsync(EvalRecord answered, EvalAnswer answer, CancellationToken cancel)
    {
        var item = items[answered.Index];
        string? strict = NumericAnswers.Strict(answer.Content), flexible = NumericAnswers.Flexible(answer.Content);
        return Task.FromResult(answered with
        {
            Reference = item.Reference,
            Strict = strict,
            Flexible = flexible,
            StrictCorrect = NumericAnswers.Same(strict, item.Reference),
            FlexibleCorrect = NumericAnswers.Same(flexible, item.Reference),
            ChoiceLogprobs = null,
        });
    }

    /// <summary>Exact match by the strict filter (the headline, as lm-evaluation-harness reports it), and by the flexible one.</summary>
    public EvalResult Summarize(string model, IReadOnlyList<EvalRecord> records, string recordsPath)
    {
        int n = records.Count, strict = records.Count(r => r.StrictCorrect), flexible = records.Count(r => r.FlexibleCorrect);
        var (low, high) = Statistics.Wilson(strict, n);
        var (flexLow, flexHigh) = Statistics.Wilson(flexible, n);
        double score = n == 0 ? 0 : (double)strict / n, flexibleScore = n == 0 ? 0 : (double)flexible / n;
        return new EvalResult(Name, model, "exact_match", score, low, high, n)
        {
            Extra = new JsonObject
            {
                ["filter"] = "strict-match",
                ["flexible_score"] = flexibleScore,
                ["flexible_ci95"] = new JsonArray(flexLow, flexHigh),
            },
            Lines =
            [
                $"{Name} · {model} · {n} items",
                EvalReport.ScoreLine("exact match, strict  ", score, low, high),
                EvalReport.ScoreLine("exact match, flexible", flexibleScore, flexLow, flexHigh),
            ],
        };
    }

    /// <summary>The instruction after each question: the dataset's answer format, so the strict match can apply.</summary>
    public const string Instruction = "Solve the problem step by step. End your answer with a last line of the form \"#### <number>\".";

    /// <summary>Reads a GSM8K JSONL file (<c>question</c>, <c>answer</c> ending <c>#### N</c>).</summary>
    public static List<Gsm8kItem> Load(string path)
    {
        var items = new List<Gsm8kItem>();
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                using var row = JsonDocument.Parse(text);
                string question = row.RootElement.GetProperty("question").GetString() ?? throw new FormatException("'question' is null");
                string answer = row.RootElement.GetProperty("answer").GetString() ?? throw new FormatException("'answer' is null");
                string reference = NumericAnswers.Reference(answer) ?? throw new FormatException("'answer' has no '#### N' line");
                items.Add(new Gsm8kItem(items.Count, question, reference));
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new FormatException($"{path}:{line}: not a GSM8K item ({e.Message})");
            }
        }
        return items;
    }

    /// <summary>The user message for an item.</summary>
    public static string Prompt(Gsm8kItem item) => $"{item.Question}\n\n{Instruction}";
}
