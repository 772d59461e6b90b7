using System.Text.Json;

namespace Kaiyuan.Cli.Eval;

/// <summary>One GSM8K question and its reference number.</summary>
internal sealed record Gsm8kItem(int Index, string Question, string Reference);

/// <summary>
/// GSM8K (grade-school math word problems), chat zero-shot: the model is asked to reason step by step and end with
/// <c>#### N</c>, the dataset's own answer line; answers are scored by lm-evaluation-harness's strict and flexible
/// matches (<see cref="NumericAnswers"/>).
/// </summary>
internal static class Gsm8kTask
{
    public const string Name = "gsm8k";

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
