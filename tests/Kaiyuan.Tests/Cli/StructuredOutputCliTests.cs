using System.Text.Json;
using Kaiyuan.Tests.Server;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Cli;

/// <summary><c>kaiyuan generate</c> and <c>kaiyuan run</c> with --json-schema, --grammar-file and --regex, as a real process.</summary>
public class StructuredOutputCliTests
{
    private const string Verdict = """
        {"type":"object","properties":{"answer":{"type":"string","enum":["yes","no"]},"sure":{"type":"boolean"}},"required":["answer","sure"],"additionalProperties":false}
        """;

    private static string TempFile(string text)
    {
        string path = Path.Combine(Path.GetTempPath(), $"kaiyuan-cli-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void GenerateFollowsAJsonSchema()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-f32.gguf");
        var tokenizer = Tokenizer.FromGguf(model);
        string schema = TempFile(Verdict);
        try
        {
            int finished = 0;
            foreach (string seed in new[] { "1", "2", "3", "4", "5", "6" })
            {
                var r = KaiyuanProcess.Run("generate", "-m", model, "-p", "Answer:", "--json-schema", schema, "--temp", "1", "--top-p", "1", "--seed", seed,
                    "-n", "300", "--json", "-t", "2");
                Assert.True(r.ExitCode == 0, r.Stderr);
                var root = JsonDocument.Parse(r.Stdout).RootElement;
                var ids = root.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                if (ids.Length == 0 || !tokenizer.IsEndOfGeneration(ids[^1])) continue; // ran out of tokens: allowed
                finished++;
                // "text" renders the end-of-generation token too; the answer is what came before it.
                StructuredOutputTests.AssertValid(Verdict, tokenizer.Decode(ids[..^1], renderSpecial: false));
            }
            Assert.True(finished >= 1, "no answer finished");
        }
        finally
        {
            File.Delete(schema);
        }
    }

    [Fact]
    public void RunAnswersOnceUnderASchema()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-f32.gguf");
        string schema = TempFile("""{"type":"boolean"}""");
        try
        {
            var r = KaiyuanProcess.Run("run", model, "-p", "Is it?", "--json-schema", schema, "--temp", "1", "--seed", "3", "-n", "60", "-t", "2");
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains(r.Stdout.Trim(), new[] { "true", "false" });
        }
        finally
        {
            File.Delete(schema);
        }
    }

    [Fact]
    public void BadOrConflictingConstraintsAreOneLineErrors()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-f32.gguf");
        string bad = TempFile("""{"type":"no-such-type"}""");
        try
        {
            var both = KaiyuanProcess.Run("generate", "-m", model, "-p", "x", "--json-schema", bad, "--regex", "a+");
            Assert.NotEqual(0, both.ExitCode);
            Assert.Contains("at most one of --json-schema, --grammar-file and --regex", both.Stderr);

            foreach (var args in new[] { new[] { "--json-schema", bad }, ["--json-schema", "/nonexistent/schema.json"], ["--grammar-file", bad] })
            {
                var r = KaiyuanProcess.Run(["generate", "-m", model, "-p", "x", "-n", "4", .. args]);
                Assert.NotEqual(0, r.ExitCode);
                string line = Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
                Assert.Contains(args[0], line);
                Assert.Equal("", r.Stdout.Trim());
            }
            var run = KaiyuanProcess.Run("run", model, "-p", "x", "--json-schema", bad);
            Assert.NotEqual(0, run.ExitCode);
            Assert.Contains("--json-schema", Assert.Single(run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        }
        finally
        {
            File.Delete(bad);
        }
    }

    [Fact]
    public void RegexConstrainsGenerate()
    {
        string model = Fixtures.ModelPath("qwen3", "qwen3-f32.gguf");
        var r = KaiyuanProcess.Run("generate", "-m", model, "-p", "x", "--regex", "(yes|no)!", "--temp", "1", "--seed", "1", "-n", "40", "--json", "-t", "2");
        if (r.Stderr.Contains("not supported yet", StringComparison.Ordinal)) Assert.Skip("the regex front end is still a stand-in");
        Assert.True(r.ExitCode == 0, r.Stderr);
        var tokenizer = Tokenizer.FromGguf(model);
        var ids = JsonDocument.Parse(r.Stdout).RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.True(tokenizer.IsEndOfGeneration(ids[^1])); // the pattern is complete: the model may only stop
        Assert.Contains(tokenizer.Decode(ids[..^1], renderSpecial: false), new[] { "yes!", "no!" });
    }
}
