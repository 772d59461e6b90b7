using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Kaiyuan.Templates.Parsing;

/// <summary>The markers and call syntax of one model family's output.</summary>
public sealed partial class ToolCallFormat
{
    /// <summary>Name of the family, for logs.</summary>
    public required string Name { get; init; }

    /// <summary>Marker opening a reasoning block, recognized only at the start of the output; null when the family has none.</summary>
    public string? ReasoningStart { get; init; } = "<think>";
    /// <summary>Marker closing a reasoning block; null when the family has none.</summary>
    public string? ReasoningEnd { get; init; } = "</think>";

    /// <summary>Marker opening a block of calls (calls are only recognized inside it); null when calls stand alone.</summary>
    public string? SectionStart { get; init; }
    /// <summary>Marker closing a block of calls, after which text is content again; null when the block runs to the end of the output.</summary>
    public string? SectionEnd { get; init; }

    /// <summary>Marker opening one call; null when the family has no marked calls.</summary>
    public string? CallStart { get; init; }

    /// <summary>Marker closing one call; null means the call runs to the end of the output.</summary>
    public string? CallEnd { get; init; }

    /// <summary>Parses a call body (text between CallStart and CallEnd).</summary>
    internal Func<string, ParsedCall?> ParseCall { get; init; } = _ => null;

    /// <summary>Finds the function name in an incomplete call body, so the call's start can be streamed early.</summary>
    internal Func<string, (string Name, string? Id)?> PeekName { get; init; } = _ => null;

    /// <summary>
    /// Where raw JSON arguments begin in an incomplete call body (-1 when not yet known or not raw JSON),
    /// so they can be streamed as they are generated.
    /// </summary>
    internal Func<string, int>? RawArgsStart { get; init; }

    /// <summary>Markers inside a call besides its start and end (DeepSeek's name/arguments separator).</summary>
    public IReadOnlyList<string> Separators { get; init; } = [];

    /// <summary>Every marker of the syntax: where a vocabulary makes one a control token, the output must still show
    /// it (llama.cpp's "preserved tokens"), or neither the parser nor a client could see the call.</summary>
    public IEnumerable<string> Markers =>
        new[] { ReasoningStart, ReasoningEnd, SectionStart, SectionEnd, CallStart, CallEnd }.OfType<string>().Concat(Separators);

    /// <summary>Arguments are written as text (XML-style), so a value's JSON type is guessed unless the tool schema says.</summary>
    public bool TextArguments { get; init; }

    /// <summary>Output that is a bare JSON object {"name": ..., "parameters": ...} is a call (Llama 3.x).</summary>
    public bool BareJsonCalls { get; init; }

    internal sealed record ParsedCall(string Name, string Arguments, string? Id = null);

