using Kaiyuan.Gguf;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;
using Kaiyuan.Tensors;

namespace Kaiyuan.Inference;

/// <summary>
/// One sequence being evaluated: owns a KV cache and scratch memory and feeds tokens through the model, a prompt in
/// batches (prefill) or one token at a time (decode).
/// </summary>
public sealed class InferenceSession : IDisposable
{
    private readonly TransformerModel _model;
    private readonly WorkerPool? _ownPool;
    private readonly KvCache _cache;
    private readonly Workspace _workspace = new();
    private readonly ForwardBatch _batch;
    private readonly ForwardContext _ctx;
    private readonly float[] _lastLogits;
    private bool[] _want = [];
    private float[] _allLogits = [];
    private float[] _hidden = [];
    // A hybrid model's recurrent state cannot be cut back, so the state after each prompt is kept to go back to.
    private readonly List<(int Position, float[] State)> _snapshots = [];
    private const int KeptSnapshots = 2;

    /// <summary>
    /// A session over <paramref name="model"/> with room for <paramref name="contextLength"/> tokens (0: the model's
    /// context, at most 4,096), its work spread over the process's shared worker threads.
    /// </summary>
    public InferenceSession(TransformerModel model, int contextLength = 0)
        : this(model, contextLength, pool: null)
    {
    }

    /// <summary>
    /// A session over <paramref name="model"/> with its own <paramref name="threads"/> worker threads (at least one),
    /// room for <paramref name="contextLength"/> tokens (0: the model's context, at most 4,096), KV rows stored as
    /// <paramref name="cacheType"/> (F32, F16, BF16, Q8_0, Q4_0, …: llama.cpp's <c>--cache-type</c>), and prompts sent
    /// through the model <paramref name="maxBatch"/> tokens at a time. Dispose it to stop its threads.
    /// </summary>
    /// <exception cref="OutOfMemoryException">The KV cache for that many tokens does not fit in memory.</exception>
    public InferenceSession(TransformerModel model, int contextLength, int threads, GgmlType cacheType = GgmlType.F32, int maxBatch = 512)
        : this(model, contextLength, new WorkerPool(threads), maxBatch, cacheType, ownsPool: true)
    {
    }

    internal InferenceSession(TransformerModel model, int contextLength = 0, WorkerPool? pool = null, int maxBatch = 512,
        GgmlType cacheType = GgmlType.F32, bool ownsPool = false)
    {
        if (ownsPool) _ownPool = pool;
        _model = model;
        int ctx = contextLength > 0 ? contextLength : Math.Min(model.Config.ContextLength, 4096);
        try
        {
            _cache = model.CreateCache(1, ctx, cacheType);
        }
        catch
        {
            _ownPool?.Dispose();
            throw;
        }
        MaxBatch = Math.Max(1, maxBatch);
        _batch = new ForwardBatch(MaxBatch);
        _ctx = new ForwardContext(_batch, _cache, _workspace, pool ?? WorkerPool.Shared);
        _lastLogits = new float[model.VocabSize];
    }

    /// <summary>The model this session runs.</summary>
    public TransformerModel Model => _model;
    /// <summary>Tokens the session can hold: positions run from 0 to <c>ContextLength - 1</c>.</summary>
    public int ContextLength => _cache.ContextLength;
    internal KvCache Cache => _cache;
    /// <summary>The worker threads it computes on (a draft model's session for it shares them).</summary>
    internal WorkerPool Pool => _ctx.Pool;
    /// <summary>Bytes the KV cache holds in memory now (it grows with the tokens evaluated).</summary>
    public long KvCacheBytes => _cache.ResidentBytes;
    /// <summary>Worker threads the session's kernels run on.</summary>
    public int Threads => _ctx.Pool.Threads;
    /// <summary>
    /// Forward passes of at most 16 tokens (decode steps, speculative verifications) so far, by the number of threads
    /// they ran on: fewer than <see cref="Threads"/> where timing showed fewer to be faster, as beside another busy
    /// process. The same report as <see cref="Chat.ModelRuntime.DecodeThreads"/>.
    /// </summary>
    public Scheduling.DecodeThreadsReport DecodeThreads => new(Threads, [.. _ctx.Tuner.PassesByThreads]);
    /// <summary>Most tokens sent through the model in one forward pass (512 from the public constructor); longer inputs are split.</summary>
    public int MaxBatch { get; }
    /// <summary>Tokens already in the cache; the next token goes to this position.</summary>
    public int Position { get; private set; }
    /// <summary>
    /// Told every token's final hidden state as the session evaluates it (a multi-token-prediction drafter that follows
    /// this session); null: nobody is, and the rows are not kept.
    /// </summary>
    internal IHiddenObserver? HiddenObserver { get; set; }
    /// <summary>The multi-token-prediction drafter that follows this session, made at its first use and kept for later generations.</summary>
    internal Speculative.MtpSessionProposer? Mtp { get; set; }

