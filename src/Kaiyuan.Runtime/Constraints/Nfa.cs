namespace Kaiyuan.Constraints;

/// <summary>
/// A grammar as a recursive transition network over bytes: per rule, an NFA whose edges read a byte range, move
/// without reading (epsilon), or call another rule. <see cref="ByteAutomaton"/> runs it with a stack.
/// </summary>
internal sealed class Nfa
{
    /// <summary>Large enough for real schemas; a schema built to explode stops here with a clear error.</summary>
    public const int MaxStates = 2_000_000;

    internal readonly record struct ByteEdge(byte Lo, byte Hi, int Target);
    internal readonly record struct CallEdge(int Rule, int Return);

    private readonly List<List<ByteEdge>?> _bytes = [];
    private readonly List<List<int>?> _eps = [];
    private readonly List<List<CallEdge>?> _calls = [];

    public ByteEdge[][] Bytes { get; private set; } = [];
    public int[][] Epsilons { get; private set; } = [];
    public CallEdge[][] Calls { get; private set; } = [];
    /// <summary>Per state: the rule it ends, or -1.</summary>
    public int[] EndOf { get; private set; } = [];
    /// <summary>Per state: every path from it reaches its rule's end without reading or calling (a tail position).</summary>
    public bool[] IsTail { get; private set; } = [];
    public int[] RuleStart { get; private set; } = [];
    public int[] RuleEnd { get; private set; } = [];
    public int Root { get; private set; }
    public int StateCount => Bytes.Length;

    private Nfa() { }

    public static Nfa Build(Grammar grammar)
    {
        var nfa = new Nfa();
        int rules = grammar.RuleCount;
        var starts = new int[rules];
        var ends = new int[rules];
        for (int r = 0; r < rules; r++) { starts[r] = nfa.NewState(); ends[r] = nfa.NewState(); }
        var extraRules = new Dictionary<GrammarNode, int>(ReferenceEqualityComparer.Instance);
        var pending = new List<(int Rule, GrammarNode Body)>();
        for (int r = 0; r < rules; r++) pending.Add((r, grammar.Body(r)));
        var startList = starts.ToList();
        var endList = ends.ToList();
        for (int i = 0; i < pending.Count; i++)
        {
            var (r, body) = pending[i];
            int last = nfa.Add(body, startList[r], LiftRule);
            nfa.Eps(last, endList[r]);
        }
        nfa.Freeze(startList.ToArray(), endList.ToArray(), grammar.Root);
        nfa.CheckLeftRecursion(grammar, startList.Count);
        return nfa;

        // Big repeated items become rules of their own, so each repetition is one call edge, not a copy.
        int LiftRule(GrammarNode item)
        {
            if (extraRules.TryGetValue(item, out int rule)) return rule;
            rule = startList.Count;
            startList.Add(nfa.NewState());
            endList.Add(nfa.NewState());
            pending.Add((rule, item));
            extraRules[item] = rule;
            return rule;
        }
    }

    private int NewState()
    {
        if (_bytes.Count >= MaxStates)
            throw new GrammarException($"the grammar is too large (over {MaxStates:N0} automaton states); simplify the schema or its bounds");
        _bytes.Add(null);
        _eps.Add(null);
        _calls.Add(null);
        return _bytes.Count - 1;
    }

    private void Eps(int from, int to) { if (from != to) (_eps[from] ??= []).Add(to); }

    private void Edge(int from, byte lo, byte hi, int to) => (_bytes[from] ??= []).Add(new ByteEdge(lo, hi, to));

    /// <summary>Adds the states for <paramref name="node"/> starting at <paramref name="from"/>; returns the state after it.</summary>
    private int Add(GrammarNode node, int from, Func<GrammarNode, int> liftRule)
    {
        switch (node)
        {
            case LiteralNode lit:
                foreach (byte b in lit.Bytes)
                {
                    int next = NewState();
                    Edge(from, b, b, next);
                    from = next;
                }
                return from;
            case ByteRangeNode br:
                {
                    int next = NewState();
                    Edge(from, br.Lo, br.Hi, next);
                    return next;
                }
            case CharSetNode cs:
                {
                    int end = NewState();
                    foreach (var (lo, hi) in cs.Set.Ranges)
                        Utf8Ranges.Split(lo, hi, seq =>
                        {
                            int at = from;
                            for (int i = 0; i < seq.Length; i++)
                            {
                                int next = i == seq.Length - 1 ? end : NewState();
                                Edge(at, seq[i].Lo, seq[i].Hi, next);
                                at = next;
                            }
                        });
                    return end;
                }
            case SequenceNode seq:
                foreach (var item in seq.Items) from = Add(item, from, liftRule);
                return from;
            case AlternativesNode alt:
                {
                    int end = NewState();
                    foreach (var item in alt.Items)
                    {
                        int start = NewState();
                        Eps(from, start);
                        Eps(Add(item, start, liftRule), end);
                    }
                    return end;
                }
            case RuleRefNode rr:
                {
                    int ret = NewState();
                    (_calls[from] ??= []).Add(new CallEdge(rr.Rule, ret));
                    return ret;
                }
            case RepeatNode rep:
                {
                    var item = rep.Item;
                    int copies = rep.Max < 0 ? rep.Min + 1 : rep.Max;
                    // A large item, or many copies of a small one, is built once as a rule and called per copy: inlined,
                    // a regex's (20 bytes){10000} made 200,000 states and ~90 MB of automaton for a 40-byte input.
                    if (copies > 3 && (Size(item, 64) >= 64 || (long)copies * Size(item, 64) >= 4096)) item = new RuleRefNode(liftRule(item));
                    for (int i = 0; i < rep.Min; i++) from = Add(item, from, liftRule);
                    if (rep.Max < 0)
                    {
                        int loop = NewState();
                        Eps(from, loop);
                        Eps(Add(item, loop, liftRule), loop);
                        return loop;
                    }
                    int after = NewState();
                    for (int i = rep.Min; i < rep.Max; i++)
                    {
                        Eps(from, after);
                        from = Add(item, from, liftRule);
                    }
                    Eps(from, after);
                    return after;
                }
            default:
                throw new GrammarException($"unknown grammar node {node.GetType().Name}");
        }
    }

