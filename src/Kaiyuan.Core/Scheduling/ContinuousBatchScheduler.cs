using System.Collections.Concurrent;
using System.Numerics.Tensors;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;
using Kaiyuan.Models;
using Kaiyuan.Models.Blocks;
using Kaiyuan.Sampling;

namespace Kaiyuan.Scheduling;

/// <summary>How the scheduler shares the model.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Sequences decoded together (KV cache slots).</summary>
    public int Slots { get; init; } = 4;
    /// <summary>Context window per slot; 0: the model's, at most 4096.</summary>
    public int ContextLength { get; init; }
    /// <summary>Requests waiting for a slot at most; more are refused with <see cref="QueueFullException"/>.</summary>
    public int MaxQueue { get; init; } = 64;
    /// <summary>Prompt tokens prefilled per step at most, so running streams keep flowing during a long prompt.</summary>
    public int PrefillChunk { get; init; } = 256;
    /// <summary>How embeddings pool the final hidden states: mean (default), cls (first token) or last.</summary>
    public EmbeddingPooling Pooling { get; init; } = EmbeddingPooling.Mean;
}

public enum EmbeddingPooling { Mean, Cls, Last }

/// <summary>
/// Continuous batching: a single background loop owns the model and a KV cache of <see cref="SchedulerOptions.Slots"/>
/// slots. Every step it gathers one token from each decoding sequence plus a bounded chunk of pending prompt tokens into
/// ONE <see cref="TransformerModel.Forward"/> call, samples each sequence's next token with its own sampler, and streams
/// it out. New sequences join between steps; finished or cancelled ones free their slot at once. Each token's math only
/// depends on its own sequence, so a greedy output does not depend on what else runs in the batch.
/// </summary>
public sealed class ContinuousBatchScheduler : IGenerationEngine, IDisposable
{
    private readonly TransformerModel _model;
    private readonly SchedulerOptions _options;
    private readonly KvCache _cache;
    private readonly Workspace _workspace = new();
    private readonly ForwardBatch _batch;
    private readonly ForwardContext _ctx;
    private readonly Sequence?[] _slots;
    private readonly ConcurrentQueue<object> _pending = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private readonly int _embedSlot;
    private readonly float[] _logits;
    private readonly bool[] _want;
    private readonly Sequence[] _rowOwner;
    private float[] _lse = [];
    private int _pendingCount, _busy;
    private volatile bool _accepting = true, _stopping;

    public ContinuousBatchScheduler(TransformerModel model, SchedulerOptions options, WorkerPool? pool = null)
    {
        if (options.Slots < 1) throw new ArgumentOutOfRangeException(nameof(options), "at least one slot is needed");
        _model = model;
        _options = options;
        ContextLength = options.ContextLength > 0 ? options.ContextLength : Math.Min(model.Config.ContextLength, 4096);
        // One extra slot, never given to a generation, holds the sequence being embedded.
        _embedSlot = options.Slots;
        _cache = model.CreateCache(options.Slots + 1, ContextLength);
        _batch = new ForwardBatch(options.Slots + options.PrefillChunk);
        _ctx = new ForwardContext(_batch, _cache, _workspace, pool ?? WorkerPool.Shared);
        _slots = new Sequence?[options.Slots];
        _logits = new float[options.Slots * model.VocabSize];
        _want = new bool[options.Slots + options.PrefillChunk];
        _rowOwner = new Sequence[options.Slots];
        _thread = new Thread(Loop) { IsBackground = true, Name = "kaiyuan-scheduler" };
        _thread.Start();
    }

    public int ContextLength { get; }
    public int VocabSize => _model.VocabSize;
    public int Slots => _options.Slots;
    public SchedulerLoad Load => new(Volatile.Read(ref _pendingCount), Volatile.Read(ref _busy), _options.Slots);

