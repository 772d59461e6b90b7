using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Json.Schema;

namespace Kaiyuan.Cli.Eval;

/// <summary>How a user-defined item's answer is judged.</summary>
internal enum CustomScorer { Exact, Regex, Numeric, Choice, JsonSchema, Code }

/// <summary>One user-defined item, checked when it is read (a pattern compiles, a schema parses, a choice reference is a letter).</summary>
internal sealed record CustomItem(string Id, string Prompt, CustomScorer Scorer, string? Reference)
{
    public Regex? Pattern { get; init; }
    public IReadOnlyList<string>? Choices { get; init; }
    public JsonSchema? Schema { get; init; }
    public string? Tests { get; init; }
    public int? MaxTokens { get; init; }
}

/// <summary>
/// A user-defined task: a JSONL file of <c>{"id"?, "prompt", "scorer", "reference"?, "choices"?, "schema"?, "tests"?, "max_tokens"?}</c>,
/// each prompt answered greedily in chat and judged by its scorer: <c>exact</c> (the trimmed answer equals the reference),
/// <c>regex</c> (the reference is a pattern that must match somewhere in the answer), <c>numeric</c> (the answer's last
/// number equals the reference), <c>choice</c> (the first option letter standing alone; <c>choices</c>, when given, are
/// listed under the prompt as A., B., …), <c>json_schema</c> (the answer, or its code block, is JSON valid against
/// <c>schema</c>), <c>code</c> (the answer's Python, or its code block, passes <c>tests</c> in the sandbox).
/// </summary>
internal sealed partial class CustomTask(string name, IReadOnlyList<CustomItem> items, int maxTokens, CodeSandbox sandbox) : IEvalTask
{
    private static readonly Dictionary<string, CustomScorer> ScorerNames = new(StringComparer.Ordinal)
    {
        ["exact"] = CustomScorer.Exact,
        ["regex"] = CustomScorer.Regex,
        ["numeric"] = CustomScorer.Numeric,
        ["choice"] = CustomScorer.Choice,
        ["json_schema"] = CustomScorer.JsonSchema,
        ["code"] = CustomScorer.Code,
    };

    public string Name => name;

    public int Count => items.Count;

    public int SamplesPerItem => 1;

    public IReadOnlyList<CustomItem> Items => items;

