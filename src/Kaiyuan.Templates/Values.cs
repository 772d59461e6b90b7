using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kaiyuan.Templates;

/// <summary>
/// The closed value model templates compute with. Templates never see CLR objects, which is what keeps
/// them sandboxed: attribute access only reaches dictionary keys and the Python methods we implement.
/// </summary>
internal abstract class Value
{
    public abstract string TypeName { get; }
    public abstract bool IsTruthy { get; }

    /// <summary>Python <c>str(x)</c>.</summary>
    public virtual string AsString() => Repr();

    /// <summary>Python <c>repr(x)</c>.</summary>
    public abstract string Repr();

    public void AppendRepr(StringBuilder sb) => AppendRepr(sb, 0);

    /// <summary>Appends the repr; containers bound depth and size so self-referencing or huge values cannot exhaust the stack or memory.</summary>
    public virtual void AppendRepr(StringBuilder sb, int depth) => sb.Append(Repr());

    /// <summary>Upper bound of one printed container, far above any real prompt.</summary>
    public const int MaxReprLength = 64 * 1024 * 1024;

    protected static void CheckRepr(StringBuilder sb, int depth)
    {
        if (depth > 256) throw new TemplateException("value nested too deeply to print");
        if (sb.Length > MaxReprLength) throw new TemplateException("printed value is too large");
    }

    /// <summary>The repr of a container, built by its bounded <see cref="AppendRepr(StringBuilder, int)"/>.</summary>
    protected string ReprByAppending()
    {
        var sb = new StringBuilder();
        AppendRepr(sb);
        return sb.ToString();
    }

    /// <summary>Appends a container's entries as <c>key{between}value</c>, comma-separated: a <see cref="Value"/> key by its repr, another as text.</summary>
    protected static void AppendEntries<TKey>(StringBuilder sb, int depth, IEnumerable<KeyValuePair<TKey, Value>> entries, string between)
    {
        bool first = true;
        foreach (var (k, v) in entries)
        {
            if (!first) sb.Append(", ");
            first = false;
            if (k is Value key) key.AppendRepr(sb, depth + 1);
            else sb.Append(k);
            sb.Append(between);
            v.AppendRepr(sb, depth + 1);
            CheckRepr(sb, depth);
        }
    }

    [ThreadStatic] private static int t_nesting;

    /// <summary>
    /// Enters one level of a structural comparison (==, &lt;, in, sort, unique) of nested lists and dicts. A template can
    /// build a list that contains itself, or one nested a million deep; comparing either must fail as Python's
    /// RecursionError does instead of overflowing the stack, which no handler can catch.
    /// </summary>
    internal static NestingScope EnterNested()
    {
        if (t_nesting >= 256) throw new TemplateException("values nested too deeply to compare");
        t_nesting++;
        return default;
    }

    internal readonly ref struct NestingScope
    {
        public void Dispose() => t_nesting--;
    }

    public static Value From(bool b) => b ? BoolValue.True : BoolValue.False;
    public static Value From(long i) => IntValue.Get(i);
    public static Value From(double d) => new FloatValue(d);
    public static Value From(string s) => new StringValue(s);

    /// <summary>Deepest JSON nesting accepted from callers, so conversion cannot exhaust the stack.</summary>
    public const int MaxJsonDepth = 256;

    public static Value FromJson(JsonNode? node, int depth = 0)
    {
        if (depth > MaxJsonDepth) throw new TemplateException($"input JSON nested deeper than {MaxJsonDepth} levels");
        switch (node)
        {
            case null: return NoneValue.Instance;
            case JsonObject o:
                var d = new DictValue();
                foreach (var (k, v) in o) d.Set(new StringValue(k), FromJson(v, depth + 1));
                return d;
            case JsonArray a:
                var list = new List<Value>(a.Count);
                foreach (var item in a) list.Add(FromJson(item, depth + 1));
                return new ListValue(list);
            case JsonValue v:
                return FromJsonElement(v.TryGetValue<JsonElement>(out var e) ? e : JsonSerializer.SerializeToElement(v), depth);
            default:
                return NoneValue.Instance;
        }
    }

