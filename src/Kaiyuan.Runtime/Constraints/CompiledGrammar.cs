using System.Runtime.CompilerServices;

namespace Kaiyuan.Constraints;

/// <summary>
/// A grammar bound to a vocabulary: its automaton, the vocabulary's token trie, and the masks computed so far
/// (a mask depends only on the automaton state, so a state met again costs a copy). Shared by every sequence that
/// uses the same grammar; each sequence walks it with its own <see cref="GrammarMatcher"/>.
/// </summary>
internal sealed class CompiledGrammar
{
    /// <summary>Masks kept per grammar (each VocabSize/8 bytes: 19 KB for a 151k vocabulary).</summary>
    private const int MaskCacheSize = 256;

    private readonly Dictionary<int, LinkedListNode<(int State, ulong[] Mask)>> _masks = [];
    private readonly LinkedList<(int State, ulong[] Mask)> _lru = new();
    private readonly object _cacheLock = new();
    private int[] _walkStates = [];

    public CompiledGrammar(ByteAutomaton automaton, TokenTrie tokens)
    {
        Automaton = automaton;
        Tokens = tokens;
    }

    public ByteAutomaton Automaton { get; }
    public TokenTrie Tokens { get; }

    public GrammarMatcher CreateMatcher() => new(this);

    /// <summary>Sets exactly the bits of the tokens allowed after <paramref name="state"/>.</summary>
    public void FillMask(int state, Span<ulong> mask)
    {
        // One lock: the walk's scratch is per grammar, and two sequences on one grammar rarely contend.
        lock (_cacheLock)
        {
            ForgetIfReset();
            if (_masks.TryGetValue(state, out var hit))
            {
                _lru.Remove(hit);
                _lru.AddFirst(hit);
                hit.Value.Mask.CopyTo(mask);
                return;
            }
            ulong[] computed;
            if (_lru.Count >= MaskCacheSize)
            {
                computed = _lru.Last!.Value.Mask;
                _masks.Remove(_lru.Last.Value.State);
                _lru.RemoveLast();
            }
            else computed = new ulong[Tokens.MaskLength];
            Walk(state, computed);
            _masks[state] = _lru.AddFirst((state, computed));
            computed.CopyTo(mask);
        }
    }

    /// <summary>Masks and loop facts belong to one automaton epoch.</summary>
    private void ForgetIfReset()
    {
        if (_epoch == Automaton.Epoch) return;
        _masks.Clear();
        _lru.Clear();
        _plainLoop.Clear();
        _epoch = Automaton.Epoch;
    }

    private int _epoch;

    /// <summary>
    /// Brings a matcher's state into the current epoch, first resetting the automaton if it has grown past its soft
    /// bound (no walk runs meanwhile: walks hold the same lock).
    /// </summary>
    internal int Sync(ref int state, ref int epoch, long[] configurations)
    {
        lock (_cacheLock)
        {
            if (Automaton.NeedsReset) Automaton.Reset();
            ForgetIfReset();
            if (epoch != Automaton.Epoch)
            {
                state = Automaton.StateOf(configurations);
                epoch = Automaton.Epoch;
            }
            return state;
        }
    }

    /// <summary>Walks bytes under the grammar's lock, so that no reset runs in between.</summary>
    internal int Walk(int state, ReadOnlySpan<byte> bytes)
    {
        lock (_cacheLock) return Automaton.Walk(state, bytes);
    }

