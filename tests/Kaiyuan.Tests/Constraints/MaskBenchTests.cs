using System.Text.Json;
using Kaiyuan.Constraints;
using Kaiyuan.Tests.Cli;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Constraints;

/// <summary>
/// MaskBench (JSONSchemaBench's real schemas with valid and invalid instances) at the token level, through the same
/// code as <c>kaiyuan bench grammar</c>: a fixed sample in the suite, with floors; the whole folder is the benchmark.
/// </summary>
public class MaskBenchTests
{
    private static string Folder => Fixtures.Require("grammar", "maskbench");
    private static string Vocab => Fixtures.Require("tokenizers", "ggml-vocab-qwen3.gguf");

    [Fact]
    public void BenchGrammarJsonHasTheContractShape()
    {
        var files = MaskBenchmark.FindFiles([Folder]).Take(3).ToArray();
        var r = KaiyuanProcess.Run(["bench", "grammar", "-m", Vocab, .. files, "--json"]);
        Assert.True(r.ExitCode == 0, r.Stderr);
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(files.Length + 1, lines.Length);
        for (int i = 0; i < files.Length; i++)
        {
            using var doc = JsonDocument.Parse(lines[i]);
            var o = doc.RootElement;
            Assert.Equal(Path.GetFileName(files[i]), o.GetProperty("id").GetString());
            if (o.TryGetProperty("compile_error", out var error)) Assert.False(string.IsNullOrEmpty(error.GetString()));
            else
            {
                Assert.True(o.GetProperty("ttfm_us").GetDouble() > 0);
                Assert.All(o.GetProperty("accepted").EnumerateArray(), a => Assert.True(a.ValueKind is JsonValueKind.True or JsonValueKind.False));
                Assert.True(o.GetProperty("tokens").GetInt32() >= 0);
                Assert.True(o.GetProperty("mask_us_max").GetDouble() >= 0);
            }
        }
        using var summaryDoc = JsonDocument.Parse(lines[^1]);
        var s = summaryDoc.RootElement.GetProperty("summary");
        Assert.Equal(files.Length, s.GetProperty("files").GetInt32());
        foreach (var key in new[] { "passing", "compile_errors", "validation_errors", "invalidation_errors" }) Assert.True(s.GetProperty(key).GetInt32() >= 0, key);
        foreach (var key in new[] { "p50", "p75", "p90", "p99", "max" }) Assert.True(s.GetProperty("tbm_us").TryGetProperty(key, out _), key);
        foreach (var key in new[] { "p50", "p90", "p99" }) Assert.True(s.GetProperty("ttfm_us").TryGetProperty(key, out _), key);
    }

    /// <summary>Every 25th file, token by token with the Qwen3 vocabulary: the engine as a sampler sees it.</summary>
    [Fact]
    public void TokenLevelSampleNeverAcceptsAnInvalidInstance()
    {
        var files = MaskBenchmark.FindFiles([Folder]).Where((_, i) => i % 25 == 0).ToList();
        var tokenizer = Tokenizer.FromGguf(Vocab);
        var trie = TokenTrie.For(tokenizer.Vocabulary);
        var results = files.Select(f => MaskBenchmark.RunFile(f, tokenizer, trie)).ToList();
        var invalid = results.Where(r => r.InvalidationError).Select(r => r.Id).ToList();
        Assert.True(invalid.Count == 0, "invalid instances accepted in: " + string.Join(", ", invalid));
        int passing = results.Count(r => r.Passing);
        // Measured: 104 of 111 (93.7%); the floor leaves room for schema-compiler trade-offs, not for regressions.
        Assert.True(passing >= 0.88 * results.Count, $"{passing} of {results.Count} files pass");
        Assert.True(results.Sum(r => r.Tokens) > 10_000, "the sample exercises masks");
    }
}
