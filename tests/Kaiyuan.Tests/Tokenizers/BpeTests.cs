using System.Text.Json;
using Kaiyuan.Gguf;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Tokenizers;

public class BpeTests
{
    public static TheoryData<int> DeepSeekCoderCases => TokenizerFixtures.CaseNumbers("ggml-vocab-deepseek-coder.gguf");
    public static TheoryData<int> DeepSeekLlmCases => TokenizerFixtures.CaseNumbers("ggml-vocab-deepseek-llm.gguf");
    public static TheoryData<int> FalconCases => TokenizerFixtures.CaseNumbers("ggml-vocab-falcon.gguf");
    public static TheoryData<int> Gpt2Cases => TokenizerFixtures.CaseNumbers("ggml-vocab-gpt-2.gguf");
    public static TheoryData<int> MptCases => TokenizerFixtures.CaseNumbers("ggml-vocab-mpt.gguf");
    public static TheoryData<int> RefactCases => TokenizerFixtures.CaseNumbers("ggml-vocab-refact.gguf");
    public static TheoryData<int> StarcoderCases => TokenizerFixtures.CaseNumbers("ggml-vocab-starcoder.gguf");
    public static TheoryData<int> Qwen3Cases => TokenizerFixtures.CaseNumbers("qwen3", ".json");
    public static TheoryData<int> DeepSeekV3Cases => TokenizerFixtures.CaseNumbers("deepseek-v3", ".json");

    [Theory, MemberData(nameof(DeepSeekCoderCases))]
    public void DeepSeekCoder(int n) => SentencePieceTests.CheckVocabCase("ggml-vocab-deepseek-coder.gguf", n);

    [Theory, MemberData(nameof(DeepSeekLlmCases))]
    public void DeepSeekLlm(int n) => SentencePieceTests.CheckVocabCase("ggml-vocab-deepseek-llm.gguf", n);

    [Theory, MemberData(nameof(FalconCases))]
    public void Falcon(int n) => SentencePieceTests.CheckVocabCase("ggml-vocab-falcon.gguf", n);

    [Theory, MemberData(nameof(Gpt2Cases))]
    public void Gpt2(int n) => SentencePieceTests.CheckVocabCase("ggml-vocab-gpt-2.gguf", n);

    [Theory, MemberData(nameof(MptCases))]
    public void Mpt(int n) => SentencePieceTests.CheckVocabCase("ggml-vocab-mpt.gguf", n);

    [Theory, MemberData(nameof(RefactCases))]
    public void Refact(int n) => SentencePieceTests.CheckVocabCase("ggml-vocab-refact.gguf", n);

    [Theory, MemberData(nameof(StarcoderCases))]
    public void Starcoder(int n) => SentencePieceTests.CheckVocabCase("ggml-vocab-starcoder.gguf", n);

    [Theory, MemberData(nameof(Qwen3Cases))]
    public void Qwen3(int n) => CheckJsonCase("qwen3", n);

    [Theory, MemberData(nameof(DeepSeekV3Cases))]
    public void DeepSeekV3(int n) => CheckJsonCase("deepseek-v3", n);

