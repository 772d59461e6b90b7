using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Tokenizers;

public class WordPieceTests
{
    public static TheoryData<int> BertBgeCases => TokenizerFixtures.CaseNumbers("ggml-vocab-bert-bge.gguf");

    [Theory, MemberData(nameof(BertBgeCases))]
    public void BertBge(int n)
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-bert-bge.gguf");
        var (texts, ids) = TokenizerFixtures.VocabSet("ggml-vocab-bert-bge.gguf");
        var got = tok.Encode(texts[n], addSpecial: false, parseSpecial: false);
        Assert.True(ids[n].SequenceEqual(got), $"{TokenizerFixtures.Show(texts[n])}: expected [{string.Join(' ', ids[n])}], got [{string.Join(' ', got)}]");
    }

    [Fact]
    public void AddsClsAndSep()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-bert-bge.gguf");
        Assert.IsType<WordPieceTokenizer>(tok);
        var ids = tok.Encode("Hello world", addSpecial: true, parseSpecial: false);
        Assert.Equal(101, ids[0]);
        Assert.Equal(102, ids[^1]);
        Assert.Equal(" hello world", tok.Decode(ids, renderSpecial: false));
    }
}
