using System.Text;
using System.Text.Json;
using Kaiyuan.Templates.Parsing;

namespace Kaiyuan.Chat;

/// <summary>
/// ChatML (<c>&lt;|im_start|&gt;role\n…&lt;|im_end|&gt;</c>), the fallback llama-server also uses for models without a
/// template. Tools are offered in the system message and called with <c>&lt;tool_call&gt;{json}&lt;/tool_call&gt;</c>,
/// the Hermes/Qwen convention; tool results come back as <c>&lt;tool_response&gt;</c> blocks.
/// </summary>
internal sealed class ChatMlFormatter : IPromptFormatter
{
    public string Name => "chatml";
    public ToolCallFormat OutputFormat => ToolCallFormat.Hermes;

    public IChatOutputParser CreateParser(string renderedPrompt, bool toolsOffered) =>
        new TemplateOutputParser(toolsOffered ? ToolCallFormat.Hermes : TemplateOutputParser.WithoutCalls(ToolCallFormat.Hermes));

    public string Format(IReadOnlyList<ChatMessage> messages, IReadOnlyList<JsonElement> tools, bool addGenerationPrompt)
    {
        var sb = new StringBuilder();
        int first = 0;
        string? system = messages.Count > 0 && messages[0].Role is "system" or "developer" ? messages[0].Content : null;
        if (system is not null) first = 1;
        if (tools.Count > 0)
        {
            sb.Append("<|im_start|>system\n");
            if (!string.IsNullOrEmpty(system)) sb.Append(system).Append("\n\n");
            sb.Append("# Tools\n\nYou may call one or more functions to assist with the user query.\n\n");
            sb.Append("You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
            foreach (var tool in tools) sb.Append('\n').Append(JsonSerializer.Serialize(tool));
            sb.Append("\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n");
            sb.Append("<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n");
        }
        else if (system is not null)
        {
            sb.Append("<|im_start|>system\n").Append(system).Append("<|im_end|>\n");
        }
        for (int i = first; i < messages.Count; i++)
        {
            var m = messages[i];
            if (m.Role == "tool")
            {
                bool openTurn = i == first || messages[i - 1].Role != "tool";
                if (openTurn) sb.Append("<|im_start|>user");
                sb.Append("\n<tool_response>\n").Append(m.Content).Append("\n</tool_response>");
                bool closeTurn = i + 1 == messages.Count || messages[i + 1].Role != "tool";
                if (closeTurn) sb.Append("<|im_end|>\n");
                continue;
            }
            sb.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content);
            foreach (var call in m.ToolCalls)
            {
                if (sb[^1] != '\n') sb.Append('\n');
                sb.Append("<tool_call>\n{\"name\": ").Append(JsonSerializer.Serialize(call.Name)).Append(", \"arguments\": ")
                  .Append(string.IsNullOrWhiteSpace(call.Arguments) ? "{}" : call.Arguments).Append("}\n</tool_call>");
            }
            sb.Append("<|im_end|>\n");
        }
        if (addGenerationPrompt) sb.Append("<|im_start|>assistant\n");
        return sb.ToString();
    }
}
