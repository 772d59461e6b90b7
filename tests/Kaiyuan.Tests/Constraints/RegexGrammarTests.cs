using Kaiyuan.Constraints;

namespace Kaiyuan.Tests.Constraints;

public class RegexGrammarTests
{
    private static ByteAutomaton Full(string pattern) => ByteAutomaton.Compile(Grammar.Of(RegexGrammar.Parse(pattern)));
    private static ByteAutomaton Search(string pattern) => ByteAutomaton.Compile(Grammar.Of(RegexGrammar.ParseSearch(pattern)));

    private static void Check(ByteAutomaton a, string[] yes, string[] no)
    {
        foreach (var s in yes) Assert.True(a.Matches(s), $"should match '{s}'");
        foreach (var s in no) Assert.False(a.Matches(s), $"should not match '{s}'");
    }

    [Fact]
    public void LiteralsSequencesAndAlternation()
    {
        Check(Full("abc|de|"), ["abc", "de", ""], ["ab", "abcde", "d"]);
        Check(Full("a(b|c)d"), ["abd", "acd"], ["ad", "abcd"]);
        Check(Full("(?:ab)+(?<tail>c|d)?"), ["ab", "ababc", "abd"], ["", "abcd", "a"]);
        Check(Full("()"), [""], ["a"]);
    }

    [Fact]
    public void QuantifiersIncludingLazy()
    {
        Check(Full("ab*c"), ["ac", "abbbc"], ["abc!", "bc"]);
        Check(Full("ab+c"), ["abc", "abbc"], ["ac"]);
        Check(Full("ab?c"), ["ac", "abc"], ["abbc"]);
        Check(Full("a{3}"), ["aaa"], ["aa", "aaaa"]);
        Check(Full("a{2,}"), ["aa", "aaaaaaa"], ["a"]);
        Check(Full("a{1,3}"), ["a", "aaa"], ["", "aaaa"]);
        Check(Full("a*?b+?c??d{1,2}?"), ["bd", "aabbcdd"], ["ad", "bddd"]);
        Check(Full("(ab){2}"), ["abab"], ["ab", "ababab"]);
        // A brace that does not form a quantifier is a plain character, as in ECMAScript.
        Check(Full("a{x}"), ["a{x}"], ["a"]);
        Check(Full("{"), ["{"], [""]);
        Check(Full("a{,3}"), ["a{,3}"], ["aaa"]);
    }

    [Fact]
    public void QuantifierAppliesToTheLastCharacterOnly()
    {
        Check(Full("abc+"), ["abccc"], ["abcabc"]);
        Check(Full("\\.x*"), [".", ".xx"], ["x"]);
        Check(Full("😀+"), ["😀😀"], [""]); // a code point, not its last UTF-16 unit
    }

    [Fact]
    public void EscapesAndDot()
    {
        Check(Full(@"\n\r\t\f\v\0"), ["\n\r\t\f\v\0"], ["nrtfv0"]);
        Check(Full(@"\/\.\\\*\+\?\(\)\[\]\{\}\|\^\$\-"), [@"/.\*+?()[]{}|^$-"], []);
        Check(Full(@"\x41\u00e9\u{1F600}\uD83D\uDE00"), ["Aé😀😀"], [""]);
        Check(Full(@"\cJ"), ["\n"], ["cJ"]);
        Check(Full("a.c"), ["abc", "a中c", "a😀c", "a\tc"], ["ac", "a\nc", "a\rc", "a\u2028c", "a\u2029c", "a😀😀c"]);
    }

    [Fact]
    public void ClassesAndShorthands()
    {
        Check(Full("[a-c_x]+"), ["abc_x", "cab"], ["d", "-"]);
        Check(Full("[^a-c]"), ["d", "中", "\n"], ["a", "c", ""]);
        Check(Full("[-a]|[a-]"), ["-", "a"], ["b"]);
        Check(Full(@"[\w-.]+@x"), ["a-b.c_9@x"], ["a+b@x"]); // the dash after a class escape is plain
        Check(Full(@"[\d\s]"), ["5", " ", "\u3000"], ["a"]);
        Check(Full(@"[\b]"), ["\b"], ["b"]);
        Check(Full(@"[\]\\^]+"), [@"]\^"], ["a"]);
        Assert.Equal(GrammarNode.Chars(CodepointSet.None), RegexGrammar.Parse("[]")); // matches nothing
        Check(Full("a[]*b"), ["ab"], ["a]b", "a[]b"]);
        Check(Full("[^]"), ["a", "\n"], [""]);
        Check(Full(@"\d+"), ["0123456789"], ["٣", "a"]); // ECMAScript \d is ASCII only
        Check(Full(@"\w+"), ["aZ_9"], ["é", "-"]);
        Check(Full(@"\W\D"), ["é-"], ["a1"]);
        string spaces = "\t\n\v\f\r \u00a0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000\ufeff";
        Check(Full(@"\s+"), [spaces], ["\u200b", "a"]);
        Check(Full(@"\S"), ["a", "\u200b"], [" ", "\u00a0", "\ufeff"]);
        Check(Full(@"[^\s]"), ["a"], ["\u2000"]);
    }

