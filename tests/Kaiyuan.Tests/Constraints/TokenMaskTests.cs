using Kaiyuan.Constraints;
using Kaiyuan.Tokenizers;
using static Kaiyuan.Constraints.GrammarNode;

namespace Kaiyuan.Tests.Constraints;

/// <summary>Masks from the trie walk (with its plain-token shortcut and cache) against checking every token alone.</summary>
public class TokenMaskTests
{
    private static TokenTrie Qwen3()
    {
        string path = Fixtures.Require("tokenizers", "ggml-vocab-qwen3.gguf");
        return TokenTrie.For(Tokenizer.FromGguf(path).Vocabulary);
    }

    private static void BruteForce(CompiledGrammar g, int state, Span<ulong> mask)
    {
        mask.Clear();
        for (int id = 0; id < g.Tokens.VocabSize; id++)
        {
            bool ok = g.Tokens.IsEndOfGeneration(id)
                ? g.Automaton.IsAccepting(state)
                : !g.Tokens.Bytes(id).IsEmpty && g.Automaton.Walk(state, g.Tokens.Bytes(id)) >= 0;
            if (ok) mask[id >> 6] |= 1UL << id;
        }
    }

    public static TheoryData<string, string> Cases => new()
    {
        { "any-json", "{\"name\": \"Ünïcødé 😀 text\", \"n\": [1, 2.5e3, true, null], \"o\": {}}" },
        { "short-string", "\"abcé\"" },
        { "keys", "{\"alpha\": \"x y\", \"beta\": \"\\\"q\\\"\"}" },
        { "schema-with-extra-keys", "{\"alpha\": \"x\", \"beta\": 12, \"gamma\": [1], \"αβ\": \"z\", \"al\": null}" },
        { "schema-bounded-strings", "{\"code\": \"AB-12\", \"note\": \"résumé ok\"}" },
    };

