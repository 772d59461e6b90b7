using System.Text;

namespace Kaiyuan.Templates;

/// <summary>Python semantics of attribute access, indexing, iteration, operators and comparisons.</summary>
internal static class Runtime
{
    public static Value GetAttr(Interpreter ip, Value obj, string name)
    {
        switch (obj)
        {
            case DictValue d:
                if (Methods.IsDictMethod(name)) return new BoundMethod(obj, name);
                return d.Get(name) ?? new UndefinedValue(name);
            case NamespaceValue ns:
                return ns.Attrs.TryGetValue(name, out var nv) ? nv : new UndefinedValue(name);
            case LoopValue loop:
                return LoopAttr(loop, name);
            case StringValue when Methods.IsStringMethod(name):
            case ListValue when Methods.IsListMethod(name):
                return new BoundMethod(obj, name);
            default:
                return new UndefinedValue(name);
        }
    }

    private static Value LoopAttr(LoopValue loop, string name)
    {
        int i = loop.Index, n = loop.Items.Count;
        return name switch
        {
            "index" => IntValue.Get(i + 1),
            "index0" => IntValue.Get(i),
            "revindex" => IntValue.Get(n - i),
            "revindex0" => IntValue.Get(n - i - 1),
            "first" => Value.From(i == 0),
            "last" => Value.From(i == n - 1),
            "length" => IntValue.Get(n),
            "depth" => IntValue.Get(loop.Depth0 + 1),
            "depth0" => IntValue.Get(loop.Depth0),
            "previtem" => i > 0 ? loop.Items[i - 1] : new UndefinedValue("previtem"),
            "nextitem" => i + 1 < n ? loop.Items[i + 1] : new UndefinedValue("nextitem"),
            "cycle" => new BuiltinFunction("cycle", (ip, a) =>
            {
                if (a.Count == 0) throw ip.Error("loop.cycle() needs at least one argument");
                return a.Positional[loop.Index % a.Count];
            }),
            _ => new UndefinedValue(name),
        };
    }

    public static Value GetItem(Interpreter ip, Value obj, Value key)
    {
        switch (obj)
        {
            case DictValue d:
                if (d.Items.TryGetValue(key, out var v)) return v;
                return key is StringValue ks ? GetAttr(ip, obj, ks.V) is BoundMethod bm ? bm : new UndefinedValue(ks.V) : UndefinedValue.Instance;
            case ListValue l when key is IntValue or BoolValue:
                {
                    long i = ToLong(key);
                    if (i < 0) i += l.Items.Count;
                    return i >= 0 && i < l.Items.Count ? l.Items[(int)i] : UndefinedValue.Instance;
                }
            case StringValue s when key is IntValue or BoolValue:
                {
                    long i = ToLong(key);
                    if (i < 0) i += s.V.Length;
                    return i >= 0 && i < s.V.Length ? new StringValue(s.V[(int)i].ToString()) : UndefinedValue.Instance;
                }
            case UndefinedValue:
                return UndefinedValue.Instance;
            default:
                return key is StringValue name ? GetAttr(ip, obj, name.V) : UndefinedValue.Instance;
        }
    }

    public static Value Slice(Interpreter ip, Value obj, Value? start, Value? stop, Value? step)
    {
        long st = step is null or NoneValue ? 1 : ToLongStrict(ip, step);
        if (st == 0) throw ip.Error("slice step cannot be zero");
        int len = obj switch
        {
            ListValue l => l.Items.Count,
            StringValue s => s.V.Length,
            UndefinedValue => -1,
            _ => throw ip.Error($"'{obj.TypeName}' object is not subscriptable"),
        };
        if (len < 0) return UndefinedValue.Instance;
        var idx = SliceIndices(ip, len, start, stop, st);
        if (obj is StringValue sv)
        {
            if (st == 1) return new StringValue(idx.Count == 0 ? "" : sv.V.Substring(idx[0], idx.Count));
            var sb = new StringBuilder(idx.Count);
            foreach (int i in idx) sb.Append(sv.V[i]);
            return new StringValue(sb.ToString());
        }
        var lv = (ListValue)obj;
        var res = new List<Value>(idx.Count);
        foreach (int i in idx) res.Add(lv.Items[i]);
        return new ListValue(res, lv.IsTuple);
    }

    private static List<int> SliceIndices(Interpreter ip, int len, Value? start, Value? stop, long step)
    {
        long Norm(Value? v, long dflt, long lo, long hi)
        {
            if (v is null or NoneValue) return dflt;
            long x = ToLongStrict(ip, v);
            if (x < 0) x += len;
            return Math.Clamp(x, lo, hi);
        }
        var res = new List<int>();
        if (step > 0)
        {
            long a = Norm(start, 0, 0, len), b = Norm(stop, len, 0, len);
            for (long i = a; i < b; i += step) res.Add((int)i);
        }
        else
        {
            long a = Norm(start, len - 1, -1, len - 1), b = Norm(stop, -1, -1, len - 1);
            for (long i = a; i > b; i += step) res.Add((int)i);
        }
        return res;
    }

