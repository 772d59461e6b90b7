using System.Globalization;
using System.Text;

namespace Kaiyuan.Templates;

/// <summary>The Python methods templates call on str, list and dict values.</summary>
internal static class Methods
{
    private static readonly HashSet<string> StringMethods =
    [
        "startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip", "replace", "upper", "lower", "title",
        "capitalize", "find", "rfind", "index", "rindex", "count", "format", "join", "splitlines", "isdigit", "isalpha",
        "isalnum", "isspace", "isupper", "islower", "isnumeric", "isdecimal", "istitle", "swapcase", "zfill", "center",
        "ljust", "rjust", "partition", "rpartition", "removeprefix", "removesuffix", "casefold",
    ];

    private static readonly HashSet<string> ListMethods = ["append", "pop", "index", "count", "extend", "insert", "remove", "reverse", "sort", "copy", "clear"];
    private static readonly HashSet<string> DictMethods = ["items", "get", "keys", "values", "update", "pop", "copy", "setdefault", "clear"];

    public static bool IsStringMethod(string n) => StringMethods.Contains(n);
    public static bool IsListMethod(string n) => ListMethods.Contains(n);
    public static bool IsDictMethod(string n) => DictMethods.Contains(n);

    public static Value Call(Interpreter ip, Value self, string name, Args a) => self switch
    {
        StringValue s => CallString(ip, s.V, name, a),
        ListValue l => CallList(ip, l, name, a),
        DictValue d => CallDict(ip, d, name, a),
        _ => throw ip.Error($"'{self.TypeName}' object has no attribute '{name}'"),
    };

    private static string Str(Interpreter ip, Value? v, string what) => v switch
    {
        StringValue s => s.V,
        _ => throw ip.Error($"{what} must be a string, not '{v?.TypeName ?? "nothing"}'"),
    };

    private static string? OptStr(Interpreter ip, Value? v, string what) => v is null or NoneValue ? null : Str(ip, v, what);

