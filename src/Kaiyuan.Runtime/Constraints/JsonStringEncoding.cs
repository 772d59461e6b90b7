using System.Text;

namespace Kaiyuan.Constraints;

/// <summary>
/// Maps languages over decoded string characters (what <c>pattern</c>, <c>format</c> and lengths talk about) to the
/// bytes inside a JSON string literal: characters JSON allows raw stay raw UTF-8, the others become their escape.
/// One spelling per character (plus <c>\/</c> for '/', and either hex case in <c>\u00XX</c>), so an output is
/// near-deterministic and each escape sequence still counts as one character.
/// </summary>
internal static class JsonStringEncoding
{
    private static readonly CodepointSet Raw = CodepointSet.Range(0x20, CodepointSet.MaxCodepoint).Except(CodepointSet.Of("\"\\"));
    private static readonly Dictionary<CodepointSet, GrammarNode> Cache = [];
    private static readonly Lock CacheLock = new();

    /// <summary>Any one character, encoded.</summary>
    public static GrammarNode AnyChar { get; } = Char(CodepointSet.All);

    /// <summary>One character of <paramref name="set"/> as it may appear inside a JSON string.</summary>
    public static GrammarNode Char(CodepointSet set)
    {
        lock (CacheLock)
            if (Cache.TryGetValue(set, out var cached)) return cached;
        var alts = new List<GrammarNode>();
        var raw = set.Intersect(Raw);
        if (!raw.IsEmpty) alts.Add(GrammarNode.Chars(raw));
        var escapes = new List<GrammarNode>();
        void Short(int c, string tail) { if (set.Contains(c)) escapes.Add(GrammarNode.Literal(tail)); }
        Short('"', "\"");
        Short('\\', "\\");
        Short('/', "/");
        Short('\b', "b");
        Short('\f', "f");
        Short('\n', "n");
        Short('\r', "r");
        Short('\t', "t");
        // Other control characters only as \u00XX (hex digits in either case).
        foreach (int high in new[] { 0, 1 })
        {
            var lows = new List<(int, int)>();
            for (int low = 0; low < 16; low++)
            {
                int c = high * 16 + low;
                if (c is '\b' or '\f' or '\n' or '\r' or '\t' || !set.Contains(c)) continue;
                char h = "0123456789abcdef"[low];
                lows.Add((h, h));
                if (h >= 'a') lows.Add((h - 32, h - 32));
            }
            if (lows.Count > 0)
                escapes.Add(GrammarNode.Seq(GrammarNode.Literal("u00" + high), GrammarNode.Chars(CodepointSet.FromRanges(lows))));
        }
        if (escapes.Count > 0) alts.Add(GrammarNode.Seq(GrammarNode.Literal("\\"), GrammarNode.Alt([.. escapes])));
        var node = GrammarNode.Alt([.. alts]);
        lock (CacheLock)
            if (Cache.Count < 4096) Cache[set] = node;
        return node;
    }

    /// <summary>The encoded content (no quotes) of exactly the string <paramref name="text"/>.</summary>
    public static GrammarNode Content(string text)
    {
        var items = new List<GrammarNode>();
        var plain = new StringBuilder();
        foreach (var rune in text.EnumerateRunes())
        {
            int c = rune.Value;
            if (c >= 0x20 && c != '"' && c != '\\' && c != '/') { plain.Append(rune.ToString()); continue; }
            if (plain.Length > 0) { items.Add(GrammarNode.Literal(plain.ToString())); plain.Clear(); }
            items.Add(Char(CodepointSet.Single(c)));
        }
        if (plain.Length > 0) items.Add(GrammarNode.Literal(plain.ToString()));
        return GrammarNode.Seq([.. items]);
    }

    /// <summary>A quoted JSON string literal whose value is <paramref name="text"/>.</summary>
    public static GrammarNode Quoted(string text) => GrammarNode.Seq(GrammarNode.Literal("\""), Content(text), GrammarNode.Literal("\""));