    /// <summary>Reads a task file; every malformed line is an error naming the file and line.</summary>
    public static CustomTask Load(string path, int limit, int maxTokens, CodeSandbox sandbox)
    {
        var items = new List<CustomItem>();
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                items.Add(Parse(text, items.Count));
            }
            catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or ArgumentException or KeyNotFoundException)
            {
                throw new FormatException($"{path}:{line}: {e.Message}");
            }
            if (limit > 0 && items.Count == limit) break;
        }
        if (items.Count == 0) throw new FormatException($"{path}: no items (one JSON object per line: prompt, scorer, reference, …)");
        return new CustomTask(Path.GetFileNameWithoutExtension(path), items, maxTokens, sandbox);
    }

    /// <summary>One line of a task file.</summary>
    internal static CustomItem Parse(string line, int index)
    {
        JsonObject row;
        try
        {
            row = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("not a JSON object");
        }
        catch (JsonException e)
        {
            throw new FormatException($"not JSON ({e.Message})");
        }
        string prompt = String(row, "prompt") ?? throw new FormatException("no \"prompt\"");
        string scorerName = String(row, "scorer") ?? throw new FormatException($"no \"scorer\" (one of {string.Join(", ", ScorerNames.Keys)})");
        if (!ScorerNames.TryGetValue(scorerName, out var scorer)) throw new FormatException($"unknown scorer '{scorerName}' (known: {string.Join(", ", ScorerNames.Keys)})");
        string? reference = String(row, "reference");
        string id = String(row, "id") ?? index.ToString(CultureInfo.InvariantCulture);
        int? maxTokens = row["max_tokens"] is JsonValue m && m.TryGetValue(out int mt) && mt > 0 ? mt
            : row.ContainsKey("max_tokens") ? throw new FormatException("\"max_tokens\" is not a positive integer") : null;
        var item = new CustomItem(id, prompt, scorer, reference) { MaxTokens = maxTokens };
        if (scorer is CustomScorer.Exact or CustomScorer.Regex or CustomScorer.Numeric or CustomScorer.Choice && reference is null)
            throw new FormatException($"scorer '{scorerName}' needs a \"reference\"");
        switch (scorer)
        {
            case CustomScorer.Regex:
                try
                {
                    return item with { Pattern = new Regex(reference!, RegexOptions.None, TimeSpan.FromSeconds(1)) };
                }
                catch (ArgumentException e)
                {
                    throw new FormatException($"the reference is not a regular expression ({e.Message})");
                }
            case CustomScorer.Numeric:
                if (NumericAnswers.Flexible(reference!) is null) throw new FormatException($"the reference '{reference}' is not a number");
                return item;
            case CustomScorer.Choice:
                var options = row["choices"] is JsonArray a ? a.Select(o => o is JsonValue v && v.TryGetValue(out string? s) ? s : throw new FormatException("\"choices\" holds a non-string")).ToList() : null;
                if (options is { Count: < 2 or > 26 }) throw new FormatException("\"choices\" has between 2 and 26 options");
                var letters = Enumerable.Range(0, options?.Count ?? 4).Select(i => ((char)('A' + i)).ToString()).ToList();
                if (!letters.Contains(reference!.Trim().ToUpperInvariant())) throw new FormatException($"the reference '{reference}' is not one of the letters {string.Join(", ", letters)}");
                if (options is not null)
                    prompt += "\n\n" + string.Join("\n", options.Select((o, i) => $"{letters[i]}. {o}"));
                return item with { Prompt = prompt, Choices = letters };
            case CustomScorer.JsonSchema:
                if (row["schema"] is not JsonObject schema) throw new FormatException("scorer 'json_schema' needs a \"schema\" object");
                try
                {
                    return item with { Schema = JsonSchema.FromText(schema.ToJsonString()) };
                }
                catch (Exception e) when (e is JsonException or InvalidOperationException or ArgumentException or NotSupportedException)
                {
                    throw new FormatException($"\"schema\" is not a JSON schema ({e.Message})");
                }
            case CustomScorer.Code:
                return item with { Tests = String(row, "tests") ?? throw new FormatException("scorer 'code' needs \"tests\" (Python run after the answer's code)") };
            default:
                return item;
        }
    }

    private static string? String(JsonObject row, string key) => row[key] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? s) => s,
        JsonValue v when v.GetValueKind() == JsonValueKind.Number => v.ToJsonString(),
        _ => throw new FormatException($"\"{key}\" is not a string"),
    };

    public EvalRequest Request(int index, int sample, IEvalModel model) => new() { Prompt = items[index].Prompt, MaxTokens = items[index].MaxTokens ?? maxTokens };

    public async Task<EvalRecord> ScoreAsync(EvalRecord answered, EvalAnswer answer, CancellationToken cancel)
    {
        var item = items[answered.Index];
        var (correct, extracted, detail) = await ScoreAsync(item, answer.Content, sandbox, cancel);
        return answered with { Id = item.Id, Reference = item.Reference ?? "", Extracted = extracted, Correct = correct, Detail = detail, ChoiceLogprobs = null };
    }

    /// <summary>An answer judged by the item's scorer: the verdict, what was read from the answer, and why it failed where that helps.</summary>
    internal static async Task<(bool Correct, string? Extracted, string? Detail)> ScoreAsync(CustomItem item, string output, CodeSandbox sandbox, CancellationToken cancel)
    {
        switch (item.Scorer)
        {
            case CustomScorer.Exact:
                string trimmed = output.Trim();
                return (trimmed == item.Reference!.Trim(), trimmed, null);
            case CustomScorer.Regex:
                try
                {
                    var m = item.Pattern!.Match(output);
                    return (m.Success, m.Success ? m.Value : null, null);
                }
                catch (RegexMatchTimeoutException)
                {
                    return (false, null, "the pattern took over 1 s on this answer");
                }
            case CustomScorer.Numeric:
                string? number = NumericAnswers.Flexible(output);
                return (NumericAnswers.Same(number, NumericAnswers.Flexible(item.Reference!)), number, null);
            case CustomScorer.Choice:
                string? letter = CmmluTask.FirstLetter(output, item.Choices!);
                return (letter == item.Reference!.Trim().ToUpperInvariant(), letter, null);
            case CustomScorer.JsonSchema:
                string json = Code(output).Trim();
                JsonNode? node;
                try
                {
                    node = JsonNode.Parse(json);
                }
                catch (JsonException e)
                {
                    return (false, json, $"not JSON: {e.Message}");
                }
                var result = item.Schema!.Evaluate(node, new EvaluationOptions { OutputFormat = OutputFormat.List });
                if (result.IsValid) return (true, json, null);
                var errors = result.Details.Where(d => d.HasErrors).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation}: {e.Value}")).Take(3).ToList();
                return (false, json, errors.Count > 0 ? string.Join("; ", errors) : "does not validate");
            case CustomScorer.Code:
                string code = Code(output);
                var run = await sandbox.RunAsync($"{code}\n\n{item.Tests}\n", cancel);
                string tail = run.Output.Length <= 500 ? run.Output : run.Output[^500..];
                return (run.Outcome == SandboxOutcome.Passed, code, run.Outcome == SandboxOutcome.Passed ? null : $"{run.Outcome}\n{tail}".TrimEnd());
            default:
                throw new InvalidOperationException($"scorer {item.Scorer}");
        }
    }

    /// <summary>An answer's first code block (a model wraps code and JSON in one), or the whole answer without one.</summary>
    internal static string Code(string output) => HumanEvalTask.CodeBlock().Match(output) is { Success: true } m ? m.Groups[1].Value : output;

    public EvalResult Summarize(string model, IReadOnlyList<EvalRecord> records, string recordsPath)
    {
        int n = records.Count, correct = records.Count(r => r.Correct == true);
        var (low, high) = Statistics.Wilson(correct, n);
        double score = n == 0 ? 0 : (double)correct / n;
        var scorers = new JsonObject();
        var lines = new List<string> { $"{name} · {model} · {n} items", EvalReport.ScoreLine("accuracy", score, low, high) };
        foreach (var group in records.GroupBy(r => items[r.Index].Scorer).OrderBy(g => g.Key))
        {
            string key = ScorerNames.First(p => p.Value == group.Key).Key;
            int right = group.Count(r => r.Correct == true);
            scorers[key] = new JsonObject { ["score"] = (double)right / group.Count(), ["n"] = group.Count() };
            lines.Add(string.Create(CultureInfo.InvariantCulture, $"    {key,-12} {right}/{group.Count()}"));
        }
        return new EvalResult(name, model, "accuracy", score, low, high, n) { Extra = new JsonObject { ["scorers"] = scorers }, Lines = lines };
    }
}