    [Fact]
    public void UnicodePropertyEscapes()
    {
        Check(Full(@"\p{L}+"), ["abcÉж中"], ["1", "_", " "]);
        Check(Full(@"\p{Lu}\p{Ll}"), ["Ab", "Жж"], ["aB", "ab"]);
        Check(Full(@"\p{N}\p{Nd}"), ["Ⅻ٣", "½5"], ["a5"]);
        Check(Full(@"\p{P}\p{S}"), ["!+", "。$"], ["a+"]);
        Check(Full(@"\p{Z}"), [" ", "\u3000", "\u2028"], ["\t"]);
        Check(Full(@"\P{L}"), ["1", " "], ["a"]);
        Check(Full(@"[\p{Lu}\d]+"), ["AB12"], ["a"]);
        Check(Full(@"\p{Letter}\p{gc=Nd}\p{General_Category=Decimal_Number}"), ["x12"], [""]);
        var e = Assert.Throws<GrammarException>(() => RegexGrammar.Parse(@"\p{Script=Greek}"));
        Assert.Contains("Script=Greek", e.Message);
    }

    [Fact]
    public void AnchorsInFullMatchAreIgnored()
    {
        Check(Full("^abc$"), ["abc"], ["xabc", "abcx"]);
        Check(Full("^a|b$"), ["a", "b"], ["ab"]);
        Check(Full("^$"), [""], ["a"]);
    }

    [Fact]
    public void SearchIsUnanchoredUnlessAnchored()
    {
        Check(Search("abc"), ["abc", "xxabcyy", "\nabc\n"], ["ab", "acb"]);
        Check(Search("^abc"), ["abc", "abcxx"], ["xabc"]);
        Check(Search("abc$"), ["abc", "xxabc"], ["abcx"]);
        Check(Search("^abc$"), ["abc"], ["abcx", "xabc"]);
        Check(Search("^a|b$"), ["a", "axx", "b", "xxb"], ["xa", "bx", "xax"]);
        Check(Search(""), ["", "anything"], []);
        Check(Search("^[a-z]+$"), ["abc"], ["ab1", ""]);
        Check(Search(@"\d{3}"), ["ab123cd"], ["12a3"]);
    }

    [Fact]
    public void UnsupportedConstructsNameThemselvesAndTheirPosition()
    {
        var e = Assert.Throws<GrammarException>(() => RegexGrammar.Parse("x(?=y)"));
        Assert.Equal("pattern 'x(?=y)': lookahead at position 1 is not supported", e.Message);
        Expect("a(?!b)", "negative lookahead", 1);
        Expect("(?<=a)b", "lookbehind", 0);
        Expect("(?<!a)b", "negative lookbehind", 0);
        Expect(@"(a)\1", "backreference", 3);
        Expect(@"(?<n>a)\k<n>", "backreference", 7);
        Expect(@"a\b", "word boundary", 1);
        Expect(@"a\B", "non-word boundary", 1);
        Expect("(?i)abc", "inline flag", 0);
        Expect("(?i:abc)", "inline flag", 0);
        Expect("a^b", "start anchor", 1);
        Expect("a$b", "end anchor", 1);
        Expect("(^a)", "start anchor", 1);
        Expect("(a$)", "end anchor", 2);
        Expect(@"\p{Emoji}", "Unicode property", 0);
        Expect("[[:alpha:]]", "POSIX", 1);
    }

