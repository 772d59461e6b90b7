using System.Runtime.CompilerServices;

namespace Kaiyuan.Constraints;

/// <summary>
/// Runs a grammar over bytes as a deterministic automaton built lazily: a state is the set of (NFA state, call stack)
/// configurations the bytes so far can be in, interned once, and each (state, byte class) transition is computed the
/// first time it is asked for and then read from a flat table. A non-recursive grammar is thus a plain DFA; recursion
/// (nested JSON, recursive $ref, GBNF) keeps stacks in the configurations, hash-consed so that equal stacks are equal
/// ids. Thread-safe: lookups read the table without a lock, new transitions are computed under one.
/// </summary>
internal sealed class ByteAutomaton
{
    public const int Dead = -1;
    private const int Unknown = -2;
    /// <summary>
    /// Past this many states the automaton is cleared between tokens and rebuilt as it is used again (see
    /// <see cref="Reset"/>): a long generation under a large grammar keeps its memory bounded instead of failing.
    /// </summary>
    public const int SoftMaxStates = 50_000;
    /// <summary>States one mask may build before the next reset; a grammar that needs more in one step is refused.</summary>
    public const int MaxStates = 4 * SoftMaxStates;
    /// <summary>Configurations one state may hold; more means a grammar far too ambiguous to run.</summary>
    public const int MaxConfigurations = 50_000;
    /// <summary>Nesting deeper than this is refused (fail closed), as JSON parsers cap depth.</summary>
    public const int MaxStackDepth = 1_000;

    private readonly Nfa _nfa;
    private readonly byte[] _classOf = new byte[256];
    private readonly byte[] _representative;
    private readonly object _lock = new();

    // Call stacks: node 0 is the empty stack; node = (return state, parent).
    private readonly List<(int Return, int Parent, int Depth)> _stacks = [(0, 0, 0)];
    private readonly Dictionary<(int, int), int> _stackIds = [];

    // States: configuration sets (sorted (nfaState << 32 | stack)), their transitions and whether they accept.
    private readonly List<long[]> _states = [];
    private readonly Dictionary<long[], int> _stateIds = new(new ConfigSetComparer());
    private bool[] _accepting = new bool[64];
    private int[] _transitions = [];

    internal ByteAutomaton(Nfa nfa)
    {
        _nfa = nfa;
        // Byte classes: bytes no edge of the grammar tells apart share a column of the transition table.
        var boundaries = new bool[257];
        boundaries[0] = true;
        foreach (var edges in nfa.Bytes)
            foreach (var e in edges) { boundaries[e.Lo] = true; boundaries[e.Hi + 1] = true; }
        int cls = -1;
        var reps = new List<byte>();
        for (int b = 0; b < 256; b++)
        {
            if (boundaries[b]) { cls++; reps.Add((byte)b); }
            _classOf[b] = (byte)cls;
        }
        _representative = [.. reps];
        ClassCount = _representative.Length;
        _startConfigs = Closure([Pack(nfa.RuleStart[nfa.Root], 0)]);
        Start = Intern(_startConfigs);
    }

    public static ByteAutomaton Compile(Grammar grammar) => new(Nfa.Build(grammar));

    public int Start { get; private set; }
    /// <summary>Counts <see cref="Reset"/>s: a state id is valid only within the epoch it was made in.</summary>
    public int Epoch { get; private set; }
    /// <summary>Past <see cref="SoftMaxStates"/>: reset before the next token.</summary>
    internal bool NeedsReset { get { lock (_lock) return _states.Count > SoftLimit; } }
    /// <summary><see cref="SoftMaxStates"/>, lowered by tests to exercise resets.</summary>
    internal int SoftLimit { get; set; } = SoftMaxStates;
    private readonly long[] _startConfigs;

    /// <summary>
    /// The configurations a state stands for: what a holder keeps to find its state again after a reset. None for
    /// <see cref="Dead"/>, where a grammar that matches nothing starts (and which <see cref="StateOf"/> gives back for none).
    /// </summary>
    internal long[] Configurations(int state) { lock (_lock) return state < 0 ? [] : _states[state]; }

