using System.Text;
using System.Text.Json;
using Kaiyuan.Constraints;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Fuzz.Targets;

/// <summary>
/// The structured-output compiler: JSON Schemas (MaskBench's real ones), regexes and GBNF grammars, compiled against a
/// real vocabulary, then a few masks computed and tokens accepted. The first byte says which front end.
/// </summary>
internal sealed class GrammarTarget : FuzzTarget
{
    private TokenTrie? _trie;
    private int _inputs, _compiled, _masked;

    public override string Name => "grammar";
    public override IReadOnlyList<string> Instrumented => ["Kaiyuan.Runtime Kaiyuan.Constraints"];

    // The server bounds compilation by --grammar-timeout (10 s by default) and refuses what takes longer; here a
    // tighter bound finds the schemas that come near it.
    public override TimeSpan TimeBound => TimeSpan.FromSeconds(20);

    public override void Setup(string fixtures) =>
        _trie = TokenTrie.For(Tokenizer.FromGguf(Path.Combine(fixtures, "tokenizers/ggml-vocab-qwen3.gguf")).Vocabulary);

    public override IReadOnlyList<byte[]> Seeds(string fixtures)
    {
        var seeds = new List<byte[]>();
        foreach (var file in Directory.GetFiles(Path.Combine(fixtures, "grammar/maskbench"), "*.json").Order(StringComparer.Ordinal).Take(60))
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            if (doc.RootElement.TryGetProperty("schema", out var schema)) seeds.Add([(byte)'j', .. Encoding.UTF8.GetBytes(schema.GetRawText())]);
        }
        foreach (var regex in new[] { "[A-Z]{2}-[0-9]+", "(a|b)*c{2,5}", "\\d{3}-\\d{4}", "[^\\n]{0,20}", "(foo|bar)+baz?", "\\p{L}+\\s\\w*" })
            seeds.Add([(byte)'r', .. Encoding.UTF8.GetBytes(regex)]);
        foreach (var gbnf in new[]
        {
            "root ::= \"yes\" | \"no\"",
            "root ::= object\nobject ::= \"{\" ws (pair (\",\" ws pair)*)? \"}\"\npair ::= string \":\" ws value\nvalue ::= object | string | [0-9]+\nstring ::= \"\\\"\" [^\"\\\\]* \"\\\"\"\nws ::= [ \\t\\n]*",
            "root ::= item{2,4}\nitem ::= [a-z]+ \"\\n\"",
        })
            seeds.Add([(byte)'g', .. Encoding.UTF8.GetBytes(gbnf)]);
        return seeds;
    }

    public override IReadOnlyList<byte[]> Dictionary => Words("{\"type\":", "\"object\"", "\"string\"", "\"integer\"", "\"array\"",
        "\"properties\":", "\"required\":", "\"items\":", "\"anyOf\":[", "\"allOf\":[", "\"oneOf\":[", "\"$ref\":\"#/", "\"$defs\":",
        "\"pattern\":\"", "\"minLength\":", "\"maxLength\":", "\"minimum\":", "\"maximum\":", "\"enum\":[", "\"const\":",
        "\"format\":\"date-time\"", "\"additionalProperties\":false", "\"minItems\":", "\"maxItems\":", "99999", "-1", "1e308",
        "{", "}", "[", "]", ",", "(", ")", "*", "+", "?", "{1000}", "{2,}", "|", "\\", "[^", "::=", " | ", "\"");

    public override void Run(byte[] input)
    {
        if (input.Length == 0) return;
        _inputs++;
        string text = Encoding.UTF8.GetString(input, 1, input.Length - 1);
        Grammar grammar;
        try
        {
            grammar = (input[0] % 3) switch
            {
                0 => JsonSchemaGrammar.Compile(text),
                1 => Grammar.Of(RegexGrammar.Parse(text)),
                _ => GbnfGrammar.Parse(text),
            };
        }
        // What the server answers 400 for: a front end's own errors, and its tripping over a shape it does not expect.
        catch (Exception e) when (e is GrammarException or JsonException or InvalidOperationException or ArgumentException or FormatException
                                      or KeyNotFoundException)
        {
            return;
        }
        CompiledGrammar compiled;
        try
        {
            compiled = new CompiledGrammar(ByteAutomaton.Compile(grammar), _trie!);
        }
        catch (GrammarException)
        {
            return;
        }
        _compiled++;
        var matcher = compiled.CreateMatcher();
        var mask = new ulong[(_trie!.VocabSize + 63) >> 6];
        for (int step = 0; step < 12 && matcher.IsActive; step++)
        {
            try
            {
                matcher.FillMask(mask);
            }
            catch (GrammarException)
            {
                return; // too large to run: the server answers 400 grammar_too_complex
            }
            int start = input[step % input.Length] * 997 % mask.Length, word = -1;
            for (int i = 0; i < mask.Length && word < 0; i++) if (mask[(start + i) % mask.Length] != 0) word = (start + i) % mask.Length;
            if (word < 0) return;
            int token = word * 64 + System.Numerics.BitOperations.TrailingZeroCount(mask[word]);
            if (!matcher.Accept(token)) throw new FuzzFinding($"the matcher refused token {token}, which its own mask allowed");
            if (step == 0) _masked++;
        }
    }

    public override string Summary => $"{_compiled:N0} of {_inputs:N0} compiled, {_masked:N0} ran their first mask";
}
