using System.Text;
using System.Text.Json.Nodes;
using Kaiyuan.Templates.Parsing;

namespace Kaiyuan.Fuzz.Targets;

/// <summary>Arbitrary model output, fed in arbitrary pieces, through each family's reasoning and tool-call parser.</summary>
internal sealed class OutputParserTarget : FuzzTarget
{
    private static readonly ToolCallFormat[] Formats =
    [
        ToolCallFormat.Hermes, ToolCallFormat.Qwen3Coder, ToolCallFormat.Glm45, ToolCallFormat.DeepSeek, ToolCallFormat.KimiK2,
        ToolCallFormat.MiniMaxM2, ToolCallFormat.Llama3, ToolCallFormat.Generic,
    ];

    private static readonly JsonNode Tools = JsonNode.Parse("""
        [{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"},"n":{"type":"integer"}}}}}]
        """)!;

    public override string Name => "parser";
    public override IReadOnlyList<string> Instrumented => ["Kaiyuan.Templates"];

    public override IReadOnlyList<byte[]> Seeds(string fixtures) => Words(
        "<think>Let me see.</think>\n\nThe answer is 4.",
        "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"x\", \"n\": 1}}\n</tool_call>",
        "<tool_call>\n<function=f>\n<parameter=a>\nx\n</parameter>\n<parameter=n>\n1\n</parameter>\n</function>\n</tool_call>",
        "<think>ok</think><tool_call>f\n<arg_key>a</arg_key>\n<arg_value>x</arg_value>\n</tool_call>",
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{\"a\": \"x\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{\"a\": \"x\"}<|tool_call_end|><|tool_calls_section_end|>",
        "<minimax:tool_call>\n<invoke name=\"f\">\n<parameter name=\"a\">x</parameter>\n</invoke>\n</minimax:tool_call>",
        "{\"name\": \"f\", \"parameters\": {\"a\": \"x\"}}",
        "<|python_tag|>f.call(a=\"x\")");

    public override IReadOnlyList<byte[]> Dictionary => Words([.. Formats.SelectMany(f => f.Markers).Distinct(),
        "<think>", "</think>", "{", "}", "\"", "\":", ",", "[", "]", "\\u0000", "\\", "1e999", "null", "```", "\n"]);

    public override void Run(byte[] input)
    {
        if (input.Length == 0) return;
        var format = Formats[input[0] % Formats.Length];
        string text = Encoding.UTF8.GetString(input, 1, input.Length - 1);
        var parser = new ChatOutputParser(format, startsInReasoning: (input[0] & 0x80) != 0, (input[0] & 0x40) != 0 ? Tools : null);
        // Pieces as a tokenizer would cut them: lengths from the input's own bytes.
        for (int at = 0, k = 1; at < text.Length; k++)
        {
            int n = Math.Min(text.Length - at, 1 + input[k % input.Length] % 7);
            parser.Feed(text.Substring(at, n));
            at += n;
        }
        parser.Finish();
        _ = parser.Result;
        ChatOutputParser.ParseAll(text, format, startsInReasoning: (input[0] & 0x80) != 0);
    }
}