    /// <summary>The id, in this epoch, of the state made of <paramref name="configurations"/>.</summary>
    internal int StateOf(long[] configurations) { lock (_lock) return Intern(configurations); }

    /// <summary>
    /// Forgets every state and transition (call stacks stay, as configurations refer to them) and starts a new epoch.
    /// The caller must make sure no walk is in progress and that holders of state ids re-intern them.
    /// </summary>
    internal void Reset()
    {
        lock (_lock)
        {
            _states.Clear();
            _stateIds.Clear();
            Array.Clear(_accepting);
            _transitions.AsSpan().Fill(Unknown);
            Start = Intern(_startConfigs);
            Epoch++;
        }
    }
    public int ClassCount { get; }
    public int StateCount { get { lock (_lock) return _states.Count; } }
    internal ReadOnlySpan<byte> ClassOf => _classOf;

    /// <summary>The grammar allows the input to end here.</summary>
    public bool IsAccepting(int state) => state >= 0 && Volatile.Read(ref _accepting)[state];

    /// <summary>The state after <paramref name="b"/>, or <see cref="Dead"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Step(int state, byte b)
    {
        if (state < 0) return Dead; // a grammar that matches nothing starts dead
        int t = Volatile.Read(ref _transitions)[state * ClassCount + _classOf[b]];
        return t != Unknown ? t : Compute(state, _classOf[b]);
    }

    /// <summary>Steps over all of <paramref name="bytes"/>; <see cref="Dead"/> when some byte is not allowed.</summary>
    public int Walk(int state, ReadOnlySpan<byte> bytes)
    {
        foreach (byte b in bytes)
        {
            state = Step(state, b);
            if (state < 0) return Dead;
        }
        return state;
    }

    /// <summary>The whole input matches the grammar.</summary>
    public bool Matches(ReadOnlySpan<byte> bytes) => IsAccepting(Walk(Start, bytes));