    public static Value FromJsonElement(JsonElement e, int depth = 0)
    {
        if (depth > MaxJsonDepth) throw new TemplateException($"input JSON nested deeper than {MaxJsonDepth} levels");
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                var d = new DictValue();
                foreach (var p in e.EnumerateObject()) d.Set(new StringValue(p.Name), FromJsonElement(p.Value, depth + 1));
                return d;
            case JsonValueKind.Array:
                var list = new List<Value>(e.GetArrayLength());
                foreach (var item in e.EnumerateArray()) list.Add(FromJsonElement(item, depth + 1));
                return new ListValue(list);
            case JsonValueKind.String: return new StringValue(e.GetString()!);
            case JsonValueKind.True: return BoolValue.True;
            case JsonValueKind.False: return BoolValue.False;
            case JsonValueKind.Number:
                if (e.TryGetInt64(out long l)) return IntValue.Get(l);
                return new FloatValue(e.GetDouble());
            default: return NoneValue.Instance;
        }
    }

    public override string ToString() => AsString();
}

internal sealed class UndefinedValue : Value
{
    public static readonly UndefinedValue Instance = new(null);
    public UndefinedValue(string? name) => Name = name;
    public string? Name { get; }
    public override string TypeName => "undefined";
    public override bool IsTruthy => false;
    public override string AsString() => "";
    public override string Repr() => "Undefined";
    public string Describe() => Name is null ? "value is undefined" : $"'{Name}' is undefined";
}

internal sealed class NoneValue : Value
{
    public static readonly NoneValue Instance = new();
    public override string TypeName => "NoneType";
    public override bool IsTruthy => false;
    public override string Repr() => "None";
    public override bool Equals(object? obj) => obj is NoneValue;
    public override int GetHashCode() => 0x5eed;
}

internal sealed class BoolValue : Value
{
    public static readonly BoolValue True = new(true);
    public static readonly BoolValue False = new(false);
    private BoolValue(bool v) => V = v;
    public bool V { get; }
    public override string TypeName => "bool";
    public override bool IsTruthy => V;
    public override string Repr() => V ? "True" : "False";
    public override bool Equals(object? obj) => obj switch
    {
        BoolValue b => b.V == V,
        IntValue i => i.V == (V ? 1 : 0),
        FloatValue f => f.V == (V ? 1 : 0),
        _ => false,
    };
    public override int GetHashCode() => (V ? 1L : 0L).GetHashCode();
}

internal sealed class IntValue : Value
{
    private static readonly IntValue[] Small = Enumerable.Range(-16, 273).Select(i => new IntValue(i)).ToArray();
    private IntValue(long v) => V = v;
    public static IntValue Get(long v) => v is >= -16 and <= 256 ? Small[v + 16] : new IntValue(v);
    public long V { get; }
    public override string TypeName => "int";
    public override bool IsTruthy => V != 0;
    public override string Repr() => V.ToString(CultureInfo.InvariantCulture);
    public override bool Equals(object? obj) => obj switch
    {
        IntValue i => i.V == V,
        FloatValue f => f.V == V,
        BoolValue b => (b.V ? 1 : 0) == V,
        _ => false,
    };
    public override int GetHashCode() => V.GetHashCode();
}

internal sealed class FloatValue(double v) : Value
{
    public double V { get; } = v;
    public override string TypeName => "float";
    public override bool IsTruthy => V != 0;
    public override string Repr() => PyFormat.FloatRepr(V);
    public override bool Equals(object? obj) => obj switch
    {
        FloatValue f => f.V == V,
        IntValue i => i.V == V,
        BoolValue b => (b.V ? 1 : 0) == V,
        _ => false,
    };
    public override int GetHashCode() => V == Math.Floor(V) && Math.Abs(V) < 9e18 ? ((long)V).GetHashCode() : V.GetHashCode();
}

internal sealed class StringValue(string v) : Value
{
    public static readonly StringValue Empty = new("");
    public string V { get; } = v;
    public override string TypeName => "str";
    public override bool IsTruthy => V.Length > 0;
    public override string AsString() => V;
    public override string Repr() => PyFormat.StringRepr(V);
    public override bool Equals(object? obj) => obj is StringValue s && s.V == V;
    public override int GetHashCode() => V.GetHashCode(StringComparison.Ordinal);
}

