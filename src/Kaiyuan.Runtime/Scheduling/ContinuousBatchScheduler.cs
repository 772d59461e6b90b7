using System.Collections.Concurrent;
using System.Numerics.Tensors;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;
using Kaiyuan.Sampling;

namespace Kaiyuan.Scheduling;

/// <summary>How the scheduler shares the model.</summary>
internal sealed record SchedulerOptions
{
    /// <summary>Sequences decoded together (KV cache slots).</summary>
    public int Slots { get; init; } = 4;
    /// <summary>Context window per slot; 0: the model's, at most 4096.</summary>
    public int ContextLength { get; init; }
    /// <summary>Requests waiting for a slot at most; more are refused with <see cref="QueueFullException"/>.</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>
    /// Prompt tokens prefilled per step at most. While other sequences decode, a step takes fewer: as many as keep
    /// their inter-token latency within about 1.5× of a decode-only step.
    /// </summary>
    public int PrefillChunk { get; init; } = 256;
    /// <summary>KV cache row type (f32, f16 or q8_0).</summary>
    public Gguf.GgmlType CacheType { get; init; } = Gguf.GgmlType.F32;
    /// <summary>
    /// Bytes the paged KV pool may grow to (running and cached blocks); -1: a default from free memory (at most
    /// 8 GiB); 0: no prefix caching, room for every slot's full context. Never less than one full context.
    /// </summary>
    public long CacheBytes { get; init; } = -1;
    /// <summary>How embeddings pool the final hidden states: mean (default), cls (first token) or last.</summary>
    public EmbeddingPooling Pooling { get; init; } = EmbeddingPooling.Mean;
    /// <summary>
    /// Prompt prefixes on disk (<c>--prompt-cache</c>): a new sequence loads the full blocks it holds beyond what memory
    /// has, and a finished one offers its prompt. Its row type and widths must be the cache's. Not owned: the scheduler
    /// waits for its pending writes when disposed, the caller disposes it.
    /// </summary>
    public PromptCacheStore? PromptCache { get; init; }
    /// <summary>
    /// Prompt-lookup speculation: up to this many tokens per decoding sequence proposed from its own earlier text each
    /// step and verified in the same batched pass (0: off). Outputs are unchanged; hybrid models do not speculate.
    /// </summary>
    public int LookupDraft { get; init; }
    /// <summary>
    /// Speculation with a draft model: each decoding sequence's next tokens (up to its
    /// <see cref="Speculative.DraftModel.MaxDraft"/>) proposed greedily by the draft, which keeps a KV cache per slot,
    /// and verified in the same batched pass. Not with <see cref="LookupDraft"/>; null: none.
    /// </summary>
    public Speculative.DraftModel? DraftModel { get; init; }
    /// <summary>
    /// Multi-token prediction: the model's own NextN layer proposes up to this many tokens per decoding sequence each
    /// step (0: off), drafting for every slot in shared batched passes, verified in the same pass as the rest. Not with
    /// the other kinds of speculation.
    /// </summary>
    public int MtpDraft { get; init; }
    /// <summary>
    /// A long prompt prefilled beside decoding streams (<see cref="SplitPrefill"/>) runs in the OS's lowest scheduling
    /// class: the streams and their HTTP hand-offs preempt it at once. It then progresses only on cores nothing else wants.
    /// </summary>
    public bool BackgroundPrefill { get; init; }
}

internal enum EmbeddingPooling { Mean, Cls, Last }

/// <summary>
/// Continuous batching: a single background loop owns the model and a paged KV cache shared by up to
/// <see cref="SchedulerOptions.Slots"/> running sequences. Every step it gathers one token from each decoding sequence plus
/// a bounded chunk of pending prompt tokens into ONE <see cref="TransformerModel.Forward"/> call, samples each sequence's
/// next token with its own sampler, and streams it out. New sequences join between steps, first reusing whatever prefix
/// of theirs is cached (<see cref="PrefixCache"/>); finished or cancelled ones free their slot at once and leave their
/// blocks cached. When the pool runs out mid-generation the latest admitted sequence is preempted: its blocks stay
/// cached and it resumes, recomputing only what was evicted. Each token's math only depends on its own sequence: with
/// float weights a greedy output is the same whatever else runs in the batch. With quantized weights a step of 8 or more
/// tokens multiplies through the panel kernels, which sum in another order than single rows do (last-bit differences),
/// and re-quantizing the activations can grow that into a different token where two were nearly tied.
/// </summary>
internal sealed class ContinuousBatchScheduler : IGenerationEngine, IDisposable
{
    private readonly TransformerModel _model;
    private readonly SchedulerOptions _options;
    private readonly KvCache _cache;
    private readonly PrefixCache _prefix;
    private readonly Workspace _workspace = new();
    private readonly ForwardBatch _batch;
    private readonly ForwardContext _ctx;
    private readonly Sequence?[] _slots;
    private readonly ConcurrentQueue<object> _pending = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private readonly int _embedSequence;
    private readonly List<Sequence> _preempted = [];
    private readonly float[] _logits;
    private readonly bool[] _want;
    private readonly Sequence[] _rowOwner;
    private readonly int _maxDraft;
    // A draft model's state per slot (made at the slot's first decode step): the sequence on a slot proposes through it.
    // The draft model's state for every slot, drafting for a step's decoding sequences in shared passes (null: none).
    private readonly Speculative.DraftBatch? _draftBatch;
    // The model's NextN layer drafting for every slot (null: off); it is told every row's final hidden state.
    private readonly Speculative.MtpDrafter? _mtp;
    private readonly List<(int Slot, int Token, int Position, int Room)> _mtpRequests = [];
    private float[] _hidden = [];
    private readonly List<(int Slot, List<int> History, int Room)> _draftRequests = [];
    private float[] _lse = [];
    private int _pendingCount, _busy;
    private long _admissions, _prefillTokens, _preemptions, _draftedTokens, _acceptedDrafts;
    private volatile PrefixCacheStats _stats;
    // A decode-only step's moving average, and the prompt tokens a step beside decoding streams may take (adapted).
    private double _decodeSeconds, _sharedBudget = 8, _slowdown = 1;
    private int _sharedSteps;
    // A long prompt beside decoding streams prefills on threads of its own (made at first need; null where it cannot).
    private const int SplitMinTokens = 4 * KvCache.BlockTokens;
    private SplitPrefill? _split;
    private bool _splitTried;
    private ForwardContext? _decodeCtx;
    private Sequence? _prefilling;
    private int _prefillTake;
    private volatile bool _accepting = true, _stopping;

