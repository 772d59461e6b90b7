namespace Kaiyuan.Templates;

/// <summary>Recursive-descent parser from tokens to the AST, with Jinja2's operator precedence.</summary>
internal sealed class Parser
{
    private readonly List<Token> _t;
    private readonly int _maxDepth;
    private int _p;
    private int _depth;

    private Parser(List<Token> tokens, int maxDepth)
    {
        _t = tokens;
        _maxDepth = maxDepth;
    }

    public static List<Stmt> Parse(string source, TemplateOptions options)
    {
        var tokens = Lexer.Tokenize(source, options.TrimBlocks, options.LstripBlocks);
        var p = new Parser(tokens, options.MaxParseDepth);
        var body = p.ParseBody([]);
        if (p.Cur.Kind != TokenKind.Eof)
        {
            var name = p.Peek(1);
            throw Error($"unexpected '{name.Text}' tag", name);
        }
        return body;
    }

    private Token Cur => _t[_p];
    private Token Peek(int n) => _t[Math.Min(_p + n, _t.Count - 1)];
    private Token Next() => _t[_p++];

    private static TemplateException Error(string msg, Token at) => new(msg, at.Line, at.Column);
    private TemplateException Error(string msg) => Error(msg, Cur);

    private void Enter()
    {
        if (++_depth > _maxDepth) throw Error($"template nesting exceeds the limit of {_maxDepth} levels");
    }

    private void Exit() => _depth--;

    private Token Expect(TokenKind kind, string what)
    {
        if (Cur.Kind != kind) throw Error($"expected {what}, got {Cur}");
        return Next();
    }

    private void ExpectOp(string op)
    {
        if (!Cur.IsOp(op)) throw Error($"expected '{op}', got {Cur}");
        _p++;
    }

    private string ExpectName()
    {
        if (Cur.Kind != TokenKind.Name) throw Error($"expected a name, got {Cur}");
        return Next().Text;
    }

    private void ExpectBlockEnd() => Expect(TokenKind.BlockEnd, "'%}'");

    private bool AtEndTag(string[] endTags) =>
        Cur.Kind == TokenKind.BlockBegin && Peek(1).Kind == TokenKind.Name && Array.IndexOf(endTags, Peek(1).Text) >= 0;

    private static readonly HashSet<string> AllEndTags =
        ["endif", "elif", "else", "endfor", "endmacro", "endcall", "endfilter", "endset", "endraw", "endgeneration", "endwith", "endblock"];

    private List<Stmt> ParseBody(string[] endTags)
    {
        Enter();
        var body = new List<Stmt>();
        while (true)
        {
            var tok = Cur;
            switch (tok.Kind)
            {
                case TokenKind.Eof:
                    if (endTags.Length > 0) throw Error($"unexpected end of template, expected {string.Join(" or ", endTags.Select(t => $"'{t}'"))}", tok);
                    Exit();
                    return body;
                case TokenKind.Data:
                    _p++;
                    body.Add(new TextStmt(tok.Line, tok.Text));
                    break;
                case TokenKind.VariableBegin:
                    _p++;
                    var e = ParseTupleOrExpr();
                    Expect(TokenKind.VariableEnd, "'}}'");
                    body.Add(new PrintStmt(tok.Line, e));
                    break;
                case TokenKind.BlockBegin:
                    if (AtEndTag(endTags))
                    {
                        Exit();
                        return body;
                    }
                    if (Peek(1).Kind == TokenKind.Name && AllEndTags.Contains(Peek(1).Text))
                    {
                        if (endTags.Length == 0) throw Error($"unexpected '{Peek(1).Text}' tag", Peek(1));
                        throw Error($"unexpected '{Peek(1).Text}', expected {string.Join(" or ", endTags.Select(t => $"'{t}'"))}", Peek(1));
                    }
                    _p++;
                    body.Add(ParseStatement());
                    break;
                default:
                    throw Error($"unexpected {tok}");
            }
        }
    }