    /// <summary>Forward passes run so far (a test can tell batched steps from one-by-one ones).</summary>
    public long Steps { get; private set; }

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
                // A failed pass ends the sequences in it; the loop itself keeps serving.
                for (int s = 0; s < _slots.Length; s++)
                    if (_slots[s] is { } seq) Free(s, seq, FinishReason.Error, e);
            }
        }
        for (int s = 0; s < _slots.Length; s++)
            if (_slots[s] is { } seq) Free(s, seq, FinishReason.Cancelled);
        while (_pending.TryDequeue(out var work))
        {
            Interlocked.Decrement(ref _pendingCount);
            if (work is Sequence seq) seq.Stream.Complete(FinishReason.Cancelled);
            else if (work is EmbedJob job) job.Result.TrySetCanceled();
        }
    }

    /// <summary>Moves queued work into free slots (embeddings run right here, between steps).</summary>
    private void Admit()
    {
        while (_pending.TryPeek(out var work))
        {
            if (work is Sequence seq && !seq.Cancel.IsCancellationRequested)
            {
                int free = Array.IndexOf(_slots, null);
                if (free < 0) return;
                _pending.TryDequeue(out _);
                Interlocked.Decrement(ref _pendingCount);
                seq.Slot = free;
                _slots[free] = seq;
                Interlocked.Increment(ref _busy);
                continue;
            }
            _pending.TryDequeue(out _);
            Interlocked.Decrement(ref _pendingCount);
            if (work is Sequence cancelled) cancelled.Stream.Complete(FinishReason.Cancelled);
            else if (work is EmbedJob job) RunEmbedding(job);
        }
    }

    private void Step()
    {
        _batch.Clear();
        int rows = 0;
        // Decoding sequences first: one token each, so they advance every step.
        for (int s = 0; s < _slots.Length; s++)
        {
            if (_slots[s] is not { } seq) continue;
            if (seq.Cancel.IsCancellationRequested) { Free(s, seq, FinishReason.Cancelled); continue; }
            if (seq.History.Count - seq.Cached != 1 || seq.Cached < seq.Request.Prompt.Count) continue;
            AddTokens(seq, 1, ref rows);
        }
        // Then prompt chunks within the prefill budget.
        int budget = _options.PrefillChunk;
        for (int s = 0; s < _slots.Length && budget > 0; s++)
        {
            if (_slots[s] is not { } seq || seq.Cached >= seq.Request.Prompt.Count) continue;
            int take = Math.Min(budget, seq.History.Count - seq.Cached);
            AddTokens(seq, take, ref rows);
            budget -= take;
        }
        if (_batch.Count == 0) return;

        _model.Forward(_ctx, _want.AsSpan(0, _batch.Count), _logits.AsSpan(0, rows * _model.VocabSize));
        Steps++;
        for (int r = 0; r < rows; r++)
        {
            var seq = _rowOwner[r];
            var logits = _logits.AsSpan(r * _model.VocabSize, _model.VocabSize);
            Emit(seq, logits);
        }
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
                    if (!seq.Mask.AsSpan().ContainsAnyExcept(0UL)) { Free(seq.Slot, seq, FinishReason.MaxTokens); return; }
                    allowed = seq.Mask;
                }
            }
            catch (Constraints.GrammarException e)
            {
                Free(seq.Slot, seq, FinishReason.Error, e);
                return;
            }
        }
        int id = seq.Sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(seq.History), allowed);
        if (seq.Request.Constraint is { } c && !c.Accept(id)) { Free(seq.Slot, seq, FinishReason.MaxTokens); return; }
        float logprob = float.NaN;
        TokenLogprob[]? top = null;
        if (seq.Request.TopLogprobs >= 0) (logprob, top) = Logprobs(logits, id, seq.Request.TopLogprobs);
        bool eog = seq.Request.IsEndOfGeneration?.Invoke(id) == true;
        seq.Stream.Write(new GeneratedToken(id, eog, logprob, top));
        seq.Generated++;
        seq.History.Add(id);
        if (eog) Free(seq.Slot, seq, FinishReason.EndOfGeneration);
        else if (seq.Request.MaxTokens >= 0 && seq.Generated >= seq.Request.MaxTokens) Free(seq.Slot, seq, FinishReason.MaxTokens);
        else if (seq.History.Count > ContextLength) Free(seq.Slot, seq, FinishReason.ContextFull);
    }

    private (float, TokenLogprob[]?) Logprobs(ReadOnlySpan<float> logits, int id, int topCount)
    {
        float max = TensorPrimitives.Max(logits);
        if (_lse.Length < logits.Length) _lse = new float[logits.Length];
        var shifted = _lse.AsSpan(0, logits.Length);
        TensorPrimitives.Subtract(logits, max, shifted);
        TensorPrimitives.Exp(shifted, shifted);
        float logSum = max + MathF.Log(TensorPrimitives.Sum(shifted));
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

    private void Free(int slot, Sequence seq, FinishReason reason, Exception? error = null)
    {
        if (_slots[slot] != seq) return;
        _slots[slot] = null;
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
                for (int start = 0; start < input.Count; start += _options.PrefillChunk)
                {
                    int n = Math.Min(_options.PrefillChunk, input.Count - start);
                    _batch.Clear();
                    for (int t = 0; t < n; t++) _batch.Add(input[start + t], start + t, _embedSlot);
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
                float norm = TensorPrimitives.Norm(sum);
                if (norm > 0) TensorPrimitives.Divide(sum, norm, sum);
                results[i] = sum;
            }
            job.Result.TrySetResult(results);
        }
        catch (Exception e)
        {
            job.Result.TrySetException(e);
        }
    }

    public void Dispose()
    {
        _accepting = false;
        _stopping = true;
        _wake.Release();
        if (_thread.IsAlive && Thread.CurrentThread != _thread) _thread.Join();
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
    }

    private sealed class EmbedJob(IReadOnlyList<IReadOnlyList<int>> inputs, CancellationToken cancel)
    {
        public IReadOnlyList<IReadOnlyList<int>> Inputs { get; } = inputs;
        public CancellationToken Cancel { get; } = cancel;
        public TaskCompletionSource<float[][]> Result { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
