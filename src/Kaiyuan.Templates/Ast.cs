using System.Text;

namespace Kaiyuan.Templates;

// The AST is immutable after parsing, so one template can render on many threads at once;
// all per-render state lives in Interpreter.

internal abstract class Expr(int line)
{
    public int Line { get; } = line;
    public abstract Value Eval(Interpreter ip);
}

internal sealed class ConstExpr(int line, Value value) : Expr(line)
{
    public Value Value { get; } = value;
    public override Value Eval(Interpreter ip) => Value;
}

internal sealed class NameExpr(int line, string name) : Expr(line)
{
    public string Name { get; } = name;
    public override Value Eval(Interpreter ip) => ip.Lookup(Name);
}

internal sealed class ListExpr(int line, List<Expr> items, bool isTuple) : Expr(line)
{
    public List<Expr> Items { get; } = items;
    public bool IsTuple { get; } = isTuple;
    public override Value Eval(Interpreter ip)
    {
        var list = new List<Value>(Items.Count);
        foreach (var e in Items) list.Add(e.Eval(ip));
        return new ListValue(list, IsTuple);
    }
}

internal sealed class DictExpr(int line, List<(Expr Key, Expr Value)> pairs) : Expr(line)
{
    public override Value Eval(Interpreter ip)
    {
        var d = new DictValue();
        foreach (var (k, v) in pairs) d.Set(k.Eval(ip), v.Eval(ip));
        return d;
    }
}

internal sealed class GetAttrExpr(int line, Expr obj, string name) : Expr(line)
{
    public Expr Obj { get; } = obj;
    public string Name { get; } = name;
    public override Value Eval(Interpreter ip) => Runtime.GetAttr(ip, Obj.Eval(ip), Name);
}

internal sealed class GetItemExpr(int line, Expr obj, Expr index) : Expr(line)
{
    public Expr Obj { get; } = obj;
    public override Value Eval(Interpreter ip) => Runtime.GetItem(ip, Obj.Eval(ip), index.Eval(ip));
}

internal sealed class SliceExpr(int line, Expr obj, Expr? start, Expr? stop, Expr? step) : Expr(line)
{
    public override Value Eval(Interpreter ip) =>
        Runtime.Slice(ip, obj.Eval(ip), start?.Eval(ip), stop?.Eval(ip), step?.Eval(ip));
}

internal sealed class CallArgs(List<Expr> positional, List<(string Name, Expr Value)> kwargs)
{
    public static readonly CallArgs None = new([], []);
    public List<Expr> Positional { get; } = positional;
    public List<(string Name, Expr Value)> Kwargs { get; } = kwargs;

    public Args Eval(Interpreter ip)
    {
        if (Positional.Count == 0 && Kwargs.Count == 0) return Args.Empty;
        var pos = new List<Value>(Positional.Count);
        foreach (var e in Positional) pos.Add(e.Eval(ip));
        List<KeyValuePair<string, Value>>? kw = null;
        if (Kwargs.Count > 0)
        {
            kw = new(Kwargs.Count);
            foreach (var (n, e) in Kwargs) kw.Add(new(n, e.Eval(ip)));
        }
        return new Args(pos, kw);
    }
}

internal sealed class CallExpr(int line, Expr callee, CallArgs args) : Expr(line)
{
    public Expr Callee { get; } = callee;
    public CallArgs Arguments { get; } = args;
    public override Value Eval(Interpreter ip)
    {
        var f = Callee.Eval(ip);
        var a = Arguments.Eval(ip);
        return ip.Invoke(f, a, Line, Callee);
    }
}

internal sealed class FilterExpr(int line, Expr? operand, string name, CallArgs args) : Expr(line)
{
    public Expr? Operand { get; } = operand;
    public string Name { get; } = name;
    public CallArgs Arguments { get; } = args;
    public override Value Eval(Interpreter ip) => Apply(ip, Operand!.Eval(ip));
    public Value Apply(Interpreter ip, Value v) => Filters.Apply(ip, Name, v, Arguments.Eval(ip), Line);
}

internal sealed class TestExpr(int line, Expr operand, string name, CallArgs args, bool negated) : Expr(line)
{
    public override Value Eval(Interpreter ip)
    {
        bool r = Tests.Apply(ip, name, operand.Eval(ip), args.Eval(ip), Line);
        return Value.From(r != negated);
    }
}

internal sealed class UnaryExpr(int line, string op, Expr operand) : Expr(line)
{
    public override Value Eval(Interpreter ip)
    {
        var v = operand.Eval(ip);
        return op switch
        {
            "not" => Value.From(!v.IsTruthy),
            "-" => Runtime.Negate(ip, v),
            _ => Runtime.Positive(ip, v),
        };
    }
}

internal sealed class BinaryExpr(int line, string op, Expr left, Expr right) : Expr(line)
{
    public override Value Eval(Interpreter ip)
    {
        var l = left.Eval(ip);
        switch (op)
        {
            case "and": return l.IsTruthy ? right.Eval(ip) : l;
            case "or": return l.IsTruthy ? l : right.Eval(ip);
        }
        var r = right.Eval(ip);
        return Runtime.Binary(ip, op, l, r);
    }
}