    /// <summary>Rewrites a code-point-level node (literals, sets, sequences, alternatives, repeats) into encoded form.</summary>
    public static GrammarNode Map(GrammarNode node) => node switch
    {
        LiteralNode lit => Content(Encoding.UTF8.GetString(lit.Bytes)),
        CharSetNode cs => Char(cs.Set),
        SequenceNode seq => GrammarNode.Seq([.. seq.Items.Select(Map)]),
        AlternativesNode alt => GrammarNode.Alt([.. alt.Items.Select(Map)]),
        RepeatNode rep => new RepeatNode(Map(rep.Item), rep.Min, rep.Max),
        _ => throw new GrammarException($"a string pattern uses an unsupported grammar node ({node.GetType().Name})"),
    };

    /// <summary>The shortest and longest string (in code points) a code-point-level node matches; max -1 when unbounded.</summary>
    public static (long Min, long Max) LengthRange(GrammarNode node)
    {
        switch (node)
        {
            case LiteralNode lit: { long n = Encoding.UTF8.GetString(lit.Bytes).EnumerateRunes().Count(); return (n, n); }
            case CharSetNode cs: return cs.Set.IsEmpty ? (long.MaxValue, 0) : (1, 1);
            case SequenceNode seq:
                {
                    long min = 0, max = 0;
                    foreach (var item in seq.Items)
                    {
                        var (a, b) = LengthRange(item);
                        if (a == long.MaxValue) return (long.MaxValue, 0);
                        min += a;
                        max = max < 0 || b < 0 ? -1 : max + b;
                    }
                    return (min, max);
                }
            case AlternativesNode alt:
                {
                    long min = long.MaxValue, max = 0;
                    foreach (var item in alt.Items)
                    {
                        var (a, b) = LengthRange(item);
                        if (a == long.MaxValue) continue;
                        min = Math.Min(min, a);
                        max = max < 0 || b < 0 ? -1 : Math.Max(max, b);
                    }
                    return (min, max);
                }
            case RepeatNode rep:
                {
                    var (a, b) = LengthRange(rep.Item);
                    if (a == long.MaxValue) return rep.Min == 0 ? (0, 0) : (long.MaxValue, 0);
                    long max = rep.Max < 0 ? (b == 0 ? 0 : -1) : b < 0 ? -1 : b * rep.Max;
                    return (a * rep.Min, max);
                }
            default: throw new GrammarException($"unsupported grammar node in a string language ({node.GetType().Name})");
        }
    }
}

/// <summary>
/// A small NFA over code points, for what grammar nodes cannot say directly: intersections of string languages
/// (pattern ∧ format ∧ length ∧ "not one of these names") and number ranges, by product construction. Converted back
/// into grammar rules (one per state, tail calls) once built.
/// </summary>
internal sealed class CodepointNfa
{
    /// <summary>Products of real schemas stay far below this; beyond it compiling fails with a clear message.</summary>
    public const int MaxStates = 100_000;

    private readonly List<List<(CodepointSet Set, int To)>> _edges = [];
    private readonly List<List<int>> _eps = [];
    private readonly List<bool> _accept = [];

    public int Start { get; set; }
    public int StateCount => _edges.Count;

    public int NewState(bool accept = false)
    {
        if (_edges.Count >= MaxStates)
            throw new GrammarException($"a string or number constraint needs over {MaxStates:N0} automaton states; simplify it");
        _edges.Add([]);
        _eps.Add([]);
        _accept.Add(accept);
        return _edges.Count - 1;
    }

    public void Edge(int from, CodepointSet set, int to) { if (!set.IsEmpty) _edges[from].Add((set, to)); }
    public void Edge(int from, char lo, char hi, int to) => Edge(from, CodepointSet.Range(lo, hi), to);
    public void Eps(int from, int to) { if (from != to) _eps[from].Add(to); }
    public void SetAccept(int state, bool accept = true) => _accept[state] = accept;
    public bool IsAccepting(int state) => _accept[state];
    public IReadOnlyList<(CodepointSet Set, int To)> EdgesOf(int state) => _edges[state];

