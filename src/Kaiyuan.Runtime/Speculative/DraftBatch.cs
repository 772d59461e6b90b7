using System.Numerics.Tensors;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;

namespace Kaiyuan.Speculative;

/// <summary>
/// A draft model's state for every slot of the server's scheduler, drafting for all of a step's decoding sequences
/// together: one batched forward brings every slot's draft cache up to its sequence's history, then each further draft
/// token of every slot still drafting is one batched forward more. The target verifies the sequences in one batched
/// step; its draft now reads its weights once per draft token, not once per draft token and sequence, which made
/// drafting for n streams cost n times a single stream's.
/// </summary>
/// <remarks>
/// Each slot keeps the tokens in its cache (cut back to what they share with the history, so a sequence that moves to
/// the slot brings it up to date) and its pacing. A lone sequence drafts through a one-slot batch
/// (<see cref="DraftModelProposer"/>). The
/// scheduler calls <see cref="Prepare"/> once per step with the decoding sequences, then asks each sequence's
/// <see cref="ForSlot"/> proposer for what was prepared.
/// </remarks>
internal sealed class DraftBatch
{
    private readonly DraftModel _owner;
    private readonly TransformerModel _model;
    private readonly KvCache _cache;
    private readonly ForwardBatch _batch;
    private readonly ForwardContext _ctx;
    private readonly Slot[] _slots;
    private readonly int _contextLength, _targetVocab;
    private readonly bool[] _want;
    private readonly float[] _logits; // a row per slot at most: each wants the logits after its last token
    // The slots drafting in this step, and per slot the logits row its next token comes from.
    private readonly int[] _active, _row;

    private const int MaxBatch = 512;

    public DraftBatch(DraftModel owner, int slots, int contextLength, WorkerPool pool)
    {
        _owner = owner;
        _model = owner.Model;
        _contextLength = contextLength;
        _targetVocab = owner.Target.VocabSize;
        _cache = _model.CreateCache(slots, contextLength);
        _batch = new ForwardBatch(MaxBatch);
        _ctx = new ForwardContext(_batch, _cache, new Workspace(), pool);
        _slots = [.. Enumerable.Range(0, slots).Select(i => new Slot(this, i, owner.MaxDraft))];
        _want = new bool[MaxBatch];
        _logits = new float[slots * _model.VocabSize];
        _active = new int[slots];
        _row = new int[slots];
    }

    /// <summary>Batched forwards the draft model has run.</summary>
    public long Passes { get; private set; }

    /// <summary>The proposer of slot <paramref name="slot"/>: what <see cref="Prepare"/> drafted for it this step.</summary>
    public IDraftProposer ForSlot(int slot) => _slots[slot];

    /// <summary>
    /// Drafts for the sequences given as (slot, history, room): up to the slot's budget and <paramref name="requests"/>'
    /// room each, greedily, all slots in the same batched forwards.
    /// </summary>
    public void Prepare(ReadOnlySpan<(int Slot, List<int> History, int Room)> requests)
    {
        int active = 0;
        foreach (var (slot, history, room) in requests)
        {
            var s = _slots[slot];
            s.Count = 0;
            s.Limit = Math.Min(Math.Min(s.Pacing.Budget, room), Math.Min(_owner.MaxDraft, _contextLength - history.Count + 1));
            if (s.Limit <= 0 || history.Count == 0 || s.Pacing.SitsOut()) continue;
            s.History = history;
            _active[active++] = slot;
        }
        if (active == 0) return;
        try
        {
            CatchUp(active);
            while (true)
            {
                TakeChoices(active);
                // One token more per slot and pass while any slot drafts on: each feeds its latest draft token.
                int next = 0;
                for (int i = 0; i < active; i++)
                {
                    var s = _slots[_active[i]];
                    if (s.Count > 0 && s.Count < s.Limit && !s.Stopped) _active[next++] = _active[i];
                }
                if (next == 0) break;
                active = next;
                _batch.Clear();
                for (int i = 0; i < active; i++)
                {
                    int slot = _active[i];
                    var s = _slots[slot];
                    int token = s.Draft[s.Count - 1];
                    _want[i] = true;
                    _row[slot] = i;
                    _batch.Add(token, s.History!.Count + s.Count - 1, slot);
                    s.Fed.Add(token);
                }
                Run(active, 0);
            }
        }
        catch
        {
            // The caches and the record of them may disagree now: every slot starts over next time.
            foreach (var s in _slots)
            {
                s.Fed.Clear();
                s.Count = 0;
            }
            throw;
        }
    }