    [Fact]
    public void MalformedPatternsGiveThePosition()
    {
        Expect("(ab", "unterminated group", 0);
        Expect("ab)", "unmatched ')'", 2);
        Expect("a[bc", "unterminated character class", 1);
        Expect("[z-a]", "out of order", 1);
        Expect("*a", "nothing to repeat", 0);
        Expect("a|+", "nothing to repeat", 2);
        Expect("a**", "nothing to repeat", 2);
        Expect("a{2}{3}", "nothing to repeat", 4);
        Expect("a{2,1}", "out of order", 1);
        Expect("{2}", "nothing to repeat", 0);
        Expect(@"ab\", "lone backslash", 2);
        Expect(@"\xZZ", @"\x", 0);
        Expect(@"\u12", @"\u", 0);
        Expect(@"\u{110000}", @"\u{", 0);
        Expect(@"\q", "unknown escape", 0);
        Expect(@"\uD800", "lone surrogate", 0);
        Expect("(?<1a>x)", "group name", 3);
        Expect("(?P<n>x)", "inline flag", 0);
    }

    [Fact]
    public void SizeIsBounded()
    {
        Expect("a{10001}", "over 10,000", 1);
        Expect("a{1,99999999999999999999}", "over 10,000", 1);
        Assert.True(Full("a{10000}").Matches(new string('a', 10000)));
        string deep = new string('(', 201) + "a" + new string(')', 201);
        Expect(deep, "nested deeper than 200", 200);
        string ok = new string('(', 200) + "a" + new string(')', 200);
        Assert.True(Full(ok).Matches("a"));
        // Hostile input is refused quickly, without a stack overflow.
        Assert.Throws<GrammarException>(() => RegexGrammar.Parse(new string('(', 100_000)));
        Assert.Throws<GrammarException>(() => RegexGrammar.Parse(string.Concat(Enumerable.Repeat("(?:", 50_000))));
    }

    [Fact]
    public void BigRepeatOfAGroupCompiles()
    {
        var a = Full("([a-z]{1,20},){0,2000}");
        Assert.True(a.Matches(string.Concat(Enumerable.Repeat("abc,", 2000))));
        Assert.False(a.Matches(string.Concat(Enumerable.Repeat("abc,", 2001))));
    }

    [Fact]
    public void OnlyPortableNodeKindsAreProduced()
    {
        var node = RegexGrammar.ParseSearch(@"^(?:[\w.+-]+)@\p{L}{2,}\.(com|org)$|x.y*");
        AssertPortable(node);

        static void AssertPortable(GrammarNode n)
        {
            switch (n)
            {
                case LiteralNode or CharSetNode: break;
                case SequenceNode s: foreach (var i in s.Items) AssertPortable(i); break;
                case AlternativesNode a: foreach (var i in a.Items) AssertPortable(i); break;
                case RepeatNode r: AssertPortable(r.Item); break;
                default: Assert.Fail($"unexpected node {n.GetType().Name}"); break;
            }
        }
    }

    [Fact]
    public void RealisticSchemaPatterns()
    {
        Check(Search(@"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$"), ["john.doe+x@mail.example.com"], ["john@", "a@b.c"]);
        Check(Search(@"^\d{4}-\d{2}-\d{2}$"), ["2024-01-31"], ["2024-1-31", "x2024-01-31"]);
        Check(Search(@"^\+?[1-9]\d{1,14}$"), ["+14155552671", "442071838750"], ["+0123", "12345678901234567"]);
        Check(Search(@"^(\([0-9]{3}\))?[0-9]{3}-[0-9]{4}$"), ["(888)555-1212", "555-1212"], ["(888)555-1212x"]);
        Check(Search(@"^#(?:[0-9a-fA-F]{3}){1,2}$"), ["#fff", "#A0b1C2"], ["#ffff", "fff"]);
    }

    private static void Expect(string pattern, string what, int position)
    {
        var e = Assert.Throws<GrammarException>(() => RegexGrammar.Parse(pattern));
        Assert.Contains(what, e.Message);
        Assert.Contains($"at position {position}", e.Message);
    }

    /// <summary>Patterns that make backtracking engines take exponential time are plain automata here: a long
    /// input that almost matches is decided in one pass (nothing here times it; a hang would stall the suite).</summary>
    [Theory]
    [InlineData("^(a|a)*b$")]
    [InlineData("^(a*)*b$")]
    [InlineData("^(a+a+)+b$")]
    [InlineData("^(x?){30}x{30}b$")]
    public void CatastrophicBacktrackingPatternsAreLinear(string pattern)
    {
        var automaton = ByteAutomaton.Compile(Grammar.Of(RegexGrammar.Parse(pattern)));
        string almost = new('a', 20_000);
        if (pattern.Contains('x')) almost = new string('x', 60);
        Assert.False(automaton.Matches(almost));
        Assert.True(automaton.Matches(almost + "b"));
    }
}
