using System.Globalization;
using System.Text;

namespace Kaiyuan.Templates;

/// <summary>Jinja2's built-in filters (plus transformers' tojson), with Jinja 3.1 semantics.</summary>
internal static class Filters
{
    private static readonly HashSet<string> Names =
    [
        "tojson", "trim", "upper", "lower", "capitalize", "title", "length", "count", "first", "last", "join", "map",
        "select", "reject", "selectattr", "rejectattr", "default", "d", "items", "list", "string", "int", "float", "abs",
        "replace", "indent", "safe", "escape", "e", "forceescape", "round", "unique", "sort", "dictsort", "reverse", "sum",
        "min", "max", "batch", "slice", "wordcount", "center", "format", "truncate", "attr", "striptags", "urlencode", "pprint",
        "bool", "tuple", "groupby", "xmlattr", "filesizeformat", "wordwrap", "split",
    ];

    public static bool Exists(string name) => Names.Contains(name);

    public static Value Apply(Interpreter ip, string name, Value v, Args a, int line)
    {
        ip.Line = line;
        switch (name)
        {
            case "tojson":
                {
                    // A bounded indent: a huge one (the fuzzer's 9,999,999,994) would build gigabytes of spaces.
                    if (a.Get(0, "indent") is IntValue { V: < 0 or > 64 } big) throw ip.Error($"tojson indent {big.V} is out of range (0…64)");
                    int? indent = a.Get(0, "indent") is IntValue iv ? (int)iv.V : null;
                    bool ascii = a.Get(-1, "ensure_ascii")?.IsTruthy ?? false;
                    bool sort = a.Get(-1, "sort_keys")?.IsTruthy ?? false;
                    string? itemSep = null, keySep = null;
                    if (a.Get(-1, "separators") is ListValue { Items.Count: 2 } seps)
                    {
                        itemSep = seps.Items[0].AsString();
                        keySep = seps.Items[1].AsString();
                    }
                    try
                    {
                        return new StringValue(PyFormat.JsonDumps(v, indent, ascii, itemSep, keySep, sort));
                    }
                    catch (TemplateException ex) when (ex.Line == 0)
                    {
                        throw ip.Error(ex.RawMessage);
                    }
                }
            case "trim":
                return new StringValue(Methods.Strip(v.AsString(), a.Get(0, "chars") is StringValue chars ? chars.V : null, true, true));
            case "upper": return new StringValue(v.AsString().ToUpperInvariant());
            case "lower": return new StringValue(v.AsString().ToLowerInvariant());
            case "capitalize": return new StringValue(Methods.Capitalize(v.AsString()));
            case "title": return new StringValue(Methods.Title(v.AsString()));
            case "length":
            case "count":
                return IntValue.Get(v switch
                {
                    StringValue s => s.V.Length,
                    ListValue l => l.Items.Count,
                    DictValue d => d.Items.Count,
                    NamespaceValue n => n.Attrs.Count,
                    UndefinedValue => 0,
                    _ => throw ip.Error($"object of type '{v.TypeName}' has no len()"),
                });
            case "first":
                {
                    var items = Runtime.Iterate(ip, v);
                    return items.Count > 0 ? items[0] : new UndefinedValue("first");
                }
            case "last":
                {
                    var items = Runtime.Iterate(ip, v);
                    return items.Count > 0 ? items[^1] : new UndefinedValue("last");
                }
            case "join":
                {
                    string sep = a.Get(0, "d") is { } dv and not UndefinedValue ? dv.AsString() : "";
                    var items = Runtime.Iterate(ip, v);
                    if (a.Get(1, "attribute") is { } attr)
                        items = items.Select(x => GetPath(ip, x, attr)).ToList();
                    var sb = new StringBuilder();
                    for (int i = 0; i < items.Count; i++)
                    {
                        if (i > 0) sb.Append(sep);
                        sb.Append(items[i].AsString());
                        Runtime.CheckLength(ip, sb.Length);
                    }
                    return new StringValue(sb.ToString());
                }
            case "map":
                {
                    var items = Runtime.Iterate(ip, v);
                    if (a.Get(-1, "attribute") is { } attr)
                    {
                        var dflt = a.Get(-1, "default");
                        return new ListValue(items.Select(x =>
                        {
                            var r = GetPath(ip, x, attr);
                            return r is UndefinedValue && dflt != null ? dflt : r;
                        }).ToList());
                    }
                    if (a.Count == 0) throw ip.Error("map() needs a filter name or attribute=");
                    string f = a.Positional[0].AsString();
                    if (!Exists(f)) throw ip.Error($"no filter named '{f}'");
                    var rest = new Args(a.Positional.Skip(1).ToList(), a.Kwargs);
                    return new ListValue(items.Select(x => Apply(ip, f, x, rest, line)).ToList());
                }
            case "select":
            case "reject":
                {
                    var items = Runtime.Iterate(ip, v);
                    bool want = name == "select";
                    if (a.Count == 0) return new ListValue(items.Where(x => x.IsTruthy == want).ToList());
                    string t = a.Positional[0].AsString();
                    var rest = new Args(a.Positional.Skip(1).ToList(), a.Kwargs);
                    return new ListValue(items.Where(x => Tests.Apply(ip, t, x, rest, line) == want).ToList());
                }
            case "selectattr":
            case "rejectattr":
                {
                    var items = Runtime.Iterate(ip, v);
                    bool want = name == "selectattr";
                    if (a.Count == 0) throw ip.Error($"{name}() needs an attribute name");
                    var attr = a.Positional[0];
                    if (a.Count == 1) return new ListValue(items.Where(x => GetPath(ip, x, attr).IsTruthy == want).ToList());
                    string t = a.Positional[1].AsString();
                    var rest = new Args(a.Positional.Skip(2).ToList(), a.Kwargs);
                    return new ListValue(items.Where(x => Tests.Apply(ip, t, GetPath(ip, x, attr), rest, line) == want).ToList());
                }
            case "default":
            case "d":
                {
                    var dflt = a.Get(0, "default_value") ?? StringValue.Empty;
                    bool boolean = a.Get(1, "boolean")?.IsTruthy ?? false;
                    return v is UndefinedValue || (boolean && !v.IsTruthy) ? dflt : v;
                }
            case "items":
                return v switch
                {
                    DictValue d => new ListValue(d.Items.Select(kv => (Value)new ListValue([kv.Key, kv.Value], true)).ToList()),
                    UndefinedValue => new ListValue(),
                    _ => throw ip.Error($"items filter needs a mapping, got '{v.TypeName}'"),
                };
            case "list": return new ListValue(Runtime.Iterate(ip, v));
            case "tuple": return new ListValue(Runtime.Iterate(ip, v), true);
            case "string": return v is StringValue ? v : new StringValue(ReprForPrint(v));
            case "bool": return Value.From(v.IsTruthy);
            case "int":
                {
                    var dflt = a.Get(0, "default") ?? IntValue.Get(0);
                    return v switch
                    {
                        IntValue => v,
                        BoolValue b => IntValue.Get(b.V ? 1 : 0),
                        FloatValue f => double.IsFinite(f.V) ? IntValue.Get((long)Math.Truncate(f.V)) : dflt,
                        StringValue s => ParseInt(s.V, a.Get(1, "base") is IntValue bv ? (int)bv.V : 10) is long l ? IntValue.Get(l)
                            : double.TryParse(s.V.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double dd) && double.IsFinite(dd) ? IntValue.Get((long)dd) : dflt,
                        _ => dflt,
                    };
                }
            case "float":
                {
                    var dflt = a.Get(0, "default") ?? new FloatValue(0);
                    return v switch
                    {
                        FloatValue => v,
                        IntValue or BoolValue => new FloatValue(Runtime.ToDouble(v)),
                        StringValue s => double.TryParse(s.V.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? new FloatValue(d) : dflt,
                        _ => dflt,
                    };
                }
            case "abs":
                return v switch
                {
                    IntValue i => IntValue.Get(Math.Abs(i.V)),
                    FloatValue f => new FloatValue(Math.Abs(f.V)),
                    BoolValue b => IntValue.Get(b.V ? 1 : 0),
                    _ => throw ip.Error($"bad operand type for abs(): '{v.TypeName}'"),
                };
            case "replace":
                {
                    string old = (a.Get(0, "old") ?? throw ip.Error("replace needs 2 arguments")).AsString();
                    string @new = (a.Get(1, "new") ?? throw ip.Error("replace needs 2 arguments")).AsString();
                    long count = a.Get(2, "count") is { } c and not NoneValue ? Runtime.ToLongStrict(ip, c) : -1;
                    return new StringValue(Methods.Replace(ip, v.AsString(), old, @new, count));
                }
            case "indent": return new StringValue(Indent(ip, v.AsString(), a));
            case "safe":
                return v;
            case "escape":
            case "e":
            case "forceescape":
                return new StringValue(v.AsString().Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;"));
            case "round":
                {
                    int prec = a.Get(0, "precision") is { } p ? (int)Runtime.ToLongStrict(ip, p) : 0;
                    string method = a.Get(1, "method")?.AsString() ?? "common";
                    double x = Runtime.ToDouble(v), m = Math.Pow(10, prec);
                    double r = method switch
                    {
                        "ceil" => Math.Ceiling(x * m) / m,
                        "floor" => Math.Floor(x * m) / m,
                        // Python's round() rounds half to even.
                        _ => prec >= 0 && prec <= 15 ? Math.Round(x, prec, MidpointRounding.ToEven) : Math.Round(x * m, MidpointRounding.ToEven) / m,
                    };
                    return new FloatValue(r);
                }
            case "unique":
                {
                    bool cs = a.Get(0, "case_sensitive")?.IsTruthy ?? false;
                    var attr = a.Get(1, "attribute");
                    var seen = new HashSet<Value>();
                    var res = new List<Value>();
                    foreach (var x in Runtime.Iterate(ip, v))
                    {
                        var key = attr != null ? GetPath(ip, x, attr) : x;
                        if (!cs && key is StringValue ks) key = new StringValue(ks.V.ToLowerInvariant());
                        if (seen.Add(key)) res.Add(x);
                    }
                    return new ListValue(res);
                }
            case "sort":
                {
                    bool reverse = a.Get(0, "reverse")?.IsTruthy ?? false;
                    bool cs = a.Get(1, "case_sensitive")?.IsTruthy ?? false;
                    var attr = a.Get(2, "attribute");
                    return new ListValue(StableSort(ip, Runtime.Iterate(ip, v), x => SortKey(ip, attr != null ? GetPath(ip, x, attr) : x, cs), reverse));
                }
            case "dictsort":
                {
                    if (v is not DictValue d) throw ip.Error("dictsort needs a mapping");
                    bool cs = a.Get(0, "case_sensitive")?.IsTruthy ?? false;
                    bool byValue = a.Get(1, "by")?.AsString() == "value";
                    bool reverse = a.Get(2, "reverse")?.IsTruthy ?? false;
                    var pairs = d.Items.Select(kv => (Value)new ListValue([kv.Key, kv.Value], true)).ToList();
                    return new ListValue(StableSort(ip, pairs, x => SortKey(ip, ((ListValue)x).Items[byValue ? 1 : 0], cs), reverse));
                }
            case "reverse":
                return v switch
                {
                    StringValue s => new StringValue(new string(s.V.Reverse().ToArray())),
                    _ => new ListValue(Enumerable.Reverse(Runtime.Iterate(ip, v)).ToList()),
                };
            case "sum":
                {
                    var attr = a.Get(0, "attribute");
                    Value acc = a.Get(1, "start") ?? IntValue.Get(0);
                    foreach (var x in Runtime.Iterate(ip, v))
                        acc = Runtime.Binary(ip, "+", acc, attr != null ? GetPath(ip, x, attr) : x);
                    return acc;
                }
            case "min":
            case "max":
                {
                    bool cs = a.Get(0, "case_sensitive")?.IsTruthy ?? false;
                    var attr = a.Get(1, "attribute");
                    var items = Runtime.Iterate(ip, v);
                    if (items.Count == 0) return new UndefinedValue(name);
                    Value best = items[0];
                    foreach (var x in items.Skip(1))
                    {
                        int c = Runtime.Order(ip, SortKey(ip, attr != null ? GetPath(ip, x, attr) : x, cs), SortKey(ip, attr != null ? GetPath(ip, best, attr) : best, cs));
                        if (name == "min" ? c < 0 : c > 0) best = x;
                    }
                    return best;
                }
            case "batch":
            case "slice":
                {
                    long n = Runtime.ToLongStrict(ip, a.Get(0, name == "batch" ? "linecount" : "slices") ?? throw ip.Error($"{name} needs a size"));
                    if (n <= 0) throw ip.Error($"{name} size must be positive");
                    var fill = a.Get(1, "fill_with");
                    var items = Runtime.Iterate(ip, v);
                    var res = new List<Value>();
                    if (name == "batch")
                    {
                        for (int i = 0; i < items.Count; i += (int)n)
                        {
                            var chunk = items.Skip(i).Take((int)n).ToList();
                            if (fill != null) while (chunk.Count < n) chunk.Add(fill);
                            res.Add(new ListValue(chunk));
                        }
                    }
                    else
                    {
                        int per = items.Count / (int)n, extra = items.Count % (int)n, offset = 0;
                        for (int i = 0; i < n; i++)
                        {
                            int size = per + (i < extra ? 1 : 0);
                            var chunk = items.Skip(offset).Take(size).ToList();
                            offset += size;
                            if (fill != null && i >= extra && extra > 0) chunk.Add(fill);
                            res.Add(new ListValue(chunk));
                        }
                    }
                    return new ListValue(res);
                }
            case "wordcount":
                return IntValue.Get(v.AsString().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length);
            case "center":
                {
                    long w = a.Get(0, "width") is { } wv ? Runtime.ToLongStrict(ip, wv) : 80;
                    Runtime.CheckLength(ip, w);
                    return new StringValue(Methods.Pad(v.AsString(), (int)w, ' ', "center"));
                }
            case "format":
                {
                    Value args = a.Kwargs is { Count: > 0 } kw ? DictOf(kw) : new ListValue(a.Positional, true);
                    return new StringValue(Methods.PercentFormat(ip, v.AsString(), args));
                }
            case "truncate": return new StringValue(Truncate(ip, v.AsString(), a));
            case "attr":
                return Runtime.GetAttr(ip, v, (a.Get(0, "name") ?? throw ip.Error("attr needs a name")).AsString());
            case "striptags":
                return new StringValue(string.Join(' ', System.Text.RegularExpressions.Regex.Replace(v.AsString(), "<!--.*?-->|<[^>]*>", "").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)));
            case "urlencode":
                return new StringValue(Uri.EscapeDataString(v.AsString()).Replace("%2F", "/"));
            case "pprint": return new StringValue(v.Repr());
            case "split":
                return new ListValue(Methods.Split(ip, v.AsString(), a.Get(0, "sep") is StringValue sp ? sp.V : null, -1, false).Select(x => (Value)new StringValue(x)).ToList());
            case "wordwrap":
                {
                    int width = a.Get(0, "width") is { } wv ? (int)Runtime.ToLongStrict(ip, wv) : 79;
                    return new StringValue(WordWrap(v.AsString(), Math.Max(1, width)));
                }
            case "filesizeformat":
                {
                    double bytes = Runtime.ToDouble(v);
                    string[] units = ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
                    if (bytes < 1000) return new StringValue(bytes == 1 ? "1 Byte" : $"{(long)bytes} Bytes");
                    int u = 0;
                    double unit = 1000;
                    while (u < units.Length - 1 && bytes >= unit * 1000) { unit *= 1000; u++; }
                    return new StringValue((bytes / unit).ToString("0.0", CultureInfo.InvariantCulture) + " " + units[u]);
                }
            case "groupby":
                {
                    var attr = a.Get(0, "attribute") ?? throw ip.Error("groupby needs an attribute");
                    var items = Runtime.Iterate(ip, v);
                    var sorted = StableSort(ip, items, x => SortKey(ip, GetPath(ip, x, attr), false), false);
                    var res = new List<Value>();
                    foreach (var x in sorted)
                    {
                        var k = GetPath(ip, x, attr);
                        if (res.Count > 0 && Runtime.Equal(((ListValue)res[^1]).Items[0], k))
                            ((ListValue)((ListValue)res[^1]).Items[1]).Items.Add(x);
                        else res.Add(new ListValue([k, new ListValue([x])], true));
                    }
                    return new ListValue(res);
                }
            case "xmlattr":
                {
                    if (v is not DictValue d) throw ip.Error("xmlattr needs a mapping");
                    var sb = new StringBuilder();
                    foreach (var (k, val) in d.Items)
                    {
                        if (val is NoneValue or UndefinedValue) continue;
                        sb.Append(' ').Append(k.AsString()).Append("=\"").Append(val.AsString().Replace("&", "&amp;").Replace("\"", "&#34;").Replace("<", "&lt;").Replace(">", "&gt;")).Append('"');
                    }
                    return new StringValue(sb.ToString());
                }
        }
        throw ip.Error($"no filter named '{name}'");
    }

    /// <summary>What <c>str()</c> shows (printing a value in a template).</summary>
    public static string ReprForPrint(Value v) => v is StringValue s ? s.V : v.AsString();

    private static DictValue DictOf(List<KeyValuePair<string, Value>> kw)
    {
        var d = new DictValue();
        foreach (var kv in kw) d.Set(kv.Key, kv.Value);
        return d;
    }

    private static long? ParseInt(string s, int b)
    {
        s = s.Trim().Replace("_", "");
        if (s.Length == 0) return null;
        try
        {
            if (b == 10) return long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long l) ? l : null;
            bool neg = s.StartsWith('-');
            if (s[0] is '-' or '+') s = s[1..];
            if (b == 16 && s.StartsWith("0x", StringComparison.OrdinalIgnoreCase)) s = s[2..];
            if (b == 8 && s.StartsWith("0o", StringComparison.OrdinalIgnoreCase)) s = s[2..];
            if (b == 2 && s.StartsWith("0b", StringComparison.OrdinalIgnoreCase)) s = s[2..];
            long v = Convert.ToInt64(s, b);
            return neg ? -v : v;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException)
        {
            return null;
        }
    }

