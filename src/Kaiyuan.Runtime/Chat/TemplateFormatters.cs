using System.Text.Json;
using System.Text.Json.Nodes;
using Kaiyuan.Templates;
using Kaiyuan.Templates.Parsing;

namespace Kaiyuan.Chat;

/// <summary>A model's Jinja chat template (<c>tokenizer.chat_template</c> or <c>--chat-template-file</c>).</summary>
internal sealed class JinjaPromptFormatter(string source, string bosToken, string eosToken) : IPromptFormatter
{
    private readonly ChatFormatter _formatter = new(source);
    private readonly ToolCallFormat _format = OutputParserFactory.DetectFormat(source);

    public string Name => $"jinja ({_format.Name})";
    public ToolCallFormat OutputFormat => _format;
    public bool MayReason => Constraints.TriggeredConstraint.MayReason(_format, source);

    public string Format(IReadOnlyList<ChatMessage> messages, IReadOnlyList<JsonElement> tools, bool addGenerationPrompt) =>
        Format(messages, tools, addGenerationPrompt, thinking: null);

    /// <summary>Qwen3's, GLM's and DeepSeek's templates read <c>enable_thinking</c>; others never see the variable.</summary>
    public string Format(IReadOnlyList<ChatMessage> messages, IReadOnlyList<JsonElement> tools, bool addGenerationPrompt, bool? thinking)
    {
        var array = new JsonArray();
        foreach (var m in messages)
        {
            var message = new JsonObject { ["role"] = m.Role, ["content"] = m.Content };
            if (m.ToolCalls.Count > 0)
            {
                message["tool_calls"] = new JsonArray(m.ToolCalls.Select(c => (JsonNode)new JsonObject
                {
                    ["id"] = c.Id,
                    ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.Arguments },
                }).ToArray());
            }
            if (m.ToolCallId is not null) message["tool_call_id"] = m.ToolCallId;
            if (m.Name is not null) message["name"] = m.Name;
            array.Add(message);
        }
        JsonNode? toolNodes = tools.Count == 0 ? null : new JsonArray(tools.Select(t => JsonNode.Parse(t.GetRawText())).ToArray());
        try
        {
            return _formatter.Render(new ChatRenderRequest
            {
                Messages = array,
                Tools = toolNodes,
                AddGenerationPrompt = addGenerationPrompt,
                BosToken = bosToken,
                EosToken = eosToken,
                Extra = thinking is { } on && source.Contains("enable_thinking", StringComparison.Ordinal)
                    ? new Dictionary<string, JsonNode?> { ["enable_thinking"] = on }
                    : null,
            });
        }
        catch (TemplateException e)
        {
            throw RequestException.BadRequest($"the model's chat template rejected the conversation: {e.Message}", "messages", "template_error");
        }
    }

    public IChatOutputParser CreateParser(string renderedPrompt, bool toolsOffered) =>
        new TemplateOutputParser(toolsOffered ? _format : TemplateOutputParser.WithoutCalls(_format),
            ChatOutputParser.PromptOpensReasoning(renderedPrompt, _format));
}

/// <summary>The template engine's incremental output parser behind the server's interface.</summary>
internal sealed class TemplateOutputParser(ToolCallFormat format, bool startsInReasoning = false) : IChatOutputParser
{
    private readonly ChatOutputParser _parser = new(format, startsInReasoning);

    /// <summary>The family's reasoning markers without its tool-call syntax (when no tools were offered, calls are text).</summary>
    public static ToolCallFormat WithoutCalls(ToolCallFormat format) =>
        new() { Name = format.Name, ReasoningStart = format.ReasoningStart, ReasoningEnd = format.ReasoningEnd };

    public IEnumerable<ChatDelta> Push(string text) => Convert(_parser.Feed(text));

    public IEnumerable<ChatDelta> Finish() => Convert(_parser.Finish());

    private static IEnumerable<ChatDelta> Convert(IReadOnlyList<OutputDelta> deltas)
    {
        foreach (var d in deltas)
        {
            if (d.Content is { } c) yield return new ChatDelta(ChatDeltaKind.Content, c);
            else if (d.Reasoning is { } r) yield return new ChatDelta(ChatDeltaKind.Reasoning, r);
            else if (d.ToolCall is { } t) yield return new ChatDelta(ChatDeltaKind.ToolCall, t.ArgumentsDelta ?? "", t.Index, t.Id, t.Name);
        }
    }
}
