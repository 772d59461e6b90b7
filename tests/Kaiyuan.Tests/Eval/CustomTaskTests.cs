using System.Text.Json.Nodes;
using Kaiyuan.Cli.Eval;
using Kaiyuan.Tests.Hub;

namespace Kaiyuan.Tests.Eval;

/// <summary>User-defined tasks: each scorer on hand-made answers, malformed lines as errors, and a run with a fixture model.</summary>
[Collection("Console")]
public sealed class CustomTaskTests : IDisposable
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;
    private readonly string _dir = Directory.CreateTempSubdirectory("kaiyuan-custom-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(bool Correct, string? Extracted, string? Detail)> Score(string line, string answer) =>
        await CustomTask.ScoreAsync(CustomTask.Parse(line, 0), answer, new CodeSandbox(TimeSpan.FromSeconds(5)), Ct);

    [Fact]
    public async Task ExactRegexNumericAndChoiceScorers()
    {
        const string Exact = """{"prompt": "Capital of France?", "reference": "Paris", "scorer": "exact"}""";
        Assert.True((await Score(Exact, "  Paris\n")).Correct);
        Assert.False((await Score(Exact, "paris")).Correct);
        Assert.False((await Score(Exact, "It is Paris")).Correct);

        const string Regex = """{"prompt": "Greet", "reference": "(?i)\\bhello\\b", "scorer": "regex"}""";
        Assert.Equal((true, "Hello", null), await Score(Regex, "Well, Hello there"));
        Assert.False((await Score(Regex, "Othello")).Correct);

        const string Numeric = """{"prompt": "6*7?", "reference": 42, "scorer": "numeric"}""";
        Assert.Equal((true, "42", null), await Score(Numeric, "6*7 = 42."));
        Assert.True((await Score(Numeric, "It is 40, no: 42.0")).Correct);
        Assert.False((await Score(Numeric, "42 or 43")).Correct); // the last number counts

        const string Choice = """{"prompt": "Which is a fruit?", "choices": ["car", "apple", "rock"], "reference": "b", "scorer": "choice"}""";
        var item = CustomTask.Parse(Choice, 0);
        Assert.Equal("Which is a fruit?\n\nA. car\nB. apple\nC. rock", item.Prompt);
        Assert.Equal((true, "B", null), await Score(Choice, "Answer: B"));
        Assert.False((await Score(Choice, "A, surely")).Correct);
        Assert.False((await Score(Choice, "D")).Correct); // not an option: three choices are A–C
    }

    [Fact]
    public async Task JsonSchemaScorerValidatesTheAnswerOrItsCodeBlock()
    {
        const string Line = """{"prompt": "A person as JSON", "scorer": "json_schema", "schema": {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["name", "age"]}}""";
        Assert.True((await Score(Line, """{"name": "Li", "age": 30}""")).Correct);
        Assert.True((await Score(Line, "Here it is:\n```json\n{\"name\": \"Li\", \"age\": 30}\n```")).Correct);
        var wrongType = await Score(Line, """{"name": "Li", "age": "thirty"}""");
        Assert.False(wrongType.Correct);
        Assert.Contains("/age", wrongType.Detail);
        var notJson = await Score(Line, "name: Li");
        Assert.False(notJson.Correct);
        Assert.StartsWith("not JSON", notJson.Detail);
    }

    [Fact]
    public async Task CodeScorerRunsTheAnswersCodeWithTheTestsInTheSandbox()
    {
        HumanEvalGenerationTests.RequirePython();
        const string Line = """{"prompt": "Write add(a, b)", "scorer": "code", "tests": "assert add(2, 3) == 5\nassert add(-1, 1) == 0"}""";
        Assert.True((await Score(Line, "```python\ndef add(a, b):\n    return a + b\n```")).Correct);
        var wrong = await Score(Line, "def add(a, b):\n    return a - b\n");
        Assert.False(wrong.Correct);
        Assert.StartsWith("Failed", wrong.Detail);
        Assert.Contains("AssertionError", wrong.Detail);
        Assert.StartsWith("TimedOut", (await CustomTask.ScoreAsync(CustomTask.Parse(Line, 0), "while True:\n    pass\n", new CodeSandbox(TimeSpan.FromSeconds(1)), Ct)).Detail);
    }

    [Theory]
    [InlineData("""{"prompt": "x", "reference": "a", "scorer": "fuzzy"}""", "unknown scorer 'fuzzy'")]
    [InlineData("""{"prompt": "x", "scorer": "exact"}""", "scorer 'exact' needs a \"reference\"")]
    [InlineData("""{"reference": "a", "scorer": "exact"}""", "no \"prompt\"")]
    [InlineData("""{"prompt": "x", "reference": "(unclosed", "scorer": "regex"}""", "not a regular expression")]
    [InlineData("""{"prompt": "x", "reference": "many", "scorer": "numeric"}""", "not a number")]
    [InlineData("""{"prompt": "x", "reference": "E", "scorer": "choice"}""", "not one of the letters A, B, C, D")]
    [InlineData("""{"prompt": "x", "scorer": "json_schema"}""", "needs a \"schema\" object")]
    [InlineData("""{"prompt": "x", "scorer": "json_schema", "schema": {"type": 5}}""", "not a JSON schema")]
    [InlineData("""{"prompt": "x", "scorer": "code"}""", "needs \"tests\"")]
    [InlineData("""{"prompt": "x", "scorer": "exact", "reference": "a", "max_tokens": -3}""", "max_tokens")]
    [InlineData("""{"prompt": "x", "scorer": """, "not JSON")]
    [InlineData("""["prompt"]""", "not a JSON object")]
    public void MalformedLinesAreErrorsNamingFileAndLine(string line, string message)
    {
        string file = Path.Combine(_dir, "task.jsonl");
        File.WriteAllText(file, """{"prompt": "fine", "reference": "1", "scorer": "numeric"}""" + "\n\n" + line + "\n");
        var e = Assert.Throws<FormatException>(() => CustomTask.Load(file, 0, 16, new CodeSandbox()));
        Assert.StartsWith($"{file}:3: ", e.Message);
        Assert.Contains(message, e.Message);
        // And through the command line: an error, not a crash.
        var (code, _, error) = ConsoleRunner.Run("eval", "--task", file, "-m", "x.gguf");
        Assert.Equal(1, code);
        Assert.Contains($"{file}:3: ", error);
    }

    [Fact]
    public void AFixtureModelRunsAUserDefinedTaskEndToEnd()
    {
        string file = Path.Combine(_dir, "mine.jsonl");
        File.WriteAllLines(file,
        [
            """{"id": "capital", "prompt": "Capital of France? One word.", "reference": "Paris", "scorer": "exact"}""",
            """{"prompt": "Anything at all.", "reference": "[\\s\\S]", "scorer": "regex", "max_tokens": 3}""",
            """{"prompt": "Pick one.", "choices": ["yes", "no"], "reference": "A", "scorer": "choice"}""",
        ]);
        string outDir = Path.Combine(_dir, "out");
        var (code, output, error) = ConsoleRunner.Run("eval", "--task", file, "-m", Fixtures.ModelPath("qwen3", "qwen3-q8_0.gguf"), "--max-tokens", "6",
            "-t", "1", "--out", outDir, "--json");
        Assert.True(code == 0, error);
        var report = JsonNode.Parse(output.Trim())!.AsObject();
        Assert.Equal("mine", (string)report["task"]!);
        Assert.Equal("accuracy", (string)report["metric"]!);
        Assert.Equal(3, (int)report["n"]!);
        foreach (string key in new[] { "score", "ci95", "tokens_in", "tokens_out", "tokens_per_s", "ttft_ms", "cost_per_1k_tasks_usd" }) Assert.True(report.ContainsKey(key), key);
        Assert.Equal(1, (int)report["scorers"]!["regex"]!["n"]!);
        var records = File.ReadAllLines(Path.Combine(outDir, "mine", "qwen3-q8_0.jsonl")).Select(l => JsonNode.Parse(l)!.AsObject()).OrderBy(r => (int)r["index"]!).ToList();
        Assert.Equal(["capital", "1", "2"], records.Select(r => (string)r["id"]!));
        Assert.True((int)records[1]["tokens_out"]! <= 3); // the item's own max_tokens
        Assert.Equal((string)records[0]["output"]!.ToString().Trim() == "Paris", (bool)records[0]["correct"]!);
        // A non-empty answer matches [\s\S]: the regex scorer's verdict follows the model's output.
        Assert.Equal(((string)records[1]["output"]!).Length > 0, (bool)records[1]["correct"]!);
        Assert.Equal(records.Count(r => (bool)r["correct"]!) / 3.0, (double)report["score"]!, 12);
    }
}