    private static Value CallString(Interpreter ip, string s, string name, Args a)
    {
        switch (name)
        {
            case "startswith":
            case "endswith":
                {
                    var arg = a.Get(0, "prefix") ?? throw ip.Error($"{name}() takes at least 1 argument");
                    var cands = arg is ListValue l ? l.Items.Select(x => Str(ip, x, name + " argument")).ToList() : [Str(ip, arg, name + " argument")];
                    return Value.From(cands.Any(c => name == "startswith" ? s.StartsWith(c, StringComparison.Ordinal) : s.EndsWith(c, StringComparison.Ordinal)));
                }
            case "split":
            case "rsplit":
                {
                    string? sep = OptStr(ip, a.Get(0, "sep"), "separator");
                    long max = a.Get(1, "maxsplit") is { } m and not NoneValue ? Runtime.ToLongStrict(ip, m) : -1;
                    return new ListValue(Split(ip, s, sep, max, name == "rsplit").Select(x => (Value)new StringValue(x)).ToList());
                }
            case "strip": return new StringValue(Strip(s, OptStr(ip, a.Get(0, "chars"), "chars"), true, true));
            case "lstrip": return new StringValue(Strip(s, OptStr(ip, a.Get(0, "chars"), "chars"), true, false));
            case "rstrip": return new StringValue(Strip(s, OptStr(ip, a.Get(0, "chars"), "chars"), false, true));
            case "replace":
                {
                    string old = Str(ip, a.Get(0, "old"), "old"), @new = Str(ip, a.Get(1, "new"), "new");
                    long count = a.Get(2, "count") is { } c ? Runtime.ToLongStrict(ip, c) : -1;
                    return new StringValue(Replace(ip, s, old, @new, count));
                }
            case "upper": return new StringValue(s.ToUpperInvariant());
            case "lower": case "casefold": return new StringValue(s.ToLowerInvariant());
            case "swapcase": return new StringValue(new string(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)).ToArray()));
            case "title": return new StringValue(Title(s));
            case "capitalize": return new StringValue(Capitalize(s));
            case "find":
            case "rfind":
            case "index":
            case "rindex":
                {
                    string sub = Str(ip, a.Get(0, "sub"), "substring");
                    int start = a.Get(1, "start") is { } st and not NoneValue ? ClampIndex(Runtime.ToLongStrict(ip, st), s.Length) : 0;
                    int end = a.Get(2, "end") is { } en and not NoneValue ? ClampIndex(Runtime.ToLongStrict(ip, en), s.Length) : s.Length;
                    int r = -1;
                    if (end >= start)
                    {
                        var span = s.AsSpan(start, end - start);
                        int rel = name is "find" or "index" ? span.IndexOf(sub, StringComparison.Ordinal) : span.LastIndexOf(sub, StringComparison.Ordinal);
                        if (rel >= 0) r = rel + start;
                    }
                    if (r < 0 && name is "index" or "rindex") throw ip.Error("substring not found");
                    return IntValue.Get(r);
                }
            case "count":
                {
                    string sub = Str(ip, a.Get(0, "sub"), "substring");
                    if (sub.Length == 0) return IntValue.Get(s.Length + 1);
                    int n = 0, i = 0;
                    while ((i = s.IndexOf(sub, i, StringComparison.Ordinal)) >= 0) { n++; i += sub.Length; }
                    return IntValue.Get(n);
                }
            case "format": return new StringValue(BraceFormat(ip, s, a));
            case "join":
                {
                    var items = Runtime.Iterate(ip, a.Get(0, "iterable") ?? throw ip.Error("join() takes exactly one argument"));
                    return new StringValue(string.Join(s, items.Select(x => Str(ip, x, "sequence item"))));
                }
            case "splitlines":
                {
                    bool keep = a.Get(0, "keepends")?.IsTruthy ?? false;
                    var res = new List<Value>();
                    int start = 0;
                    for (int i = 0; i < s.Length; i++)
                    {
                        if (s[i] is not ('\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')) continue;
                        int eol = i;
                        if (s[i] == '\r' && i + 1 < s.Length && s[i + 1] == '\n') i++;
                        res.Add(new StringValue(keep ? s[start..(i + 1)] : s[start..eol]));
                        start = i + 1;
                    }
                    if (start < s.Length) res.Add(new StringValue(s[start..]));
                    return new ListValue(res);
                }
            case "isdigit": case "isnumeric": case "isdecimal": return Value.From(s.Length > 0 && s.All(char.IsDigit));
            case "isalpha": return Value.From(s.Length > 0 && s.All(char.IsLetter));
            case "isalnum": return Value.From(s.Length > 0 && s.All(char.IsLetterOrDigit));
            case "isspace": return Value.From(s.Length > 0 && s.All(char.IsWhiteSpace));
            case "isupper": return Value.From(s.Any(char.IsLetter) && !s.Any(char.IsLower));
            case "islower": return Value.From(s.Any(char.IsLetter) && !s.Any(char.IsUpper));
            case "istitle": return Value.From(s.Any(char.IsLetter) && Title(s) == s);
            case "zfill":
                {
                    int w = (int)Math.Min(Runtime.ToLongStrict(ip, a.Get(0, "width") ?? IntValue.Get(0)), ip.Options.MaxOutputLength);
                    if (s.Length >= w) return new StringValue(s);
                    int signLen = s.Length > 0 && s[0] is '+' or '-' ? 1 : 0;
                    return new StringValue(s[..signLen] + new string('0', w - s.Length) + s[signLen..]);
                }
            case "center":
            case "ljust":
            case "rjust":
                {
                    long w = Runtime.ToLongStrict(ip, a.Get(0, "width") ?? IntValue.Get(0));
                    Runtime.CheckLength(ip, w);
                    string fill = a.Get(1, "fillchar") is StringValue f ? f.V : " ";
                    return new StringValue(Pad(s, (int)w, fill.Length > 0 ? fill[0] : ' ', name));
                }
            case "partition":
            case "rpartition":
                {
                    string sep = Str(ip, a.Get(0, "sep"), "separator");
                    int i = name == "partition" ? s.IndexOf(sep, StringComparison.Ordinal) : s.LastIndexOf(sep, StringComparison.Ordinal);
                    string[] parts = i < 0
                        ? (name == "partition" ? [s, "", ""] : ["", "", s])
                        : [s[..i], sep, s[(i + sep.Length)..]];
                    return new ListValue(parts.Select(x => (Value)new StringValue(x)).ToList(), true);
                }
            case "removeprefix":
                {
                    string p = Str(ip, a.Get(0, "prefix"), "prefix");
                    return new StringValue(s.StartsWith(p, StringComparison.Ordinal) ? s[p.Length..] : s);
                }
            case "removesuffix":
                {
                    string p = Str(ip, a.Get(0, "suffix"), "suffix");
                    return new StringValue(p.Length > 0 && s.EndsWith(p, StringComparison.Ordinal) ? s[..^p.Length] : s);
                }
        }
        throw ip.Error($"'str' object has no attribute '{name}'");
    }

    private static int ClampIndex(long i, int len)
    {
        if (i < 0) i += len;
        return (int)Math.Clamp(i, 0, len);
    }

    public static string Pad(string s, int w, char fill, string how)
    {
        if (s.Length >= w) return s;
        int total = w - s.Length;
        return how switch
        {
            "ljust" => s + new string(fill, total),
            "rjust" => new string(fill, total) + s,
            // Python's center puts the extra character on the right when the string length is even... on the left when odd
            _ => PadCenter(s, total, fill),
        };
    }

    private static string PadCenter(string s, int total, char fill)
    {
        int left = total / 2 + (total & s.Length & 1);
        return new string(fill, left) + s + new string(fill, total - left);
    }

    public static List<string> Split(Interpreter ip, string s, string? sep, long max, bool fromRight)
    {
        var res = new List<string>();
        if (sep is null)
        {
            // Whitespace split drops empty parts.
            var words = new List<(int Start, int End)>();
            int i = 0;
            while (i < s.Length)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) break;
                int st = i;
                while (i < s.Length && !char.IsWhiteSpace(s[i])) i++;
                words.Add((st, i));
            }
            if (max < 0 || words.Count <= max + 1) return words.Select(w => s[w.Start..w.End]).ToList();
            if (!fromRight)
            {
                for (int k = 0; k < max; k++) res.Add(s[words[k].Start..words[k].End]);
                res.Add(s[words[(int)max].Start..].TrimEnd());
            }
            else
            {
                int first = words.Count - (int)max;
                res.Add(s[..words[first - 1].End].TrimStart());
                for (int k = first; k < words.Count; k++) res.Add(s[words[k].Start..words[k].End]);
            }
            return res;
        }
        if (sep.Length == 0) throw ip.Error("empty separator");
        if (!fromRight)
        {
            int start = 0;
            while (max < 0 || res.Count < max)
            {
                int j = s.IndexOf(sep, start, StringComparison.Ordinal);
                if (j < 0) break;
                res.Add(s[start..j]);
                start = j + sep.Length;
            }
            res.Add(s[start..]);
            return res;
        }
        int end = s.Length;
        var rev = new List<string>();
        while (max < 0 || rev.Count < max)
        {
            if (end - sep.Length < 0) break;
            int j = s.LastIndexOf(sep, end - 1, end, StringComparison.Ordinal);
            if (j < 0) break;
            rev.Add(s[(j + sep.Length)..end]);
            end = j;
        }
        rev.Add(s[..end]);
        rev.Reverse();
        return rev;
    }

    public static string Strip(string s, string? chars, bool left, bool right)
    {
        int a = 0, b = s.Length;
        bool Strippable(char c) => chars is null ? char.IsWhiteSpace(c) : chars.Contains(c);
        if (left) while (a < b && Strippable(s[a])) a++;
        if (right) while (b > a && Strippable(s[b - 1])) b--;
        return s[a..b];
    }

    public static string Replace(Interpreter ip, string s, string old, string @new, long count)
    {
        if (count < 0 && old.Length > 0)
        {
            long occurrences = 0;
            int i = 0;
            while ((i = s.IndexOf(old, i, StringComparison.Ordinal)) >= 0) { occurrences++; i += old.Length; }
            Runtime.CheckLength(ip, s.Length + occurrences * (@new.Length - old.Length));
            return s.Replace(old, @new, StringComparison.Ordinal);
        }
        if (old.Length == 0)
        {
            long n = count < 0 ? s.Length + 1 : Math.Min(count, s.Length + 1);
            Runtime.CheckLength(ip, s.Length + n * @new.Length);
            var sb0 = new StringBuilder();
            for (int k = 0; k <= s.Length; k++)
            {
                if (k < n) sb0.Append(@new);
                if (k < s.Length) sb0.Append(s[k]);
            }
            return sb0.ToString();
        }
        var sb = new StringBuilder();
        int pos = 0;
        for (long done = 0; done < count; done++)
        {
            int j = s.IndexOf(old, pos, StringComparison.Ordinal);
            if (j < 0) break;
            sb.Append(s, pos, j - pos).Append(@new);
            pos = j + old.Length;
            Runtime.CheckLength(ip, sb.Length);
        }
        sb.Append(s, pos, s.Length - pos);
        return sb.ToString();
    }

    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool prevCased = false;
        foreach (char c in s)
        {
            if (char.IsLetter(c))
            {
                sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
                prevCased = true;
            }
            else
            {
                sb.Append(c);
                prevCased = false;
            }
        }
        return sb.ToString();
    }

    public static string Capitalize(string s) =>
        s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    /// <summary>Python <c>str.format</c> with positional/keyword fields and simple format specs.</summary>
    public static string BraceFormat(Interpreter ip, string fmt, Args a)
    {
        var sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c == '{')
            {
                if (i + 1 < fmt.Length && fmt[i + 1] == '{') { sb.Append('{'); i++; continue; }
                int close = fmt.IndexOf('}', i);
                if (close < 0) throw ip.Error("Single '{' encountered in format string");
                string field = fmt[(i + 1)..close];
                string spec = "";
                int colon = field.IndexOf(':');
                if (colon >= 0) { spec = field[(colon + 1)..]; field = field[..colon]; }
                int bang = field.IndexOf('!');
                string conv = "";
                if (bang >= 0) { conv = field[(bang + 1)..]; field = field[..bang]; }
                Value v;
                if (field.Length == 0) v = a.Get(auto++, "\0") ?? throw ip.Error("Replacement index out of range");
                else if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out int idx)) v = a.Get(idx, "\0") ?? throw ip.Error("Replacement index out of range");
                else v = a.Get(-1, field) ?? throw ip.Error($"KeyError: '{field}'");
                string text = conv == "r" ? v.Repr() : FormatSpec(ip, v, spec);
                Runtime.CheckLength(ip, sb.Length + text.Length);
                sb.Append(text);
                i = close;
                continue;
            }
            if (c == '}' && i + 1 < fmt.Length && fmt[i + 1] == '}') { sb.Append('}'); i++; continue; }
            sb.Append(c);
        }
        return sb.ToString();
    }

    private static string FormatSpec(Interpreter ip, Value v, string spec)
    {
        if (spec.Length == 0) return v.AsString();
        // [[fill]align][width][.precision][type]
        char fill = ' ', align = '\0';
        int p = 0;
        if (spec.Length >= 2 && spec[1] is '<' or '>' or '^') { fill = spec[0]; align = spec[1]; p = 2; }
        else if (spec[0] is '<' or '>' or '^') { align = spec[0]; p = 1; }
        int ws = p;
        while (p < spec.Length && char.IsAsciiDigit(spec[p])) p++;
        int width = p > ws ? int.Parse(spec[ws..p], CultureInfo.InvariantCulture) : 0;
        int? prec = null;
        if (p < spec.Length && spec[p] == '.')
        {
            int ps = ++p;
            while (p < spec.Length && char.IsAsciiDigit(spec[p])) p++;
            prec = int.Parse(spec[ps..p], CultureInfo.InvariantCulture);
        }
        char type = p < spec.Length ? spec[p] : '\0';
        string body = type switch
        {
            'f' or 'F' => Runtime.ToDouble(v).ToString("F" + (prec ?? 6), CultureInfo.InvariantCulture),
            'd' => Runtime.ToLong(v).ToString(CultureInfo.InvariantCulture),
            'x' => Runtime.ToLong(v).ToString("x", CultureInfo.InvariantCulture),
            _ => prec is int n && v is StringValue s && s.V.Length > n ? s.V[..n] : v.AsString(),
        };
        Runtime.CheckLength(ip, width);
        if (align == '\0') align = Runtime.IsNumber(v) ? '>' : '<';
        return Pad(body, width, fill, align switch { '<' => "ljust", '>' => "rjust", _ => "center" });
    }

    /// <summary>Python printf-style <c>fmt % args</c> (and Jinja's <c>format</c> filter).</summary>
    public static string PercentFormat(Interpreter ip, string fmt, Value args)
    {
        var list = args is ListValue { IsTuple: true } t ? t.Items : [args];
        var dict = args as DictValue;
        var sb = new StringBuilder();
        int ai = 0;
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c != '%') { sb.Append(c); continue; }
            if (++i >= fmt.Length) throw ip.Error("incomplete format");
            if (fmt[i] == '%') { sb.Append('%'); continue; }
            Value? v = null;
            if (fmt[i] == '(' && dict != null)
            {
                int close = fmt.IndexOf(')', i);
                if (close < 0) throw ip.Error("incomplete format key");
                v = dict.Get(fmt[(i + 1)..close]) ?? throw ip.Error($"KeyError: '{fmt[(i + 1)..close]}'");
                i = close + 1;
            }
            int specStart = i;
            while (i < fmt.Length && (char.IsAsciiDigit(fmt[i]) || fmt[i] is '.' or '-' or '+' or ' ' or '#' or '0')) i++;
            if (i >= fmt.Length) throw ip.Error("incomplete format");
            string flags = fmt[specStart..i];
            char conv = fmt[i];
            if (v is null)
            {
                if (ai >= list.Count) throw ip.Error("not enough arguments for format string");
                v = list[ai++];
            }
            bool left = flags.Contains('-');
            string digits = flags.TrimStart('-', '+', ' ', '#', '0');
            int dot = digits.IndexOf('.');
            int width = (dot < 0 ? digits : digits[..dot]) is { Length: > 0 } wd ? int.Parse(wd, CultureInfo.InvariantCulture) : 0;
            int? prec = dot >= 0 && digits.Length > dot + 1 ? int.Parse(digits[(dot + 1)..], CultureInfo.InvariantCulture) : dot >= 0 ? 0 : null;
            string body = conv switch
            {
                's' => v.AsString(),
                'r' => v.Repr(),
                'd' or 'i' => Runtime.IsNumber(v) ? Runtime.ToLong(v).ToString(CultureInfo.InvariantCulture) : throw ip.Error($"%d format: a number is required, not {v.TypeName}"),
                'f' or 'F' => Runtime.IsNumber(v) ? Runtime.ToDouble(v).ToString("F" + (prec ?? 6), CultureInfo.InvariantCulture) : throw ip.Error($"%f format: a number is required, not {v.TypeName}"),
                'x' => Runtime.ToLong(v).ToString("x", CultureInfo.InvariantCulture),
                _ => throw ip.Error($"unsupported format character '{conv}'"),
            };
            if (conv is 's' or 'r' && prec is int pn && body.Length > pn) body = body[..pn];
            Runtime.CheckLength(ip, width);
            if (body.Length < width) body = left ? body.PadRight(width) : body.PadLeft(width, flags.StartsWith('0') && conv != 's' ? '0' : ' ');
            sb.Append(body);
            Runtime.CheckLength(ip, sb.Length);
        }
        if (dict == null && ai < list.Count && args is ListValue { IsTuple: true })
            throw ip.Error("not all arguments converted during string formatting");
        return sb.ToString();
    }

    private static Value CallList(Interpreter ip, ListValue l, string name, Args a)
    {
        var items = l.Items;
        if (l.IsTuple && name is not ("index" or "count"))
            throw ip.Error($"'tuple' object has no attribute '{name}'");
        switch (name)
        {
            case "append":
                Runtime.CheckListLength(ip, items.Count + 1L);
                items.Add(a.Get(0, "object") ?? throw ip.Error("append() takes exactly one argument"));
                return NoneValue.Instance;
            case "extend":
                {
                    var more = Runtime.Iterate(ip, a.Get(0, "iterable") ?? throw ip.Error("extend() takes exactly one argument"));
                    Runtime.CheckListLength(ip, (long)items.Count + more.Count);
                    items.AddRange(more);
                    return NoneValue.Instance;
                }
            case "insert":
                {
                    long i = Runtime.ToLongStrict(ip, a.Get(0, "index") ?? IntValue.Get(0));
                    if (i < 0) i += items.Count;
                    Runtime.CheckListLength(ip, items.Count + 1L);
                    items.Insert((int)Math.Clamp(i, 0, items.Count), a.Get(1, "object") ?? throw ip.Error("insert() takes exactly 2 arguments"));
                    return NoneValue.Instance;
                }
            case "pop":
                {
                    if (items.Count == 0) throw ip.Error("pop from empty list");
                    long i = a.Get(0, "index") is { } iv ? Runtime.ToLongStrict(ip, iv) : -1;
                    if (i < 0) i += items.Count;
                    if (i < 0 || i >= items.Count) throw ip.Error("pop index out of range");
                    var v = items[(int)i];
                    items.RemoveAt((int)i);
                    return v;
                }
            case "remove":
                {
                    var x = a.Get(0, "value") ?? throw ip.Error("remove() takes exactly one argument");
                    int i = items.FindIndex(y => Runtime.Equal(y, x));
                    if (i < 0) throw ip.Error("list.remove(x): x not in list");
                    items.RemoveAt(i);
                    return NoneValue.Instance;
                }
            case "index":
                {
                    var x = a.Get(0, "value") ?? throw ip.Error("index() takes at least 1 argument");
                    int i = items.FindIndex(y => Runtime.Equal(y, x));
                    if (i < 0) throw ip.Error($"{x.Repr()} is not in list");
                    return IntValue.Get(i);
                }
            case "count":
                {
                    var x = a.Get(0, "value") ?? throw ip.Error("count() takes exactly one argument");
                    return IntValue.Get(items.Count(y => Runtime.Equal(y, x)));
                }
            case "reverse": items.Reverse(); return NoneValue.Instance;
            case "sort":
                {
                    bool reverse = a.Get(-1, "reverse")?.IsTruthy ?? false;
                    var sorted = Filters.StableSort(ip, items, x => x, reverse);
                    items.Clear();
                    items.AddRange(sorted);
                    return NoneValue.Instance;
                }
            case "copy": return new ListValue([.. items]);
            case "clear": items.Clear(); return NoneValue.Instance;
        }
        throw ip.Error($"'list' object has no attribute '{name}'");
    }

    private static Value CallDict(Interpreter ip, DictValue d, string name, Args a)
    {
        switch (name)
        {
            case "items":
                return new ListValue(d.Items.Select(kv => (Value)new ListValue([kv.Key, kv.Value], true)).ToList());
            case "keys": return new ListValue([.. d.Items.Keys]);
            case "values": return new ListValue([.. d.Items.Values]);
            case "get":
                {
                    var k = a.Get(0, "key") ?? throw ip.Error("get() takes at least 1 argument");
                    return d.Items.TryGetValue(k, out var v) ? v : a.Get(1, "default") ?? NoneValue.Instance;
                }
            case "pop":
                {
                    var k = a.Get(0, "key") ?? throw ip.Error("pop() takes at least 1 argument");
                    if (d.Items.Remove(k, out var v)) return v;
                    return a.Get(1, "default") ?? throw ip.Error($"KeyError: {k.Repr()}");
                }
            case "setdefault":
                {
                    var k = a.Get(0, "key") ?? throw ip.Error("setdefault() takes at least 1 argument");
                    if (d.Items.TryGetValue(k, out var v)) return v;
                    var dv = a.Get(1, "default") ?? NoneValue.Instance;
                    d.Set(k, dv);
                    return dv;
                }
            case "update":
                {
                    if (a.Count > 0)
                    {
                        if (a.Positional[0] is DictValue other)
                            foreach (var (k, v) in other.Items) d.Set(k, v);
                        else
                            foreach (var pair in Runtime.Iterate(ip, a.Positional[0]))
                            {
                                var kv = Runtime.Iterate(ip, pair);
                                if (kv.Count != 2) throw ip.Error("dictionary update sequence element has wrong length");
                                d.Set(kv[0], kv[1]);
                            }
                    }
                    if (a.Kwargs != null)
                        foreach (var kv in a.Kwargs) d.Set(kv.Key, kv.Value);
                    return NoneValue.Instance;
                }
            case "copy":
                {
                    var c = new DictValue();
                    foreach (var (k, v) in d.Items) c.Set(k, v);
                    return c;
                }
            case "clear": d.Items.Clear(); return NoneValue.Instance;
        }
        throw ip.Error($"'dict' object has no attribute '{name}'");
    }
}
