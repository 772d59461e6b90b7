using Kaiyuan.Constraints;
using Kaiyuan.Templates.Parsing;
using Kaiyuan.Tokenizers;

namespace Kaiyuan.Tests.Constraints;

/// <summary>Constraints that start late, on Qwen3's real vocabulary (where &lt;think&gt; and &lt;tool_call&gt; are single tokens).</summary>
public class TriggeredConstraintTests
{
    // One tokenizer for the class: the token trie (a walk over 151k tokens) is built once per vocabulary.
    private static readonly Lazy<Tokenizer> Shared = new(() => Tokenizer.FromGguf(Fixtures.Require("tokenizers", "ggml-vocab-qwen3.gguf")));

    private static Tokenizer Qwen3()
    {
        Fixtures.Require("tokenizers", "ggml-vocab-qwen3.gguf");
        return Shared.Value;
    }

    private static int[] Tokens(Tokenizer t, string text) => t.Encode(text, addSpecial: false, parseSpecial: true);

    private static bool Allowed(TokenConstraint c, int token, int vocab)
    {
        var mask = new ulong[(vocab + 63) / 64];
        c.FillMask(mask);
        return (mask[token >> 6] & (1UL << token)) != 0;
    }

    private static void AcceptAll(TokenConstraint c, IEnumerable<int> tokens)
    {
        foreach (int id in tokens) Assert.True(c.Accept(id), $"token {id} refused");
    }

    [Fact]
    public void SchemaStartsAfterTheReasoningBlockCloses()
    {
        var t = Qwen3();
        var v = t.Vocabulary;
        var json = new CompiledGrammar(ByteAutomaton.Compile(JsonSchemaGrammar.AnyObject()), TokenTrie.For(v));
        var c = new TriggeredConstraint(json.CreateMatcher(), v, ["</think>"], includeTrigger: false, required: true);
        Assert.False(c.IsActive);
        Assert.False(c.Accept(v.EosId is var eos && v.IsEndOfGeneration(eos) ? eos : v.EndOfGenerationIds.First())); // no answer yet
        AcceptAll(c, Tokens(t, "Let me think {[ not json"));
        Assert.False(c.IsActive);
        int close = v.Find("</think>");
        Assert.True(c.Accept(close));
        Assert.True(c.IsActive && c.Triggered);
        Assert.False(Allowed(c, Tokens(t, "Sure")[0], v.Count));
        AcceptAll(c, Tokens(t, "\n\n{\"a\": [1, 2]}"));
        Assert.True(c.IsAccepting);
        Assert.True(c.Accept(v.EndOfGenerationIds.First()));
    }

    [Fact]
    public void TextAfterTheTriggerInTheSameTokenIsFedOn()
    {
        // Byte-level triggers: "</think>" arrives split over several tokens, and the last one carries the answer's start.
        var t = Qwen3();
        var v = t.Vocabulary;
        var json = new CompiledGrammar(ByteAutomaton.Compile(JsonSchemaGrammar.AnyObject()), TokenTrie.For(v));
        var c = new TriggeredConstraint(json.CreateMatcher(), v, ["DONE"], includeTrigger: false, required: true);
        AcceptAll(c, Tokens(t, "thinking D"));
        Assert.False(c.IsActive);
        AcceptAll(c, Tokens(t, "ONE{"));
        Assert.True(c.IsActive);
        Assert.False(c.IsAccepting);
        AcceptAll(c, Tokens(t, "}"));
        Assert.True(c.IsAccepting);
    }

    [Fact]
    public void AModelMayOpenReasoningInsteadOfAnswering()
    {
        var t = Qwen3();
        var v = t.Vocabulary;
        var json = new CompiledGrammar(ByteAutomaton.Compile(JsonSchemaGrammar.AnyObject()), TokenTrie.For(v));
        int open = v.Find("<think>"), close = v.Find("</think>"), brace = Tokens(t, "{")[0], hello = Tokens(t, "Hello")[0];

        var thinking = new TriggeredConstraint(json.CreateMatcher(), v, ["</think>"], includeTrigger: false, required: true, opening: "<think>");
        Assert.True(thinking.IsActive);
        Assert.True(Allowed(thinking, open, v.Count));
        Assert.True(Allowed(thinking, brace, v.Count));
        Assert.False(Allowed(thinking, hello, v.Count));
        Assert.True(thinking.Accept(open));
        Assert.False(thinking.IsActive); // inside the block: free
        AcceptAll(thinking, Tokens(t, "Hello there"));
        Assert.True(thinking.Accept(close));
        Assert.True(thinking.IsActive);
        Assert.False(Allowed(thinking, hello, v.Count));
        Assert.True(Allowed(thinking, brace, v.Count));

        var direct = new TriggeredConstraint(json.CreateMatcher(), v, ["</think>"], includeTrigger: false, required: true, opening: "<think>");
        Assert.True(direct.Accept(brace));
        Assert.True(direct.Triggered);
        Assert.False(Allowed(direct, open, v.Count));
    }

    [Fact]
    public void OptionalToolCallIsFreeUntilItsOpening()
    {
        var t = Qwen3();
        var v = t.Vocabulary;
        var tools = new CompiledGrammar(ByteAutomaton.Compile(ToolCallGrammar.Build(ToolCallFormat.Hermes, [new ToolSignature("get_weather", null)], parallel: false)),
            TokenTrie.For(v));
        TokenConstraint c = new TriggeredConstraint(tools.CreateMatcher(), v, ["<tool_call>"], includeTrigger: true, required: false);
        // Inside a reasoning block a call's opening is only text.
        c = new TriggeredConstraint(c, v, ["</think>"], includeTrigger: false, required: false);
        AcceptAll(c, Tokens(t, "I could use <tool_call> here</think>\n\nSure, let me check."));
        Assert.False(c.IsActive);
        Assert.True(c.IsAccepting); // a plain answer may end here
        Assert.True(c.Accept(v.Find("<tool_call>")));
        Assert.True(c.IsActive);
        Assert.False(Allowed(c, Tokens(t, "Sure")[0], v.Count));
        AcceptAll(c, Tokens(t, "\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
        Assert.True(c.IsAccepting);
    }

    [Fact]
    public void AnOptionalOpeningThatTurnsOutToBeTextIsHandedOn()
    {
        // Spelled out ("<", "tool", "_call", ">"), a call's opening starts like "<think>"; with optional calls it must stay free.
        var t = Qwen3();
        var v = t.Vocabulary;
        var tools = new CompiledGrammar(ByteAutomaton.Compile(ToolCallGrammar.Build(ToolCallFormat.Hermes, [new ToolSignature("f", null)], parallel: false)),
            TokenTrie.For(v));
        var lazy = new TriggeredConstraint(tools.CreateMatcher(), v, ["<tool_call>"], includeTrigger: true, required: false);
        var c = new TriggeredConstraint(lazy, v, ["</think>"], includeTrigger: false, required: false, opening: "<think>");
        int[] spelled = [.. Tokens(t, "<"), .. Tokens(t, "tool_call>")];
        Assert.False(c.IsActive);
        AcceptAll(c, spelled);
        Assert.True(c.IsActive); // the call is open: its grammar applies
        Assert.False(Allowed(c, Tokens(t, "Sure")[0], v.Count));
        AcceptAll(c, Tokens(t, "\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"));
        Assert.True(c.IsAccepting);
    }
}
