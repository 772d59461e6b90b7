using System.Numerics.Tensors;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Speculative;

/// <summary>
/// Drafting with the model's own multi-token-prediction layer (<c>--mtp</c>; DeepSeek-V3's and GLM-4.5's NextN,
/// <see cref="NextnPredictor"/>), for one session or every slot of the server's scheduler. It is told the final hidden
/// state of every token the target evaluates and keeps the layer's KV cache in step with each sequence: one entry per
/// position i, from (h_i, t_{i+1}), made once t_{i+1} is known. To draft, a slot's entries are caught up to its newest
/// token (all slots in one batched pass) and the argmax of the last entry's logits is the first draft token; each
/// further one feeds the layer its own output in place of h (as the reference implementations do), one batched pass
/// per token for every slot still drafting. The target verifies every draft, so the output does not change.
/// </summary>
internal sealed class MtpDrafter
{
    // Hidden rows waiting for their entries become entries once this many pile up (a long prompt), so a prompt of any
    // length keeps at most this many of them per slot; it is also the largest batch the layer runs.
    private const int MaxRows = 256;

    private readonly NextnPredictor _nextn;
    private readonly KvCache _cache;
    private readonly ForwardBatch _batch = new(MaxRows);
    private readonly ForwardContext _ctx;
    private readonly Workspace _workspace = new();
    private readonly Slot[] _slots;
    private readonly int _embd, _vocab, _contextLength;
    private readonly bool[] _want;
    private readonly float[] _logits; // a row per slot at most
    private float[] _output = [], _input = [];
    // The slots drafting in this step, and per slot its row of _logits and of _output.
    private readonly int[] _active, _row;
    private long _drafted, _accepted;

    /// <summary>A drafter for <paramref name="slots"/> sequences of <paramref name="model"/>, which must carry a NextN layer.</summary>
    /// <exception cref="ArgumentException">The model has no NextN layer, or is hybrid.</exception>
    public MtpDrafter(TransformerModel model, int slots, int contextLength, Gguf.GgmlType cacheType, WorkerPool pool, int maxDraft)
    {
        _nextn = model.NextN ?? throw new ArgumentException($"{Path.GetFileName(model.File.Path)} has no multi-token-prediction (NextN) layer to draft with");
        if (model.IsRecurrent) throw new ArgumentException("a hybrid model's recurrent state cannot take back rejected draft tokens");
        _embd = model.Config.EmbeddingLength;
        _vocab = _nextn.Head.Rows;
        _contextLength = contextLength;
        _cache = _nextn.CreateCache(slots, contextLength, cacheType);
        _ctx = new ForwardContext(_batch, _cache, _workspace, pool);
        MaxDraft = maxDraft;
        _slots = [.. Enumerable.Range(0, slots).Select(i => new Slot(this, i))];
        _logits = new float[slots * _vocab];
        _want = new bool[Math.Max(MaxRows, slots)];
        _active = new int[slots];
        _row = new int[slots];
    }

    /// <summary>Tokens proposed per step at most (up to 64, as <c>--draft-max</c>).</summary>
    public int MaxDraft
    {
        get => _maxDraft;
        set => _maxDraft = Math.Clamp(value, 1, MaxDraftLimit);
    }

    private int _maxDraft;
    private const int MaxDraftLimit = 64;

    /// <summary>Tokens drafted and verified so far, and how many were accepted (every slot together).</summary>
    public Scheduling.SpeculationReport Speculation => new(Interlocked.Read(ref _drafted), Interlocked.Read(ref _accepted));

    /// <summary>Batched passes of the layer so far.</summary>
    public long Passes { get; private set; }

    /// <summary>The proposer of slot <paramref name="slot"/>: what <see cref="Prepare"/> drafted for it this step.</summary>
    public IDraftProposer ForSlot(int slot) => _slots[slot];

    /// <summary>Entries in slot <paramref name="slot"/>'s cache (tests).</summary>
    internal int Entries(int slot) => _slots[slot].Entries;

    /// <summary>
    /// Learns the batch's rows <paramref name="from"/>…<paramref name="from"/>+<paramref name="count"/>-1 (a sequence's rows
    /// consecutive, at consecutive positions) with their final hidden states, <paramref name="hidden"/>'s rows in order.
    /// </summary>
    public void Observe(ForwardBatch batch, int from, int count, ReadOnlySpan<float> hidden)
    {
        for (int r = from; r < from + count;)
        {
            int slot = batch.Slots[r], end = r + 1;
            while (end < from + count && batch.Slots[end] == slot) end++;
            // Rows of other sequences (the scheduler's embedding jobs) are not drafted for.
            if (slot < _slots.Length) _slots[slot].Seen(batch.Positions[r], batch.Tokens.AsSpan(r, end - r), hidden.Slice((r - from) * _embd, (end - r) * _embd));
            r = end;
        }
    }

