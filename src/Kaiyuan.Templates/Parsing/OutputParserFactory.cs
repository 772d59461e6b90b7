using System.Text.Json.Nodes;

namespace Kaiyuan.Templates.Parsing;

/// <summary>Picks the output syntax of a model from markers in its chat template.</summary>
public static class OutputParserFactory
{
    /// <summary>The family's format, detected from the template source (Generic when nothing is recognized).</summary>
    public static ToolCallFormat DetectFormat(string templateSource)
    {
        bool Has(string s) => templateSource.Contains(s, StringComparison.Ordinal);
        if (Has("<minimax:tool_call>")) return ToolCallFormat.MiniMaxM2;
        if (Has("<|tool_calls_section_begin|>") || Has("<|tool_call_begin|>")) return ToolCallFormat.KimiK2;
        if (Has("<｜tool▁calls▁begin｜>") || Has("<｜tool▁call▁begin｜>")) return ToolCallFormat.DeepSeek;
        if (Has("<arg_key>")) return ToolCallFormat.Glm45;
        if (Has("<function=") && Has("<parameter=")) return ToolCallFormat.Qwen3Coder;
        if (Has("<tool_call>")) return ToolCallFormat.Hermes;
        if (Has("<|python_tag|>") || (Has("<|start_header_id|>") && Has("\"parameters\""))) return ToolCallFormat.Llama3;
        return ToolCallFormat.Generic;
    }

    /// <summary>
    /// A parser for one generation. Pass the rendered prompt when known: if it ends inside an open
    /// reasoning block (e.g. "&lt;think&gt;\n"), the output is parsed as starting in reasoning.
    /// </summary>
    /// <param name="templateSource">The chat template the prompt was rendered with.</param>
    /// <param name="renderedPrompt">The prompt, to see whether it leaves a reasoning block open.</param>
    /// <param name="tools">The request's tools, so text-valued parameters keep their declared string type.</param>
    public static ChatOutputParser ForTemplate(string templateSource, string? renderedPrompt = null, JsonNode? tools = null)
    {
        var format = DetectFormat(templateSource);
        bool inReasoning = renderedPrompt != null && ChatOutputParser.PromptOpensReasoning(renderedPrompt, format);
        return new ChatOutputParser(format, inReasoning, tools);
    }
}