    private Stmt ParseStatement()
    {
        var tok = Cur;
        string name = ExpectName();
        switch (name)
        {
            case "if": return ParseIf(tok);
            case "for": return ParseFor(tok);
            case "set": return ParseSet(tok);
            case "macro": return ParseMacro(tok);
            case "call": return ParseCall(tok);
            case "filter":
                {
                    var filters = ParseFilterChain(tok);
                    ExpectBlockEnd();
                    var body = ParseBody(["endfilter"]);
                    EndTag();
                    return new FilterBlockStmt(tok.Line, filters, body);
                }
            case "generation":
                {
                    ExpectBlockEnd();
                    var body = ParseBody(["endgeneration"]);
                    EndTag();
                    return new BlockStmt(tok.Line, body);
                }
            case "break":
                ExpectBlockEnd();
                return new LoopControlStmt(tok.Line, Flow.Break);
            case "continue":
                ExpectBlockEnd();
                return new LoopControlStmt(tok.Line, Flow.Continue);
            case "do":
                {
                    var e = ParseTupleOrExpr();
                    ExpectBlockEnd();
                    return new DoStmt(tok.Line, e);
                }
            case "with":
                {
                    var assigns = new List<(string, Expr)>();
                    while (Cur.Kind != TokenKind.BlockEnd)
                    {
                        if (assigns.Count > 0) ExpectOp(",");
                        string n = ExpectName();
                        ExpectOp("=");
                        assigns.Add((n, ParseExpression()));
                    }
                    ExpectBlockEnd();
                    var body = ParseBody(["endwith"]);
                    EndTag();
                    return new WithStmt(tok.Line, assigns, body);
                }
            default:
                throw Error($"unknown tag '{name}'", tok);
        }
    }

    /// <summary>Consumes '{% endxxx %}' (the BlockBegin and the name are current).</summary>
    private void EndTag()
    {
        _p += 2;
        // Jinja allows a trailing name after endmacro/endblock; ignore it.
        if (Cur.Kind == TokenKind.Name) _p++;
        ExpectBlockEnd();
    }

    private Stmt ParseIf(Token tok)
    {
        var branches = new List<(Expr, List<Stmt>)>();
        List<Stmt>? elseBody = null;
        var cond = ParseTupleOrExpr();
        ExpectBlockEnd();
        while (true)
        {
            var body = ParseBody(["elif", "else", "endif"]);
            branches.Add((cond, body));
            string tag = Peek(1).Text;
            _p += 2;
            if (tag == "elif")
            {
                cond = ParseTupleOrExpr();
                ExpectBlockEnd();
                continue;
            }
            if (tag == "else")
            {
                ExpectBlockEnd();
                elseBody = ParseBody(["endif"]);
                _p += 2;
            }
            ExpectBlockEnd();
            break;
        }
        return new IfStmt(tok.Line, branches, elseBody);
    }

    private List<string> ParseTargets()
    {
        var names = new List<string>();
        bool paren = Cur.IsOp("(");
        if (paren) _p++;
        names.Add(ExpectName());
        while (Cur.IsOp(","))
        {
            _p++;
            if (Cur.Kind != TokenKind.Name) break;
            names.Add(ExpectName());
        }
        if (paren) ExpectOp(")");
        return names;
    }

    private Stmt ParseFor(Token tok)
    {
        var targets = ParseTargets();
        if (!Cur.IsName("in")) throw Error($"expected 'in', got {Cur}");
        _p++;
        var iter = ParseTupleOrExpr(withCondition: false);
        Expr? filter = null;
        if (Cur.IsName("if"))
        {
            _p++;
            filter = ParseExpression();
        }
        if (Cur.IsName("recursive")) throw Error("recursive loops are not supported");
        ExpectBlockEnd();
        var body = ParseBody(["endfor", "else"]);
        List<Stmt>? elseBody = null;
        if (Peek(1).Text == "else")
        {
            _p += 2;
            ExpectBlockEnd();
            elseBody = ParseBody(["endfor"]);
        }
        EndTag();
        return new ForStmt(tok.Line, targets, iter, filter, body, elseBody);
    }

    private Stmt ParseSet(Token tok)
    {
        string first = ExpectName();
        if (Cur.IsOp("."))
        {
            _p++;
            string attr = ExpectName();
            ExpectOp("=");
            var v = ParseTupleOrExpr();
            ExpectBlockEnd();
            return new SetAttrStmt(tok.Line, new NameExpr(tok.Line, first), attr, v);
        }
        var targets = new List<string> { first };
        while (Cur.IsOp(","))
        {
            _p++;
            targets.Add(ExpectName());
        }
        if (targets.Count == 1 && (Cur.Kind == TokenKind.BlockEnd || Cur.IsOp("|")))
        {
            var filters = Cur.IsOp("|") ? ParseFilterChain(tok, leadingPipe: true) : [];
            ExpectBlockEnd();
            var body = ParseBody(["endset"]);
            EndTag();
            return new BlockSetStmt(tok.Line, first, filters, body);
        }
        ExpectOp("=");
        var value = ParseTupleOrExpr();
        ExpectBlockEnd();
        return new SetStmt(tok.Line, targets, value);
    }

