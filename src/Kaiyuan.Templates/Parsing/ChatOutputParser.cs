using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.Templates.Parsing;

/// <summary>
/// Incrementally splits generated text into content, reasoning and tool calls. Feed text in any chunks;
/// text that could be the start of a marker is held back until it is known not to be one.
/// One instance parses one generation; it is not thread-safe.
/// </summary>
public sealed class ChatOutputParser
{
    private enum State { Content, Reasoning, Section, Call, BareJson, Done }

    private readonly ToolCallFormat _f;
    private readonly StringBuilder _buf = new();
    private readonly StringBuilder _content = new();
    private readonly StringBuilder _reasoning = new();
    // Whitespace trimmed from the start of the output: given back when it turns out to be the whole answer.
    private readonly StringBuilder _skipped = new();
    private readonly List<ParsedToolCall> _calls = [];
    private readonly List<OutputDelta> _pending = [];
    private State _state;
    private int _pos;
    private int _callBodyStart;
    private bool _callAnnounced;
    private bool _sawReasoning;
    private bool _trimLeading = true;
    private bool _finished;
    private int _callStartMarkerPos;
    private int _callScan;
    private string? _announcedId;
    private string? _announcedName;
    private int _argsFrom = -1;
    private int _argsEmitted;
    private readonly StringBuilder _streamedArgs = new();
    private readonly Dictionary<string, HashSet<string>>? _stringParams;

    /// <param name="format">The family's output syntax.</param>
    /// <param name="startsInReasoning">The prompt already opened a reasoning block (e.g. ends with "&lt;think&gt;\n").</param>
    /// <param name="tools">The request's OpenAI tools; lets XML-style formats keep string parameters as strings.</param>
    public ChatOutputParser(ToolCallFormat format, bool startsInReasoning = false, JsonNode? tools = null)
    {
        _f = format;
        _stringParams = StringParameters(tools);
        if (startsInReasoning && format.ReasoningEnd != null)
        {
            _state = State.Reasoning;
            _sawReasoning = true;
        }
    }

    /// <summary>The output syntax this parser reads.</summary>
    public ToolCallFormat Format => _f;

    /// <summary>Whether a rendered prompt ends inside an open reasoning block, so output starts as reasoning.</summary>
    public static bool PromptOpensReasoning(string prompt, ToolCallFormat format)
    {
        if (format.ReasoningStart is null || format.ReasoningEnd is null) return false;
        int open = prompt.LastIndexOf(format.ReasoningStart, StringComparison.Ordinal);
        return open >= 0 && prompt.IndexOf(format.ReasoningEnd, open, StringComparison.Ordinal) < 0;
    }

    /// <summary>Adds generated text; returns what can be told now.</summary>
    public IReadOnlyList<OutputDelta> Feed(string text)
    {
        if (_finished) throw new InvalidOperationException("the parser has already finished");
        _buf.Append(text);
        Process(false);
        return TakePending();
    }

    /// <summary>Ends the output: flushes held-back text and incomplete calls.</summary>
    public IReadOnlyList<OutputDelta> Finish()
    {
        if (!_finished)
        {
            Process(true);
            _finished = true;
            if (_content.Length == 0 && _calls.Count == 0 && !_sawReasoning && _skipped.Length > 0)
            {
                // No markup at all, only whitespace: that is the answer, not separation to trim.
                _content.Append(_skipped);
                _pending.Add(new OutputDelta(Content: _skipped.ToString()));
            }
        }
        return TakePending();
    }

    /// <summary>Everything parsed so far (complete after <see cref="Finish"/>).</summary>
    public ParsedOutput Result => new(
        TrimUnlessBlank(_content.ToString()),
        _sawReasoning ? _reasoning.ToString().Trim() : null,
        _calls.ToList());

    private static string TrimUnlessBlank(string s) => string.IsNullOrWhiteSpace(s) ? s : s.Trim();

    /// <summary>Parses a whole output at once.</summary>
    public static ParsedOutput ParseAll(string text, ToolCallFormat format, bool startsInReasoning = false)
    {
        var p = new ChatOutputParser(format, startsInReasoning);
        p.Feed(text);
        p.Finish();
        return p.Result;
    }

    private List<OutputDelta> TakePending()
    {
        if (_pending.Count == 0) return [];
        var r = _pending.ToList();
        _pending.Clear();
        return r;
    }