    public static long ToLong(Value v) => v switch
    {
        IntValue i => i.V,
        BoolValue b => b.V ? 1 : 0,
        FloatValue f => (long)f.V,
        _ => 0,
    };

    public static long ToLongStrict(Interpreter ip, Value v) => v switch
    {
        IntValue i => i.V,
        BoolValue b => b.V ? 1 : 0,
        _ => throw ip.Error($"expected an integer, got '{v.TypeName}'"),
    };

    public static bool IsNumber(Value v) => v is IntValue or FloatValue or BoolValue;

    public static double ToDouble(Value v) => v switch
    {
        IntValue i => i.V,
        FloatValue f => f.V,
        BoolValue b => b.V ? 1 : 0,
        _ => 0,
    };

    /// <summary>Python iteration: lists and tuples by item, dicts by key, strings by character, undefined as empty.</summary>
    public static List<Value> Iterate(Interpreter ip, Value v) => v switch
    {
        ListValue l => [.. l.Items],
        DictValue d => [.. d.Items.Keys],
        StringValue s => s.V.Select(c => (Value)new StringValue(c.ToString())).ToList(),
        UndefinedValue => [],
        _ => throw ip.Error($"'{v.TypeName}' object is not iterable"),
    };

    public static Value Negate(Interpreter ip, Value v) => v switch
    {
        IntValue i => IntValue.Get(-i.V),
        FloatValue f => new FloatValue(-f.V),
        BoolValue b => IntValue.Get(b.V ? -1 : 0),
        _ => throw ip.Error($"bad operand type for unary -: '{v.TypeName}'"),
    };

    public static Value Positive(Interpreter ip, Value v) => IsNumber(v) ? v is BoolValue ? IntValue.Get(ToLong(v)) : v
        : throw ip.Error($"bad operand type for unary +: '{v.TypeName}'");

    public static Value Binary(Interpreter ip, string op, Value l, Value r)
    {
        if (op == "~")
        {
            string s = l.AsString() + r.AsString();
            CheckLength(ip, s.Length);
            return new StringValue(s);
        }
        if (l is UndefinedValue lu) throw ip.Error($"{lu.Describe()}; cannot use it with '{op}'");
        if (r is UndefinedValue ru) throw ip.Error($"{ru.Describe()}; cannot use it with '{op}'");
        if (IsNumber(l) && IsNumber(r))
            return Arith(ip, op, l, r);
        switch (op)
        {
            case "+" when l is StringValue a && r is StringValue b:
                CheckLength(ip, (long)a.V.Length + b.V.Length);
                return new StringValue(a.V + b.V);
            case "+" when l is ListValue a && r is ListValue b && a.IsTuple == b.IsTuple:
                CheckListLength(ip, (long)a.Items.Count + b.Items.Count);
                return new ListValue([.. a.Items, .. b.Items], a.IsTuple);
            case "*" when l is StringValue || r is StringValue:
                {
                    var (s, n) = l is StringValue ls ? (ls.V, r) : (((StringValue)r).V, l);
                    if (n is not (IntValue or BoolValue)) break;
                    long count = Math.Max(0, ToLong(n));
                    // Size is checked before allocating so '{{ "x" * 10**9 }}' fails fast.
                    CheckLength(ip, count * s.Length);
                    return new StringValue(Repeat(s, (int)count));
                }
            case "*" when l is ListValue || r is ListValue:
                {
                    var (lst, n) = l is ListValue ll ? (ll, r) : ((ListValue)r, l);
                    if (n is not (IntValue or BoolValue)) break;
                    long count = Math.Max(0, ToLong(n));
                    CheckListLength(ip, count * lst.Items.Count);
                    var res = new List<Value>();
                    for (long i = 0; i < count; i++) res.AddRange(lst.Items);
                    return new ListValue(res, lst.IsTuple);
                }
            case "%" when l is StringValue fmt:
                return new StringValue(Methods.PercentFormat(ip, fmt.V, r));
        }
        throw ip.Error($"unsupported operand type(s) for {op}: '{l.TypeName}' and '{r.TypeName}'");
    }

    private static string Repeat(string s, int count)
    {
        if (count == 0 || s.Length == 0) return "";
        if (s.Length == 1) return new string(s[0], count);
        return string.Create(s.Length * count, s, static (span, src) =>
        {
            for (int i = 0; i < span.Length; i += src.Length) src.AsSpan().CopyTo(span[i..]);
        });
    }

    public static void CheckListLength(Interpreter ip, long n)
    {
        if (n > ip.Options.MaxListLength)
            throw ip.Error($"list of {n} items exceeds the limit of {ip.Options.MaxListLength}");
    }

    public static void CheckLength(Interpreter ip, long n)
    {
        if (n > ip.Options.MaxOutputLength)
            throw ip.Error($"value of {n} elements exceeds the limit of {ip.Options.MaxOutputLength}");
    }

