using System.Text.Json;
using Kaiyuan.Constraints;

namespace Kaiyuan.Tests.Constraints;

/// <summary>
/// MaskBench (JSONSchemaBench) schemas with valid and invalid instances: a file passes when its schema compiles, every
/// valid instance matches and no invalid one does. An invalid instance accepted is the one failure never allowed.
/// </summary>
public class MaskBenchSchemaTests(ITestOutputHelper output)
{
    internal sealed record Result(string File, string Outcome, string? Detail, double Milliseconds = 0);

    internal static Result Run(string path)
    {
        var name = Path.GetFileName(path);
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var root = doc.RootElement;
        ByteAutomaton automaton;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            automaton = ByteAutomaton.Compile(JsonSchemaGrammar.Compile(root.GetProperty("schema")));
        }
        catch (GrammarException e)
        {
            return new Result(name, "compile", e.Message);
        }
        string outcome = "pass";
        string? detail = null;
        foreach (var test in root.GetProperty("tests").EnumerateArray())
        {
            bool valid = test.GetProperty("valid").GetBoolean();
            string text = test.GetProperty("text").GetString()!;
            bool matched;
            try
            {
                matched = automaton.Matches(text);
            }
            catch (GrammarException e)
            {
                matched = false;
                detail = e.Message;
            }
            if (valid && !matched && outcome == "pass") { outcome = "validation"; detail ??= text; }
            if (!valid && matched) { outcome = "invalidation"; detail = text; }
        }
        return new Result(name, outcome, detail, clock.Elapsed.TotalMilliseconds);
    }

    internal static List<Result> RunAll(IEnumerable<string> files) =>
        [.. files.AsParallel().AsOrdered().WithDegreeOfParallelism(2).Select(Run)];

    private static string Report(List<Result> results)
    {
        var w = new System.Text.StringBuilder();
        int n = results.Count;
        int pass = results.Count(r => r.Outcome == "pass");
        w.AppendLine($"files {n}, passing {pass} ({100.0 * pass / n:F1}%), compile errors {results.Count(r => r.Outcome == "compile")}, " +
            $"validation errors {results.Count(r => r.Outcome == "validation")}, invalidation errors {results.Count(r => r.Outcome == "invalidation")}");
        foreach (var g in results.Where(r => r.Outcome == "compile").GroupBy(r => Reason(r.Detail!)).OrderByDescending(g => g.Count()).Take(25))
            w.AppendLine($"  {g.Count(),5}  {g.Key}");
        foreach (var r in results.Where(r => r.Outcome == "invalidation")) w.AppendLine($"  INVALIDATION {r.File}: {r.Detail}");
        var times = results.Select(r => r.Milliseconds).Order().ToList();
        w.AppendLine($"compile + match time per file: median {times[times.Count / 2]:F0} ms, p99 {times[(int)(times.Count * 0.99)]:F0} ms, max {times[^1]:F0} ms");
        foreach (var r in results.OrderByDescending(r => r.Milliseconds).Take(5)) w.AppendLine($"  {r.Milliseconds,8:F0} ms  {r.File}");
        return w.ToString();
    }

    /// <summary>An error message without its specifics (pointer, pattern text), for grouping.</summary>
    private static string Reason(string message)
    {
        var m = System.Text.RegularExpressions.Regex.Replace(message, @" at #[^\s:]*", " at #…");
        m = System.Text.RegularExpressions.Regex.Replace(m, @"'[^']*'", "'…'", System.Text.RegularExpressions.RegexOptions.None);
        var keep = System.Text.RegularExpressions.Regex.Match(message, @"^(unsupported keyword '[^']*'|unsupported format '[^']*')");
        return keep.Success ? keep.Value : m.Length > 120 ? m[..120] : m;
    }

    [Fact]
    public void SampleCompilesAndNeverAcceptsAnInvalidInstance()
    {
        var dir = Fixtures.Require("grammar", "maskbench");
        var files = Directory.GetFiles(dir, "*.json").Order(StringComparer.Ordinal).Where((_, i) => i % 10 == 0).ToList();
        var results = RunAll(files);
        output.WriteLine(Report(results));
        Assert.DoesNotContain(results, r => r.Outcome == "invalidation");
        // 255 of these 278 passed when written (91.7%; the whole set 93.1%); most failures are unknown formats and
        // instances whose properties are not in the schema's (here alphabetical) order.
        Assert.True(results.Count(r => r.Outcome == "pass") >= results.Count * 0.85, Report(results));
    }

    /// <summary>All 2,773 files, with the figures printed: set KAIYUAN_MASKBENCH_ALL=1.</summary>
    [Fact]
    public void AllFiles()
    {
        if (Environment.GetEnvironmentVariable("KAIYUAN_MASKBENCH_ALL") != "1") Assert.Skip("set KAIYUAN_MASKBENCH_ALL=1 to run every MaskBench file");
        var dir = Fixtures.Require("grammar", "maskbench");
        var results = RunAll(Directory.GetFiles(dir, "*.json").Order(StringComparer.Ordinal));
        var report = Report(results);
        output.WriteLine(report);
        var outFile = Environment.GetEnvironmentVariable("KAIYUAN_MASKBENCH_REPORT");
        if (outFile is not null)
            File.WriteAllLines(outFile, [report, .. results.Select(r => $"{r.Outcome}\t{r.File}\t{r.Detail?.Replace('\n', ' ')}")]);
        Assert.DoesNotContain(results, r => r.Outcome == "invalidation");
    }
}