    /// <summary>Forward passes and tokens fed through them so far (tests tell speculative from one-by-one decoding).</summary>
    internal long Passes { get; private set; }
    internal long FedTokens { get; private set; }

    /// <summary>Forgets the sequence (its blocks stay and are simply overwritten later).</summary>
    public void Reset()
    {
        Position = 0;
        _snapshots.Clear();
    }

    /// <summary>
    /// Forgets the tokens from <paramref name="position"/> on, keeping the ones before: their rows do not depend on what
    /// follows, so evaluation can go on from there (a chat turn that shares only a prefix with the previous one). A hybrid
    /// model (<see cref="TransformerModel.IsRecurrent"/>) can only go back to where it kept its state (the end of an
    /// earlier prompt, or 0); elsewhere this throws, and <see cref="Rewind"/> goes back as near as it can.
    /// </summary>
    /// <exception cref="InvalidOperationException">A hybrid model's state was not kept at <paramref name="position"/>.</exception>
    public void Truncate(int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, Position);
        if (_cache.Recurrent is not null && position != Position && position != 0 && !_snapshots.Exists(s => s.Position == position))
            throw new InvalidOperationException($"the recurrent state was not kept at position {position}; use Rewind");
        Rewind(position);
    }

    /// <summary>
    /// Goes back to <paramref name="position"/> or, for a hybrid model, to the nearest earlier position whose state was
    /// kept (the end of one of the last prompts evaluated; 0 at worst). Returns the new <see cref="Position"/>: the tokens
    /// from there on must be evaluated again.
    /// </summary>
    public int Rewind(int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, Position);
        if (_cache.Recurrent is { } state && position != Position)
        {
            int best = -1;
            for (int i = 0; i < _snapshots.Count; i++)
                if (_snapshots[i].Position <= position && (best < 0 || _snapshots[i].Position > _snapshots[best].Position)) best = i;
            position = best < 0 ? 0 : _snapshots[best].Position;
            if (best >= 0) state.Restore(0, _snapshots[best].State, position);
            // States kept further on belong to the tokens being dropped.
            _snapshots.RemoveAll(s => s.Position > position);
        }
        Position = position;
        return position;
    }

    /// <summary>Keeps the recurrent state at the current position (after a prompt) to <see cref="Rewind"/> to later.</summary>
    private void KeepState(RecurrentState state)
    {
        if (_snapshots.Exists(s => s.Position == Position)) return;
        // The oldest snapshot's memory is reused once as many are kept as allowed.
        float[] buffer;
        if (_snapshots.Count < KeptSnapshots) buffer = new float[state.FloatsPerSequence];
        else
        {
            int oldest = 0;
            for (int i = 1; i < _snapshots.Count; i++) if (_snapshots[i].Position < _snapshots[oldest].Position) oldest = i;
            buffer = _snapshots[oldest].State;
            _snapshots.RemoveAt(oldest);
        }
        state.Save(0, buffer);
        _snapshots.Add((Position, buffer));
    }

    /// <summary>
    /// Reads rows from a prompt cache instead of computing them: when <paramref name="store"/> holds more leading full
    /// blocks of <paramref name="tokens"/> than the session has evaluated (never the last token, whose logits are needed),
    /// they are loaded into the session's blocks and the position moves past them. The session must hold
    /// <paramref name="tokens"/> up to its position. Returns the tokens loaded.
    /// </summary>
    public int LoadPrefix(PromptCacheStore store, IReadOnlyList<int> tokens)
    {
        const int T = KvCache.BlockTokens;
        // The files hold KV rows, not a hybrid model's recurrent state.
        if (_cache.Recurrent is not null) return 0;
        int max = Math.Min(tokens.Count - 1, ContextLength) / T;
        if (max * T <= Position || store.Find(tokens, max) is not { } hit || hit.Tokens <= Position) return 0;
        int from = Position / T, before = Position;
        _cache.Reserve(0, hit.Tokens);
        int loaded = store.Load(hit, from, _cache.Table(0)[from..hit.Blocks], _cache);
        // A block that failed its check may be half overwritten: without any block loaded, keep only the rows before it.
        Position = loaded > 0 ? (from + loaded) * T : Math.Min(Position, from * T);
        return Math.Max(0, Position - before);
    }

    /// <summary>
    /// Offers the session's leading full blocks to a prompt cache, which saves them if they are worth it (in the
    /// background); <paramref name="tokens"/> are what the session holds from position 0.
    /// </summary>
    public bool SavePrefix(PromptCacheStore store, IReadOnlyList<int> tokens)
    {
        int blocks = Math.Min(tokens.Count, Position) / KvCache.BlockTokens;
        return _cache.Recurrent is null && blocks >= PromptCacheStore.MinBlocks && store.TrySave(_cache, _cache.Table(0)[..blocks], tokens);
    }

    /// <summary>
    /// For benchmarks deep in a context: moves the position <paramref name="tokens"/> further as if they had been
    /// evaluated, their cached rows filled with random values instead. What a later step costs does not depend on the
    /// cached values, so a depth whose prefill would take hours can be measured in seconds; the logits that follow are
    /// meaningless.
    /// </summary>
    public void AdvanceWithRandomRows(int tokens, int seed = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        if (Position + tokens > ContextLength)
            throw new ContextOverflowException($"{Position + tokens} tokens exceed the context size of {ContextLength}");
        _cache.Reserve(0, Position + tokens);
        var random = new Random(seed);
        var row = new float[_cache.RowWidths.Max()];
        for (int layer = 0; layer < _cache.RowWidths.Length; layer++)
            for (int p = Position; p < Position + tokens; p++)
            {
                for (int i = 0; i < row.Length; i++) row[i] = random.NextSingle() * 2 - 1;
                _cache.Write(layer, 0, p, row);
            }
        Position += tokens;
        // A recurrent layer costs the same at any depth: its (zero) state simply counts as having seen the tokens, and is
        // kept there so runs can start from this depth again.
        if (_cache.Recurrent is { } state)
        {
            state.SetLength(0, Position);
            KeepState(state);
        }
    }

    /// <summary>Evaluates tokens at the current position; returns the logits after the last one.</summary>
    public ReadOnlySpan<float> Evaluate(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty) throw new ArgumentException("no tokens to evaluate", nameof(tokens));
        Run(tokens, allLogits: false);
        return _lastLogits;
    }

    /// <summary>Evaluates tokens and returns the logits after every one of them (rows of vocabulary size).</summary>
    public float[] EvaluateAll(ReadOnlySpan<int> tokens)
    {
        Run(tokens, allLogits: true);
        return _allLogits[..(tokens.Length * _model.VocabSize)];
    }

    /// <summary>
    /// Evaluates tokens and returns the session's own buffer of logits after every one of them (rows of vocabulary
    /// size; the first <c>tokens.Length</c> rows are valid until the next evaluation): a speculative pass's rows without
    /// a copy.
    /// </summary>
    internal float[] EvaluateRows(ReadOnlySpan<int> tokens)
    {
        Run(tokens, allLogits: true);
        return _allLogits;
    }

    /// <summary>Stops the session's own worker threads (a session on the shared threads has none).</summary>
    public void Dispose() => _ownPool?.Dispose();

    private void Run(ReadOnlySpan<int> tokens, bool allLogits)
    {
        bool prompt = tokens.Length > 1 || Position == 0;
        if (Position + tokens.Length > ContextLength)
            throw new ContextOverflowException($"{Position + tokens.Length} tokens exceed the context size of {ContextLength}");
        int vocab = _model.VocabSize;
        if (allLogits && _allLogits.Length < tokens.Length * vocab) _allLogits = new float[tokens.Length * vocab];
        for (int start = 0; start < tokens.Length; start += MaxBatch)
        {
            int n = Math.Min(MaxBatch, tokens.Length - start);
            _cache.Reserve(0, Position + n);
            _batch.Clear();
            for (int i = 0; i < n; i++) _batch.Add(tokens[start + i], Position + i, 0);
            if (_want.Length < n) _want = new bool[MaxBatch];
            bool lastChunk = start + n == tokens.Length;
            for (int i = 0; i < n; i++) _want[i] = allLogits || (lastChunk && i == n - 1);
            var dst = allLogits ? _allLogits.AsSpan(start * vocab, n * vocab) : _lastLogits.AsSpan();
            var observer = HiddenObserver;
            int d = _model.Config.EmbeddingLength;
            if (observer is not null && _hidden.Length < n * d) _hidden = new float[Math.Max(n, Math.Min(MaxBatch, 8)) * d];
            _model.Forward(_ctx, _want.AsSpan(0, n), dst, observer is null ? default : _hidden.AsSpan(0, n * d));
            observer?.OnEvaluated(_batch, _hidden.AsSpan(0, n * d));
            Position += n;
            Passes++;
            FedTokens += n;
        }
        if (allLogits) _allLogits.AsSpan((tokens.Length - 1) * vocab, vocab).CopyTo(_lastLogits);
        // After a prompt (not after each decoded token) the state is kept to go back to.
        if (_cache.Recurrent is { } state && prompt) KeepState(state);
    }
}

/// <summary>Receives the final (output-normed) hidden state of every token a session evaluates.</summary>
internal interface IHiddenObserver
{
    /// <summary>
    /// The batch's tokens were evaluated (a position below the last one seen means the session went back);
    /// <paramref name="hidden"/> holds their rows in batch order, valid during the call only.
    /// </summary>
    void OnEvaluated(Models.Blocks.ForwardBatch batch, ReadOnlySpan<float> hidden);
}

/// <summary>A prompt or generation does not fit the context window.</summary>
public sealed class ContextOverflowException(string message) : Exception(message);
