using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;
using Kaiyuan.Tensors;

namespace Kaiyuan.Inference;

/// <summary>
/// One sequence being evaluated: owns a KV cache and scratch memory and feeds tokens through the model, a prompt in
/// batches (prefill) or one token at a time (decode).
/// </summary>
public sealed class InferenceSession
{
    private readonly TransformerModel _model;
    private readonly KvCache _cache;
    private readonly Workspace _workspace = new();
    private readonly ForwardBatch _batch;
    private readonly ForwardContext _ctx;
    private readonly float[] _lastLogits;
    private bool[] _want = [];
    private float[] _allLogits = [];

    public InferenceSession(TransformerModel model, int contextLength = 0, WorkerPool? pool = null, int maxBatch = 512,
        GgmlType cacheType = GgmlType.F32)
    {
        _model = model;
        int ctx = contextLength > 0 ? contextLength : Math.Min(model.Config.ContextLength, 4096);
        _cache = model.CreateCache(1, ctx, cacheType);
        MaxBatch = Math.Max(1, maxBatch);
        _batch = new ForwardBatch(MaxBatch);
        _ctx = new ForwardContext(_batch, _cache, _workspace, pool ?? WorkerPool.Shared);
        _lastLogits = new float[model.VocabSize];
    }

    public TransformerModel Model => _model;
    public int ContextLength => _cache.ContextLength;
    public KvCache Cache => _cache;
    public int MaxBatch { get; }
    /// <summary>Tokens already in the cache; the next token goes to this position.</summary>
    public int Position { get; private set; }

    /// <summary>Forgets the sequence (its blocks stay and are simply overwritten later).</summary>
    public void Reset() => Position = 0;

    /// <summary>
    /// Forgets the tokens from <paramref name="position"/> on, keeping the ones before: their rows do not depend on what
    /// follows, so evaluation can go on from there (a chat turn that shares only a prefix with the previous one).
    /// </summary>
    public void Truncate(int position)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(position, Position);
        Position = position;
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

    private void Run(ReadOnlySpan<int> tokens, bool allLogits)
    {
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
            _model.Forward(_ctx, _want.AsSpan(0, n), dst);
            Position += n;
        }
        if (allLogits) _allLogits.AsSpan((tokens.Length - 1) * vocab, vocab).CopyTo(_lastLogits);
    }
}

/// <summary>A prompt or generation does not fit the context window.</summary>
public sealed class ContextOverflowException(string message) : Exception(message);