    private List<MacroParam> ParseParams()
    {
        var ps = new List<MacroParam>();
        ExpectOp("(");
        while (!Cur.IsOp(")"))
        {
            if (ps.Count > 0) ExpectOp(",");
            if (Cur.IsOp(")")) break;
            string n = ExpectName();
            Expr? d = null;
            if (Cur.IsOp("="))
            {
                _p++;
                d = ParseExpression();
            }
            ps.Add(new MacroParam(n, d));
        }
        _p++;
        return ps;
    }

    private Stmt ParseMacro(Token tok)
    {
        string name = ExpectName();
        var ps = ParseParams();
        ExpectBlockEnd();
        var body = ParseBody(["endmacro"]);
        EndTag();
        return new MacroStmt(tok.Line, name, ps, body);
    }

    private Stmt ParseCall(Token tok)
    {
        var ps = Cur.IsOp("(") ? ParseParams() : [];
        var e = ParseExpression();
        if (e is not CallExpr call) throw Error("expected a macro call after 'call'", tok);
        ExpectBlockEnd();
        var body = ParseBody(["endcall"]);
        EndTag();
        return new CallBlockStmt(tok.Line, call, ps, body);
    }

    private List<FilterExpr> ParseFilterChain(Token tok, bool leadingPipe = false)
    {
        var list = new List<FilterExpr>();
        if (leadingPipe) ExpectOp("|");
        while (true)
        {
            var ft = Cur;
            string n = ExpectName();
            if (!Filters.Exists(n)) throw Error($"no filter named '{n}'", ft);
            var args = Cur.IsOp("(") ? ParseCallArgs() : CallArgs.None;
            list.Add(new FilterExpr(ft.Line, null, n, args));
            if (!Cur.IsOp("|")) break;
            _p++;
        }
        return list;
    }

    // ---- expressions ----

    /// <summary>An expression, or a bare tuple 'a, b' as Jinja accepts in print/set/for.</summary>
    private Expr ParseTupleOrExpr(bool withCondition = true)
    {
        var line = Cur.Line;
        var first = withCondition ? ParseExpression() : ParseOr();
        if (!Cur.IsOp(",")) return first;
        var items = new List<Expr> { first };
        while (Cur.IsOp(","))
        {
            _p++;
            if (Cur.Kind is TokenKind.BlockEnd or TokenKind.VariableEnd || Cur.IsOp("=") || Cur.IsName("if")) break;
            items.Add(withCondition ? ParseExpression() : ParseOr());
        }
        return new ListExpr(line, items, true);
    }

    private Expr ParseExpression()
    {
        Enter();
        var line = Cur.Line;
        var e = ParseOr();
        while (Cur.IsName("if"))
        {
            _p++;
            var cond = ParseOr();
            Expr? other = null;
            if (Cur.IsName("else"))
            {
                _p++;
                other = ParseExpression();
            }
            e = new CondExpr(line, cond, e, other);
        }
        Exit();
        return e;
    }

    private Expr ParseOr()
    {
        var e = ParseAnd();
        while (Cur.IsName("or"))
        {
            var t = Next();
            e = new BinaryExpr(t.Line, "or", e, ParseAnd());
        }
        return e;
    }

    private Expr ParseAnd()
    {
        var e = ParseNot();
        while (Cur.IsName("and"))
        {
            var t = Next();
            e = new BinaryExpr(t.Line, "and", e, ParseNot());
        }
        return e;
    }

