using System.Text.Json;
using Kaiyuan.Constraints;
using static Kaiyuan.Constraints.GrammarNode;

namespace Kaiyuan.Tests.Constraints;

public class JsonSchemaGrammarTests
{
    private static ByteAutomaton Compile(string schema, JsonSchemaOptions? options = null) =>
        ByteAutomaton.Compile(JsonSchemaGrammar.Compile(schema, options));

    private static void Accepts(string schema, params string[] texts)
    {
        var a = Compile(schema);
        foreach (var t in texts) Assert.True(a.Matches(t), $"should accept {t}");
    }

    private static void Rejects(string schema, params string[] texts)
    {
        var a = Compile(schema);
        foreach (var t in texts) Assert.False(a.Matches(t), $"should reject {t}");
    }

    private static void Check(string schema, string[] valid, string[] invalid)
    {
        var a = Compile(schema);
        foreach (var t in valid) Assert.True(a.Matches(t), $"should accept {t}");
        foreach (var t in invalid) Assert.False(a.Matches(t), $"should reject {t}");
    }

    private static GrammarException Fails(string schema) => Assert.Throws<GrammarException>(() => JsonSchemaGrammar.Compile(schema));

    // ------------------------------------------------------------------ types and whitespace

    [Fact]
    public void PrimitiveTypes()
    {
        Check("""{"type":"null"}""", ["null", " null "], ["nul", "\"null\"", "0"]);
        Check("""{"type":"boolean"}""", ["true", "false"], ["1", "True", "null"]);
        Check("""{"type":"string"}""", ["\"\"", "\"a b\"", "\"é中😀\"", "\"\\\"\\\\\\/\\n\\t\\u001f\\u001F\""], ["\"a", "a", "\"\n\"", "\"\\x\"", "1"]);
        Check("""{"type":"integer"}""", ["0", "-0", "12", "-3"], ["01", "1.0", "1e2", "+1", "--1", "\"1\""]);
        Check("""{"type":"number"}""", ["0", "-0.5", "1.25e-3", "2E+10", "10"], ["01", ".5", "1.", "1e", "NaN", "Infinity"]);
        Check("""{"type":["string","null"]}""", ["null", "\"x\""], ["1"]);
    }

    [Fact]
    public void TrueSchemaIsAnyValueAndFalseSchemaIsNothing()
    {
        Check("true", ["null", "[1, {\"a\": [true]}]", "\"x\"", "-1.5e3", "{}"], ["", "[1,]", "{\"a\"}", "tru"]);
        Check("{}", ["{\"x\": {\"y\": []}}"], ["{'x': 1}"]);
        // Nothing to generate: an error rather than a grammar that can never finish.
        Assert.Contains("no JSON value", Fails("false").Message);
        Assert.Contains("no JSON value", Fails("""{"not":{}}""").Message);
    }

