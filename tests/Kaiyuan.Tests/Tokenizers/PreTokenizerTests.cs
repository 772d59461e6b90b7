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