    /// <summary>
    /// The mask of one state. Where every plain character (see <see cref="TokenTrie.PlainUpTo"/>) moves the state the
    /// same way for a run of characters, the plain tokens that fit the run are allowed wholesale and only the other
    /// tokens are walked; otherwise the whole trie is walked.
    /// </summary>
    private void Walk(int state, Span<ulong> mask)
    {
        mask.Clear();
        if (state < 0) return;
        int run = PlainRun(state);
        if (run > 0)
        {
            Tokens.PlainUpTo[Math.Min(run, TokenTrie.MaxPlainChars)].CopyTo(mask);
            Walk(state, Tokens.Rest, mask, default);
        }
        else if (IsPlainLoop(state))
        {
            // One of the state's parses is a free string body: every plain token is allowed through it.
            Tokens.PlainUpTo[TokenTrie.MaxPlainChars].CopyTo(mask);
            Walk(state, Tokens.Rest, mask, default);
        }
        else if (FirstBytesIntoPlainLoops(state, _sliced))
        {
            // Plain tokens whose first character leads into a plain loop (a free string after a property name's
            // first letters diverge, say) are allowed by first byte; the rest of those bytes' tokens are in Rest.
            int slicedCount = 0;
            foreach (bool b in _sliced) if (b) slicedCount++;
            if (slicedCount > 128)
            {
                Tokens.PlainUpTo[TokenTrie.MaxPlainChars].CopyTo(mask);
                for (int b = 0; b < 256; b++)
                    if (!_sliced[b])
                        foreach (int id in Tokens.PlainByFirstByte[b]) mask[id >> 6] &= ~(1UL << id);
            }
            else
            {
                for (int b = 0; b < 256; b++)
                    if (_sliced[b])
                        foreach (int id in Tokens.PlainByFirstByte[b]) mask[id >> 6] |= 1UL << id;
            }
            Walk(state, Tokens.Rest, mask, default);
            Walk(state, Tokens.All, mask, _sliced);
        }
        else Walk(state, Tokens.All, mask, default);
        if (Automaton.IsAccepting(state))
            foreach (int id in Tokens.EndOfGeneration) mask[id >> 6] |= 1UL << id;
    }

    /// <summary>One depth-first pass over a trie, skipping every subtree whose first byte the automaton refuses
    /// (and those whose first byte <paramref name="skipFirst"/> marks: their tokens are accounted for already).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private unsafe void Walk(int state, TokenTrie.Nodes trie, Span<ulong> mask, ReadOnlySpan<bool> skipFirst)
    {
        var automaton = Automaton;
        if (_walkStates.Length < trie.MaxDepth + 1) _walkStates = new int[trie.MaxDepth + 1];
        int classes = automaton.ClassCount;
        var table = automaton.Table;
        int count = trie.Items.Length;
        bool skipping = !skipFirst.IsEmpty;
        // Rows, not states, along the path: one add per node instead of a multiply. Bounds are the trie's own (every
        // depth is at most MaxDepth, every row is inside the table), so the loop runs on pointers.
        fixed (int* rowAt = _walkStates)
        fixed (TokenTrie.Nodes.Node* nodes = trie.Items)
        fixed (byte* classOf = automaton.ClassOf)
        fixed (ulong* bits = mask)
        fixed (int* same = trie.SameBytes)
        fixed (bool* skip = skipFirst)
        {
            rowAt[0] = state * classes;
            int* t = null;
            fixed (int* t0 = table)
            {
                t = t0;
                for (int n = 1; n < count;)
                {
                    var node = nodes + n;
                    int d = node->Depth;
                    if (skipping && d == 1 && skip[node->Byte]) { n = node->SubtreeEnd; continue; }
                    int fromRow = rowAt[d - 1];
                    int cls = classOf[node->Byte];
                    int next = t[fromRow + cls];
                    if (next < ByteAutomaton.Dead)
                    {
                        next = automaton.Compute(fromRow / classes, cls);
                        if (automaton.Table != table) break; // the table grew: finish on the new one below
                    }
                    if (next < 0) { n = node->SubtreeEnd; continue; }
                    rowAt[d] = next * classes;
                    for (int id = node->Token; id >= 0; id = same[id]) bits[id >> 6] |= 1UL << id;
                    n++;
                }
            }
        }
        if (automaton.Table != table) Walk(state, trie, mask, skipFirst); // rare: a new state outgrew the table mid-walk
    }

    /// <summary>
    /// How many plain characters in a row the state takes whatever they are: 0 when the first one already depends on
    /// the character, <see cref="int.MaxValue"/> when it loops, else the length of the run before every character is
    /// refused. Runs that become character-dependent part-way count as 0 (the whole trie is walked: always exact).
    /// </summary>
    private int PlainRun(int state, int maxSteps = TokenTrie.MaxPlainChars)
    {
        Span<int> chain = stackalloc int[TokenTrie.MaxPlainChars + 1];
        Span<int> perClass = stackalloc int[256];
        chain[0] = state;
        for (int j = 0; j < maxSteps; j++)
        {
            PlainTargets(chain[j], perClass);
            int next = NotSeen;
            foreach (int t in perClass)
            {
                if (t == NotSeen) continue;
                if (t == Mixed || (next != NotSeen && t != next)) return 0;
                next = t;
            }
            if (next == NotSeen) return 0;
            if (next < 0) return j;
            if (chain[..(j + 1)].Contains(next)) return int.MaxValue;
            chain[j + 1] = next;
        }
        return TokenTrie.MaxPlainChars;
    }

