using System.Text;
using System.Text.Json;

namespace Kaiyuan.Server.Chat;

/// <summary>
/// Incremental parser for the tag conventions most open models use: <c>&lt;think&gt;…&lt;/think&gt;</c> is reasoning and
/// each <c>&lt;tool_call&gt;{"name":…,"arguments":{…}}&lt;/tool_call&gt;</c> a tool call (when tools were offered).
/// Text that may be the start of a tag is held back until it is decided.
/// </summary>
public sealed class TaggedOutputParser(bool parseToolCalls) : IChatOutputParser
{
    private const string ThinkOpen = "<think>", ThinkClose = "</think>", CallOpen = "<tool_call>", CallClose = "</tool_call>";
    private readonly StringBuilder _pending = new();
    private readonly StringBuilder _call = new();
    private State _state = State.Content;
    private int _calls;
    private bool _skipNewlines;

    private enum State { Content, Reasoning, ToolCall }

    public IEnumerable<ChatDelta> Push(string text)
    {
        _pending.Append(text);
        var output = new List<ChatDelta>();
        Drain(output, final: false);
        return output;
    }

    public IEnumerable<ChatDelta> Finish()
    {
        var output = new List<ChatDelta>();
        Drain(output, final: true);
        if (_state == State.ToolCall)
        {
            // An unterminated call: complete it if its JSON is whole, else give the text back as content.
            if (TryParseCall(_call.ToString(), out var call)) output.Add(new ChatDelta(ChatDeltaKind.ToolCall, "", call));
            else output.Add(new ChatDelta(ChatDeltaKind.Content, CallOpen + _call));
            _call.Clear();
        }
        return output;
    }

    private void Drain(List<ChatDelta> output, bool final)
    {
        while (_pending.Length > 0)
        {
            if (_skipNewlines)
            {
                // The blank lines after a closing tag are layout, not content.
                while (_pending.Length > 0 && _pending[0] is '\n' or '\r') _pending.Remove(0, 1);
                if (_pending.Length == 0) return;
                _skipNewlines = false;
            }
            string text = _pending.ToString();
            string[] tags = _state switch
            {
                State.Content => parseToolCalls ? [ThinkOpen, CallOpen] : [ThinkOpen],
                State.Reasoning => [ThinkClose],
                _ => [CallClose],
            };
            int at = -1;
            string? tag = null;
            foreach (var t in tags)
            {
                int i = text.IndexOf(t, StringComparison.Ordinal);
                if (i >= 0 && (at < 0 || i < at)) (at, tag) = (i, t);
            }
            if (tag is null)
            {
                int keep = final ? 0 : tags.Max(t => PartialSuffix(text, t));
                Emit(output, text[..^keep]);
                _pending.Remove(0, text.Length - keep);
                return;
            }
            Emit(output, text[..at]);
            _pending.Remove(0, at + tag.Length);
            switch (tag)
            {
                case ThinkOpen: _state = State.Reasoning; break;
                case ThinkClose: _state = State.Content; TrimLeadingNewlines(); break;
                case CallOpen: _state = State.ToolCall; break;
                case CallClose:
                    _state = State.Content;
                    string body = _call.ToString();
                    _call.Clear();
                    if (TryParseCall(body, out var call)) output.Add(new ChatDelta(ChatDeltaKind.ToolCall, "", call));
                    else output.Add(new ChatDelta(ChatDeltaKind.Content, CallOpen + body + CallClose));
                    TrimLeadingNewlines();
                    break;
            }
        }
    }

    private void TrimLeadingNewlines() => _skipNewlines = true;

    private void Emit(List<ChatDelta> output, string text)
    {
        if (text.Length == 0) return;
        switch (_state)
        {
            case State.Content: output.Add(new ChatDelta(ChatDeltaKind.Content, text)); break;
            case State.Reasoning: output.Add(new ChatDelta(ChatDeltaKind.Reasoning, text)); break;
            default: _call.Append(text); break;
        }
    }

    /// <summary>The length of the longest suffix of text that is a proper prefix of tag.</summary>
    private static int PartialSuffix(string text, string tag)
    {
        for (int n = Math.Min(tag.Length - 1, text.Length); n > 0; n--)
            if (string.CompareOrdinal(text, text.Length - n, tag, 0, n) == 0) return n;
        return 0;
    }

    private bool TryParseCall(string body, out ToolCall call)
    {
        call = null!;
        try
        {
            using var doc = JsonDocument.Parse(body.Trim());
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String) return false;
            string arguments = root.TryGetProperty("arguments", out var args)
                ? args.ValueKind == JsonValueKind.String ? args.GetString()! : args.GetRawText()
                : "{}";
            call = new ToolCall($"call_{_calls++}_{Guid.NewGuid():N}"[..24], name.GetString()!, arguments);
            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