    /// <summary>
    /// Slot <paramref name="slot"/> now holds a sequence whose first tokens are <paramref name="tokens"/> (a new or resumed
    /// one, its cached prefix): the slot keeps its entries only as far as its tokens agree. A prefix that came from
    /// another slot's sequence (the prefix cache shares it, so its hidden states are never computed here) takes that
    /// slot's entries for it, copied, rather than going without.
    /// </summary>
    public void Follow(int slot, ReadOnlySpan<int> tokens)
    {
        var s = _slots[slot];
        s.Truncate(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(s.Tokens).CommonPrefixLength(tokens));
        // Another slot's entries hold up to the position before the last token shared (the one after it may differ); an
        // unseen position (-1) ends what is shared, so only entries made from seen rows are taken. They are taken only
        // where they reach further than the slot's own tokens.
        int from = s.Entries, best = -1, length = s.Tokens.Count;
        for (int o = 0; o < _slots.Length; o++)
        {
            if (o == slot) continue;
            var other = _slots[o];
            int shared = Math.Min(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(other.Tokens).CommonPrefixLength(tokens) - 1, other.Entries);
            if (shared > length) (best, length) = (o, shared);
        }
        if (best < 0) return;
        if (!_cache.Reserve(slot, length)) return;
        var row = _workspace.Floats(Buf.CacheRow, _cache.RowWidths[0]);
        for (int p = from; p < length; p++)
        {
            _cache.Read(0, best, p, row);
            _cache.Write(0, slot, p, row);
        }
        s.Adopt(tokens[..length]);
    }

    /// <summary>
    /// Drafts for the sequences given as (slot, newest token, its position, room): the newest token is the one sampled
    /// last, not yet evaluated; up to the slot's budget and the room each, all slots in the same batched passes.
    /// </summary>
    public void Prepare(ReadOnlySpan<(int Slot, int Token, int Position, int Room)> requests)
    {
        int active = 0;
        foreach (var (slot, token, position, room) in requests)
        {
            var s = _slots[slot];
            s.Count = 0;
            s.Limit = Math.Min(Math.Min(s.Pacing.Budget, room), Math.Min(MaxDraft, _contextLength - position));
            // Rows after the newest token's position were drafts the target rejected.
            if (s.Tokens.Count > position) s.Truncate(position);
            // The slot must have seen every token before the newest (its entries need their hidden states).
            if (s.Limit <= 0 || position == 0 || s.Tokens.Count != position || s.Entries >= position || s.Pacing.SitsOut()) continue;
            s.Newest = token;
            _active[active++] = slot;
        }
        if (active == 0) return;
        try
        {
            CatchUp(active);
            while (true)
            {
                for (int i = 0; i < active; i++)
                {
                    var s = _slots[_active[i]];
                    s.Draft[s.Count++] = TensorPrimitives.IndexOfMax(new ReadOnlySpan<float>(_logits, _row[_active[i]] * _vocab, _vocab));
                }
                int next = 0;
                for (int i = 0; i < active; i++)
                    if (_slots[_active[i]] is var s && s.Count < s.Limit) _active[next++] = _active[i];
                if (next == 0) break;
                active = next;
                // One token more per slot still drafting: its latest draft token after the layer's own output for the one before.
                EnsureInput(active);
                _batch.Clear();
                for (int i = 0; i < active; i++)
                {
                    int slot = _active[i];
                    var s = _slots[slot];
                    s.Recycled.CopyTo(_input.AsSpan(i * _embd));
                    _want[i] = true;
                    _row[slot] = i;
                    _batch.Add(s.Draft[s.Count - 1], s.Tokens.Count - 1 + s.Count, slot);
                    if (!_cache.Reserve(slot, s.Tokens.Count + s.Count)) throw new InvalidOperationException("the multi-token-prediction KV pool is full");
                }
                Run(_input.AsSpan(0, active * _embd), 0);
            }
        }
        catch
        {
            foreach (var s in _slots) s.Count = 0;
            throw;
        }
    }

