using System.Globalization;
using System.Text;

namespace Kaiyuan.Templates;

/// <summary>Python-compatible text forms: repr of floats and strings, json.dumps, strftime.</summary>
internal static class PyFormat
{
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        string r = d.ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOfAny(['E', 'e']);
        string mant = e < 0 ? r : r[..e];
        int exp = e < 0 ? 0 : int.Parse(r[(e + 1)..], CultureInfo.InvariantCulture);
        // Python switches to exponent notation when exp10 < -4 or >= 16; reconstruct digits and decide ourselves.
        bool neg = mant.StartsWith('-');
        if (neg) mant = mant[1..];
        int dot = mant.IndexOf('.');
        string digits = dot < 0 ? mant : mant[..dot] + mant[(dot + 1)..];
        int intLen = (dot < 0 ? mant.Length : dot) + exp;
        // strip leading zeros
        int lead = 0;
        while (lead < digits.Length - 1 && digits[lead] == '0') { lead++; intLen--; }
        digits = digits[lead..].TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        int exp10 = intLen - 1;
        var sb = new StringBuilder();
        if (neg) sb.Append('-');
        if (exp10 < -4 || exp10 >= 16)
        {
            sb.Append(digits[0]);
            if (digits.Length > 1) sb.Append('.').Append(digits, 1, digits.Length - 1);
            sb.Append('e').Append(exp10 < 0 ? '-' : '+').Append(Math.Abs(exp10).ToString("00", CultureInfo.InvariantCulture));
        }
        else if (intLen <= 0)
        {
            sb.Append("0.").Append('0', -intLen).Append(digits);
        }
        else if (intLen >= digits.Length)
        {
            sb.Append(digits).Append('0', intLen - digits.Length).Append(".0");
        }
        else
        {
            sb.Append(digits, 0, intLen).Append('.').Append(digits, intLen, digits.Length - intLen);
        }
        return sb.ToString();
    }

    public static string StringRepr(string s)
    {
        char q = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder(s.Length + 2);
        sb.Append(q);
        foreach (char c in s)
        {
            switch (c)
            {
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                default:
                    if (c == q) sb.Append('\\').Append(c);
                    else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append(q);
        return sb.ToString();
    }

    /// <summary>Python <c>json.dumps</c> with ensure_ascii, indent, separators and sort_keys.</summary>
    public static string JsonDumps(Value v, int? indent = null, bool ensureAscii = false, string? itemSep = null, string? keySep = null, bool sortKeys = false)
    {
        itemSep ??= indent is null ? ", " : ",";
        keySep ??= ": ";
        var sb = new StringBuilder();
        WriteJson(sb, v, indent, ensureAscii, itemSep, keySep, sortKeys, 0);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, Value v, int? indent, bool ascii, string itemSep, string keySep, bool sort, int level)
    {
        if (level > 512) throw new TemplateException("tojson: value nested too deeply");
        switch (v)
        {
            case NoneValue: sb.Append("null"); break;
            case BoolValue b: sb.Append(b.V ? "true" : "false"); break;
            case IntValue i: sb.Append(i.V.ToString(CultureInfo.InvariantCulture)); break;
            case FloatValue f:
                sb.Append(double.IsNaN(f.V) ? "NaN" : double.IsPositiveInfinity(f.V) ? "Infinity" : double.IsNegativeInfinity(f.V) ? "-Infinity" : FloatRepr(f.V));
                break;
            case StringValue s: JsonString(sb, s.V, ascii); break;
            case ListValue l:
                if (l.Items.Count == 0) { sb.Append("[]"); break; }
                sb.Append('[');
                for (int i = 0; i < l.Items.Count; i++)
                {
                    if (i > 0) sb.Append(itemSep);
                    NewLine(sb, indent, level + 1);
                    WriteJson(sb, l.Items[i], indent, ascii, itemSep, keySep, sort, level + 1);
                }
                NewLine(sb, indent, level);
                sb.Append(']');
                break;
            case DictValue d:
                if (d.Items.Count == 0) { sb.Append("{}"); break; }
                sb.Append('{');
                IEnumerable<KeyValuePair<Value, Value>> items = d.Items;
                if (sort) items = items.OrderBy(kv => kv.Key, ValueComparer.Instance);
                bool first = true;
                foreach (var (k, val) in items)
                {
                    if (!first) sb.Append(itemSep);
                    first = false;
                    NewLine(sb, indent, level + 1);
                    string key = k switch
                    {
                        StringValue ks => ks.V,
                        BoolValue kb => kb.V ? "true" : "false",
                        NoneValue => "null",
                        IntValue or FloatValue => k.Repr(),
                        _ => throw new TemplateException($"tojson: keys must be str, int, float, bool or None, not {k.TypeName}"),
                    };
                    JsonString(sb, key, ascii);
                    sb.Append(keySep);
                    WriteJson(sb, val, indent, ascii, itemSep, keySep, sort, level + 1);
                }
                NewLine(sb, indent, level);
                sb.Append('}');
                break;
            case NamespaceValue:
            case UndefinedValue:
            default:
                throw new TemplateException($"tojson: object of type {v.TypeName} is not JSON serializable");
        }
    }

    private static void NewLine(StringBuilder sb, int? indent, int level)
    {
        if (indent is not int n) return;
        sb.Append('\n').Append(' ', n * level);
    }

    public static void JsonString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e))
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    private static readonly string[] DayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
    private static readonly string[] MonthNames = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

    /// <summary>Python <c>strftime</c> in the C locale.</summary>
    public static string Strftime(DateTime t, string fmt)
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        for (int i = 0; i < fmt.Length; i++)
        {
            char c = fmt[i];
            if (c != '%' || i + 1 >= fmt.Length) { sb.Append(c); continue; }
            char f = fmt[++i];
            bool noPad = false;
            if (f == '-' && i + 1 < fmt.Length) { noPad = true; f = fmt[++i]; }
            string P2(int v) => noPad ? v.ToString(inv) : v.ToString("00", inv);
            switch (f)
            {
                case 'Y': sb.Append(t.Year.ToString(inv)); break;
                case 'y': sb.Append(P2(t.Year % 100)); break;
                case 'm': sb.Append(P2(t.Month)); break;
                case 'd': sb.Append(P2(t.Day)); break;
                case 'e': sb.Append(t.Day.ToString(inv).PadLeft(2)); break;
                case 'H': sb.Append(P2(t.Hour)); break;
                case 'I': sb.Append(P2(t.Hour % 12 == 0 ? 12 : t.Hour % 12)); break;
                case 'M': sb.Append(P2(t.Minute)); break;
                case 'S': sb.Append(P2(t.Second)); break;
                case 'f': sb.Append((t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", inv)); break;
                case 'p': sb.Append(t.Hour < 12 ? "AM" : "PM"); break;
                case 'A': sb.Append(DayNames[(int)t.DayOfWeek]); break;
                case 'a': sb.Append(DayNames[(int)t.DayOfWeek][..3]); break;
                case 'B': sb.Append(MonthNames[t.Month - 1]); break;
                case 'b': case 'h': sb.Append(MonthNames[t.Month - 1][..3]); break;
                case 'j': sb.Append(noPad ? t.DayOfYear.ToString(inv) : t.DayOfYear.ToString("000", inv)); break;
                case 'w': sb.Append(((int)t.DayOfWeek).ToString(inv)); break;
                case 'u': sb.Append((t.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)t.DayOfWeek).ToString(inv)); break;
                case 'Z': break;
                case 'z': break;
                case 'F': sb.Append(t.ToString("yyyy-MM-dd", inv)); break;
                case 'T': sb.Append(t.ToString("HH:mm:ss", inv)); break;
                case 'D': sb.Append(t.ToString("MM/dd/yy", inv)); break;
                case 'R': sb.Append(t.ToString("HH:mm", inv)); break;
                case 'c': sb.Append(DayNames[(int)t.DayOfWeek][..3]).Append(' ').Append(MonthNames[t.Month - 1][..3]).Append(' ').Append(t.Day.ToString(inv).PadLeft(2)).Append(' ').Append(t.ToString("HH:mm:ss yyyy", inv)); break;
                case 'x': sb.Append(t.ToString("MM/dd/yy", inv)); break;
                case 'X': sb.Append(t.ToString("HH:mm:ss", inv)); break;
                case '%': sb.Append('%'); break;
                default: sb.Append('%').Append(f); break;
            }
        }
        return sb.ToString();
    }
}