    /// <summary>Attribute lookup by a dotted path ("a.b" or "0"), as Jinja's attribute= arguments do.</summary>
    public static Value GetPath(Interpreter ip, Value x, Value attr)
    {
        if (attr is IntValue) return Runtime.GetItem(ip, x, attr);
        foreach (var part in attr.AsString().Split('.'))
        {
            Value key = int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int n) ? IntValue.Get(n) : new StringValue(part);
            x = Runtime.GetItem(ip, x, key);
        }
        return x;
    }

    private static Value SortKey(Interpreter ip, Value v, bool caseSensitive) =>
        !caseSensitive && v is StringValue s ? new StringValue(s.V.ToLowerInvariant()) : v;

    public static List<Value> StableSort(Interpreter ip, List<Value> items, Func<Value, Value> key, bool reverse)
    {
        var keyed = items.Select((x, i) => (Key: key(x), Item: x, Index: i)).ToList();
        keyed.Sort((p, q) =>
        {
            int c = Runtime.Order(ip, p.Key, q.Key);
            if (reverse) c = -c;
            return c != 0 ? c : p.Index.CompareTo(q.Index);
        });
        return keyed.Select(k => k.Item).ToList();
    }

    private static string Indent(Interpreter ip, string s, Args a)
    {
        var w = a.Get(0, "width") ?? IntValue.Get(4);
        bool first = a.Get(1, "first")?.IsTruthy ?? false;
        bool blank = a.Get(2, "blank")?.IsTruthy ?? false;
        string pad = w is StringValue ws ? ws.V : new string(' ', (int)Math.Clamp(Runtime.ToLongStrict(ip, w), 0, 4096));
        // Jinja 3.1: lines are split on newlines; blank lines stay unindented unless blank=True.
        var lines = s.Split('\n');
        var sb = new StringBuilder();
        for (int i = 0; i < lines.Length; i++)
        {
            if (i > 0) sb.Append('\n');
            bool indentThis = (i > 0 || first) && (blank || lines[i].Length > 0 || (i == 0 && first));
            if (i > 0 && !blank && lines[i].Length == 0) indentThis = false;
            if (indentThis) sb.Append(pad);
            sb.Append(lines[i]);
            Runtime.CheckLength(ip, sb.Length);
        }
        return sb.ToString();
    }

    private static string Truncate(Interpreter ip, string s, Args a)
    {
        int length = a.Get(0, "length") is { } lv ? (int)Runtime.ToLongStrict(ip, lv) : 255;
        bool killwords = a.Get(1, "killwords")?.IsTruthy ?? false;
        string end = a.Get(2, "end")?.AsString() ?? "...";
        int leeway = a.Get(3, "leeway") is { } le ? (int)Runtime.ToLongStrict(ip, le) : 5;
        if (s.Length <= length + leeway) return s;
        int cut = Math.Max(0, length - end.Length);
        if (killwords) return s[..cut] + end;
        string head = s[..cut];
        int sp = head.LastIndexOf(' ');
        if (sp >= 0) head = head[..sp];
        return head + end;
    }

    private static string WordWrap(string s, int width)
    {
        var sb = new StringBuilder();
        foreach (var para in s.Split('\n'))
        {
            if (sb.Length > 0) sb.Append('\n');
            int col = 0;
            foreach (var word in para.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                if (col > 0 && col + 1 + word.Length > width) { sb.Append('\n'); col = 0; }
                else if (col > 0) { sb.Append(' '); col++; }
                sb.Append(word);
                col += word.Length;
            }
        }
        return sb.ToString();
    }
}

