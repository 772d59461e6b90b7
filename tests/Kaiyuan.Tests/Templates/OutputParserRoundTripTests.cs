using System.Text;
using System.Text.Json.Nodes;
using Kaiyuan.Templates;
using Kaiyuan.Templates.Parsing;

namespace Kaiyuan.Tests.Templates;

/// <summary>
/// Renders an assistant turn with the family's real template, then parses the rendered text back
/// in random-size chunks and expects the same reasoning, content and tool calls.
/// </summary>
public class OutputParserRoundTripTests
{
    private const string Reasoning = "The user wants the weather.\nI should call the tool.";
    private const string Content = "Let me check that for you.";

    private static readonly string[] EndMarkers =
        ["<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<｜end▁of▁sentence｜>", "[e~[", "<|endoftext|>", "<|user|>", "<|observation|>"];

    public static TheoryData<string, string, bool, bool, int> Families() => new()
    {
        // template, expected format, template renders reasoning, template renders content next to calls, calls
        { "Qwen-Qwen2.5-7B-Instruct.jinja", "hermes", false, true, 2 },
        { "Qwen-Qwen3-0.6B.jinja", "hermes", true, true, 2 },
        { "Qwen-QwQ-32B.jinja", "hermes", false, true, 2 },
        { "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja", "hermes", false, false, 2 },
        { "Qwen3-Coder.jinja", "qwen3-coder", false, true, 2 },
        { "deepseek-ai-DeepSeek-V3.1.jinja", "deepseek", false, true, 2 },
        { "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", "deepseek", false, false, 2 },
        { "GLM-4.6.jinja", "glm-4.5", true, true, 2 },
        { "Kimi-K2-Instruct.jinja", "kimi-k2", false, true, 2 },
        { "Kimi-K2-Thinking.jinja", "kimi-k2", true, true, 2 },
        { "moonshotai-Kimi-K2.jinja", "kimi-k2", false, true, 2 },
        { "MiniMax-M2.jinja", "minimax-m2", true, true, 2 },
        { "meta-llama-Llama-3.1-8B-Instruct.jinja", "llama3", false, false, 1 },
        { "meta-llama-Llama-3.3-70B-Instruct.jinja", "llama3", false, false, 1 },
    };

    private static JsonArray ToolCalls(int n)
    {
        var calls = new JsonArray
        {
            new JsonObject
            {
                ["id"] = "call_1",
                ["type"] = "function",
                ["function"] = new JsonObject
                {
                    ["name"] = "get_weather",
                    ["arguments"] = new JsonObject { ["location"] = "北京", ["unit"] = "celsius", ["days"] = 3 },
                },
            },
            new JsonObject
            {
                ["id"] = "call_2",
                ["type"] = "function",
                ["function"] = new JsonObject
                {
                    ["name"] = "search",
                    ["arguments"] = new JsonObject { ["query"] = "say \"hi\" <b>", ["filters"] = new JsonObject { ["tags"] = new JsonArray("a", "b"), ["strict"] = true } },
                },
            },
        };
        while (calls.Count > n) calls.RemoveAt(calls.Count - 1);
        return calls;
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void RoundTripsThroughTemplate(string file, string formatName, bool withReasoning, bool withContent, int callCount)
    {
        string source = Fixtures.ReadTemplate(file);
        var formatter = new ChatFormatter(source);
        var tools = new JsonArray(
            new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather", ["description"] = "Get the weather", ["parameters"] = new JsonObject { ["type"] = "object" } } },
            new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "search", ["description"] = "Search the web", ["parameters"] = new JsonObject { ["type"] = "object" } } });
        var user = new JsonObject { ["role"] = "user", ["content"] = "What's the weather in Beijing?" };
        var assistant = new JsonObject
        {
            ["role"] = "assistant",
            ["content"] = Content,
            ["reasoning_content"] = Reasoning,
            ["tool_calls"] = ToolCalls(callCount),
        };
        string prompt = formatter.Render(new JsonArray(user.DeepClone()), tools.DeepClone(), addGenerationPrompt: true);
        string full = formatter.Render(new JsonArray(user.DeepClone(), assistant), tools.DeepClone(), addGenerationPrompt: false);

        int common = 0;
        while (common < prompt.Length && common < full.Length && prompt[common] == full[common]) common++;
        // Back up to a token boundary: the generation prompt may share a '<' with what follows.
        while (common > 0 && full[common - 1] is not ('>' or '\n')) common--;
        string output = full[common..];
        int cut = EndMarkers.Select(m => output.IndexOf(m, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(output.Length).Min();
        output = output[..cut];

        var format = OutputParserFactory.DetectFormat(source);
        Assert.Equal(formatName, format.Name);
        var parser = new ChatOutputParser(format, ChatOutputParser.PromptOpensReasoning(full[..common], format));

        var rng = new Random(file.Length * 31 + 7);
        var deltas = new List<OutputDelta>();
        for (int i = 0; i < output.Length;)
        {
            int n = Math.Min(rng.Next(1, 9), output.Length - i);
            deltas.AddRange(parser.Feed(output.Substring(i, n)));
            i += n;
        }
        deltas.AddRange(parser.Finish());
        var result = parser.Result;

        Assert.Equal(withContent ? Content : "", result.Content);
        Assert.Equal(withReasoning ? Reasoning : "", result.Reasoning ?? "");
        Assert.Equal(callCount, result.ToolCalls.Count);
        var expectedCalls = ToolCalls(callCount);
        for (int i = 0; i < callCount; i++)
        {
            var fn = expectedCalls[i]!["function"]!;
            Assert.Equal((string)fn["name"]!, result.ToolCalls[i].Name);
            Assert.True(JsonNode.DeepEquals(fn["arguments"], JsonNode.Parse(result.ToolCalls[i].Arguments)),
                $"arguments differ: {result.ToolCalls[i].Arguments}");
            Assert.False(string.IsNullOrEmpty(result.ToolCalls[i].Id));
        }

        // The deltas tell the same story as the result, and never leak a marker into content.
        var content = new StringBuilder();
        var reasoning = new StringBuilder();
        var args = new Dictionary<int, StringBuilder>();
        var names = new Dictionary<int, string>();
        foreach (var d in deltas)
        {
            content.Append(d.Content);
            reasoning.Append(d.Reasoning);
            if (d.ToolCall is { } tc)
            {
                if (tc.Name != null) names[tc.Index] = tc.Name;
                if (!args.TryGetValue(tc.Index, out var sb)) args[tc.Index] = sb = new StringBuilder();
                sb.Append(tc.ArgumentsDelta);
            }
        }
        Assert.Equal(result.Content, content.ToString().Trim());
        Assert.Equal(result.Reasoning ?? "", reasoning.ToString().Trim());
        for (int i = 0; i < callCount; i++)
        {
            Assert.Equal(result.ToolCalls[i].Name, names[i]);
            Assert.Equal(result.ToolCalls[i].Arguments, args[i].ToString());
        }
    }
}