    private const int NotSeen = -3, Mixed = -4;

    /// <summary>
    /// Per class of first byte: the one state that every plain character starting with a byte of that class leads to
    /// from <paramref name="state"/> (<see cref="ByteAutomaton.Dead"/> when refused), <see cref="Mixed"/> when they
    /// lead to different states, <see cref="NotSeen"/> for classes no plain character starts with. Walks the byte
    /// classes of each UTF-8 position once per intermediate state, not every combination of them.
    /// </summary>
    private void PlainTargets(int state, Span<int> perClass)
    {
        perClass.Fill(NotSeen);
        var sequences = PlainSequences();
        var classOf = Automaton.ClassOf;
        _visited.Clear();
        for (int seq = 0; seq < sequences.Length; seq++)
            foreach (byte first in sequences[seq][0])
            {
                int cls = classOf[first];
                if (perClass[cls] != Mixed) Collect(Automaton.Step(state, first), seq, 1, cls, ref perClass[cls]);
            }
    }

    private void Collect(int state, int seq, int position, int cls, ref int found)
    {
        var positions = PlainSequences()[seq];
        if (state < 0 || position == positions.Length)
        {
            if (found == NotSeen) found = state;
            else if (found != state) found = Mixed;
            return;
        }
        if (!_visited.Add(((long)state << 20) | ((long)seq << 10) | ((long)position << 8) | (uint)cls)) return;
        foreach (byte b in positions[position])
        {
            if (found == Mixed) return;
            Collect(Automaton.Step(state, b), seq, position + 1, cls, ref found);
        }
    }

    /// <summary>The plain characters (all but controls, quote and backslash) as UTF-8 byte-range sequences, each
    /// position reduced to one byte per byte class: every plain character moves a state as one such path does.</summary>
    private byte[][][] PlainSequences()
    {
        if (_plainSequences is { } known) return known;
        var sequences = new List<byte[][]>();
        byte[] classOf = Automaton.ClassOf.ToArray();
        var plain = CodepointSet.Range(0x20, CodepointSet.MaxCodepoint).Except(CodepointSet.Of("\"\\"));
        foreach (var (lo, hi) in plain.Ranges)
            Utf8Ranges.Split(lo, hi, seq => sequences.Add([.. seq.Select(r =>
            {
                var seen = new HashSet<int>();
                var bytes = new List<byte>();
                for (int b = r.Lo; b <= r.Hi; b++)
                    if (seen.Add(classOf[b])) bytes.Add((byte)b);
                return bytes.ToArray();
            })]));
        return _plainSequences = [.. sequences];
    }

    /// <summary>
    /// Marks the bytes b for which every plain character starting with b moves <paramref name="state"/> into a state
    /// that loops on every plain character: all plain tokens starting with b are then allowed. False if none.
    /// </summary>
    private bool FirstBytesIntoPlainLoops(int state, bool[] sliced)
    {
        Array.Clear(sliced);
        Span<int> perClass = stackalloc int[256];
        PlainTargets(state, perClass);
        var classOf = Automaton.ClassOf;
        Span<sbyte> loops = stackalloc sbyte[256]; // per first-byte class: -1 not yet known, 0 no, 1 yes
        loops.Fill(-1);
        bool any = false;
        for (int b = 0x20; b <= 0xF4; b++)
        {
            if (b == '"' || b == '\\' || b is >= 0x80 and < 0xC2) continue; // never the first byte of a plain character
            int cls = classOf[b];
            if (loops[cls] < 0) loops[cls] = (sbyte)(perClass[cls] >= 0 && IsPlainLoop(perClass[cls]) ? 1 : 0);
            if (loops[cls] == 1) sliced[b] = any = true;
        }
        return any;
    }