    private static Grammar Build(string kind)
    {
        var plainChar = Chars(CodepointSet.Range(0x20, 0x10FFFF).Except(CodepointSet.Of("\"\\")));
        var escape = Seq(Literal("\\"), Chars(CodepointSet.Of("\"\\/bfnrt")));
        var str = Seq(Literal("\""), Repeat(Alt(plainChar, escape), 0, -1), Literal("\""));
        return kind switch
        {
            "any-json" => TestGrammars.AnyJson(),
            "schema-with-extra-keys" => JsonSchemaGrammar.Compile("""{"type":"object","properties":{"alpha":{"type":"string"},"beta":{"type":"integer"}}}"""),
            "schema-bounded-strings" => JsonSchemaGrammar.Compile("""{"type":"object","properties":{"code":{"type":"string","pattern":"^[A-Z]{2}-[0-9]+$"},"note":{"type":"string","minLength":3,"maxLength":12}},"required":["code"],"additionalProperties":false}"""),
            "short-string" => Grammar.Of(Seq(Literal("\""), Repeat(plainChar, 0, 5), Literal("\""))),
            _ => Grammar.Of(Seq(Literal("{\"alpha\": "), str, Literal(", \"beta\": "), str, Literal("}"))),
        };
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void WalkEqualsCheckingEveryToken(string kind, string text)
    {
        var trie = Qwen3();
        var g = new CompiledGrammar(ByteAutomaton.Compile(Build(kind)), trie);
        var fast = new ulong[trie.MaskLength];
        var slow = new ulong[trie.MaskLength];
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        int state = g.Automaton.Start;
        int checkedStates = 0;
        for (int i = 0; i <= bytes.Length; i++)
        {
            g.FillMask(state, fast);
            BruteForce(g, state, slow);
            Assert.True(fast.AsSpan().SequenceEqual(slow), $"{kind}: mask differs after {i} bytes");
            g.FillMask(state, fast); // again, from the cache
            Assert.True(fast.AsSpan().SequenceEqual(slow));
            checkedStates++;
            if (i < bytes.Length) state = g.Automaton.Step(state, bytes[i]);
            Assert.True(state >= 0, $"{kind}: text refused at byte {i}");
        }
        Assert.True(g.Automaton.IsAccepting(state));
        Assert.True(checkedStates > 5);
    }

    [Fact]
    public void WarmMasksAndStepsAllocateNothing()
    {
        var trie = Qwen3();
        var g = new CompiledGrammar(ByteAutomaton.Compile(TestGrammars.AnyJson()), trie);
        var tokenizer = Tokenizer.FromGguf(Fixtures.Require("tokenizers", "ggml-vocab-qwen3.gguf"));
        int[] ids = tokenizer.Encode("{\"id\": 7, \"tags\": [\"a\", \"b\"], \"note\": \"hello world\"}", addSpecial: false, parseSpecial: false);
        var mask = new ulong[trie.MaskLength];
        void Run()
        {
            var m = g.CreateMatcher();
            foreach (int id in ids)
            {
                m.FillMask(mask);
                Assert.True((mask[id >> 6] & (1UL << id)) != 0);
                Assert.True(m.Accept(id));
            }
            Assert.True(m.IsAccepting);
        }
        Run(); // builds the automaton states and fills the mask cache
        var m = g.CreateMatcher();
        long before = GC.GetAllocatedBytesForCurrentThread();
        foreach (int id in ids)
        {
            m.FillMask(mask);
            m.Accept(id);
        }
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void AutomatonResetsKeepMatchersExact()
    {
        var trie = Qwen3();
        var tokenizer = Tokenizer.FromGguf(Fixtures.Require("tokenizers", "ggml-vocab-qwen3.gguf"));
        var g = new CompiledGrammar(ByteAutomaton.Compile(TestGrammars.AnyJson()), trie);
        g.Automaton.SoftLimit = 40; // reset every few tokens
        string text = "{\"a\": [1, 2, {\"b\": \"deep ✓\", \"c\": [[[null]]]}], \"d\": {\"e\": {\"f\": true}}, \"g\": \"end\"}";
        int[] ids = tokenizer.Encode(text, addSpecial: false, parseSpecial: false);
        var m = g.CreateMatcher();
        var other = g.CreateMatcher(); // a second sequence on the same grammar, behind by a token
        var mask = new ulong[trie.MaskLength];
        var slow = new ulong[trie.MaskLength];
        for (int i = 0; i < ids.Length; i++)
        {
            m.FillMask(mask);
            Assert.True((mask[ids[i] >> 6] & (1UL << ids[i])) != 0, $"token {i} refused");
            Assert.True(m.Accept(ids[i]));
            if (i > 0) Assert.True(other.Accept(ids[i - 1]), $"second matcher lost its state at token {i}");
        }
        Assert.True(other.Accept(ids[^1]));
        Assert.True(m.IsAccepting && other.IsAccepting);
        Assert.True(g.Automaton.Epoch > 2, $"only {g.Automaton.Epoch} resets");
        // After all the resets, masks still equal checking every token.
        var fresh = g.CreateMatcher();
        Assert.True(fresh.Accept(ids[0]));
        fresh.FillMask(mask);
        int state = g.Automaton.Walk(g.Automaton.Start, trie.Bytes(ids[0]));
        BruteForce(g, state, slow);
        Assert.True(mask.AsSpan().SequenceEqual(slow));
    }

    [Fact]
    public void MatcherAllowsEndOnlyWhenComplete()
    {
        var trie = new TokenTrie(6, id => id switch { 0 => "{"u8.ToArray(), 1 => "}"u8.ToArray(), 2 => "{}"u8.ToArray(), 3 => "x"u8.ToArray(), 4 => [], _ => [] }, [5]);
        var g = new CompiledGrammar(ByteAutomaton.Compile(Grammar.Of(Literal("{}"))), trie);
        var m = g.CreateMatcher();
        var mask = new ulong[1];
        m.FillMask(mask);
        Assert.Equal(0b000101UL, mask[0]); // "{" and "{}"; never the control token 4, not yet the end 5
        Assert.False(m.Accept(3));
        Assert.False(m.Accept(5));
        Assert.True(m.Accept(0));
        m.FillMask(mask);
        Assert.Equal(0b000010UL, mask[0]);
        Assert.True(m.Accept(1));
        m.FillMask(mask);
        Assert.Equal(0b100000UL, mask[0]);
        Assert.True(m.Accept(5));
        Assert.True(m.IsFinished);
    }
}

internal static class TestGrammars
{
    /// <summary>A JSON grammar written out by hand, independent of the schema compiler.</summary>
    public static Grammar AnyJson()
    {
        var g = new Grammar();
        int value = g.AddRule("value");
        var ws = Repeat(Chars(CodepointSet.Of(" \t\n\r")), 0, 20);
        var ch = Alt(Chars(CodepointSet.Range(0x20, 0x10FFFF).Except(CodepointSet.Of("\"\\"))),
            Seq(Literal("\\"), Alt(Chars(CodepointSet.Of("\"\\/bfnrt")), Seq(Literal("u"), Repeat(Chars(CodepointSet.Of("0123456789abcdefABCDEF")), 4, 4)))));
        var str = Seq(Literal("\""), Repeat(ch, 0, -1), Literal("\""));
        var digits = Repeat(Chars(CodepointSet.Range('0', '9')), 1, -1);
        var num = Seq(Optional(Literal("-")), Alt(Literal("0"), Seq(Chars(CodepointSet.Range('1', '9')), Repeat(Chars(CodepointSet.Range('0', '9')), 0, -1))),
            Optional(Seq(Literal("."), digits)), Optional(Seq(Chars(CodepointSet.Of("eE")), Optional(Chars(CodepointSet.Of("+-"))), digits)));
        var member = Seq(str, ws, Literal(":"), ws, Ref(value));
        var obj = Seq(Literal("{"), ws, Optional(Seq(member, Repeat(Seq(ws, Literal(","), ws, member), 0, -1), ws)), Literal("}"));
        var arr = Seq(Literal("["), ws, Optional(Seq(Ref(value), Repeat(Seq(ws, Literal(","), ws, Ref(value)), 0, -1), ws)), Literal("]"));
        g.Define(value, Alt(obj, arr, str, num, Literal("true"), Literal("false"), Literal("null")));
        g.Root = g.AddRule("root", Seq(ws, Ref(value), ws));
        return g;
    }
}
