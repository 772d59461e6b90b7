using System.Collections.Concurrent;
using System.Text.Json;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Tokenizers;

/// <summary>Loads the llama.cpp vocab test sets and caches one tokenizer per vocabulary file.</summary>
internal static class TokenizerFixtures
{
    private static readonly ConcurrentDictionary<string, Lazy<Tokenizer>> Tokenizers = new();
    private static readonly ConcurrentDictionary<string, (string[] Texts, int[][] Ids)> Sets = new();

    public static Tokenizer Load(params string[] parts)
    {
        string path = Fixtures.Require(parts);
        return Tokenizers.GetOrAdd(path, p => new Lazy<Tokenizer>(() => Tokenizer.FromGguf(p))).Value;
    }

    /// <summary>The cases of <c>&lt;vocab&gt;.inp/.out</c>: texts separated by <c>__ggml_vocab_test__</c> lines, one id line each.</summary>
    public static (string[] Texts, int[][] Ids) VocabSet(string vocab)
    {
        string inp = Fixtures.Require("tokenizers", vocab + ".inp");
        string outp = Fixtures.Require("tokenizers", vocab + ".out");
        return Sets.GetOrAdd(vocab, _ =>
        {
            var parts = File.ReadAllText(inp).Split("\n__ggml_vocab_test__\n");
            var texts = parts[..^1];
            var lines = File.ReadAllLines(outp);
            var ids = lines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray()).ToArray();
            Assert.Equal(texts.Length, ids.Length);
            return (texts, ids);
        });
    }

    /// <summary>Case numbers for a theory; one case (which then skips) when the fixtures are absent.</summary>
    public static TheoryData<int> CaseNumbers(string vocab, string extension = ".inp")
    {
        var data = new TheoryData<int>();
        int count = 1;
        if (Fixtures.Root is not null)
        {
            string path = Path.Combine(Fixtures.Root, "tokenizers", vocab + extension);
            if (File.Exists(path))
                count = extension == ".inp"
                    ? File.ReadAllText(path).Split("\n__ggml_vocab_test__\n").Length - 1
                    : JsonDocument.Parse(File.ReadAllText(path)).RootElement.GetProperty("cases").GetArrayLength();
        }
        for (int i = 0; i < count; i++) data.Add(i);
        return data;
    }

    public static string Show(string s) => JsonSerializer.Serialize(s);
}