    [Fact]
    public void WhitespaceIsBoundedBetweenTokens()
    {
        string schema = """{"type":"object","properties":{"a":{"type":"array"}}}""";
        Check(schema, ["{\"a\": [1, 2]}", "\t{ \"a\" :\n[ 1 ,2 ] }\r\n", "{}", "{ }"], ["{\"a\":" + new string(' ', 21) + "[]}"]);
        Accepts(schema, "{\"a\":" + new string(' ', 20) + "[]}");
        // Pretty-printed JSON fits; runs of blank lines do not.
        Accepts(schema, "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
        Accepts(schema, "{\r\n\t\"a\": []\r\n}");
        Accepts(schema, "\n\n{\"a\": []}");
        Rejects(schema, "{\n\n\n  \"a\": []}");
        Rejects(schema, "{\"a\": [1,\n\n\n2]}");
        var tight = Compile(schema, new JsonSchemaOptions { MaxWhitespace = 0 });
        Assert.True(tight.Matches("{\"a\":[1,2]}"));
        Assert.False(tight.Matches("{\"a\": [1,2]}"));
        var any = ByteAutomaton.Compile(JsonSchemaGrammar.AnyValue(new JsonSchemaOptions { MaxWhitespace = 2 }));
        Assert.True(any.Matches("  [ 1 ,  2 ]  "));
        Assert.False(any.Matches("[1,   2]"));
    }

    [Fact]
    public void AnyObject()
    {
        var a = ByteAutomaton.Compile(JsonSchemaGrammar.AnyObject());
        Assert.True(a.Matches("{\"a\": [1, {\"b\": null}], \"c\": \"d\"}"));
        Assert.True(a.Matches("{}"));
        Assert.False(a.Matches("[]"));
        Assert.False(a.Matches("\"x\""));
    }

    // ------------------------------------------------------------------ objects

    [Fact]
    public void OptionalPropertiesGetCommasRightInEveryCombination()
    {
        string schema = """{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"},"c":{"type":"integer"}},"additionalProperties":false}""";
        var a = Compile(schema);
        for (int mask = 0; mask < 8; mask++)
        {
            var parts = new List<string>();
            if ((mask & 1) != 0) parts.Add("\"a\": 1");
            if ((mask & 2) != 0) parts.Add("\"b\": 2");
            if ((mask & 4) != 0) parts.Add("\"c\": 3");
            string text = "{" + string.Join(", ", parts) + "}";
            Assert.True(a.Matches(text), text);
            Assert.False(a.Matches("{" + string.Join(", ", parts) + ", }"));
            Assert.False(a.Matches("{, " + string.Join(", ", parts) + "}"));
        }
        Assert.False(a.Matches("{\"a\": 1 \"b\": 2}"));
        Assert.False(a.Matches("{\"b\": 2, \"a\": 1}")); // definition order
        Assert.False(a.Matches("{\"a\": 1, \"a\": 1}"));
        Assert.False(a.Matches("{\"d\": 1}"));
    }

    [Fact]
    public void RequiredPropertiesMustAppear()
    {
        string schema = """{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"},"c":{"type":"boolean"}},"required":["b","c"]}""";
        Check(schema, ["{\"b\": 1, \"c\": true}", "{\"a\": \"x\", \"b\": 1, \"c\": false}", "{\"b\": 1, \"c\": true, \"z\": null}"],
            ["{\"a\": \"x\", \"b\": 1}", "{\"c\": true}", "{}", "{\"b\": 1, \"c\": true, \"a\": \"x\"}"]);
        // A required name that no "properties" defines still has to be there.
        Check("""{"type":"object","required":["id"]}""", ["{\"id\": 5}", "{\"id\": 5, \"x\": 1}"], ["{}", "{\"x\": 1}"]);
    }

    [Fact]
    public void ManyOptionalPropertiesStaySmall()
    {
        var props = string.Join(",", Enumerable.Range(0, 200).Select(i => $"\"p{i}\":{{\"type\":\"integer\"}}"));
        var g = JsonSchemaGrammar.Compile($$"""{"type":"object","properties":{{{props}}},"additionalProperties":false}""");
        var a = ByteAutomaton.Compile(g);
        Assert.True(a.Matches("{\"p7\": 1, \"p150\": 2, \"p199\": 3}"));
        Assert.False(a.Matches("{\"p150\": 2, \"p7\": 1}"));
        Assert.True(a.Matches("{}"));
    }

    [Fact]
    public void AdditionalPropertiesNeverRepeatADefinedName()
    {
        string schema = """{"type":"object","properties":{"a":{"type":"integer"},"ab":{"type":"integer"}}}""";
        Check(schema, ["{\"a\": 1, \"x\": \"y\"}", "{\"abc\": \"s\"}", "{\"\": 1}", "{\"ab\": 2, \"a\": \"later keys are other names\"}".Replace("\"a\": \"later keys are other names\"", "\"b\": 3")],
            ["{\"a\": \"no\"}", "{\"x\": 1, \"a\": 2}", "{\"a\": 1, \"a\": 2}", "{\"ab\": 1, \"ab\": 2}", "{\"\\u0061\": \"x\"}"]);
        string closed = """{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":false}""";
        Check(closed, ["{\"a\": 1}", "{}"], ["{\"a\": 1, \"b\": 2}", "{\"b\": 2}"]);
        string typed = """{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"string"}}""";
        Check(typed, ["{\"a\": 1, \"b\": \"x\", \"c\": \"y\"}", "{\"z\": \"\"}"], ["{\"b\": 1}", "{\"a\": \"x\"}", "{\"b\": \"x\", \"a\": 1}"]);
    }

    [Fact]
    public void PatternProperties()
    {
        string schema = """{"type":"object","properties":{"n_1":{"type":"integer","minimum":0}},"patternProperties":{"^n_":{"type":"integer"},"^s_":{"type":"string"}},"additionalProperties":false}""";
        Check(schema, ["{\"n_1\": 5, \"n_x\": -3, \"s_a\": \"v\"}", "{}"],
            ["{\"n_1\": -1}", "{\"n_x\": \"v\"}", "{\"s_a\": 1}", "{\"other\": 1}", "{\"n_1\": 1, \"n_1\": 2}"]);
        // Keys matching no pattern take additionalProperties.
        string open = """{"type":"object","patternProperties":{"^x":{"type":"integer"}},"additionalProperties":{"type":"boolean"}}""";
        Check(open, ["{\"x1\": 1, \"y\": true}"], ["{\"y\": 1}", "{\"x1\": true}"]);
    }

    [Fact]
    public void MinAndMaxProperties()
    {
        string schema = """{"type":"object","properties":{"a":{},"b":{},"c":{}},"minProperties":1,"maxProperties":2}""";
        Check(schema, ["{\"a\": 1}", "{\"a\": 1, \"c\": 3}", "{\"x\": 1}", "{\"b\": 1, \"y\": 2}"],
            ["{}", "{\"a\": 1, \"b\": 2, \"c\": 3}", "{\"a\": 1, \"x\": 1, \"y\": 2}"]);
        Check("""{"type":"object","additionalProperties":{"type":"integer"},"minProperties":2}""", ["{\"a\": 1, \"b\": 2}"], ["{\"a\": 1}", "{}"]);
    }

    [Fact]
    public void PropertyNames()
    {
        Check("""{"type":"object","properties":{"ok":{},"Bad":{}},"propertyNames":{"pattern":"^[a-z]+$"}}""",
            ["{\"ok\": 1, \"zz\": 2}"], ["{\"Bad\": 1}", "{\"A\": 1}", "{\"a1\": 1}"]);
        Check("""{"type":"object","propertyNames":{"maxLength":2}}""", ["{\"ab\": 1}"], ["{\"abc\": 1}"]);
        // Trivial forms are ignored.
        Accepts("""{"propertyNames":{"type":"string"}}""", "{\"anything\": 1}");
    }

    // ------------------------------------------------------------------ enum and const

    [Fact]
    public void EnumAndConstSpellValuesAsSerializersDo()
    {
        Check("""{"enum":["a\"b", "back\\slash", "new\nline", "é中", "/", 1, 2.5, null, true, [1, "x"], {"k": [1, 2]}]}""",
            ["\"a\\\"b\"", "\"back\\\\slash\"", "\"new\\nline\"", "\"é中\"", "\"/\"", "\"\\/\"", "1", "1.0", "2.5", "null", "true",
             "[1, \"x\"]", "[ 1 ,\"x\" ]", "{\"k\": [1, 2]}", "{ \"k\":[1,2] }"],
            ["\"a\"b\"", "\"new\nline\"", "2", "2.50", "false", "[\"x\", 1]", "{\"k\": [2, 1]}", "\"\\u00e9中\""]);
        Check("""{"const":1.0}""", ["1", "1.0"], ["1.5", "2"]);
        Check("""{"const":1e-05}""", ["1e-05", "0.00001"], ["0.0001"]);
        Check("""{"type":"string","enum":["x", 1, "y"]}""", ["\"x\"", "\"y\""], ["1"]);
        Check("""{"enum":["a","b"],"const":"b"}""", ["\"b\""], ["\"a\""]);
        Check("""{"enum":[true, null, 0],"const":false}""".Replace("0]", "0, false]"), ["false"], ["true", "null", "0"]);
        Assert.Contains("no JSON value", Fails("""{"enum":[true],"const":false}""").Message);
    }

    [Fact]
    public void HugeEnumsAreRefused()
    {
        var values = string.Join(",", Enumerable.Range(0, 10_001));
        var e = Fails($$"""{"enum":[{{values}}]}""");
        Assert.Contains("enum", e.Message);
        var fine = string.Join(",", Enumerable.Range(0, 5_000).Select(i => $"\"v{i}\""));
        Assert.True(Compile($$"""{"enum":[{{fine}}]}""").Matches("\"v4321\""));
    }

    // ------------------------------------------------------------------ combinators

    [Fact]
    public void AnyOf()
    {
        Check("""{"anyOf":[{"type":"integer","minimum":10},{"type":"string","maxLength":1}]}""", ["10", "\"a\""], ["9", "\"ab\""]);
        // Siblings of anyOf apply to every branch.
        Check("""{"type":"object","properties":{"k":{"type":"string"}},"required":["k"],"anyOf":[{"required":["a"]},{"required":["b"]}]}""",
            ["{\"k\": \"x\", \"a\": 1}", "{\"k\": \"x\", \"b\": 1}"], ["{\"k\": \"x\"}", "{\"a\": 1}"]);
    }

    [Fact]
    public void OneOfWithExclusiveBranchesIsAnyOf()
    {
        Check("""{"oneOf":[{"type":"string"},{"type":"integer"}]}""", ["\"x\"", "1"], ["null"]);
        string tagged = """
            {"type":"object","oneOf":[
              {"properties":{"kind":{"const":"circle"},"r":{"type":"number"}},"required":["kind","r"]},
              {"properties":{"kind":{"const":"square"},"side":{"type":"number"}},"required":["kind","side"]}]}
            """;
        Check(tagged, ["{\"kind\": \"circle\", \"r\": 1}", "{\"kind\": \"square\", \"side\": 2}"], ["{\"kind\": \"circle\"}", "{\"r\": 1}"]);
    }

    [Fact]
    public void OverlappingOneOfExcludesWhatMatchesTwice()
    {
        string schema = """{"type":"object","oneOf":[{"required":["a"]},{"required":["b"]}]}""";
        Check(schema, ["{\"a\": 1}", "{\"b\": 1}", "{\"a\": 1, \"c\": 2}"], ["{\"a\": 1, \"b\": 2}", "{}", "{\"c\": 1}"]);
        string numbers = """{"oneOf":[{"type":"integer","maximum":10},{"type":"integer","minimum":5}]}""";
        Check(numbers, ["4", "11", "-3"], ["5", "7", "10"]);
        string closed = """
            {"type":"object","oneOf":[
              {"properties":{"key":{"type":"string"}},"additionalProperties":false},
              {"properties":{"keys":{"type":"array"}},"additionalProperties":false}]}
            """;
        Check(closed, ["{\"key\": \"a\"}", "{\"keys\": []}"], ["{}", "{\"key\": \"a\", \"keys\": []}", "{\"other\": 1}"]);
    }

    [Fact]
    public void OneOfThatCannotBeResolvedIsACompileError()
    {
        var e = Fails("""{"properties":{"a":{"oneOf":[{"type":"array","uniqueItems":true},{"type":"array","maxItems":3}]}}}""");
        Assert.Contains("oneOf", e.Message);
        Assert.Contains("#/properties/a", e.Message);
    }

    [Fact]
    public void AllOfMerges()
    {
        string schema = """
            {"allOf":[
              {"type":"object","properties":{"a":{"type":"integer","minimum":0}},"required":["a"]},
              {"properties":{"a":{"maximum":10},"b":{"type":"string"}},"required":["b"]}]}
            """;
        Check(schema, ["{\"a\": 3, \"b\": \"x\"}"], ["{\"a\": 11, \"b\": \"x\"}", "{\"a\": -1, \"b\": \"x\"}", "{\"a\": 3}", "{\"b\": \"x\"}", "[]"]);
        Fails("""{"allOf":[{"type":"string"},{"type":"integer"}]}""");
        Check("""{"allOf":[{"type":["number","string"]},{"type":["integer","null"]}]}""", ["1"], ["1.5", "\"a\"", "null"]);
        // allOf with additionalProperties false in one part rules out what the other part defines.
        Check("""{"allOf":[{"properties":{"a":{}},"additionalProperties":false},{"properties":{"b":{}}}]}""", ["{\"a\": 1}", "{}"], ["{\"b\": 1}"]);
    }

    [Fact]
    public void NotAndIfThenElse()
    {
        Check("""{"not":{"type":"string"}}""", ["1", "null", "{}"], ["\"x\""]);
        Check("""{"type":"string","not":{"enum":["a","b"]}}""", ["\"c\"", "\"ab\"", "\"\""], ["\"a\"", "\"b\""]);
        Check("""{"type":"integer","not":{"const":3}}""", ["2", "4", "30"], ["3"]);
        Check("""{"type":"object","not":{"required":["x"]}}""", ["{}", "{\"y\": 1}"], ["{\"x\": 1}"]);
        string cond = """
            {"type":"object","properties":{"country":{"enum":["US","CA"]},"code":{"type":"string"}},
             "if":{"properties":{"country":{"const":"US"}}},
             "then":{"properties":{"code":{"pattern":"^[0-9]{5}$"}}},
             "else":{"properties":{"code":{"pattern":"^[A-Z][0-9][A-Z]$"}}}}
            """;
        Check(cond, ["{\"country\": \"US\", \"code\": \"12345\"}", "{\"country\": \"CA\", \"code\": \"K1A\"}", "{\"code\": \"12345\"}"],
            ["{\"country\": \"US\", \"code\": \"K1A\"}", "{\"country\": \"CA\", \"code\": \"12345\"}"]);
        var e = Fails("""{"properties":{"a":{"not":{"uniqueItems":true}}}}""");
        Assert.Contains("'not'", e.Message);
        Assert.Contains("#/properties/a", e.Message);
    }

    [Fact]
    public void Dependencies()
    {
        Check("""{"type":"object","dependencies":{"card":["billing"]}}""", ["{}", "{\"billing\": 1}", "{\"card\": 1, \"billing\": 2}"], ["{\"card\": 1}"]);
        Check("""{"type":"object","dependentRequired":{"a":["b"]}}""", ["{\"b\": 1}"], ["{\"a\": 1}"]);
        Check("""{"type":"object","properties":{"a":{},"b":{}},"dependentSchemas":{"a":{"properties":{"b":{"type":"integer"}}}}}""",
            ["{\"a\": 1, \"b\": 2}", "{\"b\": \"x\"}"], ["{\"a\": 1, \"b\": \"x\"}"]);
    }

    [Fact]
    public void UnsupportedKeywordsNameThemselvesAndWhere()
    {
        foreach (var (schema, keyword, where) in new[]
        {
            ("""{"properties":{"a":{"unevaluatedProperties":false}}}""", "unevaluatedProperties", "#/properties/a"),
            ("""{"items":{"$dynamicRef":"#x"}}""", "$dynamicRef", "#/items"),
            ("""{"type":"array","contains":{"type":"integer"},"maxContains":2}""", "maxContains", "#"),
            ("""{"$defs":{"x":{"type":"string","format":"color-hex"}},"$ref":"#/$defs/x"}""", "color-hex", "#/$defs/x"),
            ("""{"type":"array","items":{"type":"string"},"uniqueItems":true}""", "uniqueItems", "#"),
        })
        {
            var e = Fails(schema);
            Assert.Contains(keyword, e.Message);
            Assert.Contains(where, e.Message);
        }
    }

    [Fact]
    public void AnnotationsAndUnknownKeywordsAreIgnored()
    {
        Accepts("""{"title":"t","description":"d","default":1,"examples":[1],"$comment":"c","readOnly":true,"x-extra":{"not":1},"javaType":"Foo","type":"integer"}""", "5");
        // The compiler's private keywords are unknown keywords in a user's schema.
        Accepts("""{"$kaiyuan-types":0,"$kaiyuan-not-enum":[5],"type":"integer"}""", "5");
    }

    // ------------------------------------------------------------------ $ref

    [Fact]
    public void References()
    {
        Check("""{"$defs":{"pos":{"type":"integer","minimum":1}},"type":"array","items":{"$ref":"#/$defs/pos"}}""", ["[1, 2]"], ["[0]"]);
        Check("""
            {"definitions":{"a/b":{"type":"string"},"c~d":{"type":"null"},"e f":{"type":"boolean"}},
             "properties":{"x":{"$ref":"#/definitions/a~1b"},"y":{"$ref":"#/definitions/c~0d"},"z":{"$ref":"#/definitions/e%20f"}}}
            """,
            ["{\"x\": \"s\", \"y\": null, \"z\": true}"], ["{\"x\": 1}", "{\"y\": 1}", "{\"z\": 1}"]);
        // Recursion through the root: a tree.
        string tree = """{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#"}}},"required":["v"],"additionalProperties":false}""";
        Check(tree, ["{\"v\": 1, \"kids\": [{\"v\": 2}, {\"v\": 3, \"kids\": [{\"v\": 4}]}]}"], ["{\"v\": 1, \"kids\": [{}]}", "{\"v\": 1, \"kids\": [{\"v\": 2, \"x\": 0}]}"]);
        // $id-relative references within the document.
        Check("""{"$id":"http://example.com/root.json","$defs":{"b":{"$id":"item.json","type":"integer"}},"items":{"$ref":"item.json"}}""", ["[1]"], ["[\"x\"]"]);
        Check("""{"$id":"http://example.com/root.json","$defs":{"b":{"$anchor":"num","type":"number"}},"items":{"$ref":"#num"}}""", ["[1.5]"], ["[null]"]);
    }

    [Fact]
    public void BadReferencesAreCompileErrors()
    {
        Assert.Contains("remote", Fails("""{"properties":{"a":{"$ref":"http://example.com/other.json"}}}""").Message);
        Assert.Contains("#/properties/a", Fails("""{"properties":{"a":{"$ref":"#/$defs/missing"}}}""").Message);
        Assert.Contains("loop", Fails("""{"$ref":"#"}""").Message);
        Assert.Contains("loop", Fails("""{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"allOf":[{"$ref":"#/$defs/a"}]}},"$ref":"#/$defs/a"}""").Message);
    }

    [Fact]
    public void RefSiblingsFollowTheDraft()
    {
        // Draft 7 ignores everything beside $ref; 2019-09 and later apply it.
        Accepts("""{"$schema":"http://json-schema.org/draft-07/schema#","$defs":{"o":{"type":"object"}},"$ref":"#/$defs/o","type":"string"}""", "{}");
        Fails("""{"$defs":{"o":{"type":"object"}},"$ref":"#/$defs/o","type":"string"}""");
        Check("""{"$defs":{"o":{"type":"object"}},"$ref":"#/$defs/o","required":["a"]}""", ["{\"a\": 1}"], ["{}"]);
    }

    // ------------------------------------------------------------------ arrays

    [Fact]
    public void Arrays()
    {
        Check("""{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3}""", ["[1]", "[1, 2, 3]", "[ 1,2 ]"], ["[]", "[1, 2, 3, 4]", "[1, \"a\"]", "[1,]"]);
        Check("""{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false}""", ["[]", "[\"a\"]", "[\"a\", 1]"], ["[1]", "[\"a\", 1, 2]"]);
        Check("""{"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"boolean"},"minItems":2}""", ["[\"a\", true, false]"], ["[\"a\"]", "[\"a\", 1]"]);
        Check("""{"type":"array","items":[{"type":"string"},{"type":"null"}]}""", ["[\"a\", null, 5, {}]"], ["[null]"]);
    }

    [Fact]
    public void UniqueItemsOverAFixedSetOfValues()
    {
        string schema = """{"type":"array","items":{"enum":["r","g","b"]},"uniqueItems":true}""";
        Check(schema, ["[]", "[\"r\"]", "[\"b\", \"r\", \"g\"]"], ["[\"r\", \"r\"]", "[\"g\", \"b\", \"g\"]", "[\"x\"]"]);
        Check("""{"type":"array","items":{"type":"integer"},"uniqueItems":true,"maxItems":1}""", ["[5]"], ["[5, 6]"]);
    }

    [Fact]
    public void Contains()
    {
        string schema = """{"type":"array","items":{"type":"integer"},"contains":{"minimum":10},"maxItems":3}""";
        Check(schema, ["[10]", "[1, 12]", "[1, 2, 30]"], ["[]", "[1, 2]", "[1, 2, 3, 40]"]);
        Check("""{"not":{"type":"array","items":{"type":"integer"}}}""", ["[1, \"x\"]", "\"s\""], ["[1, 2]", "[]"]);
    }

    // ------------------------------------------------------------------ strings

    [Fact]
    public void LengthsCountCharactersNotBytesOrEscapes()
    {
        string schema = """{"type":"string","minLength":2,"maxLength":3}""";
        Check(schema, ["\"ab\"", "\"中文字\"", "\"😀😀\"", "\"\\n\\\"x\"", "\"\\u0001a\""], ["\"a\"", "\"abcd\"", "\"😀\"", "\"\\n\""]);
    }

    [Fact]
    public void PatternsSearchAndAreEncoded()
    {
        Check("""{"type":"string","pattern":"^[a-z]+$"}""", ["\"abc\""], ["\"\"", "\"aBc\""]);
        Check("""{"type":"string","pattern":"b"}""", ["\"abc\"", "\"b\""], ["\"ac\""]);
        // Characters a pattern allows that need escaping in JSON are written escaped.
        Check("""{"type":"string","pattern":"^[\"\\\\]+$"}""", ["\"\\\"\\\\\""], ["\"a\""]);
        // pattern and maxLength together: their intersection.
        Check("""{"type":"string","pattern":"^a+b*$","maxLength":3}""", ["\"aab\"", "\"a\""], ["\"aabb\"", "\"b\""]);
        Check("""{"type":"string","pattern":"^[0-9]{4}-","format":"date"}""", ["\"2020-01-01\""], ["\"12\"", "\"20-01-01\""]);
        Fails("""{"type":"string","pattern":"^[0-9]+$","format":"date"}""");
        Check("""{"type":"string","not":{"pattern":"^x"}}""", ["\"ax\"", "\"\""], ["\"x\"", "\"xy\""]);
    }

    [Fact]
    public void Formats()
    {
        Check("""{"format":"date-time","type":"string"}""",
            ["\"2022-01-01T12:00:00Z\"", "\"2020-02-29t23:59:59.123+05:30\"", "\"1998-12-31T23:59:60Z\""],
            ["\"2022-01-01T12:00:00\"", "\"2022-01-01 12:00:00Z\"", "\"2021-02-29T00:00:00Z\"", "\"2022-13-01T00:00:00Z\"", "\"2022-01-01T24:00:00Z\""]);
        Check("""{"format":"date"}""", ["\"2000-02-29\"", "\"2024-02-29\"", "\"2023-04-30\"", "1"], ["\"1900-02-29\"", "\"2023-04-31\"", "\"2023-1-1\""]);
        Check("""{"format":"time"}""", ["\"08:30:00Z\"", "\"23:59:59.5-01:00\""], ["\"08:30Z\"", "\"08:30:00\""]);
        Check("""{"format":"uuid"}""", ["\"123e4567-e89b-12d3-a456-426614174000\"", "\"123E4567-E89B-12D3-A456-426614174000\""], ["\"123e4567e89b12d3a456426614174000\""]);
        Check("""{"format":"email"}""", ["\"john.doe@example.com\"", "\"a+b@mail.example.org\""], ["\"invalid_email\"", "\"a@@b.com\"", "\".a@b.com\"", "\"a..b@c.com\""]);
        Check("""{"format":"ipv4"}""", ["\"192.168.0.1\"", "\"0.0.0.0\"", "\"255.255.255.255\""], ["\"256.1.1.1\"", "\"01.1.1.1\"", "\"1.1.1\""]);
        Check("""{"format":"ipv6"}""", ["\"::\"", "\"::1\"", "\"1::\"", "\"2001:db8::8a2e:370:7334\"", "\"1:2:3:4:5:6:7:8\"", "\"::ffff:192.168.0.1\"", "\"1:2:3:4:5:6:1.2.3.4\""],
            ["\"1:2:3:4:5:6:7:8:9\"", "\"1::2::3\"", "\"12345::\"", "\":1\"", "\"1:2:3:4:5:6:7\""]);
        Check("""{"format":"hostname"}""", ["\"example.com\"", "\"a-b.c\"", "\"" + new string('a', 63) + ".com\""],
            ["\"-a.com\"", "\"a_b.com\"", "\"example.com:80\"", "\"\"", "\"" + new string('a', 64) + ".com\"", "\"" + string.Join(".", Enumerable.Repeat(new string('a', 60), 5)) + "\""]);
        Check("""{"format":"uri"}""", ["\"https://example.com/a?b=c#d\"", "\"urn:isbn:0451450523\"", "\"mailto:a@b.c\""],
            ["\"//example.com\"", "\"http:// bad.com\"", "\"notaurl\"", "\"http://a.com/%zz\""]);
        Check("""{"format":"uri-reference"}""", ["\"/path?q\"", "\"https://x.y\"", "\"\""], ["\"://\"", "\"a b\""]);
        Check("""{"format":"duration"}""", ["\"P1Y2M3DT4H5M6S\"", "\"PT1M\"", "\"P2W\""], ["\"P\"", "\"PT\"", "\"P1H\""]);
        var e = Fails("""{"type":"string","format":"phone"}""");
        Assert.Contains("'phone'", e.Message);
        // OpenAPI annotation formats accept any string; integer formats bound the value.
        Accepts("""{"type":"string","format":"password"}""", "\"x\"");
        Check("""{"type":"integer","format":"int32"}""", ["2147483647", "-2147483648"], ["2147483648"]);
    }

    // ------------------------------------------------------------------ numbers

    [Fact]
    public void IntegerRangesAreExact()
    {
        var a = Compile("""{"type":"integer","minimum":-15,"maximum":123}""");
        for (int i = -200; i <= 200; i++)
            Assert.Equal(i >= -15 && i <= 123, a.Matches(i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Assert.False(a.Matches("007"));
        Check("""{"type":"integer","exclusiveMinimum":0}""", ["1", "99999999999999999999"], ["0", "-0", "-1"]);
        Check("""{"type":"integer","maximum":-10}""", ["-10", "-11", "-100000"], ["-9", "0", "5"]);
        Check("""{"type":"integer","minimum":0,"exclusiveMinimum":true,"maximum":5,"exclusiveMaximum":true}""", ["1", "4"], ["0", "5"]);
        Check("""{"type":"integer","minimum":2.5,"maximum":4.5}""", ["3", "4"], ["2", "5"]);
    }

    [Fact]
    public void NumberRangesAreExact()
    {
        Check("""{"type":"number","minimum":0,"maximum":100}""", ["0", "100", "100.0", "100.000", "99.99", "0.001", "-0", "50"],
            ["100.5", "100.01", "-0.1", "101", "1e2"]);
        Check("""{"type":"number","exclusiveMinimum":0.5,"maximum":2.25}""", ["0.51", "1", "2.25", "2.250", "0.5000001"], ["0.5", "0.50", "2.2501", "0", "3"]);
        Check("""{"type":"number","minimum":-1.5}""", ["-1.5", "-1.49", "0", "12345.5"], ["-1.51", "-2"]);
        Check("""{"type":"number","exclusiveMaximum":-0.25}""", ["-0.26", "-1"], ["-0.25", "0", "-0.2"]);
    }

    [Fact]
    public void MultipleOf()
    {
        var five = Compile("""{"type":"integer","multipleOf":5}""");
        for (int i = -30; i <= 30; i++) Assert.Equal(i % 5 == 0, five.Matches(i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Check("""{"type":"number","multipleOf":0.01}""", ["1", "1.5", "0.25", "0.250", "-3.07"], ["0.001", "1.255"]);
        Check("""{"type":"number","multipleOf":1}""", ["3", "3.0"], ["3.5"]);
        Check("""{"type":"number","multipleOf":2.5,"maximum":10}""", ["7.5", "10", "0", "-2.5"], ["12.5", "1"]);
    }

    // ------------------------------------------------------------------ OpenAPI, embedding, hostile input

    [Fact]
    public void NullableAddsNull()
    {
        Check("""{"type":"string","nullable":true}""", ["null", "\"x\""], ["1"]);
    }

    [Fact]
    public void AddToEmbedsInAnotherGrammar()
    {
        var g = new Grammar();
        using var doc = JsonDocument.Parse("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""");
        using var doc2 = JsonDocument.Parse("""{"type":"integer"}""");
        var args = JsonSchemaGrammar.AddTo(g, doc.RootElement);
        var other = JsonSchemaGrammar.AddTo(g, doc2.RootElement);
        g.Root = g.AddRule("call", Seq(Literal("<call>"), args, Literal("</call>"), Optional(Seq(Literal("#"), other))));
        var a = ByteAutomaton.Compile(g);
        Assert.True(a.Matches("<call>{\"city\": \"Paris\"}</call>"));
        Assert.True(a.Matches("<call>{\"city\": \"Paris\"}</call>#12"));
        Assert.False(a.Matches("<call>{}</call>"));
        Assert.False(a.Matches("<call> {\"city\": \"Paris\"}</call>"));
    }

    [Fact]
    public void HostileSchemasFailCleanly()
    {
        Assert.Contains("not valid JSON", Fails("{\"type\": ").Message);
        Fails(new string('[', 600) + new string(']', 600));
        // Deep nesting of schemas.
        string deep = "{\"type\":\"integer\"}";
        for (int i = 0; i < 300; i++) deep = "{\"type\":\"array\",\"items\":" + deep + "}";
        Assert.Contains("deeper", Fails(deep).Message);
        // Combinators that multiply out.
        var anyOfs = string.Join(",", Enumerable.Range(0, 12).Select(i => $$"""{"anyOf":[{"required":["a{{i}}"]},{"required":["b{{i}}"]}]}"""));
        Assert.Contains("alternatives", Fails($$"""{"type":"object","allOf":[{{anyOfs}}]}""").Message);
        // Huge bounds stay cheap: counts beyond the cap refuse longer output instead of building it.
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var big = Compile("""{"type":"object","properties":{"s":{"type":"string","maxLength":2000000000},"a":{"type":"array","maxItems":2000000000},"n":{"type":"number","minimum":-1e300,"maximum":1e300}}}""");
        Assert.True(big.Matches("{\"s\": \"abc\", \"a\": [1, 2], \"n\": 5}"));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(20));
        Assert.Contains("minLength", Fails("""{"type":"string","minLength":100000}""").Message);
    }

    [Fact]
    public void NumberSpellingsOfEnumValues()
    {
        Check("""{"enum":[100, 1e16, 0.1]}""", ["100", "100.0", "1e+16", "10000000000000000", "0.1"], ["1e2", "0.10000001"]);
    }
}