    public bool Matches(string text) => Matches(System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>How many configurations (alternative parses) a state holds.</summary>
    internal int ConfigurationCount(int state) { lock (_lock) return _states[state].Length; }

    /// <summary>The state of one of <paramref name="state"/>'s configurations alone: what that parse allows is a
    /// subset of what the whole state allows.</summary>
    internal int Part(int state, int index)
    {
        lock (_lock)
        {
            var seed = _scratchNext;
            seed.Clear();
            seed.Add(_states[state][index]);
            return Intern(Closure(seed));
        }
    }

    /// <summary>Transition table access for the mask walk: a row per state, <see cref="ClassCount"/> columns.</summary>
    internal int[] Table => Volatile.Read(ref _transitions);

    internal int Compute(int state, int cls)
    {
        lock (_lock)
        {
            int index = state * ClassCount + cls;
            if (_transitions[index] != Unknown) return _transitions[index];
            byte b = _representative[cls];
            var next = _scratchNext;
            next.Clear();
            foreach (long config in _states[state])
            {
                var (q, stack) = Unpack(config);
                foreach (var e in _nfa.Bytes[q])
                    if (b >= e.Lo && b <= e.Hi) next.Add(Pack(e.Target, stack));
            }
            int target = next.Count == 0 ? Dead : Intern(Closure(next));
            _transitions[index] = target;
            return target;
        }
    }

    // Scratch for Compute and Closure, reused under the lock: a new state costs no collection allocations.
    private readonly List<long> _scratchNext = [];
    private readonly HashSet<long> _scratchSeen = [];
    private readonly Stack<long> _scratchWork = new();
    private readonly List<long> _scratchKept = [];
    private int[]?[] _epsClosure = [];

    /// <summary>All configurations reachable without reading, kept only where something can still happen.</summary>
    private long[] Closure(List<long> seeds)
    {
        var seen = _scratchSeen;
        var work = _scratchWork;
        var kept = _scratchKept;
        seen.Clear();
        work.Clear();
        kept.Clear();
        foreach (long seed in seeds) work.Push(seed);
        const long SeedTag = 1L << 62; // a seed expanded already (seeds need not be kept states themselves)
        while (work.Count > 0)
        {
            long seed = work.Pop();
            if (!seen.Add(seed | SeedTag)) continue;
            var (t, stack) = Unpack(seed);
            foreach (int q in EpsilonClosure(t))
            {
                long config = Pack(q, stack);
                if (!seen.Add(config)) continue;
                if (seen.Count > MaxConfigurations)
                    throw new GrammarException($"the grammar is too ambiguous to run (over {MaxConfigurations:N0} parses alive at once)");
                if (_nfa.Bytes[q].Length > 0 || (stack == 0 && _nfa.EndOf[q] >= 0)) kept.Add(config);
                foreach (var call in _nfa.Calls[q])
                {
                    int pushed = _nfa.IsTail[call.Return] ? stack : Push(call.Return, stack);
                    if (pushed >= 0) work.Push(Pack(_nfa.RuleStart[call.Rule], pushed));
                }
                if (_nfa.EndOf[q] >= 0 && stack != 0)
                {
                    var frame = _stacks[stack];
                    work.Push(Pack(frame.Return, frame.Parent));
                }
            }
        }
        kept.Sort();
        return [.. kept];
    }

    /// <summary>The states reachable from <paramref name="q"/> by epsilon edges alone that read, call or end a rule
    /// (computed once per NFA state: JSON grammars are long chains of optional pieces).</summary>
    private int[] EpsilonClosure(int q)
    {
        if (_epsClosure.Length == 0) _epsClosure = new int[]?[_nfa.StateCount];
        if (_epsClosure[q] is { } known) return known;
        var result = new List<int>();
        var seen = new HashSet<int>();
        var work = new Stack<int>();
        work.Push(q);
        while (work.Count > 0)
        {
            int s = work.Pop();
            if (!seen.Add(s)) continue;
            if (_nfa.Bytes[s].Length > 0 || _nfa.Calls[s].Length > 0 || _nfa.EndOf[s] >= 0) result.Add(s);
            foreach (int t in _nfa.Epsilons[s]) work.Push(t);
        }
        return _epsClosure[q] = [.. result];
    }

    private int Push(int ret, int parent)
    {
        if (_stackIds.TryGetValue((ret, parent), out int id)) return id;
        int depth = _stacks[parent].Depth + 1;
        if (depth > MaxStackDepth) return -1;
        id = _stacks.Count;
        _stacks.Add((ret, parent, depth));
        _stackIds[(ret, parent)] = id;
        return id;
    }

    private int Intern(long[] configs)
    {
        if (configs.Length == 0) return Dead;
        if (_stateIds.TryGetValue(configs, out int id)) return id;
        if (_states.Count >= MaxStates)
            throw new GrammarException($"the grammar needs over {MaxStates:N0} automaton states for one token; simplify it");
        id = _states.Count;
        _states.Add(configs);
        _stateIds[configs] = id;
        bool accepting = false;
        foreach (long c in configs)
        {
            var (q, stack) = Unpack(c);
            if (stack == 0 && _nfa.EndOf[q] >= 0) { accepting = true; break; }
        }
        if (id >= _accepting.Length)
        {
            var grownAccepting = new bool[_accepting.Length * 2];
            _accepting.CopyTo(grownAccepting, 0);
            Volatile.Write(ref _accepting, grownAccepting);
        }
        _accepting[id] = accepting;
        int needed = _states.Count * ClassCount;
        if (_transitions.Length < needed)
        {
            var grown = new int[Math.Max(needed, _transitions.Length * 2)];
            _transitions.CopyTo(grown, 0);
            grown.AsSpan(_transitions.Length).Fill(Unknown);
            Volatile.Write(ref _transitions, grown);
        }
        return id;
    }

    private static long Pack(int state, int stack) => ((long)state << 32) | (uint)stack;
    private static (int State, int Stack) Unpack(long config) => ((int)(config >> 32), (int)config);

    private sealed class ConfigSetComparer : IEqualityComparer<long[]>
    {
        public bool Equals(long[]? x, long[]? y) => x.AsSpan().SequenceEqual(y);
        public int GetHashCode(long[] obj)
        {
            var h = new HashCode();
            h.AddBytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(obj.AsSpan()));
            return h.ToHashCode();
        }
    }
}