    public ContinuousBatchScheduler(TransformerModel model, SchedulerOptions options, WorkerPool? pool = null)
    {
        if (options.Slots < 1) throw new ArgumentOutOfRangeException(nameof(options), "at least one slot is needed");
        _model = model;
        _options = options;
        ContextLength = options.ContextLength > 0 ? options.ContextLength : Math.Min(model.Config.ContextLength, 4096);
        // One extra block table, never given to a generation, holds the sequence being embedded.
        _embedSequence = options.Slots;
        _cache = model.CreateCache(options.Slots + 1, ContextLength, options.CacheType, CapacityBlocks(model, options, ContextLength));
        _prefix = new PrefixCache(_cache, enabled: options.CacheBytes != 0) { Store = options.PromptCache };
        _stats = _prefix.Stats;
        if ((options.DraftModel is not null ? 1 : 0) + (options.LookupDraft > 0 ? 1 : 0) + (options.MtpDraft > 0 ? 1 : 0) > 1)
            throw new ArgumentException("choose one kind of speculation: prompt lookup, a draft model or multi-token prediction");
        if (options.DraftModel is { } draft && draft.Target != model) throw new ArgumentException("the draft model was made for another target model");
        // A hybrid model's recurrent state cannot take back rejected draft tokens (a draft model and the NextN drafter refuse one).
        _maxDraft = options.DraftModel?.MaxDraft ?? (options.MtpDraft > 0 ? options.MtpDraft : model.IsRecurrent ? 0 : Math.Max(0, options.LookupDraft));
        int decodeRows = options.Slots * (1 + _maxDraft);
        _batch = new ForwardBatch(decodeRows + options.PrefillChunk);
        _ctx = new ForwardContext(_batch, _cache, _workspace, pool ?? WorkerPool.Shared);
        if (options.DraftModel is { } draftModel) _draftBatch = new Speculative.DraftBatch(draftModel, options.Slots, ContextLength, _ctx.Pool);
        if (options.MtpDraft > 0) _mtp = new Speculative.MtpDrafter(model, options.Slots, ContextLength, options.CacheType, _ctx.Pool, options.MtpDraft);
        _slots = new Sequence?[options.Slots];
        _logits = new float[decodeRows * model.VocabSize];
        _want = new bool[decodeRows + options.PrefillChunk];
        _rowOwner = new Sequence[decodeRows];
        _thread = new Thread(Loop) { IsBackground = true, Name = "kaiyuan-scheduler" };
        _thread.Start();
    }

    public int ContextLength { get; }
    public int VocabSize => _model.VocabSize;
    public int Slots => _options.Slots;
    public SchedulerLoad Load => new(Volatile.Read(ref _pendingCount), Volatile.Read(ref _busy), _options.Slots);

    /// <summary>The KV pool and prefix cache after the latest step.</summary>
    public KvCacheReport Cache
    {
        get
        {
            var s = _stats;
            return new KvCacheReport(s.UsedBlocks, s.CachedBlocks, s.FreeBlocks, s.CapacityBlocks, KvCache.BlockTokens, _cache.BytesPerBlock,
                s.ResidentBytes, s.HitTokens, Interlocked.Read(ref _prefillTokens), s.Evictions, Interlocked.Read(ref _preemptions), _prefix.Enabled, s.LoadedTokens);
        }
    }

