using System.Numerics.Tensors;
using Kaiyuan.Inference;
using Kaiyuan.Kernels;

namespace Kaiyuan.Models.Blocks;

/// <summary>
/// DeepSeek sparse attention's lightning indexer (DeepSeek-V3.2, GLM-5): a few small heads score every earlier token
/// for each query, score(t, s) = Σ_h w_h(t)·ReLU(q_h(t)·k(s)), and attention then reads only the top-k tokens. Its
/// query comes from the q-LoRA latent, its single key per token from the hidden state (LayerNorm with bias); both have
/// RoPE (NeoX pairs) on their first rope dims. The key is cached beside the attention's own row, so every cache type,
/// the paged blocks, prefix sharing and the prompt cache on disk carry it.
/// </summary>
/// <remarks>
/// llama.cpp also rotates the indexer's q and k by a Hadamard matrix before caching them: an orthogonal map, so the
/// scores are the same up to rounding, and it is left out here.
/// </remarks>
internal sealed class LightningIndexer
{
    private readonly Linear _qB, _k, _weights;
    private readonly float[] _kNorm, _kNormBias;
    private readonly Rope _rope;
    private readonly int _heads, _dim;
    private readonly float _scale;
    // ggml's LayerNorm epsilon for this block (llama.cpp leaves the architecture's f_norm_eps at its default).
    private const float Eps = 1e-6f;

    public LightningIndexer(ModelConfig c, Linear qB, Linear k, float[] kNorm, float[] kNormBias, Linear weights, Rope rope)
    {
        (_qB, _k, _kNorm, _kNormBias, _weights, _rope) = (qB, k, kNorm, kNormBias, weights, rope);
        _heads = c.IndexerHeadCount;
        _dim = c.IndexerKeyLength;
        TopK = c.IndexerTopK;
        // The score's two scales (1/√key length, 1/√heads) folded into the head weights.
        _scale = 1f / (MathF.Sqrt(_dim) * MathF.Sqrt(_heads));
    }

    /// <summary>Tokens each query attends to at most.</summary>
    public int TopK { get; }

    /// <summary>Floats of the key cached per token.</summary>
    public int KeyWidth => _dim;

    /// <summary>Query heads.</summary>
    public int Heads => _heads;

    public void CheckShapes(int embedding, int qLora)
    {
        Shapes.Parameter(_heads > 0 && _dim > 0 && TopK > 0, $"attention.indexer: head_count {_heads}, key_length {_dim} and top_k {TopK} must all be positive");
        Shapes.Parameter(_rope.Dimensions <= _dim, $"rope.dimension_count {_rope.Dimensions} exceeds the indexer's key length {_dim}");
        Shapes.Input(_qB, qLora);
        Shapes.Output(_qB, _heads * _dim);
        Shapes.Input(_k, embedding);
        Shapes.Output(_k, _dim);
        Shapes.Vector(_kNorm, _dim, "indexer.k_norm");
        Shapes.Vector(_kNormBias, _dim, "indexer.k_norm.bias");
        Shapes.Input(_weights, embedding);
        Shapes.Output(_weights, _heads);
    }

    /// <summary>
    /// The batch's indexer query heads <paramref name="q"/> (from the normed q latent <paramref name="qLatent"/>), head
    /// weights <paramref name="w"/> and keys <paramref name="keys"/> (from the hidden rows <paramref name="x"/>), at the
    /// tokens' positions.
    /// </summary>
    public void Project(ForwardContext ctx, ReadOnlySpan<float> x, ReadOnlySpan<float> qLatent, Span<float> q, Span<float> w, Span<float> keys)
    {
        var (batch, _, ws, pool) = ctx;
        int n = batch.Count, qDim = _heads * _dim;
        _qB.Forward(qLatent, n, q, ws, pool);
        _k.Forward(x, n, keys, ws, pool);
        _weights.Forward(x, n, w, ws, pool);
        TensorPrimitives.Multiply(w, _scale, w);
        Span<float> cos = stackalloc float[_rope.Dimensions / 2], sin = stackalloc float[_rope.Dimensions / 2];
        for (int t = 0; t < n; t++)
        {
            _rope.Angles(batch.Positions[t], cos, sin);
            _rope.Apply(q.Slice(t * qDim, qDim), _dim, cos, sin);
            var key = keys.Slice(t * _dim, _dim);
            VectorOps.LayerNorm(key, _kNorm, _kNormBias, key, Eps);
            _rope.Apply(key, _dim, cos, sin);
        }
    }

