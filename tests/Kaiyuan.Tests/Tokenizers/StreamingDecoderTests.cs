using System.Text;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Tokenizers;

public class StreamingDecoderTests
{
    [Fact]
    public void ByteFallbackCharacterComesOutWhole()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-llama-spm.gguf");
        // 𤭢 is four <0xNN> byte tokens in llama's vocabulary.
        var ids = tok.Encode("a𤭢b", addSpecial: false, parseSpecial: false);
        var decoder = tok.CreateStreamingDecoder();
        var pieces = ids.Select(decoder.Append).ToList();
        Assert.DoesNotContain(pieces, p => p.Contains('\uFFFD'));
        Assert.Contains("𤭢", pieces);
        Assert.Equal(" a𤭢b", string.Concat(pieces) + decoder.Flush());
        Assert.Equal(3, pieces.Count(p => p.Length == 0));
    }

    [Fact]
    public void ByteLevelTokensSplitInsideACharacter()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-gpt-2.gguf");
        const string text = "你好🦙 ok";
        var ids = tok.Encode(text, addSpecial: false, parseSpecial: false);
        var decoder = tok.CreateStreamingDecoder();
        var sb = new StringBuilder();
        foreach (int id in ids)
        {
            string piece = decoder.Append(id);
            Assert.DoesNotContain('\uFFFD', piece);
            sb.Append(piece);
        }
        Assert.Equal(text, sb.ToString() + decoder.Flush());
    }

    [Fact]
    public void InvalidBytesBecomeReplacementOnlyWhenTheyCannotComplete()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-llama-spm.gguf");
        int B(byte b) => tok.Vocabulary.Find($"<0x{b:X2}>");
        var decoder = tok.CreateStreamingDecoder();
        Assert.Equal("", decoder.Append(B(0xE4)));
        Assert.Equal("", decoder.Append(B(0xBD)));
        // 'A' cannot continue E4 BD: the two bytes are invalid now.
        Assert.Equal("\uFFFDA", decoder.Append(B((byte)'A')));
        Assert.Equal("", decoder.Append(B(0xF0)));
        Assert.Equal("\uFFFD", decoder.Flush());
        // E0 80 can never start a valid character, so it is not held back.
        Assert.Equal("\uFFFD\uFFFD", decoder.Append(B(0xE0)) + decoder.Append(B(0x80)));
    }

    [Theory]
    [InlineData(new byte[] { 0x41 }, 0)]
    [InlineData(new byte[] { 0xE4 }, 1)]
    [InlineData(new byte[] { 0xE4, 0xBD }, 2)]
    [InlineData(new byte[] { 0xE4, 0xBD, 0xA0 }, 0)]
    [InlineData(new byte[] { 0xF0, 0x9F, 0xA6 }, 3)]
    [InlineData(new byte[] { 0xED, 0xA0 }, 0)]
    [InlineData(new byte[] { 0xF4, 0x90 }, 0)]
    [InlineData(new byte[] { 0xC0 }, 0)]
    public void IncompleteTail(byte[] bytes, int expected) => Assert.Equal(expected, StreamingDecoder.IncompleteTailLength(bytes));

    [Fact]
    public void SpecialTokensRenderOnlyWhenAsked()
    {
        var tok = TokenizerFixtures.Load("tokenizers", "ggml-vocab-qwen3.gguf");
        var ids = tok.Encode("<|im_start|>hi<|im_end|>", addSpecial: false, parseSpecial: true);
        var shown = tok.CreateStreamingDecoder(renderSpecial: true);
        var hidden = tok.CreateStreamingDecoder(renderSpecial: false);
        Assert.Equal("<|im_start|>hi<|im_end|>", string.Concat(ids.Select(shown.Append)));
        Assert.Equal("hi", string.Concat(ids.Select(hidden.Append)));
    }
}