    /// <summary>Pool size: what <see cref="SchedulerOptions.CacheBytes"/> asks for, never less than one full context (and a spare block).</summary>
    private static int CapacityBlocks(TransformerModel model, SchedulerOptions options, int context)
    {
        long perBlock = Math.Max(1, model.CacheRowWidths.Sum(w => Gguf.GgmlTypeInfo.RowBytes(options.CacheType, w)) * KvCache.BlockTokens);
        long minimum = KvCache.BlocksFor(context) + 1;
        long everySlot = (long)options.Slots * KvCache.BlocksFor(context) + 1;
        long blocks = options.CacheBytes switch
        {
            0 => everySlot,
            < 0 => Math.Min(8L << 30, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4) / perBlock,
            var bytes => bytes / perBlock,
        };
        return (int)Math.Clamp(blocks, minimum, int.MaxValue / 4);
    }

    /// <summary>Batched forward passes the draft model has run (0 without one).</summary>
    internal long DraftPasses => _draftBatch?.Passes ?? _mtp?.Passes ?? 0;

    /// <summary>Draft tokens proposed and accepted so far (prompt-lookup speculation).</summary>
    public SpeculationReport? Speculation => _maxDraft == 0 ? null
        : new SpeculationReport(Interlocked.Read(ref _draftedTokens), Interlocked.Read(ref _acceptedDrafts));

    /// <summary>Decode passes (at most 16 tokens) so far by the threads they ran on, over both the main and the split-prefill decode pools.</summary>
    public DecodeThreadsReport DecodeThreads
    {
        get
        {
            var main = _ctx.Tuner.PassesByThreads;
            var split = _decodeCtx?.Tuner.PassesByThreads ?? [];
            var passes = new long[Math.Max(main.Length, split.Length)];
            for (int t = 0; t < passes.Length; t++)
                passes[t] = (t < main.Length ? Interlocked.Read(ref main[t]) : 0) + (t < split.Length ? Interlocked.Read(ref split[t]) : 0);
            return new DecodeThreadsReport(_ctx.Pool.Threads, passes);
        }
    }

    /// <summary>Forward passes run so far (a test can tell batched steps from one-by-one ones).</summary>
    public long Steps { get; private set; }

    /// <summary>The split prefill thread's Linux thread id, once one has run (see <see cref="SchedulerOptions.BackgroundPrefill"/>).</summary>
    internal int? PrefillLinuxThreadId => _split?.LinuxThreadId;

    /// <summary>Prompt chunks run on threads of their own beside decoding streams (<see cref="SplitPrefill"/>).</summary>
    public long SplitChunks { get; private set; }