    private void EmitContent(int from, int to)
    {
        if (_trimLeading)
        {
            int start = from;
            while (from < to && char.IsWhiteSpace(_buf[from])) from++;
            if (!_sawReasoning && _calls.Count == 0 && _content.Length == 0) _skipped.Append(_buf, start, from - start);
        }
        if (from >= to) return;
        _trimLeading = false;
        string s = _buf.ToString(from, to - from);
        _content.Append(s);
        _pending.Add(new OutputDelta(Content: s));
    }

    private void EmitReasoning(int from, int to)
    {
        if (_reasoning.Length == 0)
            while (from < to && char.IsWhiteSpace(_buf[from])) from++;
        if (from >= to) return;
        string s = _buf.ToString(from, to - from);
        _reasoning.Append(s);
        _pending.Add(new OutputDelta(Reasoning: s));
    }

    private int IndexOf(string marker, int from)
    {
        // StringBuilder has no IndexOf; outputs are short enough that a direct scan is fine.
        int last = _buf.Length - marker.Length;
        for (int i = from; i <= last; i++)
        {
            int k = 0;
            while (k < marker.Length && _buf[i + k] == marker[k]) k++;
            if (k == marker.Length) return i;
        }
        return -1;
    }

    private bool StartsWithAt(int pos, string marker)
    {
        if (pos + marker.Length > _buf.Length) return false;
        for (int k = 0; k < marker.Length; k++)
            if (_buf[pos + k] != marker[k]) return false;
        return true;
    }

    /// <summary>Length of the longest tail of the buffer (from <paramref name="from"/>) that is a proper prefix of a marker.</summary>
    private int HoldBack(int from, ReadOnlySpan<string?> markers)
    {
        int best = 0;
        foreach (var m in markers)
        {
            if (m is null) continue;
            int max = Math.Min(m.Length - 1, _buf.Length - from);
            for (int len = max; len > best; len--)
            {
                int start = _buf.Length - len;
                int k = 0;
                while (k < len && _buf[start + k] == m[k]) k++;
                if (k == len)
                {
                    best = len;
                    break;
                }
            }
        }
        return best;
    }

    private bool AtOutputStart(int pos)
    {
        if (_content.Length > 0 || _calls.Count > 0) return false;
        for (int i = 0; i < pos; i++)
            if (!char.IsWhiteSpace(_buf[i])) return i >= pos;
        return true;
    }

