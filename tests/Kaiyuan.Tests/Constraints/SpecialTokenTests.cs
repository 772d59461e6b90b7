using System.Text.Json;
using Kaiyuan.Constraints;
using Kaiyuan.Templates.Parsing;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Constraints;

/// <summary>Chat-format markers that a vocabulary makes control tokens (DeepSeek's) are allowed only where a grammar names them.</summary>
public class SpecialTokenTests
{
    [Fact]
    public void DeepSeekCallMarkersAreControlTokensTheGrammarAllows()
    {
        var tokenizer = Tokenizer.FromGguf(Fixtures.Require("tokenizers", "ggml-vocab-deepseek-v3.gguf"));
        var trie = TokenTrie.For(tokenizer.Vocabulary);
        using var schema = JsonDocument.Parse("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""");
        var grammar = ToolCallGrammar.Build(ToolCallFormat.DeepSeek, [new ToolSignature("weather", schema.RootElement.Clone())], parallel: false);
        var compiled = new CompiledGrammar(ByteAutomaton.Compile(grammar), trie);
        string output = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        int[] ids = tokenizer.Encode(output, addSpecial: false, parseSpecial: true);
        int begin = tokenizer.Vocabulary.Find("<｜tool▁calls▁begin｜>");
        Assert.True(begin >= 0 && tokenizer.Vocabulary.IsControl(begin), "the fixture vocabulary makes the marker a control token");
        Assert.Equal(begin, ids[0]);

        var matcher = compiled.CreateMatcher();
        var mask = new ulong[trie.MaskLength];
        foreach (int id in ids)
        {
            matcher.FillMask(mask);
            Assert.True((mask[id >> 6] & (1UL << id)) != 0, $"token {id} '{tokenizer.TokenText(id)}' refused");
            Assert.True(matcher.Accept(id));
        }
        Assert.True(matcher.IsAccepting);

        // The same markers spelled out as text are fine too, but a control token is never text: in a free string it is refused.
        var free = new CompiledGrammar(ByteAutomaton.Compile(JsonSchemaGrammar.Compile("""{"type":"string"}""")), trie);
        var m = free.CreateMatcher();
        Assert.True(m.Accept(tokenizer.Encode("\"", false, false)[0]));
        m.FillMask(mask);
        Assert.Equal(0UL, mask[begin >> 6] & (1UL << begin));
        Assert.False(m.Accept(begin));

        // And the server's decoder shows preserved markers, hiding other control tokens.
        var decoder = tokenizer.CreateStreamingDecoder(ToolCallFormat.DeepSeek.Markers);
        string text = string.Concat(ids.Select(decoder.Append)) + decoder.Flush();
        Assert.Equal(output, text);
        int bos = tokenizer.BosId;
        Assert.Equal("", tokenizer.CreateStreamingDecoder(ToolCallFormat.DeepSeek.Markers).Append(bos));
    }
}
