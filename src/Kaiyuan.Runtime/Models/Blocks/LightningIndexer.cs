using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
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

    /// <summary>
    /// score(s) = Σ_h w_h·ReLU(q_h·k(s)) for a range of cached positions. The heads are the vector lanes: the queries
    /// are held transposed (dimension-major), so each key value is broadcast once and multiplied into every head's
    /// sum, eight heads per instruction, with each head's sum taken in dimension order (the same fused steps in the
    /// scalar fallback, so every tier chooses the same tokens).
    /// </summary>
    private sealed class ScoreJob : IParallelJob
    {
        private const int Lanes = 8;
        private KvCache _cache = null!;
        private float[] _qT = [], _w = [], _scores = [], _keys = [];
        private int _layer, _slot, _keyOffset, _heads, _padded, _dim;

        public void Set(KvCache cache, int layer, int slot, int keyOffset, int heads, int dim, ReadOnlySpan<float> q, ReadOnlySpan<float> w,
            float[] scores, float[] keys)
        {
            (_cache, _layer, _slot, _keyOffset, _heads, _dim, _scores, _keys) = (cache, layer, slot, keyOffset, heads, dim, scores, keys);
            _padded = (heads + Lanes - 1) / Lanes * Lanes;
            if (_qT.Length < dim * _padded) _qT = new float[dim * _padded];
            if (_w.Length < _padded) _w = new float[_padded];
            _qT.AsSpan(0, dim * _padded).Clear();
            _w.AsSpan(0, _padded).Clear();
            for (int h = 0; h < heads; h++)
                for (int d = 0; d < dim; d++) _qT[d * _padded + h] = q[h * dim + d];
            w.CopyTo(_w);
        }

        public void Run(int start, int end, int worker)
        {
            int dim = _dim, padded = _padded;
            var key = _keys.AsSpan(worker * dim, dim);
            Span<float> sums = stackalloc float[padded];
            for (int j = start; j < end; j++)
            {
                ReadOnlySpan<float> k;
                if (_cache.IsF32) k = _cache.RowsF32(_layer, _slot, j, 1).Slice(_keyOffset, dim);
                else
                {
                    _cache.ReadPart(_layer, _slot, j, _keyOffset, key);
                    k = key;
                }
                _scores[j] = Vector256.IsHardwareAccelerated ? ScoreVector(k, sums) : ScoreScalar(k, sums);
            }
        }

        private float ScoreVector(ReadOnlySpan<float> k, Span<float> sums)
        {
            int padded = _padded, h = 0;
            ref float qT = ref MemoryMarshal.GetArrayDataReference(_qT);
            ref float w = ref MemoryMarshal.GetArrayDataReference(_w);
            ref float key = ref MemoryMarshal.GetReference(k);
            var total = Vector256<float>.Zero;
            // Four blocks of heads at a time: independent sums keep the multiply-add unit busy instead of waiting on one chain.
            for (; h + 4 * Lanes <= padded; h += 4 * Lanes)
            {
                Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
                for (int d = 0; d < k.Length; d++)
                {
                    var kd = Vector256.Create(Unsafe.Add(ref key, d));
                    nuint at = (nuint)(d * padded + h);
                    a0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qT, at), kd, a0);
                    a1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qT, at + Lanes), kd, a1);
                    a2 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qT, at + 2 * Lanes), kd, a2);
                    a3 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qT, at + 3 * Lanes), kd, a3);
                }
                total = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref w, (nuint)h), Vector256.Max(a0, Vector256<float>.Zero), total);
                total = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref w, (nuint)(h + Lanes)), Vector256.Max(a1, Vector256<float>.Zero), total);
                total = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref w, (nuint)(h + 2 * Lanes)), Vector256.Max(a2, Vector256<float>.Zero), total);
                total = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref w, (nuint)(h + 3 * Lanes)), Vector256.Max(a3, Vector256<float>.Zero), total);
            }
            for (; h < padded; h += Lanes)
            {
                var acc = Vector256<float>.Zero;
                for (int d = 0; d < k.Length; d++)
                    acc = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref qT, (nuint)(d * padded + h)), Vector256.Create(Unsafe.Add(ref key, d)), acc);
                total = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref w, (nuint)h), Vector256.Max(acc, Vector256<float>.Zero), total);
            }
            total.CopyTo(sums);
            return Sum(sums[..Lanes]);
        }

        private float ScoreScalar(ReadOnlySpan<float> k, Span<float> sums)
        {
            int padded = _padded;
            sums[..Lanes].Clear();
            for (int h = 0; h < padded; h++)
            {
                float acc = 0;
                for (int d = 0; d < k.Length; d++) acc = MathF.FusedMultiplyAdd(_qT[d * padded + h], k[d], acc);
                sums[h % Lanes] = MathF.FusedMultiplyAdd(_w[h], MathF.Max(acc, 0), sums[h % Lanes]);
            }
            return Sum(sums[..Lanes]);
        }

        // The lanes added in one fixed order on every tier.
        private static float Sum(ReadOnlySpan<float> lanes)
        {
            float s = 0;
            foreach (float v in lanes) s += v;
            return s;
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