    /// <summary>A rough count of the states a node adds, capped at <paramref name="cap"/>.</summary>
    private static int Size(GrammarNode node, int cap) => node switch
    {
        LiteralNode l => l.Bytes.Length,
        CharSetNode c => Math.Min(cap, 1 + c.Set.Ranges.Count * 2),
        SequenceNode s => s.Items.Aggregate(0, (n, i) => Math.Min(cap, n + Size(i, cap))),
        AlternativesNode a => a.Items.Aggregate(1, (n, i) => Math.Min(cap, n + 1 + Size(i, cap))),
        RepeatNode r => Math.Min(cap, (r.Max < 0 ? r.Min + 1 : r.Max) * Size(r.Item, cap) + 1),
        _ => 1,
    };

    private void Freeze(int[] starts, int[] ends, int root)
    {
        int n = _bytes.Count;
        Bytes = new ByteEdge[n][];
        Epsilons = new int[n][];
        Calls = new CallEdge[n][];
        EndOf = new int[n];
        for (int s = 0; s < n; s++)
        {
            Bytes[s] = _bytes[s]?.ToArray() ?? [];
            Epsilons[s] = _eps[s]?.ToArray() ?? [];
            Calls[s] = _calls[s]?.ToArray() ?? [];
            EndOf[s] = -1;
        }
        for (int r = 0; r < ends.Length; r++) EndOf[ends[r]] = r;
        RuleStart = starts;
        RuleEnd = ends;
        Root = root;
        IsTail = new bool[n];
        for (int s = 0; s < n; s++) IsTail[s] = ComputeTail(s);
    }

    /// <summary>True when nothing reachable without reading does anything but reach the rule's end: a call whose
    /// return is such a state needs no stack frame (tail call), so `list ::= item ("," list)?` runs in constant stack.</summary>
    private bool ComputeTail(int state)
    {
        var seen = new HashSet<int>();
        var work = new Stack<int>();
        work.Push(state);
        bool reachesEnd = false;
        while (work.Count > 0)
        {
            int s = work.Pop();
            if (!seen.Add(s)) continue;
            if (seen.Count > 64) return false;
            if (Bytes[s].Length > 0 || Calls[s].Length > 0) return false;
            if (EndOf[s] >= 0) reachesEnd = true;
            foreach (int t in Epsilons[s]) work.Push(t);
        }
        return reachesEnd;
    }

    /// <summary>A rule that can call itself before reading a byte would make the stack grow without end.</summary>
    private void CheckLeftRecursion(Grammar grammar, int rules)
    {
        // Nullable rules first (a fixpoint), then the "calls before reading" graph, then a cycle search.
        var nullable = new bool[rules];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < rules; r++)
                if (!nullable[r] && LeftReach(r, nullable, null)) { nullable[r] = changed = true; }
        }
        var leftCalls = new List<int>[rules];
        for (int r = 0; r < rules; r++) { leftCalls[r] = []; LeftReach(r, nullable, leftCalls[r]); }
        var color = new byte[rules];
        for (int r = 0; r < rules; r++) Visit(r);

        void Visit(int r)
        {
            if (color[r] == 2) return;
            if (color[r] == 1)
                throw new GrammarException($"rule '{Name(r)}' is left-recursive (it can reach itself before reading anything); rewrite it with repetition");
            color[r] = 1;
            foreach (int c in leftCalls[r]) Visit(c);
            color[r] = 2;
        }

        string Name(int r) => r < grammar.RuleCount ? grammar.RuleName(r) : $"(repetition {r})";
    }

    /// <summary>Walks from a rule's start without reading; records the rules called on the way; true if it reaches the end.</summary>
    private bool LeftReach(int rule, bool[] nullable, List<int>? calls)
    {
        var seen = new HashSet<int>();
        var work = new Stack<int>();
        work.Push(RuleStart[rule]);
        bool end = false;
        while (work.Count > 0)
        {
            int s = work.Pop();
            if (!seen.Add(s)) continue;
            if (s == RuleEnd[rule]) end = true;
            foreach (int t in Epsilons[s]) work.Push(t);
            foreach (var c in Calls[s])
            {
                calls?.Add(c.Rule);
                if (nullable[c.Rule]) work.Push(c.Return);
            }
        }
        return end;
    }
}
