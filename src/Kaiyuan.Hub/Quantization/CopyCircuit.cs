namespace Kaiyuan.Quantization;

/// <summary>
/// An induction-head circuit that <c>kaiyuan synth --copying</c> writes into a model's first two layers, so that its
/// greedy continuation copies earlier text: the model predicts the token that followed the earlier place whose last
/// eight tokens match its own best (fewer where a shape is smaller), the latest of equal matches. A short context
/// would loop wherever code repeats a few tokens (every <c>using System.</c> line), which a real model does not. Random weights never copy, so without it a benchmark of prompt-lookup speculation (whose gain
/// depends on the answer repeating its input) would only ever measure rejected drafts. Every other layer keeps its
/// random weights and runs at full cost, but its attention output and feed-forward down projection are zero, so it adds
/// nothing to the residual: the file decodes at the shape's speed and copies like a model editing code.
/// </summary>
/// <remarks>
/// The residual stream holds ±1 codes of token ids (one dimension per bit, in 32-aligned slots, so each quantization
/// block holds one kind of value and rounds it exactly): E, the current token (the embedding); P1…Pn, the previous n
/// (written by layer 0); O, the prediction (written by layer 1, read by the untied output head); and C, a constant 1
/// that stands in for biases. Each head's first <see cref="RopeDims"/> dimensions are rotated; the rest carry content.
/// <list type="bullet">
/// <item>Layer 0, head k − 1 (every KV head alike): query and key from C alone, phased so that the rotation peaks k positions back; the value
/// is E. Its output goes to Pk.</item>
/// <item>Layer 1, head 0: the query is (E, P1…Pn−1) and the key (P1…Pn), so the score counts matching bits of the last
/// n tokens (all bits of the latest token, the low bits of older ones, as the head has room); the lowest-frequency rotary pair adds a term that falls with distance, smaller than one bit of a match, so
/// the latest of equal matches wins. Its value is E of that position (the token that followed), written to O.</item>
/// </list>
/// The score margins are chosen so that a softmax leaks less than 1e-8 to any wrong position; the activations' 8-bit
/// quantization then rounds every code back to exactly ±1 before the next layer reads it.
/// </remarks>
internal sealed class CopyCircuit
{
    private const float PositionAmplitude = 40f, PositionKey = 10f;   // per pair: 400 × the worst margin 0.42 → logit margin 21
    private const float ContentWeight = 100_000f;                     // one bit's margin (2×) exceeds the recency term's range
    private const float RecencyQuery = 833f, RecencyKey = 100f;       // 83,300 × θ × sin 0.5 ≈ 20 per position of distance
    private const float RecencyPhase = 0.5f;
    private const double LowestFrequency = 5e-4;                      // recency stays monotonic over 4,096 positions

    private readonly SynthShape _shape;
    private readonly bool _neoX;
    private readonly int _bits, _slot, _context;
    private readonly int[] _widths; // bits of the k-th latest token that the match compares
    private readonly (int Latest, int Bit)[] _content;
    private readonly float _s0, _s1, _sh;
    private readonly int _nextnLayer;

    /// <summary>Rotary dimensions per head (the rest of each head carries the two-token content match).</summary>
    public int RopeDims { get; }
    /// <summary>RoPE's base, chosen so that the lowest-frequency pair turns <see cref="LowestFrequency"/> per position.</summary>
    public float RopeBase { get; }

