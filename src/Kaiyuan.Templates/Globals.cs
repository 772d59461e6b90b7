namespace Kaiyuan.Templates;

/// <summary>Global functions every template sees: range, namespace, dict, raise_exception, strftime_now ...</summary>
internal static class Globals
{
    private static readonly Dictionary<string, Value> Table = new(StringComparer.Ordinal)
    {
        ["range"] = new BuiltinFunction("range", Range),
        ["namespace"] = new BuiltinFunction("namespace", (ip, a) =>
        {
            var ns = new NamespaceValue();
            if (a.Count > 0 && a.Positional[0] is DictValue d)
                foreach (var (k, v) in d.Items) ns.Attrs[k.AsString()] = v;
            if (a.Kwargs != null)
                foreach (var kv in a.Kwargs) ns.Attrs[kv.Key] = kv.Value;
            return ns;
        }),
        ["dict"] = new BuiltinFunction("dict", (ip, a) =>
        {
            var d = new DictValue();
            if (a.Count > 0)
            {
                if (a.Positional[0] is DictValue src)
                    foreach (var (k, v) in src.Items) d.Set(k, v);
                else
                    foreach (var pair in Runtime.Iterate(ip, a.Positional[0]))
                    {
                        var kv = Runtime.Iterate(ip, pair);
                        if (kv.Count != 2) throw ip.Error("dict() sequence elements must be pairs");
                        d.Set(kv[0], kv[1]);
                    }
            }
            if (a.Kwargs != null)
                foreach (var kv in a.Kwargs) d.Set(kv.Key, kv.Value);
            return d;
        }),
        ["raise_exception"] = new BuiltinFunction("raise_exception", (ip, a) =>
            throw new TemplateRaisedException(a.Get(0, "message")?.AsString() ?? "", ip.Line)),
        ["strftime_now"] = new BuiltinFunction("strftime_now", (ip, a) =>
            new StringValue(PyFormat.Strftime(ip.Options.Clock(), (a.Get(0, "format") ?? throw ip.Error("strftime_now needs a format")).AsString()))),
        ["joiner"] = new BuiltinFunction("joiner", (ip, a) =>
        {
            string sep = a.Get(0, "sep")?.AsString() ?? ", ";
            bool used = false;
            return new BuiltinFunction("joiner", (_, _) =>
            {
                if (used) return new StringValue(sep);
                used = true;
                return StringValue.Empty;
            });
        }),
        ["cycler"] = new BuiltinFunction("cycler", (ip, a) =>
        {
            var items = a.Positional.ToList();
            int i = 0;
            var c = new DictValue();
            c.Set("next", new BuiltinFunction("next", (ip2, _) => items.Count == 0 ? NoneValue.Instance : items[i++ % items.Count]));
            return c;
        }),
    };

    public static Value? Lookup(string name) => Table.TryGetValue(name, out var v) ? v : null;

    private static Value Range(Interpreter ip, Args a)
    {
        long start = 0, stop, step = 1;
        switch (a.Count)
        {
            case 1: stop = Runtime.ToLongStrict(ip, a.Positional[0]); break;
            case 2: start = Runtime.ToLongStrict(ip, a.Positional[0]); stop = Runtime.ToLongStrict(ip, a.Positional[1]); break;
            case 3:
                start = Runtime.ToLongStrict(ip, a.Positional[0]);
                stop = Runtime.ToLongStrict(ip, a.Positional[1]);
                step = Runtime.ToLongStrict(ip, a.Positional[2]);
                break;
            default: throw ip.Error("range expected 1 to 3 arguments");
        }
        if (step == 0) throw ip.Error("range() arg 3 must not be zero");
        long count = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0) : (start > stop ? (start - stop - step - 1) / -step : 0);
        // A range can never be iterated further than the loop budget, so refuse it before allocating.
        if (count > ip.Options.MaxLoopIterations)
            throw ip.Error($"range of {count} items exceeds the limit of {ip.Options.MaxLoopIterations} loop iterations");
        var items = new List<Value>((int)count);
        for (long i = 0, v = start; i < count; i++, v += step) items.Add(IntValue.Get(v));
        return new ListValue(items);
    }
}
