using System.Text.Json;
using static Kaiyuan.Constraints.GrammarNode;

namespace Kaiyuan.Constraints;

// TEMPORARY stand-in until the schema compiler lands: any JSON value only.
public static class JsonSchemaGrammar
{
    public static Grammar Compile(JsonElement schema)
    {
        if (schema.ValueKind == JsonValueKind.Object && !schema.EnumerateObject().Any()) return AnyValue();
        throw new GrammarException("schemas are not supported yet");
    }

    public static Grammar AnyValue()
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