    /// <summary>The language of a code-point-level grammar node (no rule references).</summary>
    public static CodepointNfa FromNode(GrammarNode node)
    {
        var a = new CodepointNfa();
        a.Start = a.NewState();
        a.SetAccept(a.Add(node, a.Start));
        return a;
    }

    /// <summary>Strings of <paramref name="min"/>..<paramref name="max"/> characters of <paramref name="chars"/> (max -1: unbounded).</summary>
    public static CodepointNfa Length(int min, int max, CodepointSet chars)
    {
        var a = new CodepointNfa();
        int count = max < 0 ? min : max;
        var states = new int[count + 1];
        for (int i = 0; i <= count; i++) states[i] = a.NewState(i >= min);
        for (int i = 0; i < count; i++) a.Edge(states[i], chars, states[i + 1]);
        if (max < 0) a.Edge(states[count], chars, states[count]);
        a.Start = states[0];
        return a;
    }

    private int Add(GrammarNode node, int from)
    {
        switch (node)
        {
            case LiteralNode lit:
                foreach (var rune in Encoding.UTF8.GetString(lit.Bytes).EnumerateRunes())
                {
                    int next = NewState();
                    Edge(from, CodepointSet.Single(rune.Value), next);
                    from = next;
                }
                return from;
            case CharSetNode cs:
                {
                    int next = NewState();
                    Edge(from, cs.Set, next);
                    return next;
                }
            case SequenceNode seq:
                foreach (var item in seq.Items) from = Add(item, from);
                return from;
            case AlternativesNode alt:
                {
                    int end = NewState();
                    foreach (var item in alt.Items)
                    {
                        int start = NewState();
                        Eps(from, start);
                        Eps(Add(item, start), end);
                    }
                    return end;
                }
            case RepeatNode rep:
                {
                    for (int i = 0; i < rep.Min; i++) from = Add(rep.Item, from);
                    if (rep.Max < 0)
                    {
                        int loop = NewState();
                        Eps(from, loop);
                        Eps(Add(rep.Item, loop), loop);
                        return loop;
                    }
                    int after = NewState();
                    for (int i = rep.Min; i < rep.Max; i++)
                    {
                        Eps(from, after);
                        from = Add(rep.Item, from);
                    }
                    Eps(from, after);
                    return after;
                }
            default:
                throw new GrammarException($"unsupported grammar node in a string language ({node.GetType().Name})");
        }
    }

    private List<int> Closure(int state)
    {
        var seen = new HashSet<int> { state };
        var list = new List<int> { state };
        for (int i = 0; i < list.Count; i++)
            foreach (int t in _eps[list[i]])
                if (seen.Add(t)) list.Add(t);
        return list;
    }

    /// <summary>An equivalent automaton without epsilon moves, holding only states on some accepting path.</summary>
    public CodepointNfa Compact()
    {
        var result = new CodepointNfa();
        var map = new Dictionary<int, int>();
        var work = new Queue<int>();
        int Get(int s)
        {
            if (!map.TryGetValue(s, out int id)) { id = result.NewState(); map[s] = id; work.Enqueue(s); }
            return id;
        }
        result.Start = Get(Start);
        while (work.Count > 0)
        {
            int s = work.Dequeue();
            int id = map[s];
            foreach (int c in Closure(s))
            {
                if (_accept[c]) result.SetAccept(id);
                foreach (var (set, to) in _edges[c]) result.Edge(id, set, Get(to));
            }
        }
        return result.Trim();
    }

