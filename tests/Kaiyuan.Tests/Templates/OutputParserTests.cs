using System.Text;
using System.Text.Json.Nodes;
using Kaiyuan.Templates.Parsing;

namespace Kaiyuan.Tests.Templates;

public class OutputParserTests
{
    private static (ParsedOutput Result, List<OutputDelta> Deltas) Parse(ToolCallFormat f, string text, bool inReasoning = false, int seed = 1)
    {
        var p = new ChatOutputParser(f, inReasoning);
        var rng = new Random(seed);
        var deltas = new List<OutputDelta>();
        for (int i = 0; i < text.Length;)
        {
            int n = Math.Min(rng.Next(1, 6), text.Length - i);
            deltas.AddRange(p.Feed(text.Substring(i, n)));
            i += n;
        }
        deltas.AddRange(p.Finish());
        return (p.Result, deltas);
    }

    private static string Joined(IEnumerable<OutputDelta> d, Func<OutputDelta, string?> pick) => string.Concat(d.Select(pick));

    [Fact]
    public void PlainContentPassesThrough()
    {
        var (r, d) = Parse(ToolCallFormat.Hermes, "Hello <b>world</b> a < b and <tool is not a call");
        Assert.Equal("Hello <b>world</b> a < b and <tool is not a call", r.Content);
        Assert.Null(r.Reasoning);
        Assert.Empty(r.ToolCalls);
        Assert.Equal(r.Content, Joined(d, x => x.Content));
    }

    private static readonly ToolCallFormat Thinking = new() { Name = "thinking", ReasoningStart = "<think>", ReasoningEnd = "</think>" };

    [Theory]
    [InlineData(" ")]
    [InlineData("\n\n")]
    [InlineData(" \t \n ")]
    public void AWhitespaceOnlyAnswerComesBackAsGenerated(string text)
    {
        foreach (var format in new[] { ToolCallFormat.Hermes, Thinking })
        {
            var (r, d) = Parse(format, text);
            Assert.Equal(text, r.Content);
            Assert.Equal(text, Joined(d, x => x.Content));
        }
    }

    [Fact]
    public void WhitespaceAroundReasoningIsStillTrimmed()
    {
        var (r, d) = Parse(Thinking, "<think>hm</think>\n\n");
        Assert.Equal("", r.Content);
        Assert.Equal("", Joined(d, x => x.Content));
        Assert.Equal("hm", r.Reasoning);
    }

    [Fact]
    public void PartialMarkerIsHeldBack()
    {
        var p = new ChatOutputParser(ToolCallFormat.Hermes);
        Assert.Equal("Hi ", Joined(p.Feed("Hi <tool_"), x => x.Content));
        Assert.Empty(p.Feed("ca"));
        var d = p.Feed("ll>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>");
        Assert.Contains(d, x => x.ToolCall?.Name == "f");
        p.Finish();
        Assert.Equal("f", p.Result.ToolCalls.Single().Name);
        Assert.Equal("{\"a\":1}", p.Result.ToolCalls.Single().Arguments);
    }

    [Fact]
    public void HeldBackTextIsFlushedWhenItIsNotAMarker()
    {
        var p = new ChatOutputParser(ToolCallFormat.Hermes);
        Assert.Equal("a ", Joined(p.Feed("a <tool"), x => x.Content));
        Assert.Equal("<toolbox", Joined(p.Feed("box"), x => x.Content));
        Assert.Equal(" ", Joined(p.Feed(" <to"), x => x.Content));
        Assert.Equal("<to", Joined(p.Finish(), x => x.Content));
        Assert.Equal("a <toolbox <to", p.Result.Content);
    }

    [Fact]
    public void ThinkBlockAtStartIsReasoning()
    {
        var (r, d) = Parse(ToolCallFormat.Hermes, "<think>\nLet me think.\n</think>\n\nThe answer is 4.");
        Assert.Equal("Let me think.", r.Reasoning);
        Assert.Equal("The answer is 4.", r.Content);
        Assert.Equal("Let me think.", Joined(d, x => x.Reasoning).Trim());
    }

    [Fact]
    public void OutputCanStartInsideReasoning()
    {
        var (r, _) = Parse(ToolCallFormat.MiniMaxM2, "pondering...\n</think>\n\nDone.", inReasoning: true);
        Assert.Equal("pondering...", r.Reasoning);
        Assert.Equal("Done.", r.Content);
    }

    [Fact]
    public void UnclosedReasoningStaysReasoning()
    {
        var (r, _) = Parse(ToolCallFormat.Hermes, "<think>still going", seed: 3);
        Assert.Equal("still going", r.Reasoning);
        Assert.Equal("", r.Content);
    }

