using System.Diagnostics;
using System.Text.Json;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Constraints;

/// <summary>The outcome of one MaskBench file.</summary>
/// <param name="Id">The file's name.</param>
/// <param name="CompileError">Why the schema did not compile, or null.</param>
/// <param name="TtfmMicroseconds">Compile plus the first mask (time to first mask).</param>
/// <param name="Accepted">Per test, in file order: every token allowed and the end allowed after the last.</param>
/// <param name="Valid">Per test: whether the instance is valid under the schema.</param>
/// <param name="Tokens">Masks computed (one per token, plus one for the end of each accepted test).</param>
/// <param name="MaskMicrosecondsMax">The slowest mask, in microseconds (0 when none was computed).</param>
/// <param name="MaskMicroseconds">The time of each mask, in microseconds, in the order computed.</param>
public sealed record MaskBenchFileResult(string Id, string? CompileError, double TtfmMicroseconds, bool[] Accepted, bool[] Valid,
    int Tokens, double MaskMicrosecondsMax, double[] MaskMicroseconds)
{
    /// <summary>Compiled, and every test accepted exactly when its instance is valid.</summary>
    public bool Passing => CompileError is null && Accepted.Zip(Valid).All(p => p.First == p.Second);
    /// <summary>An invalid instance was accepted (the constraint lets through what it must not).</summary>
    public bool InvalidationError => CompileError is null && Accepted.Zip(Valid).Any(p => p.First && !p.Second);
    /// <summary>A valid instance was refused (and none invalid accepted).</summary>
    public bool ValidationError => CompileError is null && !InvalidationError && Accepted.Zip(Valid).Any(p => !p.First && p.Second);
}

/// <summary>
/// MaskBench (JSONSchemaBench's mask benchmark) as its authors run it: compile each schema for a tokenizer, then for
/// every test instance tokenize its text (no BOS, no special tokens) and check each token against the mask computed
/// before it, single-threaded. Stricter than the original: the end of generation must also be allowed after the last
/// token of an accepted instance, and an invalid instance counts as rejected when that end is refused.
/// </summary>
public static class MaskBenchmark
{
    /// <summary>Runs one MaskBench file (<c>{"schema":…,"tests":[{"text":…,"valid":…}]}</c>) with a model's tokenizer.</summary>
    /// <exception cref="System.Text.Json.JsonException">The file is not JSON.</exception>
    public static MaskBenchFileResult RunFile(string path, Tokenizer tokenizer) => RunFile(path, tokenizer, TokenTrie.For(tokenizer.Vocabulary));

    internal static MaskBenchFileResult RunFile(string path, Tokenizer tokenizer, TokenTrie trie)
    {
        string id = Path.GetFileName(path);
        using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = doc.RootElement;
        var tests = root.TryGetProperty("tests", out var t) && t.ValueKind == JsonValueKind.Array ? t.EnumerateArray().ToArray() : [];
        var valid = tests.Select(x => x.GetProperty("valid").GetBoolean()).ToArray();
        var mask = new ulong[trie.MaskLength];

        var clock = Stopwatch.StartNew();
        CompiledGrammar grammar;
        GrammarMatcher matcher;
        try
        {
            grammar = new CompiledGrammar(ByteAutomaton.Compile(JsonSchemaGrammar.Compile(root.GetProperty("schema"))), trie);
            matcher = grammar.CreateMatcher();
            matcher.FillMask(mask);
        }
        catch (GrammarException e)
        {
            return new MaskBenchFileResult(id, e.Message, 0, [], valid, 0, 0, []);
        }
        double ttfm = clock.Elapsed.TotalMicroseconds;

        var accepted = new bool[tests.Length];
        var times = new List<double>();
        for (int i = 0; i < tests.Length; i++)
        {
            int[] tokens = tokenizer.Encode(tests[i].GetProperty("text").GetString() ?? "", addSpecial: false, parseSpecial: false);
            matcher = grammar.CreateMatcher();
            bool ok = true;
            try
            {
                foreach (int token in tokens)
                {
                    long start = Stopwatch.GetTimestamp();
                    matcher.FillMask(mask);
                    times.Add(Stopwatch.GetElapsedTime(start).TotalMicroseconds);
                    if ((mask[token >> 6] & (1UL << token)) == 0 || !matcher.Accept(token)) { ok = false; break; }
                }
                if (ok)
                {
                    long start = Stopwatch.GetTimestamp();
                    matcher.FillMask(mask);
                    times.Add(Stopwatch.GetElapsedTime(start).TotalMicroseconds);
                    ok = trie.EndOfGeneration.Count == 0 ? matcher.IsAccepting : trie.EndOfGeneration.Any(e => (mask[e >> 6] & (1UL << e)) != 0);
                }
            }
            catch (GrammarException)
            {
                ok = false; // a run-time limit (depth, states) refuses the instance: fail closed
            }
            accepted[i] = ok;
        }
        return new MaskBenchFileResult(id, null, ttfm, accepted, valid, times.Count, times.Count == 0 ? 0 : times.Max(), [.. times]);
    }

    /// <summary>The MaskBench files under the given files and folders, sorted by name.</summary>
    public static List<string> FindFiles(IEnumerable<string> paths)
    {
        var files = new List<string>();
        foreach (string p in paths)
        {
            if (Directory.Exists(p)) files.AddRange(Directory.EnumerateFiles(p, "*.json").Where(f => Path.GetFileName(f) != "package.json"));
            else if (File.Exists(p)) files.Add(p);
            else throw new FileNotFoundException($"no such file or folder: {p}");
        }
        files.Sort(StringComparer.Ordinal);
        return files;
    }

    /// <summary>The q-quantile (0..1) of sorted values by nearest rank.</summary>
    public static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
}