    public GenerationStream Submit(GenerationRequest request, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Prompt.Count == 0) throw new ArgumentException("the prompt is empty");
        if (request.Prompt.Count >= ContextLength)
            throw new ContextOverflowException($"the prompt has {request.Prompt.Count} tokens; the context holds {ContextLength}");
        foreach (int id in request.Prompt)
            if ((uint)id >= (uint)_model.VocabSize) throw new ArgumentException($"token id {id} is outside the vocabulary (0…{_model.VocabSize - 1})");
        var stream = new GenerationStream(request.Prompt.Count);
        Enqueue(new Sequence(request, stream, cancel));
        return stream;
    }

    public Task<float[][]> EmbedAsync(IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancel)
    {
        foreach (var input in inputs)
        {
            if (input.Count == 0) throw new ArgumentException("an input is empty");
            if (input.Count > ContextLength) throw new ContextOverflowException($"an input has {input.Count} tokens; the context holds {ContextLength}");
            foreach (int id in input)
                if ((uint)id >= (uint)_model.VocabSize) throw new ArgumentException($"token id {id} is outside the vocabulary (0…{_model.VocabSize - 1})");
        }
        var job = new EmbedJob(inputs, cancel);
        Enqueue(job);
        return job.Result.Task;
    }

    public async Task DrainAsync(CancellationToken cancel)
    {
        _accepting = false;
        _wake.Release();
        while (Volatile.Read(ref _pendingCount) + Volatile.Read(ref _busy) > 0)
            await Task.Delay(10, cancel).ConfigureAwait(false);
    }

    private void Enqueue(object work)
    {
        if (!_accepting) throw new SchedulerClosedException("the server is shutting down");
        if (Interlocked.Increment(ref _pendingCount) > _options.MaxQueue)
        {
            Interlocked.Decrement(ref _pendingCount);
            throw new QueueFullException($"the queue is full ({_options.MaxQueue} requests waiting); try again later");
        }
        _pending.Enqueue(work);
        _wake.Release();
    }

    private void Loop()
    {
        while (!_stopping)
        {
            try
            {
                Admit();
                if (Volatile.Read(ref _busy) == 0)
                {
                    _wake.Wait(100);
                    continue;
                }
                Step();
            }
            catch (Exception e)
            {
                // A failed pass ends the sequences in it; the loop itself keeps serving. A split chunk still running
                // writes into its sequence's blocks: it is waited for first.
                FinishSplitPrefill(wait: true);
                for (int s = 0; s < _slots.Length; s++)
                    if (_slots[s] is { } seq) Free(seq, FinishReason.Error, e);
            }
            _stats = _prefix.Stats;
        }
        FinishSplitPrefill(wait: true);
        for (int s = 0; s < _slots.Length; s++)
            if (_slots[s] is { } seq) Free(seq, FinishReason.Cancelled);
        foreach (var seq in _preempted) Finish(seq, FinishReason.Cancelled);
        _preempted.Clear();
        while (_pending.TryDequeue(out var work))
        {
            Interlocked.Decrement(ref _pendingCount);
            if (work is Sequence seq) seq.Stream.Complete(FinishReason.Cancelled);
            else if (work is EmbedJob job) job.Result.TrySetCanceled();
        }
    }

    /// <summary>
    /// Moves preempted, then queued, sequences into free slots while the pool has room for their uncached prompt
    /// (embeddings run right here, between steps).
    /// </summary>
    private void Admit()
    {
        while (_preempted.Count > 0)
        {
            var seq = _preempted[0];
            if (seq.Cancel.IsCancellationRequested) Finish(seq, FinishReason.Cancelled);
            else if (!TryStart(seq)) return;
            _preempted.RemoveAt(0);
        }
        while (_pending.TryPeek(out var work))
        {
            if (work is Sequence seq && !seq.Cancel.IsCancellationRequested)
            {
                // Counted busy from here on: TryStart's failure path finishes it.
                Interlocked.Increment(ref _busy);
                if (!TryStart(seq))
                {
                    Interlocked.Decrement(ref _busy);
                    return;
                }
                _pending.TryDequeue(out _);
                Interlocked.Decrement(ref _pendingCount);
                continue;
            }
            _pending.TryDequeue(out _);
            Interlocked.Decrement(ref _pendingCount);
            if (work is Sequence cancelled) cancelled.Stream.Complete(FinishReason.Cancelled);
            else if (work is EmbedJob job) RunEmbedding(job);
        }
    }

    /// <summary>
    /// Gives a sequence a slot, its cached prefix and blocks for the rest of its prompt. False when it must wait for
    /// memory or a slot; true when it started, or failed and was finished.
    /// </summary>
    private bool TryStart(Sequence seq)
    {
        int free = Array.IndexOf(_slots, null);
        if (free < 0) return false;
        int matched = _prefix.Match(free, seq.History);
        if (!_prefix.Reserve(free, seq.History.Count))
        {
            _prefix.Release(free, seq.History, matched);
            if (_slots.Any(s => s is not null)) return false;
            // Nothing else holds memory and it still does not fit (cannot happen: the pool holds a full context).
            Finish(seq, FinishReason.Error, new InvalidOperationException($"the KV pool cannot hold {seq.History.Count} tokens"));
            return true;
        }
        seq.Slot = free;
        // The slot's NextN entries hold for the prefix the sequence shares with what the slot held before.
        _mtp?.Follow(free, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(seq.History)[..matched]);
        seq.Cached = matched;
        seq.Admission = ++_admissions;
        if (seq.Generated == 0) seq.Stream.CachedTokens = matched;
        _slots[free] = seq;
        return true;
    }

    private void Step()
    {
        FinishSplitPrefill();
        _batch.Clear();
        int rows = 0, decoding = 0;
        // Decoding sequences first: one token each, so they advance every step. Room for those tokens comes first, as
        // it may preempt sequences whose tokens must then not be in the batch.
        for (int s = 0; s < _slots.Length; s++)
        {
            // A prompt whose chunk is running on its own threads is left alone until the chunk is done.
            if (_slots[s] is not { } seq || seq == _prefilling) continue;
            if (seq.Cancel.IsCancellationRequested) Free(seq, FinishReason.Cancelled);
            else if (seq.History.Count - seq.Cached == 1) MakeRoom(seq);
        }
        PrepareDrafts();
        for (int s = 0; s < _slots.Length; s++)
        {
            if (_slots[s] is not { } seq || seq.History.Count - seq.Cached != 1) continue;
            AddTokens(seq, 1, ref rows);
            AddDraft(seq, ref rows);
            decoding++;
        }
        // Then prompt chunks within the prefill budget (their blocks were reserved when they were admitted); a long one
        // beside decoding streams runs on threads of its own instead.
        StartSplitPrefill(decoding);
        int budget = PrefillBudget(decoding), prefill = 0;
        for (int s = 0; s < _slots.Length && budget > 0; s++)
        {
            if (_slots[s] is not { } seq || seq == _prefilling || seq.History.Count - seq.Cached <= 1) continue;
            int take = Math.Min(budget, seq.History.Count - seq.Cached);
            // A hybrid model's chunk stops where the prompt's last full block ends, so its state there can be kept.
            int keepAt = (seq.History.Count - 1) / KvCache.BlockTokens * KvCache.BlockTokens;
            if (_cache.Recurrent is not null && seq.Cached < keepAt) take = Math.Min(take, keepAt - seq.Cached);
            AddTokens(seq, take, ref rows);
            budget -= take;
            prefill += take;
        }
        if (_batch.Count == 0)
        {
            // Only a split prompt is running: wait for its chunk rather than spin.
            _split?.Wait(5);
            return;
        }

        long start = System.Diagnostics.Stopwatch.GetTimestamp();
        int width = _model.Config.EmbeddingLength;
        if (_mtp is not null && _hidden.Length < _batch.Count * width) _hidden = new float[_batch.Tokens.Length * width];
        _model.Forward(_prefilling is null ? _ctx : _decodeCtx!, _want.AsSpan(0, _batch.Count), _logits.AsSpan(0, rows * _model.VocabSize),
            _mtp is null ? default : _hidden.AsSpan(0, _batch.Count * width));
        _mtp?.Observe(_batch, 0, _batch.Count, _hidden.AsSpan(0, _batch.Count * width));
        // Steps on part of the threads say nothing about the decode-only step the shared budget is measured against.
        if (_prefilling is null) Learn(System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds, decoding, prefill);
        Steps++;
        Interlocked.Add(ref _prefillTokens, prefill);
        for (int s = 0; s < _slots.Length; s++)
            if (_slots[s] is { } seq && seq != _prefilling)
            {
                _prefix.Commit(seq.Slot, seq.History, seq.Cached);
                if (seq.ReachedBoundary) KeepState(seq);
                seq.ReachedBoundary = false;
            }
        for (int r = 0; r < rows;)
        {
            var seq = _rowOwner[r];
            int drafted = seq.Drafted, accepted = 0;
            seq.Drafted = 0;
            // A sequence's rows in turn while the sampled token is its next draft token: that token's cache row and the
            // logits after it are then what a step of its own would have computed.
            for (int j = 0; ; j++)
            {
                Emit(seq, _logits.AsSpan((r + j) * _model.VocabSize, _model.VocabSize));
                if (j == drafted || seq.Slot < 0 || seq.History[^1] != seq.Draft![j]) break;
                seq.Cached++;
                accepted++;
            }
            if (drafted > 0)
            {
                seq.Proposer!.Observe(drafted, accepted);
                Interlocked.Add(ref _draftedTokens, drafted);
                Interlocked.Add(ref _acceptedDrafts, accepted);
            }
            r += drafted + 1;
        }
    }

    /// <summary>Draft tokens a decoding sequence may take: within its context and its token limit.</summary>
    private int DraftRoom(Sequence seq)
    {
        int room = ContextLength - seq.Cached - 1;
        if (seq.Request.MaxTokens >= 0) room = Math.Min(room, seq.Request.MaxTokens - seq.Generated - 1);
        return room;
    }

    /// <summary>With a draft model: its drafts for every decoding sequence of the step, in shared batched passes.</summary>
    private void PrepareDrafts()
    {
        if (_mtp is not null)
        {
            _mtpRequests.Clear();
            foreach (var seq in _slots)
                if (seq is not null && seq != _prefilling && seq.History.Count - seq.Cached == 1 && DraftRoom(seq) is > 0 and int room)
                    _mtpRequests.Add((seq.Slot, seq.History[^1], seq.Cached, room));
            _mtp.Prepare(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_mtpRequests));
            return;
        }
        if (_draftBatch is null) return;
        _draftRequests.Clear();
        foreach (var seq in _slots)
            if (seq is not null && seq.History.Count - seq.Cached == 1 && DraftRoom(seq) is > 0 and int room)
                _draftRequests.Add((seq.Slot, seq.History, room));
        _draftBatch.Prepare(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_draftRequests));
    }

    /// <summary>
    /// Proposes a decoding sequence's next tokens (from its own earlier text, or by the draft model on its slot) and adds
    /// them after its token, each with its logits wanted. Only where they fit its context, token limit and blocks it can
    /// get: speculation never preempts anyone.
    /// </summary>
    private void AddDraft(Sequence seq, ref int rows)
    {
        if (_maxDraft == 0) return;
        int room = DraftRoom(seq);
        if (room <= 0) return;
        // A slot's draft state is the sequence's own while it holds the slot: a sequence preempted and resumed elsewhere
        // brings the new slot's draft cache up to date with its history (the cache is cut back to what they share).
        if (_draftBatch is not null) seq.Proposer = _draftBatch.ForSlot(seq.Slot);
        else if (_mtp is not null) seq.Proposer = _mtp.ForSlot(seq.Slot);
        else seq.Proposer ??= new Speculative.PromptLookup(_maxDraft);
        seq.Draft ??= new int[_maxDraft];
        int k = seq.Proposer.Propose(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(seq.History), seq.Draft, room);
        if (k == 0 || !_prefix.Reserve(seq.Slot, seq.Cached + k)) return;
        for (int i = 0; i < k; i++)
        {
            _want[_batch.Count] = true;
            _batch.Add(seq.Draft[i], seq.Cached + i, seq.Slot);
            _rowOwner[rows++] = seq;
        }
        seq.Drafted = k;
    }

    /// <summary>
    /// Keeps a hybrid model's state at a block boundary: where the prompt's last full block ends, and during generation
    /// the latest boundary only (each replaces the one before), so a long answer does not crowd out other prompts' states.
    /// </summary>
    private void KeepState(Sequence seq)
    {
        bool generating = seq.Cached > seq.Request.Prompt.Count;
        ulong key = _prefix.KeepState(seq.Slot, seq.History, seq.Cached, generating ? seq.GenerationState : 0);
        if (generating && key != 0) seq.GenerationState = key;
    }

    /// <summary>
    /// Makes sure a decoding sequence has a block for its next position, preempting the latest admitted sequences (it
    /// too, if it is the latest) when the pool is out of blocks.
    /// </summary>
    private void MakeRoom(Sequence seq)
    {
        while (!_prefix.Reserve(seq.Slot, seq.Cached + 1))
        {
            Sequence? latest = null;
            foreach (var other in _slots)
                if (other is not null && other != _prefilling && (latest is null || other.Admission > latest.Admission)) latest = other;
            Preempt(latest!);
            if (latest == seq) return;
        }
    }

    /// <summary>Takes a sequence off its slot, leaving its blocks cached; it resumes first when memory allows.</summary>
    private void Preempt(Sequence seq)
    {
        _prefix.Release(seq.Slot, seq.History, seq.Cached);
        _slots[seq.Slot] = null;
        seq.Slot = -1;
        seq.Cached = 0;
        _preempted.Add(seq);
        Interlocked.Increment(ref _preemptions);
    }

    /// <summary>
    /// Starts the next chunk of the earliest admitted long prompt on threads of its own while other sequences decode (see
    /// <see cref="SplitPrefill"/>): one chunk at a time, applied by <see cref="FinishSplitPrefill"/> once done.
    /// </summary>
    private void StartSplitPrefill(int decoding)
    {
        if (_prefilling is not null || decoding == 0) return;
        Sequence? next = null;
        foreach (var seq in _slots)
            if (seq is not null && seq.History.Count - seq.Cached >= SplitMinTokens && (next is null || seq.Admission < next.Admission)) next = seq;
        if (next is null) return;
        if (!_splitTried)
        {
            _splitTried = true;
            _split = SplitPrefill.Create(_model, _cache, _ctx.Pool.Threads, _options.PrefillChunk, _options.BackgroundPrefill, keepHidden: _mtp is not null);
            if (_split is not null) _decodeCtx = _ctx with { Pool = _split.DecodePool, Tuner = new ThreadTuner(_split.DecodePool.Threads) };
        }
        if (_split is null) return;
        _prefillTake = Math.Min(_split.Capacity, next.History.Count - next.Cached);
        _split.Start(next.Slot, next.History, next.Cached, _prefillTake);
        _prefilling = next;
        SplitChunks++;
    }

    /// <summary>Applies a finished split chunk: its rows join the sequence's cache, and a prompt it completed samples its first token.</summary>
    private void FinishSplitPrefill(bool wait = false)
    {
        if (_prefilling is not { } seq) return;
        if (wait) _split!.Wait(Timeout.Infinite);
        if (!_split!.Done) return;
        _prefilling = null;
        Steps++;
        if (_split.Error is { } error)
        {
            Free(seq, FinishReason.Error, error);
            return;
        }
        _mtp?.Observe(_split.Batch, 0, _split.Batch.Count, _split.Hidden);
        seq.Cached += _prefillTake;
        Interlocked.Add(ref _prefillTokens, _prefillTake);
        _prefix.Commit(seq.Slot, seq.History, seq.Cached);
        if (seq.Cancel.IsCancellationRequested) Free(seq, FinishReason.Cancelled);
        else if (seq.Cached == seq.History.Count) Emit(seq, _split.Logits);
    }

    /// <summary>
    /// Prompt tokens for this step: the whole chunk when nothing decodes; otherwise a budget that keeps steps at about
    /// 1.4–1.7× a decode-only step (stall-free batching, as Sarathi-Serve), so running streams stay fluent while a long
    /// prompt prefills.
    /// </summary>
    private int PrefillBudget(int decoding)
    {
        const int Remeasure = 32;
        if (decoding == 0) return _options.PrefillChunk;
        // Every so often a step decodes alone, so the baseline follows the streams as their contexts (and steps) grow.
        if (++_sharedSteps % Remeasure == 0) return 0;
        // At least one token, so a long prompt behind busy streams still moves. Deep in a long prompt even one token costs
        // about a decode step (its attention reads the whole prefix), so the floor is what bounds the streams' latency.
        return (int)Math.Clamp(_sharedBudget, 1, _options.PrefillChunk);
    }

    /// <summary>
    /// Adapts the shared budget to the step times it produces (a feedback loop rather than a cost model: a token's cost
    /// depends on the batch's shape and grows with the prompt's length, as its attention covers everything before it).
    /// </summary>
    private void Learn(double seconds, int decoding, int prefill)
    {
        const double Weight = 0.5, Low = 1.4, High = 1.7;
        if (prefill == 0)
        {
            if (decoding > 0) _decodeSeconds = _decodeSeconds <= 0 ? seconds : _decodeSeconds + Weight * (seconds - _decodeSeconds);
            return;
        }
        if (decoding == 0 || _decodeSeconds <= 0) return;
        // Smoothed: on a small machine a single step can take twice the usual (the HTTP threads, the GC), and reacting to
        // each such step would starve the prompt.
        _slowdown += 0.2 * (seconds / _decodeSeconds - _slowdown);
        if (_slowdown > High) _sharedBudget = Math.Max(1, _sharedBudget * 0.85);
        else if (_slowdown < Low) _sharedBudget = Math.Min(_options.PrefillChunk, _sharedBudget * 1.1 + 1);
    }

    private void AddTokens(Sequence seq, int count, ref int rows)
    {
        for (int i = 0; i < count; i++)
        {
            int position = seq.Cached + i;
            bool last = position == seq.History.Count - 1;
            _want[_batch.Count] = last;
            _batch.Add(seq.History[position], position, seq.Slot);
            if (last) _rowOwner[rows++] = seq;
        }
        seq.Cached += count;
        // Only a step that brings a hybrid model's sequence onto a block boundary has a state there worth keeping.
        seq.ReachedBoundary = _cache.Recurrent is not null && seq.Cached % KvCache.BlockTokens == 0;
    }

    private void Emit(Sequence seq, ReadOnlySpan<float> logits)
    {
        ReadOnlySpan<ulong> allowed = default;
        if (seq.Request.Constraint is { } constraint)
        {
            try
            {
                if (constraint.IsActive)
                {
                    seq.Mask ??= new ulong[(logits.Length + 63) >> 6];
                    constraint.FillMask(seq.Mask);
                    // Nothing allowed (a grammar with a dead end): stop rather than break the constraint.
                    if (!seq.Mask.AsSpan().ContainsAnyExcept(0UL)) { Free(seq, FinishReason.MaxTokens); return; }
                    allowed = seq.Mask;
                }
            }
            catch (Constraints.GrammarException e)
            {
                Free(seq, FinishReason.Error, e);
                return;
            }
        }
        int id = seq.Sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(seq.History), allowed);
        if (seq.Request.Constraint is { } c && !c.Accept(id)) { Free(seq, FinishReason.MaxTokens); return; }
        float logprob = float.NaN;
        TokenLogprob[]? top = null;
        if (seq.Request.TopLogprobs >= 0) (logprob, top) = Logprobs(logits, id, seq.Request.TopLogprobs);
        TokenLogprob[]? scored = seq.Request.ScoredTokens is { } ids ? Scored(logits, ids) : null;
        bool eog = seq.Request.IsEndOfGeneration?.Invoke(id) == true;
        seq.Stream.Write(new GeneratedToken(id, eog, logprob, top) { Scored = scored });
        seq.Generated++;
        seq.History.Add(id);
        if (eog) Free(seq, FinishReason.EndOfGeneration);
        else if (seq.Request.MaxTokens >= 0 && seq.Generated >= seq.Request.MaxTokens) Free(seq, FinishReason.MaxTokens);
        else if (seq.History.Count > ContextLength) Free(seq, FinishReason.ContextFull);
    }

    /// <summary>The log-probabilities of given tokens (an id outside the vocabulary gets -∞).</summary>
    private TokenLogprob[] Scored(ReadOnlySpan<float> logits, IReadOnlyList<int> ids)
    {
        float logSum = LogSumExp(logits);
        var scored = new TokenLogprob[ids.Count];
        for (int i = 0; i < scored.Length; i++)
            scored[i] = new TokenLogprob(ids[i], (uint)ids[i] < (uint)logits.Length ? logits[ids[i]] - logSum : float.NegativeInfinity);
        return scored;
    }

    private float LogSumExp(ReadOnlySpan<float> logits)
    {
        float max = TensorPrimitives.Max(logits);
        if (_lse.Length < logits.Length) _lse = new float[logits.Length];
        var shifted = _lse.AsSpan(0, logits.Length);
        TensorPrimitives.Subtract(logits, max, shifted);
        TensorPrimitives.Exp(shifted, shifted);
        return max + MathF.Log(TensorPrimitives.Sum(shifted));
    }

    private (float, TokenLogprob[]?) Logprobs(ReadOnlySpan<float> logits, int id, int topCount)
    {
        float logSum = LogSumExp(logits);
        if (topCount == 0) return (logits[id] - logSum, null);
        var top = new TokenLogprob[Math.Min(topCount, logits.Length)];
        int filled = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            float v = logits[i];
            if (filled == top.Length && v <= top[filled - 1].Logprob) continue;
            int at = filled < top.Length ? filled++ : filled - 1;
            while (at > 0 && top[at - 1].Logprob < v) { top[at] = top[at - 1]; at--; }
            top[at] = new TokenLogprob(i, v);
        }
        for (int i = 0; i < top.Length; i++) top[i] = top[i] with { Logprob = top[i].Logprob - logSum };
        return (logits[id] - logSum, top);
    }

    private void Free(Sequence seq, FinishReason reason, Exception? error = null)
    {
        if (seq.Slot < 0 || _slots[seq.Slot] != seq) return;
        // A prompt seen through to a normal end may be worth keeping on disk (the store copies the rows out now and
        // writes them in the background).
        if (error is null && reason != FinishReason.Cancelled) _prefix.Persist(seq.Slot, seq.Request.Prompt, seq.Cached);
        // After a failed pass its newest rows may be garbage: keep only the blocks committed before.
        _prefix.Release(seq.Slot, seq.History, error is null ? seq.Cached : 0);
        _slots[seq.Slot] = null;
        seq.Slot = -1;
        Finish(seq, reason, error);
    }

    private void Finish(Sequence seq, FinishReason reason, Exception? error = null)
    {
        Interlocked.Decrement(ref _busy);
        seq.Stream.Complete(reason, error);
    }

    private void RunEmbedding(EmbedJob job)
    {
        if (job.Cancel.IsCancellationRequested) { job.Result.TrySetCanceled(job.Cancel); return; }
        try
        {
            int d = _model.Config.EmbeddingLength;
            var results = new float[job.Inputs.Count][];
            var hidden = new float[_options.PrefillChunk * d];
            for (int i = 0; i < job.Inputs.Count; i++)
            {
                var input = job.Inputs[i];
                var sum = new float[d];
                // Embeddings share nothing: their blocks go straight back to the pool.
                bool room = _prefix.Reserve(_embedSequence, input.Count);
                if (!room) _prefix.Release(_embedSequence, input, 0);
                if (!room) throw new QueueFullException("the KV cache is full; try the embedding again later");
                for (int start = 0; start < input.Count; start += _options.PrefillChunk)
                {
                    int n = Math.Min(_options.PrefillChunk, input.Count - start);
                    _batch.Clear();
                    for (int t = 0; t < n; t++) _batch.Add(input[start + t], start + t, _embedSequence);
                    _model.ForwardHidden(_ctx, hidden.AsSpan(0, n * d));
                    for (int t = 0; t < n; t++)
                    {
                        int position = start + t;
                        bool take = _options.Pooling switch
                        {
                            EmbeddingPooling.Cls => position == 0,
                            EmbeddingPooling.Last => position == input.Count - 1,
                            _ => true,
                        };
                        if (take) TensorPrimitives.Add(sum, hidden.AsSpan(t * d, d), sum);
                    }
                }
                _prefix.Release(_embedSequence, input, 0);
                float norm = TensorPrimitives.Norm(sum);
                if (norm > 0) TensorPrimitives.Divide(sum, norm, sum);
                results[i] = sum;
            }
            job.Result.TrySetResult(results);
        }
        catch (Exception e)
        {
            _prefix.Release(_embedSequence, [], 0);
            job.Result.TrySetException(e);
        }
    }

    public void Dispose()
    {
        _accepting = false;
        _stopping = true;
        _wake.Release();
        if (_thread.IsAlive && Thread.CurrentThread != _thread) _thread.Join();
        _split?.Dispose();
        // Entries already offered are finished (each is written under a temporary name and renamed, so even a process
        // that dies now leaves no partial entry behind).
        _options.PromptCache?.WaitForWrites();
        _wake.Dispose();
    }

    private sealed class Sequence(GenerationRequest request, GenerationStream stream, CancellationToken cancel)
    {
        public GenerationRequest Request { get; } = request;
        public GenerationStream Stream { get; } = stream;
        public CancellationToken Cancel { get; } = cancel;
        public Sampler Sampler { get; } = new(request.Sampling);
        /// <summary>The constraint's allowed-token bits, reused every step.</summary>
        public ulong[]? Mask { get; set; }
        public List<int> History { get; } = new(request.Prompt);
        /// <summary>Tokens of History already in the KV cache.</summary>
        public int Cached { get; set; }
        public int Generated { get; set; }
        public int Slot { get; set; } = -1;
        /// <summary>When it last got its slot (the latest is preempted first).</summary>
        public long Admission { get; set; }
        /// <summary>A hybrid model's state kept at this generation's latest block boundary (a prefix cache key; 0: none).</summary>
        public ulong GenerationState { get; set; }
        /// <summary>This step's tokens end on a block boundary (set as they are added, cleared once the step is done).</summary>
        public bool ReachedBoundary { get; set; }
        /// <summary>Who drafts for this sequence: its prompt lookup (made at its first decode step when speculation is on), or its slot's draft model state.</summary>
        public Speculative.IDraftProposer? Proposer { get; set; }
        /// <summary>The draft tokens of the step in flight; <see cref="Drafted"/> of them are in the batch after its token.</summary>
        public int[]? Draft { get; set; }
        public int Drafted { get; set; }
    }

    private sealed class EmbedJob(IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancel)
    {
        public IReadOnlyList<IReadOnlyList<int>> Inputs { get; } = inputs;
        public CancellationToken Cancel { get; } = cancel;
        public TaskCompletionSource<float[][]> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