    /// <summary>The state, or one of its parses alone, takes every plain character and stays itself (the body of a
    /// free string): every plain token is then allowed from it.</summary>
    private bool IsPlainLoop(int state)
    {
        if (state < 0) return false;
        if (_plainLoop.TryGetValue(state, out bool known)) return known;
        // A free string body loops at once, or after the one character that leaves its opening state: a short chain
        // finds it, and a state that is merely a long bounded run is not worth following here.
        bool loop = PlainRun(state, LoopSteps) == int.MaxValue;
        int parts = Automaton.ConfigurationCount(state);
        for (int i = 0; !loop && parts > 1 && parts <= MaxPartsTried && i < parts; i++)
            loop = PlainRun(Automaton.Part(state, i), LoopSteps) == int.MaxValue;
        return _plainLoop[state] = loop;
    }

    private const int MaxPartsTried = 8, LoopSteps = 3;

    private readonly bool[] _sliced = new bool[256];
    private readonly Dictionary<int, bool> _plainLoop = [];
    private readonly HashSet<long> _visited = [];
    private byte[][][]? _plainSequences;
}

/// <summary>
/// Something that restricts which tokens a sequence may produce next: a grammar, or a grammar that starts only after
/// a trigger (a reasoning block's end, a tool call's opening). One per sequence; not thread-safe. Made by
/// <see cref="Chat.StructuredOutput"/>; opaque outside the runtime.
/// </summary>
public abstract class TokenConstraint
{
    internal TokenConstraint()
    {
    }

    /// <summary>Sets the bit of every allowed next token (the span is <c>ceil(vocab/64)</c> long).</summary>
    internal abstract void FillMask(Span<ulong> mask);

    /// <summary>Advances past a sampled token; false when the token was not allowed (the state is then unchanged).</summary>
    internal abstract bool Accept(int token);

    /// <summary>The output so far is complete under the constraint (end of generation is allowed).</summary>
    internal abstract bool IsAccepting { get; }

    /// <summary>False while the constraint lets every token through (before its trigger): the mask can be skipped.</summary>
    internal virtual bool IsActive => true;
}

/// <summary>Walks one sequence through a <see cref="CompiledGrammar"/>, token by token.</summary>
internal sealed class GrammarMatcher : TokenConstraint
{
    private readonly CompiledGrammar _grammar;
    private int _state;
    private int _epoch;
    private long[] _configurations;

    internal GrammarMatcher(CompiledGrammar grammar)
    {
        _grammar = grammar;
        _epoch = grammar.Automaton.Epoch;
        _state = grammar.Automaton.Start;
        _configurations = grammar.Automaton.Configurations(_state);
    }

    private int State => _grammar.Sync(ref _state, ref _epoch, _configurations);

    private void MoveTo(int state)
    {
        _state = state;
        _configurations = _grammar.Automaton.Configurations(state);
    }

    public CompiledGrammar Grammar => _grammar;
    internal override bool IsAccepting => _grammar.Automaton.IsAccepting(State);
    /// <summary>An end-of-generation token was accepted: nothing more may follow.</summary>
    public bool IsFinished { get; private set; }

    internal override void FillMask(Span<ulong> mask)
    {
        if (IsFinished) { mask.Clear(); return; }
        _grammar.FillMask(State, mask);
    }

    internal override bool Accept(int token)
    {
        if (IsFinished) return false;
        if (_grammar.Tokens.IsEndOfGeneration(token))
        {
            if (!IsAccepting) return false;
            IsFinished = true;
            return true;
        }
        var bytes = _grammar.Tokens.Bytes(token);
        if (bytes.IsEmpty) return false;
        int next = _grammar.Walk(State, bytes);
        if (next < 0) return false;
        MoveTo(next);
        return true;
    }

    /// <summary>Advances over raw text (forced prefixes, or a trigger's tail already generated); false if refused.</summary>
    public bool AcceptBytes(ReadOnlySpan<byte> bytes)
    {
        int next = _grammar.Walk(State, bytes);
        if (next < 0) return false;
        MoveTo(next);
        return true;
    }

    public void Reset()
    {
        _epoch = _grammar.Automaton.Epoch;
        MoveTo(_grammar.Automaton.Start);
        IsFinished = false;
    }
}