    /// <summary>Drops states from which no accepting state can be reached (epsilon-free automata only).</summary>
    private CodepointNfa Trim()
    {
        int n = StateCount;
        var back = new List<int>[n];
        for (int s = 0; s < n; s++) back[s] = [];
        for (int s = 0; s < n; s++)
            foreach (var (_, to) in _edges[s]) back[to].Add(s);
        var live = new bool[n];
        var work = new Stack<int>();
        for (int s = 0; s < n; s++) if (_accept[s]) { live[s] = true; work.Push(s); }
        while (work.Count > 0)
            foreach (int p in back[work.Pop()])
                if (!live[p]) { live[p] = true; work.Push(p); }
        var result = new CodepointNfa();
        var map = new int[n];
        Array.Fill(map, -1);
        if (!live[Start]) { result.Start = result.NewState(); return result; }
        var queue = new Queue<int>();
        map[Start] = result.NewState(_accept[Start]);
        result.Start = map[Start];
        queue.Enqueue(Start);
        while (queue.Count > 0)
        {
            int s = queue.Dequeue();
            // Merge edges to the same target, so a state has one edge per successor.
            var byTarget = new Dictionary<int, CodepointSet>();
            foreach (var (set, to) in _edges[s])
            {
                if (!live[to]) continue;
                byTarget[to] = byTarget.TryGetValue(to, out var prev) ? prev.Union(set) : set;
            }
            foreach (var (to, set) in byTarget)
            {
                if (map[to] < 0) { map[to] = result.NewState(_accept[to]); queue.Enqueue(to); }
                result.Edge(map[s], set, map[to]);
            }
        }
        return result;
    }

    /// <summary>True when no string is accepted.</summary>
    public bool IsEmpty()
    {
        var c = Compact();
        return !c._accept[c.Start] && c._edges[c.Start].Count == 0;
    }

    /// <summary>The strings both automata accept (product construction).</summary>
    public CodepointNfa Intersect(CodepointNfa other)
    {
        var a = Compact();
        var b = other.Compact();
        var result = new CodepointNfa();
        var map = new Dictionary<(int, int), int>();
        var work = new Queue<(int, int)>();
        int Get(int x, int y)
        {
            if (!map.TryGetValue((x, y), out int id))
            {
                id = result.NewState(a._accept[x] && b._accept[y]);
                map[(x, y)] = id;
                work.Enqueue((x, y));
            }
            return id;
        }
        result.Start = Get(a.Start, b.Start);
        while (work.Count > 0)
        {
            var (x, y) = work.Dequeue();
            int id = map[(x, y)];
            foreach (var (sa, ta) in a._edges[x])
                foreach (var (sb, tb) in b._edges[y])
                {
                    var both = Overlap(sa, sb);
                    if (both is not null) result.Edge(id, both, Get(ta, tb));
                }
        }
        return result.Trim();
    }

    /// <summary>The common code points of two sets, or null when none (a merge of the sorted ranges).</summary>
    internal static CodepointSet? Overlap(CodepointSet a, CodepointSet b)
    {
        if (ReferenceEquals(a, b) || b.Equals(CodepointSet.All)) return a.IsEmpty ? null : a;
        if (a.Equals(CodepointSet.All)) return b.IsEmpty ? null : b;
        var ra = a.Ranges;
        var rb = b.Ranges;
        List<(int, int)>? result = null;
        int i = 0, j = 0;
        while (i < ra.Count && j < rb.Count)
        {
            int lo = Math.Max(ra[i].Lo, rb[j].Lo), hi = Math.Min(ra[i].Hi, rb[j].Hi);
            if (lo <= hi) (result ??= []).Add((lo, hi));
            if (ra[i].Hi < rb[j].Hi) i++;
            else j++;
        }
        return result is null ? null : CodepointSet.FromRanges(result);
    }

