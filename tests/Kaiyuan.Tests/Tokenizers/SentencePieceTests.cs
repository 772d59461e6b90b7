using System.Text.Json;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Tokenizers;

public class SentencePieceTests
{
    public static TheoryData<int> LlamaSpmCases => TokenizerFixtures.CaseNumbers("ggml-vocab-llama-spm.gguf");
    public static TheoryData<int> Phi3Cases => TokenizerFixtures.CaseNumbers("ggml-vocab-phi-3.gguf");

    [Theory, MemberData(nameof(LlamaSpmCases))]
    public void LlamaSpm(int n) => CheckVocabCase("ggml-vocab-llama-spm.gguf", n);

    [Theory, MemberData(nameof(Phi3Cases))]
    public void Phi3(int n) => CheckVocabCase("ggml-vocab-phi-3.gguf", n);

    internal static void CheckVocabCase(string vocab, int n)
    {
        var tok = TokenizerFixtures.Load("tokenizers", vocab);
        var (texts, ids) = TokenizerFixtures.VocabSet(vocab);
        string text = texts[n];
        var got = tok.Encode(text, addSpecial: false, parseSpecial: false);
        Assert.True(ids[n].SequenceEqual(got), $"{TokenizerFixtures.Show(text)}: expected [{string.Join(' ', ids[n])}], got [{string.Join(' ', got)}]");
        Assert.Equal(text, tok.Decode(got, renderSpecial: false));
    }

    [Theory]
    [InlineData("stories260K", "stories260K-f32.gguf")]
    [InlineData("aidreams260K", "aidreams260K-f32.gguf")]
    public void ModelGoldenPrompts(string folder, string file)
    {
        var tok = TokenizerFixtures.Load("models", folder, file);
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.ModelPath(folder, "goldens-f32.json")));
        int checkedCases = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string prompt = c.GetProperty("prompt").GetString()!;
            if (!prompt.StartsWith("text:", StringComparison.Ordinal)) continue;
            string text = prompt["text:".Length..];
            var expected = c.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            var got = tok.Encode(text, addSpecial: true, parseSpecial: false);
            Assert.True(expected.SequenceEqual(got), $"{text}: expected [{string.Join(' ', expected)}], got [{string.Join(' ', got)}]");
            Assert.Equal(text, tok.Decode(got, renderSpecial: false));
            checkedCases++;
        }
        Assert.True(checkedCases > 0);
    }

    [Theory]
    [InlineData("")]
    [InlineData(" ")]
    [InlineData("   leading and trailing   ")]
    [InlineData("\t\ttabs\nand\r\nnewlines\n\n")]
    [InlineData("naïve café – 你好，世界！ こんにちは 🦙🎉 👩‍👩‍👧")]
    [InlineData("a\u0301 \u00A0nbsp \u200Bzero-width 𝓗𝓮𝓵𝓵𝓸")]
    public void RoundTripsOddInput(string text)
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-llama-spm.gguf");
        Assert.Equal(text, tok.Decode(tok.Encode(text, addSpecial: false, parseSpecial: false), renderSpecial: false));
        Assert.Equal(text, tok.Decode(tok.Encode(text, addSpecial: true, parseSpecial: false), renderSpecial: false));
    }

    [Fact]
    public void EmptyTextGivesOnlyBos()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-llama-spm.gguf");
        Assert.Equal([1], tok.Encode("", addSpecial: true, parseSpecial: false));
        Assert.Empty(tok.Encode("", addSpecial: false, parseSpecial: false));
    }

    [Fact]
    public void SpecialTokensParseOnlyWhenAsked()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-llama-spm.gguf");
        var parsed = tok.Encode("<s>Hi</s>", addSpecial: false, parseSpecial: true);
        Assert.Equal(1, parsed[0]);
        Assert.Equal(2, parsed[^1]);
        // After a special token the text gets the space prefix again.
        Assert.Equal(tok.Encode("Hi", false, false), parsed[1..^1]);
        var plain = tok.Encode("<s>Hi</s>", addSpecial: false, parseSpecial: false);
        Assert.DoesNotContain(1, plain);
        Assert.DoesNotContain(2, plain);
        Assert.Equal("<s>Hi</s>", tok.Decode(plain, renderSpecial: false));
        // A rendered BOS keeps the following space, as llama.cpp prints it.
        Assert.Equal("<s> Hi</s>", tok.Decode(parsed, renderSpecial: true));
        Assert.Equal("Hi", tok.Decode(parsed, renderSpecial: false));
    }

    [Fact]
    public void MetadataAndEndOfGeneration()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-llama-spm.gguf");
        Assert.Equal(32000, tok.VocabSize);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.True(tok.AddBos);
        Assert.False(tok.AddEos);
        Assert.True(tok.IsEndOfGeneration(2));
        Assert.False(tok.IsEndOfGeneration(1));
        Assert.Equal("▁Hello", tok.TokenText(tok.Encode("Hello", false, false)[0]));
        Assert.Equal(" Hello"u8.ToArray(), tok.TokenBytes(tok.Encode("Hello", false, false)[0], false));

        var phi3 = TokenizerFixtures.Load("tokenizers", "ggml-vocab-phi-3.gguf");
        int endoftext = phi3.Vocabulary.Find("<|endoftext|>");
        int end = phi3.Vocabulary.Find("<|end|>");
        Assert.True(phi3.IsEndOfGeneration(endoftext));
        Assert.True(phi3.IsEndOfGeneration(end));
        Assert.True(phi3.IsEndOfGeneration(32000));
    }

    [Fact]
    public void ByteFallbackDecodesAcrossTokens()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-llama-spm.gguf");
        // U+24B62 is not in the vocabulary: four <0xNN> byte tokens.
        var ids = tok.Encode("𤭢", false, false);
        Assert.Contains(ids, id => tok.Vocabulary.Attributes(id).HasFlag(TokenAttributes.Byte));
        Assert.Equal("𤭢", tok.Decode(ids, false));
    }
}