/// <summary>Jinja2's built-in tests (<c>x is defined</c> ...).</summary>
internal static class Tests
{
    private static readonly HashSet<string> Names =
    [
        "defined", "undefined", "none", "string", "mapping", "iterable", "number", "integer", "float", "sequence", "boolean",
        "true", "false", "callable", "odd", "even", "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<",
        "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "sameas", "lower", "upper", "escaped", "filter", "test",
    ];

    public static bool Exists(string name) => Names.Contains(name);

    public static bool Apply(Interpreter ip, string name, Value v, Args a, int line)
    {
        ip.Line = line;
        Value Arg() => a.Get(0, "other") ?? a.Get(0, "value") ?? a.Get(0, "num") ?? throw ip.Error($"test '{name}' needs an argument");
        switch (name)
        {
            case "defined": return v is not UndefinedValue;
            case "undefined": return v is UndefinedValue;
            case "none": return v is NoneValue;
            case "string": return v is StringValue;
            case "mapping": return v is DictValue;
            case "iterable": return v is ListValue or DictValue or StringValue;
            case "sequence": return v is ListValue or DictValue or StringValue;
            case "number": return v is IntValue or FloatValue or BoolValue;
            case "integer": return v is IntValue;
            case "float": return v is FloatValue;
            case "boolean": return v is BoolValue;
            case "true": return v is BoolValue { V: true };
            case "false": return v is BoolValue { V: false };
            case "callable": return v is CallableValue;
            case "odd": return Runtime.ToLongStrict(ip, v) % 2 != 0;
            case "even": return Runtime.ToLongStrict(ip, v) % 2 == 0;
            case "divisibleby":
                {
                    long d = Runtime.ToLongStrict(ip, Arg());
                    return d != 0 && Runtime.ToLongStrict(ip, v) % d == 0;
                }
            case "eq": case "equalto": case "==": return Runtime.Equal(v, Arg());
            case "ne": case "!=": return !Runtime.Equal(v, Arg());
            case "lt": case "lessthan": case "<": return Runtime.Order(ip, v, Arg()) < 0;
            case "le": case "<=": return Runtime.Order(ip, v, Arg()) <= 0;
            case "gt": case "greaterthan": case ">": return Runtime.Order(ip, v, Arg()) > 0;
            case "ge": case ">=": return Runtime.Order(ip, v, Arg()) >= 0;
            case "in": return Runtime.Contains(ip, Arg(), v);
            case "sameas": return ReferenceEquals(v, Arg()) || (v is NoneValue && Arg() is NoneValue) || (v is BoolValue b && Arg() is BoolValue c && b.V == c.V);
            case "lower": return v is StringValue ls && ls.V == ls.V.ToLowerInvariant();
            case "upper": return v is StringValue us && us.V == us.V.ToUpperInvariant();
            case "escaped": return false;
            case "filter": return Filters.Exists(v.AsString());
            case "test": return Exists(v.AsString());
        }
        throw ip.Error($"no test named '{name}'");
    }
}
