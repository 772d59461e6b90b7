using Kaiyuan.Constraints;

namespace Kaiyuan.Tests.Constraints;

public class GbnfGrammarTests
{
    private static ByteAutomaton Compile(string gbnf) => ByteAutomaton.Compile(GbnfGrammar.Parse(gbnf));

    private static void Check(ByteAutomaton a, string[] yes, string[] no)
    {
        foreach (var s in yes) Assert.True(a.Matches(s), $"should match '{s}'");
        foreach (var s in no) Assert.False(a.Matches(s), $"should not match '{s}'");
    }

    private static void Expect(string gbnf, string what, int line, int column)
    {
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse(gbnf));
        Assert.Contains(what, e.Message);
        Assert.Contains($"line {line}, column {column}", e.Message);
    }

    // A JSON grammar in the shape llama.cpp ships (value, object, array, string, number, optional whitespace).
    private const string Json = """
        # JSON text: one value with optional whitespace around the pieces
        root   ::= value
        value  ::= object | array | string | number | ("true" | "false" | "null") ws

        object ::=
          "{" ws (
                    string ":" ws value
            ("," ws string ":" ws value)*
          )? "}" ws

        array  ::=
          "[" ws (
                    value
            ("," ws value)*
          )? "]" ws

        string ::=
          "\"" (
            [^"\\\x7F\x00-\x1F] |
            "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
          )* "\"" ws

        number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9]+)? ws

        # at most one newline, then indentation
        ws ::= | " " | "\n" [ \t]{0,20}
        """;

    [Fact]
    public void JsonGrammar()
    {
        var a = Compile(Json);
        Check(a,
            [
                "{}", "[]", "true", "null", "-12.5e3", "\"a\\u00e9\\n\"",
                "{\"a\": [1, 2, {\"b\": null}], \"c\": \"x\"}",
                "{\n  \"k\": [true, false]\n}",
                "\"中文 😀\"",
            ],
            ["{", "[1,]", "{\"a\" 1}", "01", "\"\\x\"", "\"tab\there\"", "tru", "{} {}"]);
    }

    [Fact]
    public void ArithmeticGrammar()
    {
        var a = Compile("""
            root  ::= expr
            expr  ::= term (("+" | "-") term)*
            term  ::= factor (("*" | "/") factor)*
            factor ::= number | "(" expr ")" | "-" factor
            number ::= [0-9]+ ("." [0-9]+)?
            """);
        Check(a, ["1", "1+2*3", "(1+2)*-3.5", "((((7))))/2-1"], ["", "1+", "(1", "1)", "1++2", "1.", "a"]);
    }

    [Fact]
    public void ListGrammarWithContinuationLines()
    {
        // Items on lines of their own; the root body continues after '|' and on lines that do not start a rule.
        var a = Compile("""
            root ::= "[" ws
                (item ("," ws item)*)?
                "]"
            item ::= "\"" [a-z]+ "\"" |
                     [0-9]+
            ws   ::= [ \t\n]*
            """);
        Check(a, ["[]", "[\"ab\", 12,\n\"c\"]", "[ 7]"], ["[,]", "[\"ab\" 12]", "[\"A\"]", "["]);
    }

    [Fact]
    public void LiteralsEscapesAndClasses()
    {
        var a = Compile("""root ::= "a\n\t\r\\\"\[\]\x41\u00e9\U0001F600" [\]\[] [^a-z"] .""");
        Check(a, ["a\n\t\r\\\"[]Aé😀]Z中", "a\n\t\r\\\"[]Aé😀[-😀"], ["a\n\t\r\\\"[]Aé😀]az", "a\n\t\r\\\"[]Aé😀]Z"]);
        Check(Compile("root ::= [a-c-]+"), ["a-c", "-"], ["d", ""]);
        Check(Compile("root ::= \"\""), [""], ["a"]);
        Check(Compile("root ::= \"中文\" [😀-😂]"), ["中文😁"], ["中文😃"]);
    }

    [Fact]
    public void Repetitions()
    {
        Check(Compile("root ::= \"ab\"* \"c\"+ \"d\"?"), ["c", "ababccd"], ["abd", "ac"]);
        Check(Compile("root ::= [a]{3}"), ["aaa"], ["aa", "aaaa"]);
        Check(Compile("root ::= [a]{2,}"), ["aa", "aaaaa"], ["a"]);
        Check(Compile("root ::= [a]{1,3}"), ["a", "aaa"], ["", "aaaa"]);
        Check(Compile("root ::= [a]{,2}"), ["", "aa"], ["aaa"]);
        Check(Compile("root ::= [a]{ 2 , 3 }"), ["aa"], ["a"]);
        Check(Compile("root ::= (\"x\" \"y\"){2}"), ["xyxy"], ["xy"]);
        Check(Compile("root ::= x*\nx ::= \"a\" | \"bc\""), ["", "abca"], ["b"]);
    }

    [Fact]
    public void RecursionAndForwardReferences()
    {
        var a = Compile("""
            root ::= list          # forward reference
            list ::= "(" items? ")"
            items ::= list ("," list)*
            """);
        Check(a, ["()", "((),(()))"], ["(", "(,)", "())"]);
    }

    [Fact]
    public void CommentsBlankLinesAndCarriageReturns()
    {
        var a = Compile("# header\r\n\r\nroot ::= \"a\" # trailing\r\n  b\r\n\r\n# between\r\nb ::= \"b\"\r\n");
        Check(a, ["ab"], ["a", "b"]);
        Check(Compile("root ::=\nthing ::= \"x\""), [""], ["x"]); // an empty body
    }

    [Fact]
    public void RulesAndReferencesMapOneToOne()
    {
        var g = GbnfGrammar.Parse("root ::= a-b_c\na-b_c ::= \"x\" root?");
        Assert.Equal(2, g.RuleCount);
        Assert.Equal("root", g.RuleName(g.Root));
        Assert.NotNull(g.Find("a-b_c"));
        Assert.IsType<RuleRefNode>(g.Body(g.Root));
    }

    [Fact]
    public void LeftRecursionIsReportedByTheAutomaton()
    {
        var g = GbnfGrammar.Parse("root ::= expr\nexpr ::= expr \"+\" num | num\nnum ::= [0-9]+");
        var e = Assert.Throws<GrammarException>(() => ByteAutomaton.Compile(g));
        Assert.Contains("left-recursive", e.Message);
    }

    [Fact]
    public void ErrorsGiveLineAndColumn()
    {
        Expect("root ::= a\nb ::= \"x\"", "undefined rule 'a'", 1, 10);
        Expect("main ::= \"x\"", "no rule named 'root'", 1, 1);
        Expect("", "empty grammar", 1, 1);
        Expect("# only a comment\n\n", "empty grammar", 3, 1);
        Expect("root ::= \"x\"\nroot ::= \"y\"", "defined twice", 2, 1);
        Expect("root ::= \"abc", "unterminated string", 1, 10);
        Expect("root ::= \"abc\nx ::= \"y\"", "unterminated string", 1, 10);
        Expect("root ::= [a-z", "unterminated character class", 1, 10);
        Expect("root ::= (\"a\" | \"b\"", "unterminated group", 1, 10);
        Expect("root ::= (\"a\"\nx ::= \"b\")", "group opened at line 1, column 10", 2, 3);
        Expect("root ::= \"a\" )", "unexpected ')'", 1, 14);
        Expect("root ::= <[123]>", "token references are not supported", 1, 10);
        Expect("root ::= <think> \"x\"", "token references are not supported", 1, 10);
        Expect("root ::= !<[1]>", "token references are not supported", 1, 10);
        Expect("root ::= * \"y\"", "nothing to repeat", 1, 10);
        Expect("root ::= \"a\" | ? \"b\"", "nothing to repeat", 1, 16);
        Expect("root ::= \"\\q\"", "unknown escape", 1, 11);
        Expect("root ::= \"\\x4\"", "hex digits", 1, 11);
        Expect("root ::= \"\\UFFFFFFFF\"", "not a Unicode scalar value", 1, 11);
        Expect("root ::= [z-a]", "out of order", 1, 11);
        Expect("root ::= \"a\"{3,2}", "out of order", 1, 13);
        Expect("root ::= \"a\"{}", "expected a number", 1, 14);
        Expect("root ::= \"a\"{2", "expected '}'", 1, 15);
        Expect("root ::= \"a\"{10001}", "over 10,000", 1, 13);
        Expect("root = \"a\"", "expected '::='", 1, 6);
        Expect("root ::= \"a\" b ::= \"c\"", "unexpected ':'", 1, 16);
    }

    [Fact]
    public void HostileNestingIsRefused()
    {
        Expect("root ::= " + new string('(', 100_000), "nested deeper than 200", 1, 10 + 200);
        var ok = GbnfGrammar.Parse("root ::= " + new string('(', 200) + "\"a\"" + new string(')', 200));
        Assert.True(ByteAutomaton.Compile(ok).Matches("a"));
    }
}
