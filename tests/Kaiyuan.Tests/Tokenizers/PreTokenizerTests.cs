using System.Text;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Tokenizers;

public class PreTokenizerTests
{
    private static readonly string[] Alphabet =
    [
        "a", "Z", "é", "ß", "中", "文", "ー", "0", "7", "٣", "½", " ", "  ", "\t", "\n", "\r\n", "\u00A0", "\u3000", "'", "'s", "'LL", "'re",
        ".", ",", "!", "$", "~", "`", "(", "…", "—", "🦙", "𝓗", "\u0301", "\u200B", "\uFFFF", "_", "-",
    ];

    [Theory]
    [InlineData("qwen2")]
    [InlineData("llama-bpe")]
    public void HandWrittenSplitterMatchesTheRegex(string pre)
    {
        var fast = PreTokenizer.For(pre);
        var regex = PreTokenizer.RegexOnly(pre);
        var random = new Random(7);
        for (int round = 0; round < 3000; round++)
        {
            var sb = new StringBuilder();
            int n = random.Next(1, 24);
            for (int i = 0; i < n; i++) sb.Append(Alphabet[random.Next(Alphabet.Length)]);
            string text = sb.ToString();
            var a = new List<(int, int)>();
            var b = new List<(int, int)>();
            fast.Split(text, 0, text.Length, a);
            regex.Split(text, 0, text.Length, b);
            Assert.True(a.SequenceEqual(b), $"{TokenizerFixtures.Show(text)}: [{string.Join("|", a.Select(w => text.Substring(w.Item1, w.Item2)))}] vs [{string.Join("|", b.Select(w => text.Substring(w.Item1, w.Item2)))}]");
        }
    }

    [Fact]
    public void UnknownPreNamesItself() =>
        Assert.Contains("'nope'", Assert.Throws<NotSupportedException>(() => PreTokenizer.For("nope")).Message);
}

public class KimiK2AndDetokenizeTests
{
    private static string[] Words(string pre, string text)
    {
        var words = new List<(int Start, int Length)>();
        PreTokenizer.For(pre).Split(text, 0, text.Length, words);
        return words.Select(w => text.Substring(w.Start, w.Length)).ToArray();
    }

    [Fact]
    public void KimiK2SplitsHanLettersAndDigitGroups()
    {
        Assert.Equal(["汉字", "abc", "123", "45", "DEF"], Words("kimi-k2", "汉字abc12345DEF"));
        Assert.Equal(["Hello", " world's", "!!\n\n", " ", " x"], Words("kimi-k2", "Hello world's!!\n\n  x"));
    }

    [Fact]
    public void Glm4UsesTheLlama3SplitWithThreeDigitGroups() =>
        Assert.Equal(["Hi", " there", " ", "123", "45"], Words("glm4", "Hi there 12345"));

    [Fact]
    public void DetokenizeAppliesTheVocabularysSpaceCleanUp()
    {
        var gpt2 = TokenizerFixtures.Load("tokenizers", "ggml-vocab-gpt-2.gguf");
        var ids = gpt2.Encode("Hello , world ! It 's", false, false);
        Assert.Equal("Hello, world! It's", gpt2.Detokenize(ids, removeSpecial: false, unparseSpecial: true));
        Assert.Equal("Hello , world ! It 's", gpt2.Decode(ids));

        var qwen = TokenizerFixtures.Load("tokenizers", "ggml-vocab-qwen3.gguf");
        var q = qwen.Encode("Hello , world !", false, false);
        Assert.Equal("Hello , world !", qwen.Detokenize(q, removeSpecial: false, unparseSpecial: true));

        var spm = TokenizerFixtures.Load("tokenizers", "ggml-vocab-llama-spm.gguf");
        var s = spm.Encode("Hello", addSpecial: true, parseSpecial: false);
        // llama.cpp: removing the BOS also cancels the leading-space strip.
        Assert.Equal(" Hello", spm.Detokenize(s, removeSpecial: true, unparseSpecial: false));
        Assert.Equal("Hello", spm.Decode(s, renderSpecial: false));
        Assert.Equal("<s> Hello", spm.Detokenize(s, removeSpecial: false, unparseSpecial: true));
    }
}