internal sealed class CompareExpr(int line, Expr first, List<(string Op, Expr Operand)> rest) : Expr(line)
{
    public override Value Eval(Interpreter ip)
    {
        var l = first.Eval(ip);
        foreach (var (op, e) in rest)
        {
            var r = e.Eval(ip);
            if (!Runtime.Compare(ip, op, l, r)) return BoolValue.False;
            l = r;
        }
        return BoolValue.True;
    }
}

internal sealed class CondExpr(int line, Expr cond, Expr then, Expr? otherwise) : Expr(line)
{
    public override Value Eval(Interpreter ip) =>
        cond.Eval(ip).IsTruthy ? then.Eval(ip) : otherwise is null ? UndefinedValue.Instance : otherwise.Eval(ip);
}

internal enum Flow { Normal, Break, Continue }

internal abstract class Stmt(int line)
{
    public int Line { get; } = line;
    public abstract Flow Exec(Interpreter ip);

    public static Flow ExecAll(Interpreter ip, List<Stmt> body)
    {
        foreach (var s in body)
        {
            var f = s.Exec(ip);
            if (f != Flow.Normal) return f;
        }
        return Flow.Normal;
    }
}

internal sealed class TextStmt(int line, string text) : Stmt(line)
{
    public string Text { get; } = text;
    public override Flow Exec(Interpreter ip)
    {
        ip.Write(Text);
        return Flow.Normal;
    }
}

internal sealed class PrintStmt(int line, Expr expr) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        ip.Line = Line;
        var v = expr.Eval(ip);
        ip.WriteValue(v);
        return Flow.Normal;
    }
}

internal sealed class IfStmt(int line, List<(Expr Cond, List<Stmt> Body)> branches, List<Stmt>? elseBody) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        foreach (var (cond, body) in branches)
        {
            ip.Line = cond.Line;
            if (cond.Eval(ip).IsTruthy) return ExecAll(ip, body);
        }
        return elseBody is null ? Flow.Normal : ExecAll(ip, elseBody);
    }
}

internal sealed class ForStmt(int line, List<string> targets, Expr iter, Expr? filter, List<Stmt> body, List<Stmt>? elseBody) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        ip.Line = Line;
        var source = iter.Eval(ip);
        var items = Runtime.Iterate(ip, source);
        var frame = ip.PushFrame();
        try
        {
            if (filter != null)
            {
                var kept = new List<Value>();
                foreach (var it in items)
                {
                    ip.CountIteration();
                    Bind(ip, frame, it);
                    if (filter.Eval(ip).IsTruthy) kept.Add(it);
                }
                items = kept;
            }
            var loop = new LoopValue(items, ip.LoopDepth);
            frame.Vars["loop"] = loop;
            ip.LoopDepth++;
            try
            {
                for (int i = 0; i < items.Count; i++)
                {
                    ip.CountIteration();
                    loop.Index = i;
                    Bind(ip, frame, items[i]);
                    var f = ExecAll(ip, body);
                    if (f == Flow.Break) break;
                }
            }
            finally
            {
                ip.LoopDepth--;
            }
            if (items.Count == 0 && elseBody != null)
            {
                frame.Vars.Remove("loop");
                ExecAll(ip, elseBody);
            }
        }
        finally
        {
            ip.PopFrame();
        }
        return Flow.Normal;
    }

    private void Bind(Interpreter ip, Frame frame, Value item)
    {
        if (targets.Count == 1)
        {
            frame.Vars[targets[0]] = item;
            return;
        }
        var parts = Runtime.Iterate(ip, item);
        if (parts.Count != targets.Count)
            throw ip.Error($"cannot unpack {parts.Count} values into {targets.Count} loop variables");
        for (int i = 0; i < targets.Count; i++) frame.Vars[targets[i]] = parts[i];
    }
}

internal sealed class SetStmt(int line, List<string> targets, Expr value) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        ip.Line = Line;
        var v = value.Eval(ip);
        if (targets.Count == 1)
        {
            ip.Assign(targets[0], v);
            return Flow.Normal;
        }
        var parts = Runtime.Iterate(ip, v);
        if (parts.Count != targets.Count)
            throw ip.Error($"cannot unpack {parts.Count} values into {targets.Count} names");
        for (int i = 0; i < targets.Count; i++) ip.Assign(targets[i], parts[i]);
        return Flow.Normal;
    }
}

internal sealed class SetAttrStmt(int line, Expr target, string attr, Expr value) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        ip.Line = Line;
        var t = target.Eval(ip);
        if (t is not NamespaceValue ns)
            throw ip.Error("cannot assign attribute on non-namespace object");
        ns.Attrs[attr] = value.Eval(ip);
        return Flow.Normal;
    }
}