    private Expr ParseNot()
    {
        if (Cur.IsName("not"))
        {
            var t = Next();
            Enter();
            var inner = ParseNot();
            Exit();
            return new UnaryExpr(t.Line, "not", inner);
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var line = Cur.Line;
        var e = ParseMath1();
        List<(string, Expr)>? ops = null;
        while (true)
        {
            string? op = null;
            if (Cur.Kind == TokenKind.Operator && Cur.Text is "==" or "!=" or "<" or ">" or "<=" or ">=") op = Next().Text;
            else if (Cur.IsName("in")) { _p++; op = "in"; }
            else if (Cur.IsName("not") && Peek(1).IsName("in")) { _p += 2; op = "notin"; }
            if (op is null) break;
            (ops ??= []).Add((op, ParseMath1()));
        }
        return ops is null ? e : new CompareExpr(line, e, ops);
    }

    private Expr ParseMath1()
    {
        var e = ParseConcat();
        while (Cur.Kind == TokenKind.Operator && Cur.Text is "+" or "-")
        {
            var t = Next();
            e = new BinaryExpr(t.Line, t.Text, e, ParseConcat());
        }
        return e;
    }

    private Expr ParseConcat()
    {
        var e = ParseMath2();
        while (Cur.IsOp("~"))
        {
            var t = Next();
            e = new BinaryExpr(t.Line, "~", e, ParseMath2());
        }
        return e;
    }

    private Expr ParseMath2()
    {
        var e = ParsePow();
        while (Cur.Kind == TokenKind.Operator && Cur.Text is "*" or "/" or "//" or "%")
        {
            var t = Next();
            e = new BinaryExpr(t.Line, t.Text, e, ParsePow());
        }
        return e;
    }

    private Expr ParsePow()
    {
        var e = ParseUnary(true);
        while (Cur.IsOp("**"))
        {
            var t = Next();
            e = new BinaryExpr(t.Line, "**", e, ParseUnary(true));
        }
        return e;
    }

    private Expr ParseUnary(bool withFilter)
    {
        Enter();
        Expr e;
        var t = Cur;
        if (t.IsOp("-") || t.IsOp("+"))
        {
            _p++;
            e = new UnaryExpr(t.Line, t.Text, ParseUnary(false));
        }
        else e = ParsePrimary();
        e = ParsePostfix(e);
        if (withFilter) e = ParseFilterAndTest(e);
        Exit();
        return e;
    }

    private Expr ParsePrimary()
    {
        var t = Cur;
        switch (t.Kind)
        {
            case TokenKind.Name:
                _p++;
                return t.Text switch
                {
                    "true" or "True" => new ConstExpr(t.Line, BoolValue.True),
                    "false" or "False" => new ConstExpr(t.Line, BoolValue.False),
                    "none" or "None" => new ConstExpr(t.Line, NoneValue.Instance),
                    _ => new NameExpr(t.Line, t.Text),
                };
            case TokenKind.String:
                {
                    _p++;
                    // Adjacent string literals concatenate, as in Python.
                    string s = t.Text;
                    while (Cur.Kind == TokenKind.String) s += Next().Text;
                    return new ConstExpr(t.Line, new StringValue(s));
                }
            case TokenKind.Integer:
                _p++;
                return new ConstExpr(t.Line, IntValue.Get(t.IntValue));
            case TokenKind.Float:
                _p++;
                return new ConstExpr(t.Line, new FloatValue(t.FloatValue));
            case TokenKind.Operator when t.Text == "(":
                {
                    _p++;
                    if (Cur.IsOp(")"))
                    {
                        _p++;
                        return new ListExpr(t.Line, [], true);
                    }
                    var first = ParseExpression();
                    if (Cur.IsOp(")"))
                    {
                        _p++;
                        return first;
                    }
                    var items = new List<Expr> { first };
                    while (Cur.IsOp(","))
                    {
                        _p++;
                        if (Cur.IsOp(")")) break;
                        items.Add(ParseExpression());
                    }
                    ExpectOp(")");
                    return new ListExpr(t.Line, items, true);
                }
            case TokenKind.Operator when t.Text == "[":
                {
                    _p++;
                    var items = new List<Expr>();
                    while (!Cur.IsOp("]"))
                    {
                        if (items.Count > 0) ExpectOp(",");
                        if (Cur.IsOp("]")) break;
                        items.Add(ParseExpression());
                    }
                    _p++;
                    return new ListExpr(t.Line, items, false);
                }
            case TokenKind.Operator when t.Text == "{":
                {
                    _p++;
                    var pairs = new List<(Expr, Expr)>();
                    while (!Cur.IsOp("}"))
                    {
                        if (pairs.Count > 0) ExpectOp(",");
                        if (Cur.IsOp("}")) break;
                        var k = ParseExpression();
                        ExpectOp(":");
                        pairs.Add((k, ParseExpression()));
                    }
                    _p++;
                    return new DictExpr(t.Line, pairs);
                }
            default:
                throw Error($"unexpected {t}", t);
        }
    }

    private Expr ParsePostfix(Expr e)
    {
        while (true)
        {
            var t = Cur;
            if (t.IsOp("."))
            {
                _p++;
                if (Cur.Kind == TokenKind.Name) e = new GetAttrExpr(t.Line, e, Next().Text);
                else if (Cur.Kind == TokenKind.Integer) e = new GetItemExpr(t.Line, e, new ConstExpr(t.Line, IntValue.Get(Next().IntValue)));
                else throw Error($"expected an attribute name after '.', got {Cur}");
            }
            else if (t.IsOp("["))
            {
                _p++;
                e = ParseSubscript(t, e);
            }
            else if (t.IsOp("("))
            {
                e = new CallExpr(t.Line, e, ParseCallArgs());
            }
            else return e;
        }
    }

    private Expr ParseSubscript(Token t, Expr obj)
    {
        Expr? start = null, stop = null, step = null;
        if (!Cur.IsOp(":")) start = ParseExpression();
        if (Cur.IsOp("]"))
        {
            _p++;
            return new GetItemExpr(t.Line, obj, start!);
        }
        ExpectOp(":");
        if (!Cur.IsOp("]") && !Cur.IsOp(":")) stop = ParseExpression();
        if (Cur.IsOp(":"))
        {
            _p++;
            if (!Cur.IsOp("]")) step = ParseExpression();
        }
        ExpectOp("]");
        return new SliceExpr(t.Line, obj, start, stop, step);
    }

    private CallArgs ParseCallArgs()
    {
        ExpectOp("(");
        var pos = new List<Expr>();
        var kw = new List<(string, Expr)>();
        while (!Cur.IsOp(")"))
        {
            if (pos.Count + kw.Count > 0) ExpectOp(",");
            if (Cur.IsOp(")")) break;
            if (Cur.Kind == TokenKind.Name && Peek(1).IsOp("="))
            {
                string n = Next().Text;
                _p++;
                kw.Add((n, ParseExpression()));
            }
            else
            {
                if (kw.Count > 0) throw Error("positional argument follows keyword argument");
                pos.Add(ParseExpression());
            }
        }
        _p++;
        return new CallArgs(pos, kw);
    }

    private Expr ParseFilterAndTest(Expr e)
    {
        while (true)
        {
            var t = Cur;
            if (t.IsOp("|"))
            {
                _p++;
                var ft = Cur;
                string name = ExpectName();
                if (!Filters.Exists(name)) throw Error($"no filter named '{name}'", ft);
                var args = Cur.IsOp("(") ? ParseCallArgs() : CallArgs.None;
                e = new FilterExpr(ft.Line, e, name, args);
            }
            else if (t.IsName("is"))
            {
                _p++;
                bool neg = false;
                if (Cur.IsName("not"))
                {
                    _p++;
                    neg = true;
                }
                var nt = Cur;
                string name = Cur.Kind == TokenKind.Name ? Next().Text
                    : Cur.Kind == TokenKind.Operator && Cur.Text is "==" or "!=" or "<" or ">" or "<=" or ">=" ? Next().Text
                    : throw Error($"expected a test name, got {Cur}");
                if (name is "none" or "true" or "false" or "True" or "False" or "None") name = name.ToLowerInvariant();
                if (!Tests.Exists(name)) throw Error($"no test named '{name}'", nt);
                CallArgs args;
                if (Cur.IsOp("(")) args = ParseCallArgs();
                else if ((Cur.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float || Cur.IsOp("[") || Cur.IsOp("{"))
                    && !(Cur.Kind == TokenKind.Name && Cur.Text is "else" or "or" or "and" or "if" or "in" or "not" or "is"))
                    args = new CallArgs([ParsePostfix(ParsePrimary())], []);
                else args = CallArgs.None;
                e = new TestExpr(nt.Line, e, name, args, neg);
            }
            else if (t.IsOp("(") && e is FilterExpr)
            {
                e = new CallExpr(t.Line, e, ParseCallArgs());
            }
            else return e;
        }
    }
}
