using System.Text.Json;

namespace Kaiyuan.Chat;

/// <summary>A tool call made by the assistant: arguments are a JSON object as text.</summary>
internal sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>One chat message, OpenAI-style.</summary>
internal sealed record ChatMessage(string Role, string? Content)
{
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];
    public string? ToolCallId { get; init; }
    public string? Name { get; init; }
}

/// <summary>Renders a conversation (and the tools on offer) into the prompt text the model was trained on.</summary>
internal interface IPromptFormatter
{
    string Name { get; }
    string Format(IReadOnlyList<ChatMessage> messages, IReadOnlyList<JsonElement> tools, bool addGenerationPrompt);

    /// <summary>Renders with the template's reasoning switch (<c>enable_thinking</c>) set, where it has one; null, or a
    /// template without one, renders as <see cref="Format(IReadOnlyList{ChatMessage}, IReadOnlyList{JsonElement}, bool)"/>.</summary>
    string Format(IReadOnlyList<ChatMessage> messages, IReadOnlyList<JsonElement> tools, bool addGenerationPrompt, bool? thinking) =>
        Format(messages, tools, addGenerationPrompt);
    /// <summary>A parser for the output of a prompt this formatter rendered.</summary>
    IChatOutputParser CreateParser(string renderedPrompt, bool toolsOffered);

    /// <summary>The output syntax the model was trained on (tool calls, reasoning markers); null when unknown, and then
    /// calls cannot be forced.</summary>
    Templates.Parsing.ToolCallFormat? OutputFormat => null;

    /// <summary>The template knows a reasoning block, so the model may open one of its own at the start of its answer.</summary>
    bool MayReason => false;
}

/// <summary>What a piece of model output turned out to be.</summary>
internal enum ChatDeltaKind { Content, Reasoning, ToolCall }

/// <summary>
/// A piece of parsed output. Tool calls stream as deltas of the call at <see cref="Index"/>: the first carries its
/// <see cref="Id"/> and <see cref="Name"/>, later ones more <see cref="Text"/> of its JSON arguments.
/// </summary>
internal sealed record ChatDelta(ChatDeltaKind Kind, string Text, int Index = 0, string? Id = null, string? Name = null);

/// <summary>Splits streamed model output into content, reasoning and tool calls as it arrives.</summary>
internal interface IChatOutputParser
{
    IEnumerable<ChatDelta> Push(string text);
    IEnumerable<ChatDelta> Finish();
}

/// <summary>Collects streamed tool-call deltas into whole calls, in index order.</summary>
internal sealed class ToolCallAccumulator
{
    private readonly SortedDictionary<int, (string? Id, string? Name, System.Text.StringBuilder Arguments)> _calls = [];

    public int Count => _calls.Count;

    public void Add(ChatDelta delta)
    {
        if (!_calls.TryGetValue(delta.Index, out var call)) _calls[delta.Index] = call = (null, null, new System.Text.StringBuilder());
        _calls[delta.Index] = (call.Id ?? delta.Id, call.Name ?? delta.Name, call.Arguments.Append(delta.Text));
    }

    public List<ToolCall> Calls => _calls.Select(p => new ToolCall(p.Value.Id ?? $"call_{p.Key}", p.Value.Name ?? "",
        p.Value.Arguments.Length == 0 ? "{}" : p.Value.Arguments.ToString())).ToList();
}
