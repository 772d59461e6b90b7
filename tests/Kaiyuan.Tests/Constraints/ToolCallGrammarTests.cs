using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Constraints;
using Kaiyuan.Templates.Parsing;

namespace Kaiyuan.Tests.Constraints;

/// <summary>Each family's call grammar accepts exactly the calls its own output parser reads back.</summary>
public class ToolCallGrammarTests
{
    private static readonly ToolSignature Weather = new("get_weather", JsonDocument.Parse("""
        {"type":"object","properties":{"city":{"type":"string","enum":["Paris","Lima"]},"days":{"type":"integer"}},"required":["city","days"]}
        """).RootElement);

    public static TheoryData<string, string> Calls => new()
    {
        { "hermes", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>" },
        { "llama3", "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 3}}" },
        { "deepseek", "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\", \"days\": 3}<｜tool▁call▁end｜><｜tool▁calls▁end｜>" },
        { "kimi-k2", "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\", \"days\": 3}<|tool_call_end|><|tool_calls_section_end|>" },
        { "qwen3-coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>" },
        { "glm-4.5", "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>" },
        { "minimax-m2", "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"city\">Paris</parameter>\n<parameter name=\"days\">3</parameter>\n</invoke>\n</minimax:tool_call>" },
    };

    private static ToolCallFormat Format(string name) => name switch
    {
        "hermes" => ToolCallFormat.Hermes,
        "llama3" => ToolCallFormat.Llama3,
        "deepseek" => ToolCallFormat.DeepSeek,
        "kimi-k2" => ToolCallFormat.KimiK2,
        "qwen3-coder" => ToolCallFormat.Qwen3Coder,
        "glm-4.5" => ToolCallFormat.Glm45,
        "minimax-m2" => ToolCallFormat.MiniMaxM2,
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Calls))]
    public void GrammarAcceptsWhatTheParserReads(string family, string call)
    {
        var format = Format(family);
        var single = ByteAutomaton.Compile(ToolCallGrammar.Build(format, [Weather], parallel: false));
        Assert.True(single.Matches(call), call);
        Assert.False(single.Matches(call.Replace("Paris", "Rome", StringComparison.Ordinal)));
        Assert.False(single.Matches(call.Replace("3", "\"3\"", StringComparison.Ordinal))); // days is an integer

        var parsed = Assert.Single(ChatOutputParser.ParseAll(call, format).ToolCalls);
        Assert.Equal("get_weather", parsed.Name);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"city":"Paris","days":3}"""), JsonNode.Parse(parsed.Arguments)), parsed.Arguments);
    }

    [Fact]
    public void ParallelCallsRepeatOnlyWhenAllowed()
    {
        const string Call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\", \"days\": 1}}\n</tool_call>";
        var one = ByteAutomaton.Compile(ToolCallGrammar.Build(ToolCallFormat.Hermes, [Weather], parallel: false));
        var many = ByteAutomaton.Compile(ToolCallGrammar.Build(ToolCallFormat.Hermes, [Weather], parallel: true));
        Assert.False(one.Matches(Call + "\n" + Call));
        Assert.True(many.Matches(Call + "\n" + Call));
        Assert.Equal(2, ChatOutputParser.ParseAll(Call + "\n" + Call, ToolCallFormat.Hermes).ToolCalls.Count);
    }

    [Fact]
    public void OnlyTheOfferedFunctionsCanBeCalled()
    {
        var lookup = new ToolSignature("lookup", null);
        var a = ByteAutomaton.Compile(ToolCallGrammar.Build(ToolCallFormat.Hermes, [Weather, lookup], parallel: false));
        Assert.True(a.Matches("<tool_call>\n{\"name\": \"lookup\", \"arguments\": {\"q\": [1, {}]}}\n</tool_call>"));
        Assert.False(a.Matches("<tool_call>\n{\"name\": \"other\", \"arguments\": {}}\n</tool_call>"));
        Assert.Throws<GrammarException>(() => ToolCallGrammar.Build(ToolCallFormat.Generic, [lookup], parallel: false));
        Assert.Equal("<tool_call>", ToolCallGrammar.Trigger(ToolCallFormat.Hermes));
        Assert.Equal("<｜tool▁calls▁begin｜>", ToolCallGrammar.Trigger(ToolCallFormat.DeepSeek));
        Assert.Null(ToolCallGrammar.Trigger(ToolCallFormat.Llama3));
    }
}
