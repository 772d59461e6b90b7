using System.Text.Json;

namespace Kaiyuan.Chat;

/// <summary>A tool call made by the assistant.</summary>
/// <param name="Id">The call's id, which the tool's answer refers to.</param>
/// <param name="Name">The function called.</param>
/// <param name="Arguments">Its arguments, a JSON object as text.</param>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>One chat message, OpenAI-style.</summary>
/// <param name="Role"><c>system</c>, <c>user</c>, <c>assistant</c> or <c>tool</c> (a template may know others).</param>
/// <param name="Content">Its text; null for an assistant turn that only calls tools.</param>
public sealed record ChatMessage(string Role, string? Content)
{
    /// <summary>The calls an assistant message made.</summary>
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];
    /// <summary>For a tool message: the call it answers.</summary>
    public string? ToolCallId { get; init; }
    /// <summary>For a tool message: the function that answered (some templates show it).</summary>
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
public enum ChatDeltaKind
{
    /// <summary>Text of the answer.</summary>
    Content,
    /// <summary>Text of the model's reasoning (its thinking block).</summary>
    Reasoning,
    /// <summary>Part of a tool call.</summary>
    ToolCall,
}

/// <summary>
/// A piece of parsed output. Tool calls stream as deltas of the call at <see cref="Index"/>: the first carries its
/// <see cref="Id"/> and <see cref="Name"/>, later ones more <see cref="Text"/> of its JSON arguments.
/// </summary>
/// <param name="Kind">What the text is.</param>
/// <param name="Text">The text (for a tool call, more of its JSON arguments).</param>
/// <param name="Index">For a tool call: which call of the answer, from 0.</param>
/// <param name="Id">For a tool call's first delta: its id.</param>
/// <param name="Name">For a tool call's first delta: the function called.</param>
public sealed record ChatDelta(ChatDeltaKind Kind, string Text, int Index = 0, string? Id = null, string? Name = null);

/// <summary>Splits streamed model output into content, reasoning and tool calls as it arrives.</summary>
public interface IChatOutputParser
{
    /// <summary>Reads more output; returns what it now knows to be content, reasoning or call text (it may hold back
    /// text that could still be the start of a marker).</summary>
    IEnumerable<ChatDelta> Push(string text);

    /// <summary>The output has ended: returns what was held back.</summary>
    IEnumerable<ChatDelta> Finish();
}

/// <summary>Collects streamed tool-call deltas into whole calls, in index order.</summary>
public sealed class ToolCallAccumulator
{
    private readonly SortedDictionary<int, (string? Id, string? Name, System.Text.StringBuilder Arguments)> _calls = [];

    /// <summary>The calls begun so far.</summary>
    public int Count => _calls.Count;

    /// <summary>Adds a <see cref="ChatDeltaKind.ToolCall"/> delta to its call.</summary>
    public void Add(ChatDelta delta)
    {
        if (!_calls.TryGetValue(delta.Index, out var call)) _calls[delta.Index] = call = (null, null, new System.Text.StringBuilder());
        _calls[delta.Index] = (call.Id ?? delta.Id, call.Name ?? delta.Name, call.Arguments.Append(delta.Text));
    }

    /// <summary>The calls, in index order (a call without an id gets <c>call_{index}</c>; without arguments, <c>{}</c>).</summary>
    public List<ToolCall> Calls => _calls.Select(p => new ToolCall(p.Value.Id ?? $"call_{p.Key}", p.Value.Name ?? "",
        p.Value.Arguments.Length == 0 ? "{}" : p.Value.Arguments.ToString())).ToList();
}