    internal static readonly JsonSerializerOptions JsonOut = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Normalizes argument JSON; null when it is not a JSON object.</summary>
    internal static string? NormalizeArgs(string json)
    {
        try
        {
            var node = JsonNode.Parse(json);
            return node is JsonObject o ? o.ToJsonString(JsonOut) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>An XML-ish parameter value: JSON when it parses as a non-string JSON value, else the raw text.</summary>
    internal static JsonNode? ParamValue(string raw)
    {
        string t = raw.Trim();
        if (t.Length > 0 && (t[0] is '{' or '[' or '-' or 't' or 'f' or 'n' || char.IsAsciiDigit(t[0])))
        {
            try
            {
                var node = JsonNode.Parse(t);
                if (node is not JsonValue v || v.GetValueKind() != JsonValueKind.String) return node;
            }
            catch (JsonException)
            {
            }
        }
        return JsonValue.Create(raw);
    }

    private static string? JsonNameOf(string body)
    {
        var m = JsonName().Match(body);
        return m.Success ? UnescapeQuoted(m.Groups[1].Value) : null;
    }

    /// <summary>
    /// The text of a quoted string a model wrote, JSON or Python style. Models write invalid escapes (<c>\x</c>,
    /// a lone <c>\u12</c>); those are kept as written rather than rejected, since the call is still meant.
    /// </summary>
    internal static string UnescapeQuoted(string quoted)
    {
        int slash = quoted.IndexOf('\\');
        if (slash < 0) return quoted;
        var sb = new System.Text.StringBuilder(quoted.Length);
        sb.Append(quoted, 0, slash);
        for (int i = slash; i < quoted.Length; i++)
        {
            char c = quoted[i];
            if (c != '\\' || i + 1 == quoted.Length)
            {
                sb.Append(c);
                continue;
            }
            char e = quoted[++i];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case '"' or '\'' or '\\' or '/': sb.Append(e); break;
                case 'u' when i + 4 < quoted.Length && ushort.TryParse(quoted.AsSpan(i + 1, 4), System.Globalization.NumberStyles.AllowHexSpecifier, null, out ushort code):
                    sb.Append((char)code);
                    i += 4;
                    break;
                default: sb.Append('\\').Append(e); break;
            }
        }
        return sb.ToString();
    }

    [GeneratedRegex("\"name\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"")]
    private static partial Regex JsonName();

    /// <summary>{"name": ..., "arguments"|"parameters": {...}}.</summary>
    private static ParsedCall? ParseJsonCall(string body)
    {
        try
        {
            if (JsonNode.Parse(body.Trim()) is not JsonObject o) return null;
            if (o["name"] is not JsonValue nv || nv.GetValueKind() != JsonValueKind.String) return null;
            var args = o["arguments"] ?? o["parameters"];
            string argText = args switch
            {
                null => "{}",
                JsonValue s when s.GetValueKind() == JsonValueKind.String => NormalizeArgs(s.GetValue<string>()) ?? s.GetValue<string>(),
                _ => args.ToJsonString(JsonOut),
            };
            return new ParsedCall(nv.GetValue<string>(), argText, o["id"] is JsonValue idv && idv.GetValueKind() == JsonValueKind.String ? idv.GetValue<string>() : null);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>Qwen2.5, Qwen3, QwQ and Hermes: &lt;tool_call&gt;{json}&lt;/tool_call&gt;.</summary>
    public static readonly ToolCallFormat Hermes = new()
    {
        Name = "hermes",
        CallStart = "<tool_call>",
        CallEnd = "</tool_call>",
        ParseCall = ParseJsonCall,
        PeekName = body => JsonNameOf(body) is { } n ? (n, null) : null,
    };

    /// <summary>Qwen3-Coder: &lt;tool_call&gt;&lt;function=name&gt;&lt;parameter=p&gt;v&lt;/parameter&gt;&lt;/function&gt;&lt;/tool_call&gt;.</summary>
    public static readonly ToolCallFormat Qwen3Coder = new()
    {
        Name = "qwen3-coder",
        TextArguments = true,
        CallStart = "<tool_call>",
        CallEnd = "</tool_call>",
        PeekName = body => CoderFunction().Match(body) is { Success: true } m ? (m.Groups[1].Value.Trim(), null) : null,
        ParseCall = body =>
        {
            var fm = CoderFunction().Match(body);
            if (!fm.Success) return null;
            var args = new JsonObject();
            foreach (Match pm in CoderParameter().Matches(body))
                args[pm.Groups[1].Value.Trim()] = ParamValue(TrimOneNewline(pm.Groups[2].Value));
            return new ParsedCall(fm.Groups[1].Value.Trim(), args.ToJsonString(JsonOut));
        },
    };

    [GeneratedRegex("<function=([^>\\n]+)>")]
    private static partial Regex CoderFunction();

    [GeneratedRegex("<parameter=([^>\\n]+)>(.*?)</parameter>", RegexOptions.Singleline)]
    private static partial Regex CoderParameter();

    private static string TrimOneNewline(string s)
    {
        if (s.StartsWith('\n')) s = s[1..];
        if (s.EndsWith('\n')) s = s[..^1];
        return s;
    }

    /// <summary>GLM-4.5/4.6: &lt;tool_call&gt;name&lt;arg_key&gt;k&lt;/arg_key&gt;&lt;arg_value&gt;v&lt;/arg_value&gt;&lt;/tool_call&gt;.</summary>
    public static readonly ToolCallFormat Glm45 = new()
    {
        Name = "glm-4.5",
        TextArguments = true,
        CallStart = "<tool_call>",
        CallEnd = "</tool_call>",
        PeekName = body =>
        {
            int end = body.IndexOfAny(['\n', '<']);
            return end > 0 && body[..end].Trim().Length > 0 ? (body[..end].Trim(), null) : null;
        },
        ParseCall = body =>
        {
            int end = body.IndexOf("<arg_key>", StringComparison.Ordinal);
            string name = (end < 0 ? body : body[..end]).Trim();
            if (name.Length == 0) return null;
            var args = new JsonObject();
            foreach (Match m in GlmArg().Matches(body))
                args[m.Groups[1].Value.Trim()] = ParamValue(m.Groups[2].Value);
            return new ParsedCall(name, args.ToJsonString(JsonOut));
        },
    };

    [GeneratedRegex("<arg_key>(.*?)</arg_key>\\s*<arg_value>(.*?)</arg_value>", RegexOptions.Singleline)]
    private static partial Regex GlmArg();

    /// <summary>DeepSeek V3.x (name&lt;｜tool▁sep｜&gt;{json}) and R1 (function&lt;｜tool▁sep｜&gt;name\n```json\n{json}\n```).</summary>
    public static readonly ToolCallFormat DeepSeek = new()
    {
        Name = "deepseek",
        RawArgsStart = body =>
        {
            int sep = body.IndexOf("<｜tool▁sep｜>", StringComparison.Ordinal);
            // R1 wraps its arguments in a ```json fence after the name; only V3's bare JSON streams raw.
            return sep < 0 || body[..sep].Trim() == "function" ? -1 : sep + "<｜tool▁sep｜>".Length;
        },
        SectionStart = "<｜tool▁calls▁begin｜>",
        Separators = ["<｜tool▁sep｜>"],
        SectionEnd = "<｜tool▁calls▁end｜>",
        CallStart = "<｜tool▁call▁begin｜>",
        CallEnd = "<｜tool▁call▁end｜>",
        PeekName = body =>
        {
            int sep = body.IndexOf("<｜tool▁sep｜>", StringComparison.Ordinal);
            if (sep < 0) return null;
            string head = body[..sep].Trim();
            if (head != "function") return (head, null);
            string rest = body[(sep + "<｜tool▁sep｜>".Length)..];
            int nl = rest.IndexOf('\n');
            return nl > 0 ? (rest[..nl].Trim(), null) : null;
        },
        ParseCall = body =>
        {
            const string Sep = "<｜tool▁sep｜>";
            int sep = body.IndexOf(Sep, StringComparison.Ordinal);
            if (sep < 0) return null;
            string head = body[..sep].Trim(), rest = body[(sep + Sep.Length)..];
            if (head == "function" && rest.IndexOf('\n') is var nl and > 0)
            {
                string name = rest[..nl].Trim();
                string json = rest[(nl + 1)..].Trim();
                if (json.StartsWith("```json", StringComparison.Ordinal)) json = json[7..];
                else if (json.StartsWith("```", StringComparison.Ordinal)) json = json[3..];
                if (json.EndsWith("```", StringComparison.Ordinal)) json = json[..^3];
                return NormalizeArgs(json) is { } a ? new ParsedCall(name, a) : null;
            }
            return NormalizeArgs(rest) is { } args ? new ParsedCall(head, args) : null;
        },
    };

    /// <summary>Kimi K2: &lt;|tool_call_begin|&gt;functions.name:0&lt;|tool_call_argument_begin|&gt;{json}&lt;|tool_call_end|&gt;.</summary>
    public static readonly ToolCallFormat KimiK2 = new()
    {
        Name = "kimi-k2",
        RawArgsStart = body => body.IndexOf("<|tool_call_argument_begin|>", StringComparison.Ordinal) is var i and >= 0 ? i + "<|tool_call_argument_begin|>".Length : -1,
        SectionStart = "<|tool_calls_section_begin|>",
        Separators = ["<|tool_call_argument_begin|>"],
        SectionEnd = "<|tool_calls_section_end|>",
        CallStart = "<|tool_call_begin|>",
        CallEnd = "<|tool_call_end|>",
        PeekName = body =>
        {
            int sep = body.IndexOf("<|tool_call_argument_begin|>", StringComparison.Ordinal);
            return sep < 0 ? null : (KimiName(body[..sep].Trim()), body[..sep].Trim());
        },
        ParseCall = body =>
        {
            const string Sep = "<|tool_call_argument_begin|>";
            int sep = body.IndexOf(Sep, StringComparison.Ordinal);
            if (sep < 0) return null;
            string id = body[..sep].Trim();
            return NormalizeArgs(body[(sep + Sep.Length)..]) is { } args ? new ParsedCall(KimiName(id), args, id) : null;
        },
    };

    /// <summary>"functions.get_weather:0" → "get_weather".</summary>
    private static string KimiName(string id)
    {
        int colon = id.LastIndexOf(':');
        string s = colon >= 0 ? id[..colon] : id;
        return s.StartsWith("functions.", StringComparison.Ordinal) ? s["functions.".Length..] : s;
    }

    /// <summary>MiniMax-M2: &lt;minimax:tool_call&gt;&lt;invoke name="f"&gt;&lt;parameter name="p"&gt;v&lt;/parameter&gt;&lt;/invoke&gt;&lt;/minimax:tool_call&gt;.</summary>
    public static readonly ToolCallFormat MiniMaxM2 = new()
    {
        Name = "minimax-m2",
        TextArguments = true,
        SectionStart = "<minimax:tool_call>",
        SectionEnd = "</minimax:tool_call>",
        CallStart = "<invoke name=",
        CallEnd = "</invoke>",
        PeekName = body => body.IndexOf('>') is var gt and > 0 ? (Unquote(body[..gt]), null) : null,
        ParseCall = body =>
        {
            int gt = body.IndexOf('>');
            if (gt <= 0) return null;
            var args = new JsonObject();
            foreach (Match m in MiniMaxParam().Matches(body[(gt + 1)..]))
                args[m.Groups[1].Value] = ParamValue(TrimOneNewline(m.Groups[2].Value));
            return new ParsedCall(Unquote(body[..gt]), args.ToJsonString(JsonOut));
        },
    };

    private static string Unquote(string s) => s.Trim().Trim('"');

    [GeneratedRegex("<parameter name=\"([^\"]*)\">(.*?)</parameter>", RegexOptions.Singleline)]
    private static partial Regex MiniMaxParam();

    /// <summary>Llama 3.x: a bare {"name": ..., "parameters": ...} reply, or &lt;|python_tag|&gt; then a call.</summary>
    public static readonly ToolCallFormat Llama3 = new()
    {
        Name = "llama3",
        ReasoningStart = null,
        ReasoningEnd = null,
        CallStart = "<|python_tag|>",
        CallEnd = null,
        BareJsonCalls = true,
        PeekName = _ => null,
        ParseCall = body =>
        {
            var json = ParseJsonCall(body);
            if (json != null) return json;
            // Built-in tool syntax: name.call(key="value", ...)
            var m = PythonCall().Match(body.Trim());
            if (!m.Success) return null;
            var args = new JsonObject();
            foreach (Match a in PythonKwarg().Matches(m.Groups[2].Value))
                args[a.Groups[1].Value] = a.Groups[2].Success ? JsonValue.Create(UnescapeQuoted(a.Groups[2].Value)) : ParamValue(a.Groups[3].Value);
            return new ParsedCall(m.Groups[1].Value, args.ToJsonString(JsonOut));
        },
    };

    internal static ParsedCall? ParseBareJson(string body) => ParseJsonCall(body);

    [GeneratedRegex("^([A-Za-z_][\\w]*)\\.call\\((.*)\\)$", RegexOptions.Singleline)]
    private static partial Regex PythonCall();

    [GeneratedRegex("([A-Za-z_]\\w*)\\s*=\\s*(?:\"((?:[^\"\\\\]|\\\\.)*)\"|([^,]+))")]
    private static partial Regex PythonKwarg();

    /// <summary>Reasoning only (no tool-call syntax known).</summary>
    public static readonly ToolCallFormat Generic = new() { Name = "generic" };
}