    private static void CheckJsonCase(string set, int n)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Require("tokenizers", set + ".json")));
        var tok = TokenizerFixtures.Load("tokenizers", doc.RootElement.GetProperty("vocab").GetString()!);
        var c = doc.RootElement.GetProperty("cases")[n];
        string text = c.GetProperty("text").GetString()!;
        foreach (var (key, parse) in new[] { ("ids", false), ("ids_parse_special", true) })
        {
            var expected = c.GetProperty(key).EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var got = tok.Encode(text, addSpecial: false, parseSpecial: parse);
            Assert.True(expected.SequenceEqual(got), $"{key} {TokenizerFixtures.Show(text)}: expected [{string.Join(' ', expected)}], got [{string.Join(' ', got)}]");
            Assert.Equal(text, tok.Decode(got, renderSpecial: true));
        }
    }

    [Fact]
    public void Qwen3SpecialTokensAndEndOfGeneration()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-qwen3.gguf");
        Assert.Equal(151669, tok.VocabSize);
        Assert.False(tok.AddBos);
        int imStart = tok.Vocabulary.Find("<|im_start|>"), imEnd = tok.Vocabulary.Find("<|im_end|>");
        int endOfText = tok.Vocabulary.Find("<|endoftext|>"), think = tok.Vocabulary.Find("<think>");
        Assert.True(tok.IsEndOfGeneration(imEnd));
        Assert.True(tok.IsEndOfGeneration(endOfText));
        Assert.False(tok.IsEndOfGeneration(imStart));
        Assert.False(tok.IsEndOfGeneration(think));

        const string chat = "<|im_start|>user\nhi<|im_end|>";
        var parsed = tok.Encode(chat, addSpecial: true, parseSpecial: true);
        Assert.Equal(imStart, parsed[0]);
        Assert.Equal(imEnd, parsed[^1]);
        var plain = tok.Encode(chat, addSpecial: true, parseSpecial: false);
        Assert.DoesNotContain(imStart, plain);
        Assert.Equal(chat, tok.Decode(plain));
        Assert.Equal(chat, tok.Decode(parsed, renderSpecial: true));
        Assert.Equal("user\nhi", tok.Decode(parsed, renderSpecial: false));
        // USER_DEFINED tokens such as <think> are split out even without parseSpecial, as in llama.cpp.
        Assert.Contains(think, tok.Encode("a<think>b", false, false));
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("\n\n\n\t  \r\n")]
    [InlineData("naïve café – 你好，世界！ こんにちは 🦙🎉 👩‍👩‍👧 𝓗𝓮𝓵𝓵𝓸")]
    [InlineData("x = [1, 2, 3]; // comment\n\tif (a >= b) { return \"ok\"; }")]
    [InlineData("1234567890 3.14159 ½ ٣٤٥ ①②")]
    public void RoundTripsOddInput(string text)
    {
        foreach (var vocab in new[] { "ggml-vocab-qwen3.gguf", "ggml-vocab-deepseek-v3.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-deepseek-llm.gguf" })
        {
            var tok = TokenizerFixtures.Load("tokenizers", vocab);
            Assert.Equal(text, tok.Decode(tok.Encode(text, addSpecial: false, parseSpecial: false)));
        }
    }

    [Fact]
    public void LongWhitespaceRunUsesQueueMergeConsistently()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-qwen3.gguf");
        string text = new string(' ', 1000) + "x" + new string('=', 300);
        var ids = tok.Encode(text, false, false);
        Assert.Equal(text, tok.Decode(ids));
        Assert.True(ids.Length < 100);
    }

    [Fact]
    public void UnknownPreIsRejectedByName()
    {
        var w = new GgufWriter();
        w.Metadata.Set("tokenizer.ggml.model", GgufValue.Of("gpt2"));
        w.Metadata.Set("tokenizer.ggml.pre", GgufValue.Of("no-such-pre"));
        w.Metadata.Set("tokenizer.ggml.tokens", GgufValue.Of(GgufArray.Of(["a", "b", "ab"])));
        w.Metadata.Set("tokenizer.ggml.token_type", GgufValue.Of(GgufArray.Of([1, 1, 1])));
        w.Metadata.Set("tokenizer.ggml.merges", GgufValue.Of(GgufArray.Of(["a b"])));
        var ms = new MemoryStream();
        w.Write(ms);
        using var f = GgufFile.FromBytes(ms.ToArray());
        var e = Assert.Throws<NotSupportedException>(() => Tokenizer.FromGguf(f.Metadata));
        Assert.Contains("no-such-pre", e.Message);

        f.Metadata.Set("tokenizer.ggml.pre", GgufValue.Of("qwen2"));
        var tok = Tokenizer.FromGguf(f.Metadata);
        Assert.Equal([2, 0], tok.Encode("aba", false, false));

        f.Metadata.Set("tokenizer.ggml.model", GgufValue.Of("rwkv"));
        Assert.Contains("rwkv", Assert.Throws<NotSupportedException>(() => Tokenizer.FromGguf(f.Metadata)).Message);
    }
}