internal sealed class ListValue(List<Value> items, bool isTuple = false) : Value
{
    public ListValue() : this([]) { }
    public List<Value> Items { get; } = items;
    public bool IsTuple { get; } = isTuple;
    public override string TypeName => IsTuple ? "tuple" : "list";
    public override bool IsTruthy => Items.Count > 0;
    public override string Repr() => ReprByAppending();
    public override void AppendRepr(StringBuilder sb, int depth)
    {
        CheckRepr(sb, depth);
        sb.Append(IsTuple ? '(' : '[');
        for (int i = 0; i < Items.Count; i++)
        {
            if (i > 0) sb.Append(", ");
            Items[i].AppendRepr(sb, depth + 1);
            CheckRepr(sb, depth);
        }
        if (IsTuple && Items.Count == 1) sb.Append(',');
        sb.Append(IsTuple ? ')' : ']');
    }
    public override bool Equals(object? obj)
    {
        if (ReferenceEquals(obj, this)) return true;
        if (obj is not ListValue l || l.IsTuple != IsTuple || l.Items.Count != Items.Count) return false;
        using var nested = EnterNested();
        for (int i = 0; i < Items.Count; i++)
            if (!Items[i].Equals(l.Items[i])) return false;
        return true;
    }
    public override int GetHashCode()
    {
        // Shallow on purpose: a list that contains itself must still hash.
        var h = new HashCode();
        h.Add(Items.Count);
        foreach (var i in Items) h.Add(i is ListValue or DictValue ? 0 : i.GetHashCode());
        return h.ToHashCode();
    }
}

internal sealed class DictValue : Value
{
    public OrderedDictionary<Value, Value> Items { get; } = new();
    public override string TypeName => "dict";
    public override bool IsTruthy => Items.Count > 0;
    public void Set(Value k, Value v) => Items[k] = v;
    public void Set(string k, Value v) => Items[new StringValue(k)] = v;
    public Value? Get(string key) => Items.TryGetValue(new StringValue(key), out var v) ? v : null;
    public override string Repr() => ReprByAppending();
    public override void AppendRepr(StringBuilder sb, int depth)
    {
        CheckRepr(sb, depth);
        sb.Append('{');
        AppendEntries(sb, depth, Items, ": ");
        sb.Append('}');
    }
    public override bool Equals(object? obj)
    {
        if (ReferenceEquals(obj, this)) return true;
        if (obj is not DictValue d || d.Items.Count != Items.Count) return false;
        using var nested = EnterNested();
        foreach (var (k, v) in Items)
            if (!d.Items.TryGetValue(k, out var o) || !o.Equals(v)) return false;
        return true;
    }
    public override int GetHashCode() => Items.Count;
}

/// <summary>Jinja's <c>namespace()</c>: the one object whose attributes templates may assign.</summary>
internal sealed class NamespaceValue : Value
{
    public Dictionary<string, Value> Attrs { get; } = new(StringComparer.Ordinal);
    public override string TypeName => "Namespace";
    public override bool IsTruthy => true;
    public override string Repr() => ReprByAppending();
    // Bounded like a list's: a namespace can hold itself (set ns.x = ns).
    public override void AppendRepr(StringBuilder sb, int depth)
    {
        CheckRepr(sb, depth);
        sb.Append("<Namespace ");
        AppendEntries(sb, depth, Attrs, "=");
        sb.Append('>');
    }
}

/// <summary>Positional and keyword arguments of a call.</summary>
internal sealed class Args
{
    public static readonly Args Empty = new([], null);
    public Args(List<Value> positional, List<KeyValuePair<string, Value>>? kwargs)
    {
        Positional = positional;
        Kwargs = kwargs;
    }
    public List<Value> Positional { get; }
    public List<KeyValuePair<string, Value>>? Kwargs { get; }
    public int Count => Positional.Count;

    /// <summary>Argument by position or keyword; null when absent.</summary>
    public Value? Get(int index, string name)
    {
        if (index >= 0 && index < Positional.Count) return Positional[index];
        if (Kwargs != null)
            foreach (var kv in Kwargs)
                if (kv.Key == name) return kv.Value;
        return null;
    }
}

internal abstract class CallableValue : Value
{
    public override bool IsTruthy => true;
    public override string TypeName => "function";
    public abstract Value Call(Interpreter interp, Args args);
}

internal sealed class BuiltinFunction(string name, Func<Interpreter, Args, Value> fn) : CallableValue
{
    public string Name { get; } = name;
    public override Value Call(Interpreter interp, Args args) => fn(interp, args);
    public override string Repr() => $"<built-in function {Name}>";
}