    private static Value Arith(Interpreter ip, string op, Value l, Value r)
    {
        bool ints = l is not FloatValue && r is not FloatValue;
        if (ints)
        {
            long a = ToLong(l), b = ToLong(r);
            try
            {
                switch (op)
                {
                    case "+": return IntValue.Get(checked(a + b));
                    case "-": return IntValue.Get(checked(a - b));
                    case "*": return IntValue.Get(checked(a * b));
                    case "//":
                        if (b == 0) throw ip.Error("integer division or modulo by zero");
                        return IntValue.Get(FloorDiv(a, b));
                    case "%":
                        if (b == 0) throw ip.Error("integer division or modulo by zero");
                        return IntValue.Get(a - b * FloorDiv(a, b));
                    case "**":
                        if (b >= 0) return IntValue.Get(IntPow(a, b));
                        return new FloatValue(Math.Pow(a, b));
                    case "/":
                        if (b == 0) throw ip.Error("division by zero");
                        return new FloatValue((double)a / b);
                }
            }
            catch (OverflowException)
            {
                throw ip.Error("integer overflow");
            }
        }
        double x = ToDouble(l), y = ToDouble(r);
        switch (op)
        {
            case "+": return new FloatValue(x + y);
            case "-": return new FloatValue(x - y);
            case "*": return new FloatValue(x * y);
            case "/":
                if (y == 0) throw ip.Error("float division by zero");
                return new FloatValue(x / y);
            case "//":
                if (y == 0) throw ip.Error("float floor division by zero");
                return new FloatValue(Math.Floor(x / y));
            case "%":
                if (y == 0) throw ip.Error("float modulo");
                return new FloatValue(x - y * Math.Floor(x / y));
            case "**": return new FloatValue(Math.Pow(x, y));
        }
        throw ip.Error($"unsupported operator {op}");
    }

    private static long FloorDiv(long a, long b)
    {
        long q = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
        return q;
    }

    private static long IntPow(long a, long b)
    {
        long result = 1;
        while (b > 0)
        {
            if ((b & 1) != 0) result = checked(result * a);
            b >>= 1;
            if (b > 0) a = checked(a * a);
        }
        return result;
    }

    public static bool Compare(Interpreter ip, string op, Value l, Value r)
    {
        switch (op)
        {
            case "==": return Equal(l, r);
            case "!=": return !Equal(l, r);
            case "in": return Contains(ip, r, l);
            case "notin": return !Contains(ip, r, l);
        }
        int c = Order(ip, l, r, op);
        return op switch
        {
            "<" => c < 0,
            ">" => c > 0,
            "<=" => c <= 0,
            ">=" => c >= 0,
            _ => throw ip.Error($"unknown comparison {op}"),
        };
    }

    public static bool Equal(Value l, Value r) =>
        l is UndefinedValue ? r is UndefinedValue : l.Equals(r);

    public static bool Contains(Interpreter ip, Value container, Value item) => container switch
    {
        StringValue s when item is StringValue sub => s.V.Contains(sub.V, StringComparison.Ordinal),
        StringValue => throw ip.Error($"'in <string>' requires string as left operand, not {item.TypeName}"),
        ListValue l => l.Items.Exists(x => Equal(x, item)),
        DictValue d => d.Items.ContainsKey(item),
        UndefinedValue => false,
        _ => throw ip.Error($"argument of type '{container.TypeName}' is not iterable"),
    };

    public static int Order(Interpreter ip, Value l, Value r, string op = "<")
    {
        if (IsNumber(l) && IsNumber(r))
        {
            if (l is not FloatValue && r is not FloatValue) return ToLong(l).CompareTo(ToLong(r));
            return ToDouble(l).CompareTo(ToDouble(r));
        }
        if (l is StringValue a && r is StringValue b) return string.CompareOrdinal(a.V, b.V);
        if (l is ListValue x && r is ListValue y)
        {
            using var nested = Value.EnterNested();
            for (int i = 0; i < Math.Min(x.Items.Count, y.Items.Count); i++)
            {
                if (Equal(x.Items[i], y.Items[i])) continue;
                return Order(ip, x.Items[i], y.Items[i], op);
            }
            return x.Items.Count.CompareTo(y.Items.Count);
        }
        throw ip.Error($"'{op}' not supported between instances of '{l.TypeName}' and '{r.TypeName}'");
    }
}

/// <summary>Orders values for sorting outside a render (json sort_keys); mixed types order by type name.</summary>
internal sealed class ValueComparer : IComparer<Value>
{
    public static readonly ValueComparer Instance = new();
    public int Compare(Value? x, Value? y)
    {
        if (x is null || y is null) return 0;
        if (Runtime.IsNumber(x) && Runtime.IsNumber(y)) return Runtime.ToDouble(x).CompareTo(Runtime.ToDouble(y));
        if (x is StringValue a && y is StringValue b) return string.CompareOrdinal(a.V, b.V);
        return string.CompareOrdinal(x.TypeName, y.TypeName);
    }
}

/// <summary>A Python method bound to a string, list or dict.</summary>
internal sealed class BoundMethod(Value self, string name) : CallableValue
{
    public override string TypeName => "builtin_function_or_method";
    public override string Repr() => $"<built-in method {name} of {self.TypeName} object>";
    public override Value Call(Interpreter ip, Args args) => Methods.Call(ip, self, name, args);
}