internal sealed class BlockSetStmt(int line, string name, List<FilterExpr> filters, List<Stmt> body) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        string s = ip.Capture(body);
        Value v = new StringValue(s);
        foreach (var f in filters) v = f.Apply(ip, v);
        ip.Assign(name, v);
        return Flow.Normal;
    }
}

internal sealed class FilterBlockStmt(int line, List<FilterExpr> filters, List<Stmt> body) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        Value v = new StringValue(ip.Capture(body));
        foreach (var f in filters) v = f.Apply(ip, v);
        ip.WriteValue(v);
        return Flow.Normal;
    }
}

internal sealed class MacroParam(string name, Expr? defaultValue)
{
    public string Name { get; } = name;
    public Expr? Default { get; } = defaultValue;
}

internal sealed class MacroStmt(int line, string name, List<MacroParam> parameters, List<Stmt> body) : Stmt(line)
{
    public string Name { get; } = name;
    public List<MacroParam> Parameters { get; } = parameters;
    public List<Stmt> Body { get; } = body;
    public override Flow Exec(Interpreter ip)
    {
        ip.Assign(Name, new MacroValue(this, ip.CurrentFrame));
        return Flow.Normal;
    }
}

internal sealed class CallBlockStmt(int line, CallExpr call, List<MacroParam> callerParams, List<Stmt> body) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        ip.Line = Line;
        var caller = new MacroValue(new MacroStmt(Line, "caller", callerParams, body), ip.CurrentFrame);
        var f = call.Callee.Eval(ip);
        var a = call.Arguments.Eval(ip);
        if (f is not MacroValue m) throw ip.Error("{% call %} needs a macro");
        ip.WriteValue(m.Invoke(ip, a, caller));
        return Flow.Normal;
    }
}

internal sealed class LoopControlStmt(int line, Flow flow) : Stmt(line)
{
    public override Flow Exec(Interpreter ip) => flow;
}

internal sealed class DoStmt(int line, Expr expr) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        ip.Line = Line;
        expr.Eval(ip);
        return Flow.Normal;
    }
}

internal sealed class WithStmt(int line, List<(string Name, Expr Value)> assignments, List<Stmt> body) : Stmt(line)
{
    public override Flow Exec(Interpreter ip)
    {
        ip.Line = Line;
        var values = assignments.Select(a => (a.Name, a.Value.Eval(ip))).ToList();
        var frame = ip.PushFrame();
        try
        {
            foreach (var (n, v) in values) frame.Vars[n] = v;
            return ExecAll(ip, body);
        }
        finally
        {
            ip.PopFrame();
        }
    }
}

/// <summary>Runs its body (used for <c>{% generation %}</c>, which only marks spans for training masks).</summary>
internal sealed class BlockStmt(int line, List<Stmt> body) : Stmt(line)
{
    public override Flow Exec(Interpreter ip) => ExecAll(ip, body);
}

internal sealed class LoopValue(List<Value> items, int depth0) : Value
{
    public List<Value> Items { get; } = items;
    public int Index { get; set; }
    public int Depth0 { get; } = depth0;
    public override string TypeName => "LoopContext";
    public override bool IsTruthy => true;
    public override string Repr() => $"<LoopContext {Index + 1}/{Items.Count}>";
}

internal sealed class MacroValue(MacroStmt macro, Frame closure) : CallableValue
{
    public override string Repr() => $"<Macro '{macro.Name}'>";
    public override Value Call(Interpreter ip, Args args) => Invoke(ip, args, null);

    public Value Invoke(Interpreter ip, Args args, MacroValue? caller)
    {
        ip.EnterCall();
        var frame = ip.PushFrame(closure);
        try
        {
            var ps = macro.Parameters;
            if (args.Positional.Count > ps.Count)
                throw ip.Error($"macro '{macro.Name}' takes at most {ps.Count} arguments ({args.Positional.Count} given)");
            for (int i = 0; i < ps.Count; i++)
            {
                Value? v = i < args.Positional.Count ? args.Positional[i] : null;
                if (v is null && args.Kwargs != null)
                    foreach (var kv in args.Kwargs)
                        if (kv.Key == ps[i].Name) v = kv.Value;
                frame.Vars[ps[i].Name] = v ?? ps[i].Default?.Eval(ip) ?? new UndefinedValue(ps[i].Name);
            }
            var extra = new DictValue();
            if (args.Kwargs != null)
                foreach (var kv in args.Kwargs)
                    if (!ps.Exists(p => p.Name == kv.Key)) extra.Set(kv.Key, kv.Value);
            frame.Vars["kwargs"] = extra;
            frame.Vars["varargs"] = new ListValue([], true);
            if (caller != null) frame.Vars["caller"] = caller;
            return new StringValue(ip.Capture(macro.Body));
        }
        finally
        {
            ip.PopFrame();
            ip.ExitCall();
        }
    }
}

internal sealed class Frame(Frame? parent)
{
    public Dictionary<string, Value> Vars { get; } = new(StringComparer.Ordinal);
    public Frame? Parent { get; } = parent;
}
