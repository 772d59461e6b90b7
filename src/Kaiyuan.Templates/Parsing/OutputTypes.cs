namespace Kaiyuan.Templates.Parsing;

/// <summary>A piece of a streamed tool call: the first delta of a call carries Id and Name, later ones argument text.</summary>
public sealed record ToolCallDelta(int Index, string? Id, string? Name, string? ArgumentsDelta);

/// <summary>One increment of parsed model output; exactly one of the members is set.</summary>
public sealed record OutputDelta(string? Content = null, string? Reasoning = null, ToolCallDelta? ToolCall = null);

/// <summary>A complete tool call; <see cref="Arguments"/> is a JSON object as a string (OpenAI style).</summary>
public sealed record ParsedToolCall(string Id, string Name, string Arguments);

/// <summary>The whole parsed output: content and reasoning are trimmed of surrounding whitespace.</summary>
public sealed record ParsedOutput(string Content, string? Reasoning, IReadOnlyList<ParsedToolCall> ToolCalls);
