using Kaiyuan.Kernels;

namespace Kaiyuan.Sampling;

/// <summary>
/// Turns logits into a token: logit bias, repetition/presence/frequency penalties over recent tokens, then greedy
/// argmax, or top-k → top-p → min-p → temperature → a draw from a seeded generator (llama.cpp's chain order).
/// A seed makes a run reproducible. Buffers are reused, so sampling allocates nothing per token.
/// </summary>
public sealed class Sampler
{
    private readonly SamplerOptions _options;
    private readonly Random _random;
    private float[] _logits = [];
    private int[] _order = [];
    private float[] _probs = [];
    private readonly Dictionary<int, int> _counts = new();

    /// <summary>A sampler with the given options; its random generator is seeded here (from <see cref="SamplerOptions.Seed"/> when set).</summary>
    public Sampler(SamplerOptions options)
    {
        _options = options;
        _random = options.Seed is { } seed ? new Random(unchecked((int)seed ^ (int)(seed >> 32))) : new Random();
    }

    /// <summary>The options this sampler was created with.</summary>
    public SamplerOptions Options => _options;

    /// <summary>Picks the next token. <paramref name="history"/> is the sequence so far (prompt and output);
    /// <paramref name="allowed"/>, when not empty, is a bit per token (a structured-output mask): others cannot be picked.</summary>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> history, ReadOnlySpan<ulong> allowed = default)
    {
        int n = logits.Length;
        if (_logits.Length < n)
        {
            _logits = new float[n];
            _order = new int[n];
            _probs = new float[n];
        }
        var l = _logits.AsSpan(0, n);
        logits.CopyTo(l);
        if (!allowed.IsEmpty) ApplyMask(l, allowed);
        if (_options.LogitBias is { } bias)
            foreach (var (id, b) in bias)
                if ((uint)id < (uint)n) l[id] += b;
        ApplyPenalties(l, history);

        if (_options.IsGreedy) return VectorOps.ArgMax(l);

        // Candidates sorted by logit, truncated by top-k.
        var order = _order.AsSpan(0, n);
        for (int i = 0; i < n; i++) order[i] = i;
        int k = _options.TopK > 0 ? Math.Min(_options.TopK, n) : n;
        PartialSort(l, order, k);
        var candidates = order[..k];

        // Softmax over the candidates (at temperature 1, as llama.cpp's top-p/min-p see them).
        var p = _probs.AsSpan(0, k);
        float max = l[candidates[0]];
        double sum = 0;
        for (int i = 0; i < k; i++) sum += p[i] = MathF.Exp(l[candidates[i]] - max);
        for (int i = 0; i < k; i++) p[i] = (float)(p[i] / sum);

        int keep = k;
        if (_options.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < k; i++)
            {
                cumulative += p[i];
                if (cumulative >= _options.TopP) { keep = i + 1; break; }
            }
        }
        if (_options.MinP > 0f)
        {
            float threshold = p[0] * _options.MinP;
            int m = 1;
            while (m < keep && p[m] >= threshold) m++;
            keep = m;
        }

        // Temperature, then draw.
        float invT = 1f / _options.Temperature;
        sum = 0;
        for (int i = 0; i < keep; i++) sum += p[i] = MathF.Exp((l[candidates[i]] - max) * invT);
        double r = _random.NextDouble() * sum;
        for (int i = 0; i < keep; i++)
        {
            r -= p[i];
            if (r <= 0) return candidates[i];
        }
        return candidates[keep - 1];
    }

    /// <summary>Sets the logit of every token outside the mask to -∞ (whole 64-token words at a time where none is allowed).</summary>
    private static void ApplyMask(Span<float> l, ReadOnlySpan<ulong> allowed)
    {
        for (int w = 0; w * 64 < l.Length; w++)
        {
            ulong bits = w < allowed.Length ? allowed[w] : 0;
            if (bits == ulong.MaxValue) continue;
            int start = w * 64, end = Math.Min(start + 64, l.Length);
            if (bits == 0) { l[start..end].Fill(float.NegativeInfinity); continue; }
            for (int i = start; i < end; i++)
                if ((bits & (1UL << (i - start))) == 0) l[i] = float.NegativeInfinity;
        }
    }

    private void ApplyPenalties(Span<float> l, ReadOnlySpan<int> history)
    {
        var o = _options;
        if (o.RepeatPenalty == 1f && o.PresencePenalty == 0f && o.FrequencyPenalty == 0f) return;
        int window = o.RepeatLastN < 0 ? history.Length : Math.Min(o.RepeatLastN, history.Length);
        _counts.Clear();
        foreach (int id in history[^window..])
            if ((uint)id < (uint)l.Length) _counts[id] = _counts.GetValueOrDefault(id) + 1;
        foreach (var (id, count) in _counts)
        {
            // As llama.cpp: divide positive logits and multiply negative ones by the repeat penalty.
            if (o.RepeatPenalty != 1f) l[id] = l[id] > 0 ? l[id] / o.RepeatPenalty : l[id] * o.RepeatPenalty;
            l[id] -= count * o.FrequencyPenalty + (count > 0 ? o.PresencePenalty : 0f);
        }
    }

    /// <summary>Moves the k largest logits, in descending order (lowest id first on ties), to the front of order.</summary>
    private static void PartialSort(ReadOnlySpan<float> l, Span<int> order, int k)
    {
        // A min-heap of the best k seen so far: O(n log k), no allocation.
        var heap = order[..k];
        for (int i = 0; i < k; i++) SiftUp(l, heap, i);
        for (int i = k; i < order.Length; i++)
        {
            int id = order[i];
            if (!Better(l, id, heap[0])) continue;
            heap[0] = id;
            SiftDown(l, heap, 0, k);
        }
        // Heap-sort the k winners into descending order.
        for (int end = k - 1; end > 0; end--)
        {
            (heap[0], heap[end]) = (heap[end], heap[0]);
            SiftDown(l, heap, 0, end);
        }
    }

    /// <summary>a ranks above b: a larger logit, or the same logit and a lower id.</summary>
    private static bool Better(ReadOnlySpan<float> l, int a, int b) => l[a] > l[b] || (l[a] == l[b] && a < b);

    private static void SiftUp(ReadOnlySpan<float> l, Span<int> heap, int i)
    {
        while (i > 0)
        {
            int parent = (i - 1) / 2;
            if (!Better(l, heap[parent], heap[i])) break;
            (heap[parent], heap[i]) = (heap[i], heap[parent]);
            i = parent;
        }
    }

    private static void SiftDown(ReadOnlySpan<float> l, Span<int> heap, int i, int size)
    {
        while (true)
        {
            int worst = i, left = 2 * i + 1, right = left + 1;
            if (left < size && Better(l, heap[worst], heap[left])) worst = left;
            if (right < size && Better(l, heap[worst], heap[right])) worst = right;
            if (worst == i) return;
            (heap[worst], heap[i]) = (heap[i], heap[worst]);
            i = worst;
        }
    }
}