    /// <summary>
    /// The cached positions token <paramref name="t"/> of the batch attends to, ascending, into <paramref name="selected"/>
    /// (which holds <see cref="TopK"/>): all of 0…position when they are no more than top-k, else the top-k by indexer
    /// score, from the token's query heads and head weights (<see cref="Project"/>) and the keys at
    /// <paramref name="keyOffset"/> of each cached row. Returns how many.
    /// </summary>
    public int Select(ForwardContext ctx, int layer, int t, ReadOnlySpan<float> queries, ReadOnlySpan<float> weights, int keyOffset,
        float[] scores, float[] keys, Span<int> selected)
    {
        var (batch, cache, _, pool) = ctx;
        int visible = batch.Positions[t] + 1;
        if (visible <= TopK)
        {
            for (int j = 0; j < visible; j++) selected[j] = j;
            return visible;
        }
        // The scores are the part that grows with the context: the cached keys are split across the threads.
        using (pool.Enter())
        {
            var job = pool.Job<ScoreJob>();
            job.Set(cache, layer, batch.Slots[t], keyOffset, _heads, _dim, queries.Slice(t * _heads * _dim, _heads * _dim), weights.Slice(t * _heads, _heads),
                scores, keys);
            pool.Run(job, visible, minChunk: 256);
        }
        TopIndices(scores.AsSpan(0, visible), TopK, selected);
        selected[..TopK].Sort();
        return TopK;
    }

    /// <summary>score(s) = Σ_h w_h·ReLU(q_h·k(s)) for a range of cached positions.</summary>
    private sealed class ScoreJob : IParallelJob
    {
        private KvCache _cache = null!;
        private float[] _q = [], _w = [], _scores = [], _keys = [];
        private int _layer, _slot, _keyOffset, _heads, _dim;

        public void Set(KvCache cache, int layer, int slot, int keyOffset, int heads, int dim, ReadOnlySpan<float> q, ReadOnlySpan<float> w,
            float[] scores, float[] keys)
        {
            (_cache, _layer, _slot, _keyOffset, _heads, _dim, _scores, _keys) = (cache, layer, slot, keyOffset, heads, dim, scores, keys);
            // Copied: a job outlives no call, but its fields cannot hold spans.
            if (_q.Length < q.Length) _q = new float[q.Length];
            if (_w.Length < w.Length) _w = new float[w.Length];
            q.CopyTo(_q);
            w.CopyTo(_w);
        }

        public void Run(int start, int end, int worker)
        {
            int dim = _dim;
            var key = _keys.AsSpan(worker * dim, dim);
            for (int j = start; j < end; j++)
            {
                ReadOnlySpan<float> k;
                if (_cache.IsF32) k = _cache.RowsF32(_layer, _slot, j, 1).Slice(_keyOffset, dim);
                else
                {
                    _cache.ReadPart(_layer, _slot, j, _keyOffset, key);
                    k = key;
                }
                float s = 0;
                for (int h = 0; h < _heads; h++) s += _w[h] * MathF.Max(0, TensorPrimitives.Dot(_q.AsSpan(h * dim, dim), k));
                _scores[j] = s;
            }
        }
    }

    /// <summary>
    /// The indices of the <paramref name="k"/> largest values, chosen among equal values exactly as llama.cpp's CPU top-k
    /// does (C++'s <c>std::partial_sort</c> with a greater-than comparison: a heap of the first k, which a later value
    /// replaces at the top only when strictly greater). Scores tie often — a token no indexer head likes scores exactly
    /// 0 — and which of the tied tokens is read changes the output, so the heap is reproduced operation for operation.
    /// </summary>
    internal static void TopIndices(ReadOnlySpan<float> values, int k, Span<int> heap)
    {
        for (int j = 0; j < k; j++) heap[j] = j;
        if (k >= 2)
            for (int parent = (k - 2) / 2; ; parent--)
            {
                AdjustHeap(values, heap, parent, k, heap[parent]);
                if (parent == 0) break;
            }
        for (int j = k; j < values.Length; j++)
            if (values[j] > values[heap[0]])
                AdjustHeap(values, heap, 0, k, j); // the top leaves; j takes its place and sinks
    }

    // The heap's order: "a before b" when a's value is greater, so the top holds a smallest value.
    private static bool Before(ReadOnlySpan<float> values, int a, int b) => values[a] > values[b];

    /// <summary>Fills the hole at <paramref name="hole"/> with <paramref name="value"/>: the larger child moves up until the bottom, then the value rises back (libstdc++'s <c>__adjust_heap</c>).</summary>
    private static void AdjustHeap(ReadOnlySpan<float> values, Span<int> heap, int hole, int length, int value)
    {
        int top = hole, child = hole;
        while (child < (length - 1) / 2)
        {
            child = 2 * (child + 1);
            if (Before(values, heap[child], heap[child - 1])) child--;
            heap[hole] = heap[child];
            hole = child;
        }
        if ((length & 1) == 0 && child == (length - 2) / 2)
        {
            child = 2 * (child + 1);
            heap[hole] = heap[child - 1];
            hole = child - 1;
        }
        int parent = (hole - 1) / 2;
        while (hole > top && Before(values, heap[parent], value))
        {
            heap[hole] = heap[parent];
            hole = parent;
            parent = (hole - 1) / 2;
        }
        heap[hole] = value;
    }
}
