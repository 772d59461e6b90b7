using System.Runtime.CompilerServices;

namespace Kaiyuan.Constraints;

/// <summary>
/// A grammar bound to a vocabulary: its automaton, the vocabulary's token trie, and the masks computed so far
/// (a mask depends only on the automaton state, so a state met again costs a copy). Shared by every sequence that
/// uses the same grammar; each sequence walks it with its own <see cref="GrammarMatcher"/>.
/// </summary>
public sealed class CompiledGrammar
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
            var plain = Tokens.PlainUpTo[Math.Min(run, TokenTrie.MaxPlainChars)];
            for (int i = 0; i < mask.Length; i++) mask[i] = plain[i];
            Walk(state, Tokens.Rest, mask);
        }
        else Walk(state, Tokens.All, mask);
        if (Automaton.IsAccepting(state))
            foreach (int id in Tokens.EndOfGeneration) mask[id >> 6] |= 1UL << id;
    }

    /// <summary>One depth-first pass over a trie, skipping every subtree whose first byte the automaton refuses.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Walk(int state, TokenTrie.Nodes trie, Span<ulong> mask)
    {
        var automaton = Automaton;
        if (_walkStates.Length < trie.MaxDepth + 1) _walkStates = new int[trie.MaxDepth + 1];
        var at = _walkStates;
        at[0] = state;
        int classes = automaton.ClassCount;
        var classOf = automaton.ClassOf;
        var table = automaton.Table;
        byte[] nodeByte = trie.NodeByte;
        int[] depth = trie.NodeDepth, subtreeEnd = trie.SubtreeEnd, nodeToken = trie.NodeToken, same = trie.SameBytes;
        int count = nodeByte.Length;
        for (int n = 1; n < count;)
        {
            int d = depth[n];
            int from = at[d - 1];
            int cls = classOf[nodeByte[n]];
            int next = table[from * classes + cls];
            if (next < ByteAutomaton.Dead)
            {
                next = automaton.Compute(from, cls);
                table = automaton.Table;
            }
            if (next < 0)
            {
                n = subtreeEnd[n];
                continue;
            }
            at[d] = next;
            for (int id = nodeToken[n]; id >= 0; id = same[id]) mask[id >> 6] |= 1UL << id;
            n++;
        }
    }

    /// <summary>
    /// How many plain characters in a row the state takes whatever they are: 0 when the first one already depends on
    /// the character, <see cref="int.MaxValue"/> when it loops, else the length of the run before every character is
    /// refused. Runs that become character-dependent part-way count as 0 (the whole trie is walked: always exact).
    /// </summary>
    private int PlainRun(int state)
    {
        var probes = PlainProbes();
        if (probes.Length == 0) return 0;
        Span<int> chain = stackalloc int[TokenTrie.MaxPlainChars + 1];
        chain[0] = state;
        for (int j = 0; j < TokenTrie.MaxPlainChars; j++)
        {
            int next = Automaton.Walk(chain[j], probes[0]);
            for (int p = 1; p < probes.Length; p++)
                if (Automaton.Walk(chain[j], probes[p]) != next) return 0;
            if (next < 0) return j;
            if (chain[..(j + 1)].Contains(next)) return int.MaxValue;
            chain[j + 1] = next;
        }
        return TokenTrie.MaxPlainChars;
    }

    /// <summary>One byte string per combination of byte classes that a plain character can be encoded as: every plain
    /// character moves any state exactly as one of these does. Empty when there would be too many to be worth it.</summary>
    private byte[][] PlainProbes()
    {
        if (_plainProbes is { } known) return known;
        var probes = new List<byte[]>();
        byte[] classOf = Automaton.ClassOf.ToArray();
        var plain = CodepointSet.Range(0x20, CodepointSet.MaxCodepoint).Except(CodepointSet.Of("\"\\"));
        foreach (var (lo, hi) in plain.Ranges)
            Utf8Ranges.Split(lo, hi, seq =>
            {
                // Per position, one byte of each class within the range; then every combination.
                var choices = seq.Select(r =>
                {
                    var seen = new HashSet<int>();
                    var bytes = new List<byte>();
                    for (int b = r.Lo; b <= r.Hi; b++)
                        if (seen.Add(classOf[b])) bytes.Add((byte)b);
                    return bytes;
                }).ToArray();
                IEnumerable<byte[]> combos = [[]];
                foreach (var c in choices) combos = combos.SelectMany(prefix => c.Select(b => prefix.Append(b).ToArray())).ToList();
                foreach (var combo in combos)
                {
                    if (probes.Count > MaxPlainProbes) return;
                    probes.Add(combo);
                }
            });
        _plainProbes = probes.Count > MaxPlainProbes ? [] : [.. probes];
        return _plainProbes;
    }

    private const int MaxPlainProbes = 512;
    private byte[][]? _plainProbes;
}

/// <summary>
/// Something that restricts which tokens a sequence may produce next: a grammar, or a grammar that starts only after
/// a trigger (a reasoning block's end, a tool call's opening). One per sequence; not thread-safe.
/// </summary>
public abstract class TokenConstraint
{
    /// <summary>Sets the bit of every allowed next token (the span is <c>ceil(vocab/64)</c> long).</summary>
    public abstract void FillMask(Span<ulong> mask);

    /// <summary>Advances past a sampled token; false when the token was not allowed (the state is then unchanged).</summary>
    public abstract bool Accept(int token);

    /// <summary>The output so far is complete under the constraint (end of generation is allowed).</summary>
    public abstract bool IsAccepting { get; }

    /// <summary>False while the constraint lets every token through (before its trigger): the mask can be skipped.</summary>
    public virtual bool IsActive => true;
}

/// <summary>Walks one sequence through a <see cref="CompiledGrammar"/>, token by token.</summary>
public sealed class GrammarMatcher : TokenConstraint
{
    private readonly CompiledGrammar _grammar;
    private int _state;

    internal GrammarMatcher(CompiledGrammar grammar)
    {
        _grammar = grammar;
        _state = grammar.Automaton.Start;
    }

    public CompiledGrammar Grammar => _grammar;
    public override bool IsAccepting => _grammar.Automaton.IsAccepting(_state);
    /// <summary>An end-of-generation token was accepted: nothing more may follow.</summary>
    public bool IsFinished { get; private set; }

    public override void FillMask(Span<ulong> mask)
    {
        if (IsFinished) { mask.Clear(); return; }
        _grammar.FillMask(_state, mask);
    }

    public override bool Accept(int token)
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
        int next = _grammar.Automaton.Walk(_state, bytes);
        if (next < 0) return false;
        _state = next;
        return true;
    }

    /// <summary>Advances over raw text (forced prefixes, or a trigger's tail already generated); false if refused.</summary>
    public bool AcceptBytes(ReadOnlySpan<byte> bytes)
    {
        int next = _grammar.Automaton.Walk(_state, bytes);
        if (next < 0) return false;
        _state = next;
        return true;
    }

    public void Reset()
    {
        _state = _grammar.Automaton.Start;
        IsFinished = false;
    }
}