    /// <summary>Batched passes (one unless a slot waits on many rows) making each active slot's entries up to its newest token.</summary>
    private void CatchUp(int active)
    {
        _batch.Clear();
        int wanted = 0, chunkFirst = 0;
        EnsureInput(MaxRows);
        for (int i = 0; i < active; i++)
        {
            int slot = _active[i];
            var s = _slots[slot];
            int last = s.Tokens.Count - 1;
            if (!_cache.Reserve(slot, last + s.Limit)) throw new InvalidOperationException("the multi-token-prediction KV pool is full");
            for (int p = s.Entries; p <= last; p++)
            {
                if (_batch.Count == MaxRows)
                {
                    Run(_input.AsSpan(0, MaxRows * _embd), chunkFirst);
                    chunkFirst = wanted;
                    _batch.Clear();
                }
                bool isLast = p == last;
                _want[_batch.Count] = isLast;
                if (isLast) _row[slot] = wanted++;
                s.Pending.AsSpan((p - s.Entries) * _embd, _embd).CopyTo(_input.AsSpan(_batch.Count * _embd));
                _batch.Add(s.NextAfter(p), p, slot);
            }
            s.Consumed(last);
        }
        Run(_input.AsSpan(0, _batch.Count * _embd), chunkFirst);
    }

    /// <summary>Runs the batch over <paramref name="hidden"/>; the wanted rows' logits go to the rows from <paramref name="firstRow"/> on.</summary>
    private void Run(ReadOnlySpan<float> hidden, int firstRow)
    {
        int n = _batch.Count, wanted = 0;
        if (n == 0) return;
        for (int i = 0; i < n; i++) wanted += _want[i] ? 1 : 0;
        if (_output.Length < n * _embd) _output = new float[Math.Max(n, 8) * _embd];
        _nextn.Forward(_ctx, hidden, _want.AsSpan(0, n), _output.AsSpan(0, n * _embd), _logits.AsSpan(firstRow * _vocab, wanted * _vocab));
        // A wanted row's output stands in for the main model's hidden state at the slot's next draft position.
        for (int i = 0; i < n; i++)
            if (_want[i]) _output.AsSpan(i * _embd, _embd).CopyTo(_slots[_batch.Slots[i]].Recycled);
        Passes++;
    }

    /// <summary>Makes one slot's waiting entries (those whose next token is known) without logits: a long prompt's.</summary>
    private void CatchUpEagerly(Slot s)
    {
        int upTo = s.Tokens.Count - 2;
        EnsureInput(MaxRows);
        while (s.Entries <= upTo)
        {
            int n = Math.Min(MaxRows, upTo - s.Entries + 1);
            _batch.Clear();
            for (int i = 0; i < n; i++)
            {
                _want[i] = false;
                _batch.Add(s.NextAfter(s.Entries + i), s.Entries + i, s.Index);
            }
            if (!_cache.Reserve(s.Index, s.Entries + n)) throw new InvalidOperationException("the multi-token-prediction KV pool is full");
            Run(s.Pending.AsSpan(0, n * _embd), 0);
            s.Consumed(s.Entries + n - 1);
        }
    }

    private void EnsureInput(int rows)
    {
        if (_input.Length < rows * _embd) _input = new float[rows * _embd];
    }

    /// <summary>One sequence's entries, the hidden rows waiting for theirs, and this step's draft.</summary>
    // A slot's first draft is one token, what the layer was trained to predict; drafts grow while taken whole.
    private sealed class Slot(MtpDrafter owner, int index) : PreparedDraft(MaxDraftLimit, owner.MaxDraft, firstBudget: 1)
    {
        public int Index => index;
        // The tokens the target evaluated on this slot, by position (-1 where it skipped ahead unseen: a cached prefix).
        public readonly List<int> Tokens = [];
        // Hidden rows of positions Entries…Tokens.Count-1, whose entries wait for the token after them.
        public float[] Pending = [];
        // Entries 0…Entries-1 are in the cache.
        public int Entries;
        // The newest entry's hidden row and next token, to redo it when the token after it turns out otherwise (a chat's
        // next prompt starts where the last answer's final token was sampled but never evaluated).
        private readonly float[] _lastHidden = new float[owner._embd];
        private int _lastNext = -1;
        public readonly float[] Recycled = new float[owner._embd];
        public int Newest;

        public override int MaxDraft => owner.MaxDraft;

        /// <summary>The token after position <paramref name="p"/> (the newest, not yet evaluated, after the last).</summary>
        public int NextAfter(int p) => p + 1 < Tokens.Count ? Math.Max(0, Tokens[p + 1]) : Newest;

        /// <summary>
        /// Forgets the tokens from <paramref name="length"/> on: entries from length-1 on saw a token that is gone. Entry
        /// length-1 is redone at the next feed when its hidden row is at hand; otherwise it stays as it was (it only
        /// steers drafts).
        /// </summary>
        public void Truncate(int length)
        {
            if (length >= Tokens.Count) return;
            Tokens.RemoveRange(length, Tokens.Count - length);
            if (Entries > length)
            {
                Entries = length;
                _lastNext = -1;
            }
        }

