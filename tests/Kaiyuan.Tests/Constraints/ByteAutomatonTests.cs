using Kaiyuan.Constraints;
using static Kaiyuan.Constraints.GrammarNode;

namespace Kaiyuan.Tests.Constraints;

public class ByteAutomatonTests
{
    [Fact]
    public void LiteralsAlternativesAndRepetition()
    {
        var a = ByteAutomaton.Compile(Grammar.Of(Seq(Literal("a"), Alt(Literal("bc"), Literal("d")), Repeat(Literal("x"), 1, 3))));
        Assert.True(a.Matches("abcx"));
        Assert.True(a.Matches("adxxx"));
        Assert.False(a.Matches("adxxxx"));
        Assert.False(a.Matches("ad"));
        Assert.False(a.Matches("abd"));
    }

    [Fact]
    public void CharacterSetsAreUtf8()
    {
        var a = ByteAutomaton.Compile(Grammar.Of(Repeat(Chars(CodepointSet.Range(0x80, 0x10FFFF)), 2, 2)));
        Assert.True(a.Matches("é中"));
        Assert.True(a.Matches("😀ß"));
        Assert.False(a.Matches("éa"));
        Assert.False(a.Matches(new byte[] { 0xC3, 0xA9, 0xED, 0xA0, 0x80 })); // a surrogate is not UTF-8
        var any = ByteAutomaton.Compile(Grammar.Of(Repeat(Chars(CodepointSet.All), 0, -1)));
        Assert.True(any.Matches("any text, ✓ 😀"));
        Assert.False(any.Matches(new byte[] { 0xC0, 0x80 })); // overlong
        Assert.False(any.Matches(new byte[] { 0xF4, 0x90, 0x80, 0x80 })); // beyond U+10FFFF
    }

    [Fact]
    public void RecursionUsesAStack()
    {
        var g = new Grammar();
        int parens = g.AddRule("parens");
        g.Define(parens, Repeat(Seq(Literal("("), Ref(parens), Literal(")")), 0, -1));
        g.Root = parens;
        var a = ByteAutomaton.Compile(g);
        Assert.True(a.Matches("(()())()"));
        Assert.True(a.Matches(""));
        Assert.False(a.Matches("(()"));
        Assert.False(a.Matches("())"));
        Assert.True(a.Matches(new string('(', 500) + new string(')', 500)));
        Assert.False(a.Matches(new string('(', 2000) + new string(')', 2000))); // deeper than the cap: refused, not crashed
    }

    [Fact]
    public void TailRecursionRunsInConstantStack()
    {
        var g = new Grammar();
        int list = g.AddRule("list");
        g.Define(list, Seq(Literal("x"), Optional(Seq(Literal(","), Ref(list)))));
        g.Root = list;
        var a = ByteAutomaton.Compile(g);
        string text = string.Join(",", Enumerable.Repeat("x", 5000));
        Assert.True(a.Matches(text));
        Assert.False(a.Matches(text + ","));
        Assert.True(a.StateCount < 10);
    }

    [Fact]
    public void LeftRecursionIsACompileError()
    {
        var g = new Grammar();
        int expr = g.AddRule("expr");
        g.Define(expr, Alt(Seq(Ref(expr), Literal("+x")), Literal("x")));
        g.Root = expr;
        var e = Assert.Throws<GrammarException>(() => ByteAutomaton.Compile(g));
        Assert.Contains("expr", e.Message);
        Assert.Contains("left-recursive", e.Message);
    }

    [Fact]
    public void LargeBoundedRepetitionStaysSmall()
    {
        var item = Seq(Literal("{\"name\":\""), Repeat(Chars(CodepointSet.Range('a', 'z')), 1, 10), Literal("\"}"));
        var a = ByteAutomaton.Compile(Grammar.Of(Seq(Literal("["), Repeat(item, 0, 1000), Literal("]"))));
        Assert.True(a.Matches("[" + string.Concat(Enumerable.Repeat("{\"name\":\"ab\"}", 1000)) + "]"));
        Assert.False(a.Matches("[" + string.Concat(Enumerable.Repeat("{\"name\":\"ab\"}", 1001)) + "]"));
    }
}