    private void Process(bool final)
    {
        while (true)
        {
            switch (_state)
            {
                case State.Reasoning:
                    {
                        int end = IndexOf(_f.ReasoningEnd!, _pos);
                        if (end >= 0)
                        {
                            EmitReasoning(_pos, end);
                            _pos = end + _f.ReasoningEnd!.Length;
                            _state = State.Content;
                            _trimLeading = true;
                            continue;
                        }
                        int safe = final ? _buf.Length : _buf.Length - HoldBack(_pos, [_f.ReasoningEnd]);
                        EmitReasoning(_pos, safe);
                        _pos = safe;
                        return;
                    }
                case State.Content:
                    {
                        if (_f.BareJsonCalls && _content.Length == 0 && _calls.Count == 0)
                        {
                            int p = _pos;
                            while (p < _buf.Length && char.IsWhiteSpace(_buf[p])) p++;
                            if (p < _buf.Length && _buf[p] == '{')
                            {
                                _state = State.BareJson;
                                _pos = p;
                                continue;
                            }
                            if (p >= _buf.Length && !final) return;
                        }
                        bool reasoningAllowed = _f.ReasoningStart != null && !_sawReasoning && AtOutputStart(_pos);
                        string? callMarker = _f.SectionStart ?? _f.CallStart;
                        int rIdx = reasoningAllowed ? IndexOf(_f.ReasoningStart!, _pos) : -1;
                        if (rIdx >= 0 && !OnlyWhitespace(_pos, rIdx)) rIdx = -1;
                        int cIdx = callMarker != null ? IndexOf(callMarker, _pos) : -1;
                        if (rIdx >= 0 && (cIdx < 0 || rIdx < cIdx))
                        {
                            _pos = rIdx + _f.ReasoningStart!.Length;
                            _state = State.Reasoning;
                            _sawReasoning = true;
                            continue;
                        }
                        if (cIdx >= 0)
                        {
                            EmitContent(_pos, cIdx);
                            _pos = cIdx + callMarker!.Length;
                            if (_f.SectionStart != null) _state = State.Section;
                            else StartCall();
                            continue;
                        }
                        int hold = final ? 0 : HoldBack(_pos, [callMarker, reasoningAllowed ? _f.ReasoningStart : null]);
                        EmitContent(_pos, _buf.Length - hold);
                        _pos = _buf.Length - hold;
                        return;
                    }
                case State.Section:
                    {
                        while (_pos < _buf.Length && char.IsWhiteSpace(_buf[_pos])) _pos++;
                        if (StartsWithAt(_pos, _f.CallStart!))
                        {
                            _pos += _f.CallStart!.Length;
                            StartCall();
                            continue;
                        }
                        if (_f.SectionEnd != null && StartsWithAt(_pos, _f.SectionEnd))
                        {
                            _pos += _f.SectionEnd.Length;
                            _state = State.Content;
                            continue;
                        }
                        if (_pos >= _buf.Length || (!final && HoldBack(_pos, [_f.CallStart, _f.SectionEnd]) == _buf.Length - _pos))
                        {
                            if (final) _state = State.Done;
                            return;
                        }
                        // Stray text inside a call section is not content; skip to the next marker.
                        int next = IndexOf(_f.CallStart!, _pos);
                        int endIdx = _f.SectionEnd != null ? IndexOf(_f.SectionEnd, _pos) : -1;
                        int target = next < 0 ? endIdx : endIdx < 0 ? next : Math.Min(next, endIdx);
                        if (target < 0)
                        {
                            if (final) { _state = State.Done; return; }
                            _pos = _buf.Length - HoldBack(_pos, [_f.CallStart, _f.SectionEnd]);
                            return;
                        }
                        _pos = target;
                        continue;
                    }
                case State.Call:
                    {
                        int end = _f.CallEnd != null ? IndexOf(_f.CallEnd, _callScan) : -1;
                        if (end < 0 && !final)
                        {
                            // Rescan only the tail next time, so long calls stay linear.
                            if (_f.CallEnd != null) _callScan = Math.Max(_callBodyStart, _buf.Length - _f.CallEnd.Length + 1);
                            if ((!_callAnnounced || _argsFrom < 0) && _buf.Length - _callBodyStart <= 4096)
                            {
                                string partial = _buf.ToString(_callBodyStart, _buf.Length - _callBodyStart);
                                AnnounceIfNameKnown(partial);
                                if (_callAnnounced && _f.RawArgsStart?.Invoke(partial) is int rel and >= 0)
                                    _argsFrom = _argsEmitted = _callBodyStart + rel;
                            }
                            if (_argsFrom >= 0)
                                StreamArgs(_buf.Length - HoldBack(_argsEmitted, [_f.CallEnd]));
                            return;
                        }
                        int bodyEnd = end >= 0 ? end : _buf.Length;
                        string body = _buf.ToString(_callBodyStart, bodyEnd - _callBodyStart);
                        var call = _f.ParseCall(body);
                        if (_argsFrom >= 0)
                        {
                            // Arguments already went out as raw text; finish them the same way.
                            StreamArgs(bodyEnd);
                            string args = _streamedArgs.ToString();
                            _calls.Add(new ParsedToolCall(_announcedId!, call?.Name ?? _announcedName!, args));
                            _callAnnounced = false;
                        }
                        else if (call != null)
                        {
                            AddCall(call);
                        }
                        else
                        {
                            // Not a call we understand: give the text back as content rather than lose it.
                            string raw = _buf.ToString(_callStartMarkerPos, (end >= 0 ? end + _f.CallEnd!.Length : _buf.Length) - _callStartMarkerPos);
                            _content.Append(raw);
                            _pending.Add(new OutputDelta(Content: raw));
                        }
                        _pos = end >= 0 ? end + _f.CallEnd!.Length : _buf.Length;
                        _state = _f.SectionStart != null ? State.Section : State.Content;
                        _trimLeading = _content.Length == 0;
                        if (end < 0) return;
                        continue;
                    }
                case State.BareJson:
                    {
                        if (!final)
                        {
                            // Give up early when the text clearly is not {"name": ...} so content streams.
                            string head = _buf.ToString(_pos, Math.Min(_buf.Length - _pos, 64));
                            string compact = new string(head.Where(c => !char.IsWhiteSpace(c)).ToArray());
                            const string Expect = "{\"name\"";
                            const string Alt = "{\"type\"";
                            int n = Math.Min(compact.Length, Expect.Length);
                            if (compact[..n] == Expect[..n] || compact[..Math.Min(compact.Length, Alt.Length)] == Alt[..Math.Min(compact.Length, Alt.Length)])
                                return;
                            _state = State.Content;
                            _trimLeading = false;
                            EmitContent(_pos, _buf.Length);
                            _pos = _buf.Length;
                            return;
                        }
                        string text = _buf.ToString(_pos, _buf.Length - _pos);
                        var calls = ParseBareJsonCalls(text);
                        if (calls != null) foreach (var c in calls) AddCall(c);
                        else EmitContent(_pos, _buf.Length);
                        _pos = _buf.Length;
                        _state = State.Done;
                        return;
                    }
                default:
                    return;
            }
        }
    }