        public void Seen(int start, ReadOnlySpan<int> tokens, ReadOnlySpan<float> hidden)
        {
            int d = owner._embd;
            if (start < Tokens.Count) Truncate(start);
            else if (start > Tokens.Count)
            {
                // Skipped positions (cached rows) have no hidden states: their entries are left as the cache holds them.
                while (Tokens.Count < start) Tokens.Add(-1);
                Entries = start;
                _lastNext = -1;
            }
            if (Entries == start && start > 0 && _lastNext >= 0 && _lastNext != tokens[0])
            {
                Grow(1);
                _lastHidden.CopyTo(Pending, 0);
                Entries--;
            }
            int waiting = Tokens.Count - Entries;
            Grow(waiting + tokens.Length);
            hidden.CopyTo(Pending.AsSpan(waiting * d));
            foreach (int t in tokens) Tokens.Add(t);
            if (Tokens.Count - Entries > MaxRows) owner.CatchUpEagerly(this);
        }

        /// <summary>The slot's entries now stand for <paramref name="tokens"/> (copied from another slot): nothing waits.</summary>
        public void Adopt(ReadOnlySpan<int> tokens)
        {
            Tokens.Clear();
            foreach (int t in tokens) Tokens.Add(t);
            Entries = Tokens.Count;
            _lastNext = -1;
        }

        /// <summary>Entries up to position <paramref name="last"/> are made: their rows stop waiting.</summary>
        public void Consumed(int last)
        {
            int d = owner._embd, consumed = last + 1 - Entries, waiting = Tokens.Count - (last + 1);
            Pending.AsSpan((consumed - 1) * d, d).CopyTo(_lastHidden);
            _lastNext = NextAfter(last);
            if (waiting > 0) Pending.AsSpan(consumed * d, waiting * d).CopyTo(Pending);
            Entries = last + 1;
        }

        private void Grow(int rows)
        {
            int d = owner._embd;
            if (Pending.Length >= rows * d) return;
            var grown = new float[Math.Max(rows, Pending.Length / d * 3 / 2) * d];
            Pending.CopyTo(grown, 0);
            Pending = grown;
        }

        protected override void Counted(int proposed, int accepted)
        {
            Interlocked.Add(ref owner._drafted, proposed);
            Interlocked.Add(ref owner._accepted, accepted);
        }

        public override string ToString() => $"multi-token-prediction slot {index}";
    }
}

/// <summary>
/// Multi-token prediction for one session (<c>generate</c>, <c>run</c>, <see cref="Generator"/>): a one-slot
/// <see cref="MtpDrafter"/> that the session tells every hidden state, made at its first use and kept with the session,
/// so later generations on it go on from what it has seen.
/// </summary>
internal sealed class MtpSessionProposer : IDraftProposer, IHiddenObserver
{
    private readonly InferenceSession _session;
    private readonly (int, int, int, int)[] _request = new (int, int, int, int)[1];

    private MtpSessionProposer(InferenceSession session, int maxDraft)
    {
        _session = session;
        Drafter = new MtpDrafter(session.Model, 1, session.ContextLength, session.Cache.Type, session.Pool, maxDraft);
    }

    public MtpDrafter Drafter { get; }
    public int MaxDraft => Drafter.MaxDraft;

    /// <summary>The proposer that follows <paramref name="session"/>, proposing up to <paramref name="maxDraft"/> tokens.</summary>
    public static MtpSessionProposer For(InferenceSession session, int maxDraft)
    {
        if (session.Mtp is not { } mtp)
        {
            mtp = new MtpSessionProposer(session, maxDraft);
            session.Mtp = mtp;
            session.HiddenObserver = mtp;
        }
        mtp.Drafter.MaxDraft = maxDraft;
        return mtp;
    }

    public void OnEvaluated(ForwardBatch batch, ReadOnlySpan<float> hidden) => Drafter.Observe(batch, 0, batch.Count, hidden);

    public int Propose(ReadOnlySpan<int> history, Span<int> draft, int room)
    {
        _request[0] = (0, history[^1], _session.Position, Math.Min(room, draft.Length));
        Drafter.Prepare(_request);
        return Drafter.ForSlot(0).Propose(history, draft, room);
    }

    public void Observe(int proposed, int accepted) => Drafter.ForSlot(0).Observe(proposed, accepted);
}