    public CopyCircuit(SynthShape s)
    {
        _neoX = s.Architecture switch
        {
            "qwen2" => true,
            "llama" => false,
            _ => throw new ArgumentException($"--copying: the {s.Name} shape ({s.Architecture}) is not supported; use a qwen2 or llama shape"),
        };
        if (s.Mla is not null || s.Moe is not null || s.Hybrid is not null || s.QkNorm)
            throw new ArgumentException($"--copying needs plain attention and dense feed-forward layers; {s.Name} has others");
        _shape = s;
        _bits = 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)(s.VocabSize - 1));
        _slot = (_bits + 31) & ~31;
        // Tokens matched: one previous-token head each in layer 0, their codes side by side in a head that keeps five
        // rotary pairs (the position selector's margin was checked for five): all bits of the latest token, up to 12 of
        // the next, then 8, 6, 4 and 2 of older ones. Eight tokens tell apart lines of code that share their last six
        // (two `throw new ArgumentOutOfRangeException(nameof(` lines), where a shorter match loops; nearer tokens weigh
        // more, as a few low bits of a far token agree by chance too often to rank a match by.
        int room = s.HeadDim - 10, heads = Math.Min(s.Heads, s.EmbeddingLength / _slot - 3);
        var widths = new List<int> { _bits };
        foreach (int wanted in (int[])[12, 8, 6, 4, 2, 2, 2])
        {
            int width = Math.Min(Math.Min(wanted, _bits), room - widths.Sum());
            if (widths.Count == heads || width < 2) break;
            widths.Add(width);
        }
        _widths = [.. widths];
        _context = _widths.Length;
        RopeDims = (s.HeadDim - _widths.Sum()) & ~1;
        if (s.Layers < 2 || _context < 2 || RopeDims < 10)
            throw new ArgumentException($"--copying: the {s.Name} shape is too small for the circuit (2 layers, 2 heads per KV head, head size ≥ {_bits + 16}, width ≥ {5 * _slot})");
        RopeBase = (float)Math.Pow(1 / LowestFrequency, RopeDims / (double)(RopeDims - 2));
        // RMS norm's factor at each layer's input: the residual holds bits + 1 values of ±1 before layer 0, (n + 1) bits + 1 after.
        _s0 = MathF.Sqrt(s.EmbeddingLength / (float)(_bits + 1));
        _s1 = MathF.Sqrt(s.EmbeddingLength / (float)((_context + 1) * _bits + 1));
        // The final hidden state holds E, P1…Pn, O and C, each code ±1 (O is a sharp attention's copy of one E).
        _sh = MathF.Sqrt(s.EmbeddingLength / (float)((_context + 2) * _bits + 1));
        _nextnLayer = s.NextnLayers > 0 ? s.Layers : -1;
        // Content dimension → (which latest token, which bit).
        _content = [.. _widths.SelectMany((width, k) => Enumerable.Range(0, width).Select(bit => (k, bit)))];
    }

    // Residual slots: E (the current token), P1…Pn (the previous n), O (the prediction), C (constant).
    private int E(int bit) => bit;
    private int P(int back, int bit) => back * _slot + bit;
    private int O(int bit) => (_context + 1) * _slot + bit;
    private int C => (_context + 2) * _slot;

    private static float Code(long token, int bit) => ((token >> bit) & 1) != 0 ? 1f : -1f;

    private double Theta(int pair) => Math.Pow(RopeBase, -2.0 * pair / RopeDims);

    // The two dimensions of a head that a rotary pair turns: NeoX splits the rotated part in halves, the original style interleaves.
    private (int First, int Second) Pair(int pair) => _neoX ? (pair, pair + RopeDims / 2) : (2 * pair, 2 * pair + 1);

    /// <summary>
    /// Writes row <paramref name="row"/> of tensor <paramref name="name"/> into <paramref name="values"/> and returns
    /// true, or returns false when the tensor keeps its random weights.
    /// </summary>
    public bool TryFill(string name, long row, Span<float> values)
    {
        int layer = -1;
        string part = name;
        if (name.StartsWith("blk.", StringComparison.Ordinal))
        {
            int dot = name.IndexOf('.', 4);
            layer = int.Parse(name.AsSpan(4, dot - 4), System.Globalization.CultureInfo.InvariantCulture);
            part = name[(dot + 1)..];
        }
        if (layer >= 0 && layer == _nextnLayer) return TryFillNextn(part, (int)row, values);
        switch (layer, part)
        {
            case (-1, "token_embd.weight"):
                values.Clear();
                for (int b = 0; b < _bits; b++) values[E(b)] = Code(row, b);
                values[C] = 1;
                return true;
            case (-1, "output.weight"):
                values.Clear();
                for (int b = 0; b < _bits; b++) values[O(b)] = Code(row, b);
                return true;
            case (-1, "output_norm.weight"):
            case (0 or 1, "attn_norm.weight"):
                values.Fill(1);
                return true;
            case (_, "ffn_down.weight"):
            case ( >= 2, "attn_output.weight"):
                values.Clear();
                return true;
            case (0 or 1, "attn_q.bias" or "attn_k.bias" or "attn_v.bias"):
                values.Clear();
                return true;
            case (0, _):
                values.Clear();
                FillPreviousTokenLayer(part, (int)row, values);
                return part is "attn_q.weight" or "attn_k.weight" or "attn_v.weight" or "attn_output.weight";
            case (1, _):
                values.Clear();
                FillInductionLayer(part, (int)row, values);
                return part is "attn_q.weight" or "attn_k.weight" or "attn_v.weight" or "attn_output.weight";
            default:
                return false;
        }
    }

    /// <summary>
    /// A NextN layer that copies one token further: eh_proj lays out E from the embedding of the token that followed
    /// (t_{i+1}) and P1…Pn from the hidden state's E, P1…Pn−1 (t_i, t_{i−1}, …), the residual the induction layer reads,
    /// so the same induction head predicts t_{i+2}. Its output fed back as the hidden state has that layout again, so
    /// drafting further goes on copying.
    /// </summary>
    private bool TryFillNextn(string part, int row, Span<float> values)
    {
        values.Clear();
        switch (part)
        {
            case "nextn.eh_proj.weight":
                int e = _shape.EmbeddingLength;
                if (row == C) values[C] = 1 / _s0;
                for (int b = 0; b < _bits; b++)
                {
                    if (row == E(b)) values[E(b)] = 1 / _s0;
                    for (int k = 1; k <= _context; k++)
                        if (row == P(k, b)) values[e + P(k - 1, b)] = 1 / _sh;
                }
                return true;
            case "nextn.enorm.weight" or "nextn.hnorm.weight" or "nextn.shared_head_norm.weight" or "attn_norm.weight":
                values.Fill(1);
                return true;
            case "attn_q.bias" or "attn_k.bias" or "attn_v.bias" or "ffn_down.weight":
                return true;
            case "attn_q.weight" or "attn_k.weight" or "attn_v.weight" or "attn_output.weight":
                FillInductionLayer(part, row, values);
                return true;
            default:
                return false;
        }
    }

    private void FillPreviousTokenLayer(string part, int row, Span<float> values)
    {
        int head = row / _shape.HeadDim, dim = row % _shape.HeadDim;
        switch (part)
        {
            case "attn_q.weight" when head < _context:
                // Head h peaks h + 1 positions back: each pair's query is turned back by that many steps of its angle.
                int back = head + 1;
                for (int p = 0; p < RopeDims / 2; p++)
                {
                    var (first, second) = Pair(p);
                    double angle = back * Theta(p);
                    if (dim == first) values[C] = (float)(PositionAmplitude * Math.Cos(angle)) / _s0;
                    if (dim == second) values[C] = (float)(-PositionAmplitude * Math.Sin(angle)) / _s0;
                }
                break;
            case "attn_k.weight": // every KV head alike, so any query head can be a previous-token head
                for (int p = 0; p < RopeDims / 2; p++)
                    if (dim == Pair(p).First) values[C] = PositionKey / _s0;
                break;
            case "attn_v.weight" when dim < _bits:
                values[E(dim)] = 1 / _s0;
                break;
            case "attn_output.weight":
                // Rows are residual dimensions; the inputs are the heads' outputs, head after head.
                for (int k = 1; k <= _context; k++)
                    if (row >= P(k, 0) && row < P(k, _bits)) values[(k - 1) * _shape.HeadDim + row - P(k, 0)] = 1;
                break;
        }
    }

    private void FillInductionLayer(string part, int row, Span<float> values)
    {
        int head = row / _shape.HeadDim, dim = row % _shape.HeadDim;
        var (recencyFirst, recencySecond) = Pair(RopeDims / 2 - 1);
        // A content dimension holds a bit of the query's k-th latest token (E, then P1…) and the same bit of the key's
        // (k + 1)-th (P1, then P2…): a key one position later matches, so its value is the token that followed.
        int content = dim - RopeDims;
        var (latest, bit) = content >= 0 && content < _content.Length ? _content[content] : (-1, 0);
        switch (part)
        {
            case "attn_q.weight" when head == 0:
                if (latest >= 0) values[P(latest, bit)] = ContentWeight / _s1;
                else if (dim == recencyFirst) values[C] = RecencyQuery * MathF.Cos(RecencyPhase) / _s1;
                else if (dim == recencySecond) values[C] = RecencyQuery * MathF.Sin(RecencyPhase) / _s1;
                break;
            case "attn_k.weight" when head == 0:
                if (latest >= 0) values[P(latest + 1, bit)] = 1 / _s1;
                else if (dim == recencyFirst) values[C] = RecencyKey / _s1;
                break;
            case "attn_v.weight" when head == 0 && dim < _bits:
                values[E(dim)] = 1 / _s1;
                break;
            case "attn_output.weight":
                if (row >= O(0) && row < O(_bits)) values[row - O(0)] = 1;
                break;
        }
    }
}