    /// <summary>Batched passes (one unless the catch-up is long) feeding each active slot what its cache lacks.</summary>
    private void CatchUp(int active)
    {
        _batch.Clear();
        int wanted = 0, chunkFirst = 0;
        for (int i = 0; i < active; i++)
        {
            int slot = _active[i];
            var s = _slots[slot];
            var history = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(s.History);
            int keep = history.CommonPrefixLength(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(s.Fed));
            // Everything is already in the cache: the last token is fed again for the logits after it.
            if (keep == history.Length) keep--;
            s.Fed.RemoveRange(keep, s.Fed.Count - keep);
            s.Stopped = false;
            // Room for the history and the draft tokens fed back after it (the pool holds every slot's full context).
            if (!_cache.Reserve(slot, history.Length + s.Limit - 1)) throw new InvalidOperationException("the draft model's KV pool is full");
            for (int p = keep; p < history.Length; p++)
            {
                if (_batch.Count == MaxBatch)
                {
                    Run(_batch.Count, chunkFirst);
                    chunkFirst = wanted;
                    _batch.Clear();
                }
                bool last = p == history.Length - 1;
                _want[_batch.Count] = last;
                if (last) _row[slot] = wanted++;
                _batch.Add(history[p], p, slot);
                s.Fed.Add(history[p]);
            }
        }
        Run(_batch.Count, chunkFirst);
    }

    /// <summary>Runs the batch; its wanted rows' logits go to the logits rows from <paramref name="firstRow"/> on.</summary>
    private void Run(int count, int firstRow)
    {
        int vocab = _model.VocabSize, wanted = 0;
        for (int i = 0; i < count; i++) wanted += _want[i] ? 1 : 0;
        _model.Forward(_ctx, _want.AsSpan(0, count), _logits.AsSpan(firstRow * vocab, wanted * vocab));
        Passes++;
    }

    /// <summary>Each of the first <paramref name="n"/> active slots takes the draft's greedy choice from its row.</summary>
    private void TakeChoices(int n)
    {
        int vocab = _model.VocabSize;
        for (int i = 0; i < n; i++)
        {
            var s = _slots[_active[i]];
            int id = TensorPrimitives.IndexOfMax(new ReadOnlySpan<float>(_logits, _row[_active[i]] * vocab, vocab));
            // A padding row beyond the target's vocabulary is no token it could produce.
            if (id >= _targetVocab) s.Stopped = true;
            else s.Draft[s.Count++] = id;
        }
    }

    /// <summary>One slot's draft state and this step's draft.</summary>
    private sealed class Slot(DraftBatch owner, int index, int maxDraft) : PreparedDraft(maxDraft, maxDraft)
    {
        public readonly List<int> Fed = [];
        public List<int>? History;
        public bool Stopped;

        public override int MaxDraft => Draft.Length;

        protected override void Counted(int proposed, int accepted) => owner._owner.Count(proposed, accepted);

        public override string ToString() => $"draft slot {index}";
    }
}

/// <summary>
/// How many tokens a draft model proposes next for one sequence, and when it sits out: as prompt lookup
/// (<see cref="DraftBudget"/>), a stretch it guesses badly costs few draft passes and verified rows; and unlike a lookup,
/// which proposes nothing without a match, a draft always has a guess, so when even its first token keeps missing it
/// sits out a growing number of steps (each guess costs a draft pass and a wider verify).
/// </summary>
internal struct DraftPacing(int maxDraft, int firstBudget = 0)
{
    private const int MaxPause = 16;
    private readonly int _maxDraft = maxDraft;
    private int _pause, _pauseLength;

    /// <summary>Tokens to propose at most next.</summary>
    public int Budget { get; private set; } = firstBudget > 0 ? Math.Min(firstBudget, maxDraft) : maxDraft;

    /// <summary>True (and one step of the pause spent) while the draft sits out.</summary>
    public bool SitsOut()
    {
        if (_pause == 0) return false;
        _pause--;
        return true;
    }

    /// <summary>Learns from a verified proposal of <paramref name="proposed"/> tokens (not 0), <paramref name="accepted"/> of them taken.</summary>
    public void Observe(int proposed, int accepted)
    {
        _pauseLength = accepted > 0 ? 0 : Math.Min(2 * _pauseLength + 1, MaxPause);
        _pause = _pauseLength;
        Budget = DraftBudget.Next(Budget, _maxDraft, proposed, accepted);
    }
}
