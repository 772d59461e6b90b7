using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text;

namespace Kaiyuan.Templates;

/// <summary>Per-render state: variable frames, output buffer and the sandbox budgets.</summary>
internal sealed class Interpreter
{
    private readonly TemplateOptions _options;
    private readonly List<Frame> _frames = [];
    private StringBuilder _out = new();
    private long _iterations;
    private int _callDepth;
    private readonly long _deadline;

    public Interpreter(TemplateOptions options, Frame root)
    {
        _options = options;
        _frames.Add(root);
        _deadline = options.MaxRenderTime is { } t ? Stopwatch.GetTimestamp() + (long)(t.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
    }

    public TemplateOptions Options => _options;

    /// <summary>Source line of the statement being run, for error messages.</summary>
    public int Line { get; set; }

    public int LoopDepth { get; set; }

    public Frame CurrentFrame => _frames[^1];

    public string Output => _out.ToString();

    public TemplateException Error(string message) => new(message, Line);

    public Frame PushFrame(Frame? parent = null)
    {
        var f = new Frame(parent ?? CurrentFrame);
        _frames.Add(f);
        return f;
    }

    public void PopFrame() => _frames.RemoveAt(_frames.Count - 1);

    public Value Lookup(string name)
    {
        for (var f = CurrentFrame; f != null; f = f.Parent)
            if (f.Vars.TryGetValue(name, out var v)) return v;
        return Globals.Lookup(name) ?? new UndefinedValue(name);
    }

    public void Assign(string name, Value v) => CurrentFrame.Vars[name] = v;

    public void Write(string s)
    {
        if (_out.Length + s.Length > _options.MaxOutputLength)
            throw Error($"template output exceeds the limit of {_options.MaxOutputLength} characters");
        _out.Append(s);
    }

    public void WriteValue(Value v)
    {
        switch (v)
        {
            case StringValue s: Write(s.V); break;
            case UndefinedValue: break;
            case ListValue or DictValue:
                var sb = new StringBuilder();
                v.AppendRepr(sb);
                Write(sb.ToString());
                break;
            default: Write(v.AsString()); break;
        }
    }

    /// <summary>Runs statements into a fresh buffer and returns what they wrote.</summary>
    public string Capture(List<Stmt> body)
    {
        var saved = _out;
        _out = new StringBuilder();
        try
        {
            Stmt.ExecAll(this, body);
            return _out.ToString();
        }
        finally
        {
            _out = saved;
        }
    }

    public void CountIteration()
    {
        if (++_iterations > _options.MaxLoopIterations)
            throw Error($"template exceeded the limit of {_options.MaxLoopIterations} loop iterations");
        if ((_iterations & 1023) == 0) CheckTime();
    }

    public void CheckTime()
    {
        if (Stopwatch.GetTimestamp() > _deadline)
            throw Error($"template rendering exceeded the time limit of {_options.MaxRenderTime}");
    }

    public void EnterCall()
    {
        if (++_callDepth > _options.MaxRecursionDepth)
            throw Error($"template recursion exceeded the limit of {_options.MaxRecursionDepth} nested calls");
        EnsureStack();
        CheckTime();
    }

    public void ExitCall() => _callDepth--;

    public void EnsureStack()
    {
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw Error("template nesting too deep");
    }

    /// <summary>Calls a value; undefined and non-callables are errors (never a way out of the sandbox).</summary>
    public Value Invoke(Value f, Args a, int line, Expr? calleeExpr = null)
    {
        Line = line;
        switch (f)
        {
            case CallableValue c:
                EnsureStack();
                return c.Call(this, a);
            case UndefinedValue u:
                throw Error(calleeExpr is GetAttrExpr ga ? $"'{ga.Name}' is undefined and cannot be called" : $"{u.Describe()} and cannot be called");
            default:
                throw Error($"'{f.TypeName}' object is not callable");
        }
    }
}