    [Fact]
    public void ThinkTagLaterInContentIsContent()
    {
        var (r, _) = Parse(ToolCallFormat.Hermes, "Use the <think> tag.");
        Assert.Equal("Use the <think> tag.", r.Content);
        Assert.Null(r.Reasoning);
    }

    [Fact]
    public void PromptOpensReasoningDetection()
    {
        Assert.True(ChatOutputParser.PromptOpensReasoning("<|im_start|>assistant\n<think>\n", ToolCallFormat.Hermes));
        Assert.False(ChatOutputParser.PromptOpensReasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n", ToolCallFormat.Hermes));
        Assert.False(ChatOutputParser.PromptOpensReasoning("<|im_start|>assistant\n", ToolCallFormat.Hermes));
    }

    [Fact]
    public void HermesMultipleCallsAndStringArguments()
    {
        string text = "Checking.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": \"北京\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": \"{\\\"y\\\": [1, 2]}\"}\n</tool_call>";
        var (r, d) = Parse(ToolCallFormat.Hermes, text);
        Assert.Equal("Checking.", r.Content);
        Assert.Equal(["a", "b"], r.ToolCalls.Select(c => c.Name));
        Assert.Equal("{\"x\":\"北京\"}", r.ToolCalls[0].Arguments);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("{\"y\": [1, 2]}"), JsonNode.Parse(r.ToolCalls[1].Arguments)));
        Assert.NotEqual(r.ToolCalls[0].Id, r.ToolCalls[1].Id);
        var starts = d.Where(x => x.ToolCall?.Id != null).Select(x => x.ToolCall!).ToList();
        Assert.Equal([0, 1], starts.Select(s => s.Index));
    }

    [Fact]
    public void MalformedCallIsGivenBackAsContent()
    {
        var (r, _) = Parse(ToolCallFormat.Hermes, "<tool_call>not json</tool_call>");
        Assert.Empty(r.ToolCalls);
        Assert.Equal("<tool_call>not json</tool_call>", r.Content);
    }

    [Fact]
    public void UnfinishedCallAtEndIsParsedIfPossible()
    {
        var (r, _) = Parse(ToolCallFormat.Hermes, "<tool_call>{\"name\": \"f\", \"arguments\": {}}");
        Assert.Equal("f", r.ToolCalls.Single().Name);
    }

    [Fact]
    public void Qwen3CoderParameters()
    {
        string text = "<tool_call>\n<function=run>\n<parameter=cmd>\nls -la\n</parameter>\n<parameter=timeout>\n30\n</parameter>\n<parameter=opts>\n{\"a\": true}\n</parameter>\n</function>\n</tool_call>";
        var (r, _) = Parse(ToolCallFormat.Qwen3Coder, text);
        var call = r.ToolCalls.Single();
        Assert.Equal("run", call.Name);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("{\"cmd\": \"ls -la\", \"timeout\": 30, \"opts\": {\"a\": true}}"), JsonNode.Parse(call.Arguments)));
    }

    [Fact]
    public void ToolSchemaKeepsStringParametersAsStrings()
    {
        string text = "<tool_call>\n<function=run>\n<parameter=cmd>\n30\n</parameter>\n<parameter=timeout>\n30\n</parameter>\n</function>\n</tool_call>";
        var tools = JsonNode.Parse("""[{"type": "function", "function": {"name": "run", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}, "timeout": {"type": "integer"}}}}}]""");
        var p = new ChatOutputParser(ToolCallFormat.Qwen3Coder, false, tools);
        p.Feed(text);
        p.Finish();
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("{\"cmd\": \"30\", \"timeout\": 30}"), JsonNode.Parse(p.Result.ToolCalls.Single().Arguments)));
    }

    [Fact]
    public void Glm45Call()
    {
        var (r, _) = Parse(ToolCallFormat.Glm45, "<think>hmm</think>\nok\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>");
        Assert.Equal("hmm", r.Reasoning);
        Assert.Equal("ok", r.Content);
        Assert.Equal("get_weather", r.ToolCalls.Single().Name);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("{\"city\": \"Paris\", \"days\": 2}"), JsonNode.Parse(r.ToolCalls[0].Arguments)));
    }

    [Fact]
    public void DeepSeekV31Calls()
    {
        string text = "Sure<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\": 1}<｜tool▁call▁end｜><｜tool▁call▁begin｜>g<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        var (r, _) = Parse(ToolCallFormat.DeepSeek, text);
        Assert.Equal("Sure", r.Content);
        Assert.Equal(["f", "g"], r.ToolCalls.Select(c => c.Name));
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("{\"a\": 1}"), JsonNode.Parse(r.ToolCalls[0].Arguments)));
    }

    [Fact]
    public void DeepSeekR1Call()
    {
        string text = "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>lookup\n```json\n{\"q\": \"x\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>";
        var (r, _) = Parse(ToolCallFormat.DeepSeek, text);
        Assert.Equal("lookup", r.ToolCalls.Single().Name);
        Assert.Equal("{\"q\":\"x\"}", r.ToolCalls[0].Arguments);
    }

    [Fact]
    public void KimiK2KeepsItsIds()
    {
        string text = "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|><|tool_call_begin|>functions.search:1<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>";
        var (r, d) = Parse(ToolCallFormat.KimiK2, text);
        Assert.Equal(["get_weather", "search"], r.ToolCalls.Select(c => c.Name));
        Assert.Equal(["functions.get_weather:0", "functions.search:1"], r.ToolCalls.Select(c => c.Id));
        Assert.Equal("functions.get_weather:0", d.First(x => x.ToolCall?.Id != null).ToolCall!.Id);
    }

    [Fact]
    public void JsonArgumentsStreamBeforeTheCallEnds()
    {
        var p = new ChatOutputParser(ToolCallFormat.KimiK2);
        var d = new List<OutputDelta>();
        d.AddRange(p.Feed("<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"text\": \"hel"));
        Assert.Equal("f", d.Single(x => x.ToolCall?.Name != null).ToolCall!.Name);
        Assert.Equal("{\"text\": \"hel", string.Concat(d.Select(x => x.ToolCall?.ArgumentsDelta)));
        d.AddRange(p.Feed("lo\"}<|tool_call_e"));
        Assert.Equal("{\"text\": \"hello\"}", string.Concat(d.Select(x => x.ToolCall?.ArgumentsDelta)));
        d.AddRange(p.Feed("nd|><|tool_calls_section_end|>"));
        d.AddRange(p.Finish());
        Assert.Equal("{\"text\": \"hello\"}", p.Result.ToolCalls.Single().Arguments);
        Assert.Equal("functions.f:0", p.Result.ToolCalls[0].Id);
        Assert.Equal("", p.Result.Content);
    }

    [Fact]
    public void MiniMaxM2Calls()
    {
        string text = "I'll look.\n<minimax:tool_call>\n<invoke name=\"search\">\n<parameter name=\"query\">cats &amp; dogs</parameter>\n<parameter name=\"n\">5</parameter>\n</invoke>\n</minimax:tool_call>";
        var (r, _) = Parse(ToolCallFormat.MiniMaxM2, text);
        Assert.Equal("I'll look.", r.Content);
        Assert.Equal("search", r.ToolCalls.Single().Name);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("{\"query\": \"cats &amp; dogs\", \"n\": 5}"), JsonNode.Parse(r.ToolCalls[0].Arguments)));
    }

    // Found by the parser fuzz target: a regex unescape threw on escapes a model may write (\x, a short \u).
    [Theory]
    [InlineData("<|python_tag|>f.call(a=\"\\x\", b=\"\\u12\")", "f", "{\"a\":\"\\\\x\",\"b\":\"\\\\u12\"}")]
    [InlineData("<|python_tag|>f.call(a=\"line\\nnext \\u00e9 \\\"q\\\"\")", "f", "{\"a\":\"line\\nnext \u00e9 \\\"q\\\"\"}")]
    public void InvalidEscapesInACallAreKeptAsWritten(string text, string name, string arguments)
    {
        var (r, _) = Parse(ToolCallFormat.Llama3, text);
        Assert.Equal(name, r.ToolCalls.Single().Name);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(arguments), JsonNode.Parse(r.ToolCalls[0].Arguments)), r.ToolCalls[0].Arguments);
    }

    [Fact]
    public void AStreamedNameWithAnInvalidEscapeDoesNotThrow()
    {
        // Hermes peeks at the name while the call streams, through the same unescape; the body is not valid JSON
        // (\x), so it is no call and reaches the client as text.
        string text = "<tool_call>\n{\"name\": \"g\\x\", \"arguments\": {}}\n</tool_call>";
        var (r, _) = Parse(ToolCallFormat.Hermes, text);
        Assert.Empty(r.ToolCalls);
        Assert.Contains("g\\x", r.Content);
    }

    [Fact]
    public void Llama3BareJsonAndPythonTag()
    {
        var (r, _) = Parse(ToolCallFormat.Llama3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}");
        Assert.Equal("get_weather", r.ToolCalls.Single().Name);
        Assert.Equal("", r.Content);

        (r, _) = Parse(ToolCallFormat.Llama3, "<|python_tag|>brave_search.call(query=\"weather in Paris\")");
        Assert.Equal("brave_search", r.ToolCalls.Single().Name);
        Assert.Equal("{\"query\":\"weather in Paris\"}", r.ToolCalls[0].Arguments);

        (r, _) = Parse(ToolCallFormat.Llama3, "{ this is just text in braces }");
        Assert.Empty(r.ToolCalls);
        Assert.Equal("{ this is just text in braces }", r.Content);

        (r, var d) = Parse(ToolCallFormat.Llama3, "The answer is 4.");
        Assert.Equal("The answer is 4.", r.Content);
        Assert.Equal("The answer is 4.", Joined(d, x => x.Content));
    }

    [Fact]
    public void LongOutputsFedCharByCharStayFast()
    {
        string big = new string('x', 100_000);
        string text = "<think>" + big + "</think>" + big + "<tool_call>{\"name\": \"f\", \"arguments\": {\"s\": \"" + big + "\"}}</tool_call>";
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var p = new ChatOutputParser(ToolCallFormat.Hermes);
        foreach (char c in text) p.Feed(c.ToString());
        p.Finish();
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
        Assert.Equal(big, p.Result.Reasoning);
        Assert.Equal(big, p.Result.Content);
        Assert.Equal("f", p.Result.ToolCalls.Single().Name);
    }

    [Fact]
    public void ChunkingNeverChangesTheResult()
    {
        string text = "<think>r1 <tool_call> inside thinking</think>Answer <tool_call>{\"name\": \"f\", \"arguments\": {\"k\": \"</tool\"}}</tool_call> tail";
        var expected = ChatOutputParser.ParseAll(text, ToolCallFormat.Hermes);
        for (int seed = 0; seed < 50; seed++)
        {
            var (r, d) = Parse(ToolCallFormat.Hermes, text, seed: seed);
            Assert.Equal(expected.Content, r.Content);
            Assert.Equal(expected.Reasoning, r.Reasoning);
            Assert.Equal(expected.ToolCalls.Select(c => (c.Name, c.Arguments)), r.ToolCalls.Select(c => (c.Name, c.Arguments)));
            Assert.Equal(r.Content, Joined(d, x => x.Content).Trim());
        }
        Assert.Equal("r1 <tool_call> inside thinking", expected.Reasoning);
        Assert.Equal("Answer  tail", expected.Content);
    }

    [Theory]
    [InlineData("Qwen-Qwen2.5-7B-Instruct.jinja", "hermes")]
    [InlineData("Qwen-Qwen3-0.6B.jinja", "hermes")]
    [InlineData("Qwen-QwQ-32B.jinja", "hermes")]
    [InlineData("NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "hermes")]
    [InlineData("Qwen3-Coder.jinja", "qwen3-coder")]
    [InlineData("deepseek-ai-DeepSeek-V3.1.jinja", "deepseek")]
    [InlineData("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "deepseek")]
    [InlineData("GLM-4.6.jinja", "glm-4.5")]
    [InlineData("Kimi-K2-Instruct.jinja", "kimi-k2")]
    [InlineData("Kimi-K2-Thinking.jinja", "kimi-k2")]
    [InlineData("moonshotai-Kimi-K2.jinja", "kimi-k2")]
    [InlineData("MiniMax-M2.jinja", "minimax-m2")]
    [InlineData("meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3")]
    [InlineData("meta-llama-Llama-3.3-70B-Instruct.jinja", "llama3")]
    [InlineData("google-gemma-2-2b-it.jinja", "generic")]
    [InlineData("microsoft-Phi-3.5-mini-instruct.jinja", "generic")]
    public void FactoryDetectsFamilyFromTemplate(string file, string format)
    {
        string source = Fixtures.ReadTemplate(file);
        Assert.Equal(format, OutputParserFactory.DetectFormat(source).Name);
        Assert.Equal(format, OutputParserFactory.ForTemplate(source).Format.Name);
    }

    [Fact]
    public void FactoryStartsInReasoningWhenThePromptOpensIt()
    {
        string source = Fixtures.ReadTemplate("MiniMax-M2.jinja");
        var p = OutputParserFactory.ForTemplate(source, "]~b]ai\n<think>\n");
        p.Feed("thinking</think>answer");
        p.Finish();
        Assert.Equal("thinking", p.Result.Reasoning);
        Assert.Equal("answer", p.Result.Content);
    }
}