    private bool OnlyWhitespace(int from, int to)
    {
        for (int i = from; i < to; i++)
            if (!char.IsWhiteSpace(_buf[i])) return false;
        return true;
    }

    private void StreamArgs(int upTo)
    {
        int from = _argsEmitted;
        if (_streamedArgs.Length == 0)
            while (from < upTo && char.IsWhiteSpace(_buf[from])) from++;
        if (from < upTo)
        {
            string piece = _buf.ToString(from, upTo - from);
            _streamedArgs.Append(piece);
            _pending.Add(new OutputDelta(ToolCall: new ToolCallDelta(_calls.Count, null, null, piece)));
        }
        _argsEmitted = Math.Max(_argsEmitted, upTo);
    }

    private void StartCall()
    {
        _callStartMarkerPos = _pos - _f.CallStart!.Length;
        _callBodyStart = _pos;
        _callScan = _pos;
        _callAnnounced = false;
        _argsFrom = -1;
        _streamedArgs.Clear();
        _state = State.Call;
    }

    private void AnnounceIfNameKnown(string partialBody)
    {
        if (_callAnnounced) return;
        var peek = _f.PeekName(partialBody);
        if (peek is not { } p) return;
        _callAnnounced = true;
        _announcedId = p.Id ?? NewId();
        _announcedName = p.Name;
        _pending.Add(new OutputDelta(ToolCall: new ToolCallDelta(_calls.Count, _announcedId, p.Name, null)));
    }

    private void AddCall(ToolCallFormat.ParsedCall call)
    {
        if (_f.TextArguments && _stringParams != null && _stringParams.TryGetValue(call.Name, out var names))
            call = call with { Arguments = RestoreStrings(call.Arguments, names) };
        int index = _calls.Count;
        string id;
        if (_callAnnounced)
        {
            id = _announcedId!;
        }
        else
        {
            id = call.Id ?? NewId();
            _pending.Add(new OutputDelta(ToolCall: new ToolCallDelta(index, id, call.Name, null)));
        }
        _pending.Add(new OutputDelta(ToolCall: new ToolCallDelta(index, null, null, call.Arguments)));
        _calls.Add(new ParsedToolCall(id, call.Name, call.Arguments));
        _callAnnounced = false;
    }

    /// <summary>Per function, the parameters whose schema type is "string".</summary>
    private static Dictionary<string, HashSet<string>>? StringParameters(JsonNode? tools)
    {
        if (tools is not JsonArray arr) return null;
        var map = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var t in arr)
        {
            var fn = t?["function"] ?? t;
            if (fn?["name"] is not JsonValue nv || nv.GetValueKind() != JsonValueKind.String) continue;
            var set = new HashSet<string>(StringComparer.Ordinal);
            if (fn["parameters"]?["properties"] is JsonObject props)
                foreach (var (k, v) in props)
                    if (v?["type"] is JsonValue tv && tv.GetValueKind() == JsonValueKind.String && tv.GetValue<string>() == "string")
                        set.Add(k);
            map[nv.GetValue<string>()] = set;
        }
        return map;
    }

    /// <summary>Text-valued formats cannot tell "30" from 30; the schema can.</summary>
    private static string RestoreStrings(string arguments, HashSet<string> stringNames)
    {
        if (stringNames.Count == 0 || JsonNode.Parse(arguments) is not JsonObject o) return arguments;
        bool changed = false;
        foreach (var name in stringNames)
        {
            if (o[name] is { } v && v.GetValueKind() != JsonValueKind.String)
            {
                o[name] = JsonValue.Create(v.ToJsonString(ToolCallFormat.JsonOut));
                changed = true;
            }
        }
        return changed ? o.ToJsonString(ToolCallFormat.JsonOut) : arguments;
    }

    private static string NewId() => "call_" + Guid.NewGuid().ToString("N")[..24];

    private static List<ToolCallFormat.ParsedCall>? ParseBareJsonCalls(string text)
    {
        // Llama may emit several calls separated by ';'.
        var one = ToolCallFormat.ParseBareJson(text);
        if (one != null) return [one];
        var parts = text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (parts.Length < 2) return null;
        var res = new List<ToolCallFormat.ParsedCall>();
        foreach (var p in parts)
        {
            var c = ToolCallFormat.ParseBareJson(p);
            if (c is null) return null;
            res.Add(c);
        }
        return res;
    }
}
