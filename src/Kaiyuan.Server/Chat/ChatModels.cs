using System.Text.Json;

namespace Kaiyuan.Server.Chat;

/// <summary>A tool call made by the assistant: arguments are a JSON object as text.</summary>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>One chat message, OpenAI-style.</summary>
public sealed record ChatMessage(string Role, string? Content)
{
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];
    public string? ToolCallId { get; init; }
    public string? Name { get; init; }
    public string? ReasoningContent { get; init; }
}

/// <summary>Renders a conversation (and the tools on offer) into the prompt text the model was trained on.</summary>
public interface IPromptFormatter
{
    string Name { get; }
    string Format(IReadOnlyList<ChatMessage> messages, IReadOnlyList<JsonElement> tools, bool addGenerationPrompt);
}

/// <summary>What a piece of model output turned out to be.</summary>
public enum ChatDeltaKind { Content, Reasoning, ToolCall }

public sealed record ChatDelta(ChatDeltaKind Kind, string Text, ToolCall? Call = null);

/// <summary>Splits streamed model output into content, reasoning and tool calls as it arrives.</summary>
public interface IChatOutputParser
{
    IEnumerable<ChatDelta> Push(string text);
    IEnumerable<ChatDelta> Finish();
}