    /// <summary>The strings either automaton accepts.</summary>
    public static CodepointNfa Union(params CodepointNfa[] parts)
    {
        var result = new CodepointNfa();
        result.Start = result.NewState();
        foreach (var part in parts)
        {
            int offset = result.StateCount;
            for (int s = 0; s < part.StateCount; s++) result.NewState(part._accept[s]);
            for (int s = 0; s < part.StateCount; s++)
            {
                foreach (var (set, to) in part._edges[s]) result.Edge(offset + s, set, offset + to);
                foreach (int t in part._eps[s]) result.Eps(offset + s, offset + t);
            }
            result.Eps(result.Start, offset + part.Start);
        }
        return result;
    }

    /// <summary>The complement within strings over <see cref="CodepointSet.All"/> (subset construction, then flipped).</summary>
    public CodepointNfa Complement(int maxStates = 5_000)
    {
        var a = Compact();
        var result = new CodepointNfa();
        var map = new Dictionary<string, int>();
        var work = new Queue<int[]>();
        int Get(int[] set)
        {
            string key = string.Join(",", set);
            if (!map.TryGetValue(key, out int id))
            {
                if (map.Count >= maxStates) throw new GrammarException("a negated pattern is too complex to complement");
                id = result.NewState(!set.Any(s => a._accept[s]));
                map[key] = id;
                work.Enqueue(set);
            }
            return id;
        }
        result.Start = Get([a.Start]);
        while (work.Count > 0)
        {
            var set = work.Dequeue();
            int id = map[string.Join(",", set)];
            // Split the alphabet into classes no edge of this subset tells apart.
            var bounds = new SortedSet<int> { 0, 0xD800, 0xE000, CodepointSet.MaxCodepoint + 1 };
            foreach (int s in set)
                foreach (var (cs, _) in a._edges[s])
                    foreach (var (lo, hi) in cs.Ranges) { bounds.Add(lo); bounds.Add(hi + 1); }
            var list = bounds.ToList();
            var targets = new Dictionary<string, (int[] Set, List<(int, int)> Ranges)>();
            for (int i = 0; i + 1 < list.Count; i++)
            {
                int lo = list[i], hi = list[i + 1] - 1;
                if (lo == 0xD800) continue; // surrogates are never characters
                var next = new SortedSet<int>();
                foreach (int s in set)
                    foreach (var (cs, to) in a._edges[s])
                        if (cs.Contains(lo)) next.Add(to);
                var arr = next.ToArray();
                string key = string.Join(",", arr);
                if (!targets.TryGetValue(key, out var entry)) targets[key] = entry = (arr, []);
                entry.Ranges.Add((lo, hi));
            }
            foreach (var (arr, ranges) in targets.Values)
                result.Edge(id, CodepointSet.FromRanges(ranges), Get(arr));
        }
        return result;
    }

    /// <summary>Shortest and longest accepted length in characters (max -1: unbounded; min -1: empty language).</summary>
    public (int Min, int Max) LengthRange()
    {
        var a = Compact();
        int n = a.StateCount;
        if (!a._accept[a.Start] && a._edges[a.Start].Count == 0) return (-1, 0);
        // Shortest: BFS. Longest: a cycle among live states means unbounded, else the longest DAG path.
        var dist = new int[n];
        Array.Fill(dist, -1);
        dist[a.Start] = 0;
        var q = new Queue<int>();
        q.Enqueue(a.Start);
        int min = int.MaxValue;
        while (q.Count > 0)
        {
            int s = q.Dequeue();
            if (a._accept[s]) min = Math.Min(min, dist[s]);
            foreach (var (_, to) in a._edges[s])
                if (dist[to] < 0) { dist[to] = dist[s] + 1; q.Enqueue(to); }
        }
        var longest = new int[n];
        var color = new byte[n];
        bool cyclic = false;
        int Longest(int s)
        {
            if (color[s] == 2) return longest[s];
            if (color[s] == 1) { cyclic = true; return 0; }
            color[s] = 1;
            int best = a._accept[s] ? 0 : int.MinValue;
            foreach (var (_, to) in a._edges[s])
            {
                int l = Longest(to);
                if (l != int.MinValue) best = Math.Max(best, l + 1);
                if (cyclic) break;
            }
            color[s] = 2;
            return longest[s] = best;
        }
        if (n > 20_000) return (min, -1);
        int max = Longest(a.Start);
        return (min, cyclic ? -1 : max);
    }

    /// <summary>
    /// The automaton as grammar rules in <paramref name="grammar"/>, each character through <paramref name="encode"/>.
    /// A state entered from one place only is written inline there; the others (and every 48th level of nesting,
    /// to keep nodes shallow) become rules, whose calls in tail position cost no stack. Returns the start's node.
    /// </summary>
    public GrammarNode ToGrammar(Grammar grammar, Func<CodepointSet, GrammarNode> encode, string name)
    {
        var a = Compact();
        int n = a.StateCount;
        if (!a._accept[a.Start] && a._edges[a.Start].Count == 0) return GrammarNode.Nothing;
        var indegree = new int[n];
        for (int s = 0; s < n; s++)
            foreach (var (_, to) in a._edges[s]) indegree[to]++;
        var rules = new int[n];
        Array.Fill(rules, -1);
        var pending = new Stack<int>();
        int RuleOf(int s)
        {
            if (rules[s] < 0) { rules[s] = grammar.AddRule($"{name}#{s}"); pending.Push(s); }
            return rules[s];
        }
        GrammarNode Node(int s, int depth) =>
            s != a.Start && indegree[s] == 1 && depth < 48 ? Body(s, depth + 1) : GrammarNode.Ref(RuleOf(s));
        GrammarNode Body(int s, int depth)
        {
            var alts = new List<GrammarNode>();
            foreach (var (set, to) in a._edges[s]) alts.Add(GrammarNode.Seq(encode(set), Node(to, depth)));
            if (a._accept[s]) alts.Add(GrammarNode.Empty);
            return GrammarNode.Alt([.. alts]);
        }
        var start = GrammarNode.Ref(RuleOf(a.Start));
        while (pending.Count > 0)
        {
            int s = pending.Pop();
            grammar.Define(rules[s], Body(s, 0));
        }
        return start;
    }

    /// <summary>Whether the automaton accepts <paramref name="text"/>.</summary>
    public bool Matches(string text)
    {
        var current = new HashSet<int>(Closure(Start));
        foreach (var rune in text.EnumerateRunes())
        {
            var next = new HashSet<int>();
            foreach (int s in current)
                foreach (var (set, to) in _edges[s])
                    if (set.Contains(rune.Value))
                        foreach (int c in Closure(to)) next.Add(c);
            if (next.Count == 0) return false;
            current = next;
        }
        return current.Any(s => _accept[s]);
    }
}

internal static class CodepointNfaExtensions
{
    /// <summary>Every string except the given ones (a trie of them; leaving it anywhere leads to "anything goes").</summary>
    public static CodepointNfa NotIn(IEnumerable<string> names)
    {
        var a = new CodepointNfa();
        int free = a.NewState(true);
        a.Edge(free, CodepointSet.All, free);
        a.Start = a.NewState(true);
        var children = new Dictionary<int, Dictionary<int, int>>();
        foreach (var name in names)
        {
            int at = a.Start;
            foreach (var rune in name.EnumerateRunes())
            {
                if (!children.TryGetValue(at, out var map)) children[at] = map = [];
                if (!map.TryGetValue(rune.Value, out int next)) map[rune.Value] = next = a.NewState(true);
                at = next;
            }
            a.SetAccept(at, false);
        }
        for (int s = 0; s < a.StateCount; s++)
        {
            if (s == free) continue;
            var map = children.GetValueOrDefault(s);
            if (map is null) { a.Edge(s, CodepointSet.All, free); continue; }
            foreach (var (c, next) in map) a.Edge(s, CodepointSet.Single(c), next);
            a.Edge(s, CodepointSet.FromRanges(map.Keys.Select(c => (c, c))).Complement(), free);
        }
        return a;
    }
}
